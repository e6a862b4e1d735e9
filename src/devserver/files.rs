//! File routes (`scaidrive-api.md` §9, §10.1, §10.3): the multipart upload (held to the
//! per-file cap and to the per-request cap on its whole body, each a 413), metadata,
//! content downloads with single byte ranges, PATCH for rename / move / restore from trash,
//! soft and permanent delete, move, copy, the version list and version restore, and the
//! sync download endpoint (which also takes its range as query parameters). Uploaded bytes
//! are streamed into the content-addressed blob store and downloads are streamed out of it,
//! so no file is ever held in memory whole. [`serve_blob`] is public so that other routes
//! serving file content (public links) answer with the same headers and range rules.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use futures_util::StreamExt;
use rusqlite::{Connection, params};
use serde::Deserialize;
use serde_json::{Value, json};

use super::download::{Want, blob_of, parse_range, serve_blob};
use super::error::{ApiError, ApiResult, Json, Path, Query};
use super::folders;
use super::model::{self, CREATE, Caller, DELETE, Node, READ, WRITE};
use super::state::{AppState, BlobWriter};
use super::util::{check_name, mime_for};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/files", post(upload))
        .route(
            "/api/v1/files/{file_id}",
            get(get_file).patch(patch).delete(delete),
        )
        .route("/api/v1/files/{file_id}/content", get(content))
        .route("/api/v1/files/{file_id}/move", post(move_file))
        .route("/api/v1/files/{file_id}/copy", post(copy))
        .route("/api/v1/files/{file_id}/versions", get(versions))
        .route(
            "/api/v1/files/{file_id}/versions/{version}/restore",
            post(restore_version),
        )
        .route("/api/v1/sync/download/{file_id}", get(sync_download))
}

/// Allowance for the text fields, boundaries and part headers of a multipart body when a
/// request is judged by its Content-Length alone: beyond cap + this, the file part cannot fit.
const FORM_OVERHEAD: u64 = 64 * 1024;
/// Longest accepted text field: the documented ones are ids and a name of at most 255 bytes.
const MAX_TEXT_FIELD: usize = 4096;
/// Upload bytes are gathered to this size before each write, so the blob file sees few,
/// large writes instead of one per network frame.
const WRITE_BATCH: usize = 1 << 20;
/// How much of a refused request body is still read (and discarded), and for how long.
const DISCARD_BYTES: u64 = 300 << 20;
const DISCARD_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads and drops what is left of a refused request body in the background. Answering
/// before the client has finished sending makes the socket close with unread data, which
/// resets the connection and loses the response; reading on for a bounded while lets the
/// client see the documented error instead. Nothing read here is stored.
pub(crate) fn discard_stream(mut stream: axum::body::BodyDataStream) {
    tokio::spawn(async move {
        let mut left = DISCARD_BYTES;
        let _ = tokio::time::timeout(DISCARD_TIME, async {
            while let Some(Ok(b)) = futures_util::StreamExt::next(&mut stream).await {
                left = left.saturating_sub(b.len() as u64);
                if left == 0 {
                    break;
                }
            }
        })
        .await;
    });
}

/// [`discard_stream`] for a multipart body that was only partly read.
fn discard_multipart(mut mp: Multipart) {
    tokio::spawn(async move {
        let mut left = DISCARD_BYTES;
        let _ = tokio::time::timeout(DISCARD_TIME, async {
            while let Ok(Some(mut field)) = mp.next_field().await {
                while let Ok(Some(b)) = field.chunk().await {
                    left = left.saturating_sub(b.len() as u64);
                    if left == 0 {
                        return;
                    }
                }
            }
        })
        .await;
    });
}

pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        format!("file is larger than the per-file limit of {max} bytes"),
    )
    .with_details(json!({ "max_file_size": max }))
}

/// The per-request cap's 413: the same documented status and code as the per-file cap
/// (the seed: "413 PAYLOAD_TOO_LARGE … Use Resumable Uploads for large files"); the client
/// cannot tell the two apart, and need not: either way the next step is a session.
fn request_too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        format!("request body is larger than the per-request limit of {max} bytes"),
    )
    .with_details(json!({ "max_request_size": max }))
}

/// The two caps a multipart upload is held to, and the request body bytes received so
/// far (counted as the body streams in, boundaries and text fields included).
#[derive(Clone)]
struct Caps {
    file: u64,
    request: u64,
    received: Arc<AtomicU64>,
}

impl Caps {
    fn check_request(&self) -> ApiResult<()> {
        if self.received.load(Ordering::Relaxed) > self.request {
            return Err(request_too_large(self.request));
        }
        Ok(())
    }
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    // Starlette answers an unparseable multipart body with 400, not a schema 422.
    ApiError::bad_request(
        "INVALID_REQUEST",
        format!("error parsing the multipart body: {}", e.body_text()),
    )
}

/// What the multipart body carried. The file part is already streamed into `file`.
#[derive(Default)]
struct UploadForm {
    share_id: Option<String>,
    folder_id: Option<String>,
    name: Option<String>,
    part_filename: Option<String>,
    file: Option<BlobWriter>,
    file_seen: bool,
}

impl UploadForm {
    async fn abort(&mut self) {
        if let Some(w) = self.file.take() {
            w.abort().await;
        }
    }
}

async fn read_text(
    field: &mut axum::extract::multipart::Field<'_>,
    key: &str,
) -> ApiResult<String> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        buf.extend_from_slice(&chunk);
        if buf.len() > MAX_TEXT_FIELD {
            return Err(ApiError::validation(
                &["body", key],
                format!("{key} is longer than {MAX_TEXT_FIELD} bytes"),
            ));
        }
    }
    String::from_utf8(buf)
        .map_err(|_| ApiError::validation(&["body", key], format!("{key} is not valid UTF-8")))
}

/// Reads every part; the file part goes to a blob writer stored in `form` as soon as it
/// exists, so the caller can abort it whatever fails later.
async fn read_form(
    state: &AppState,
    mp: &mut Multipart,
    form: &mut UploadForm,
    caps: &Caps,
) -> ApiResult<()> {
    while let Some(mut field) = mp.next_field().await.map_err(multipart_error)? {
        let key = field.name().unwrap_or_default().to_string();
        match key.as_str() {
            "file" => {
                if form.file_seen {
                    return Err(ApiError::validation(
                        &["body", "file"],
                        "more than one file part",
                    ));
                }
                form.file_seen = true;
                let Some(filename) = field.file_name().map(str::to_string) else {
                    return Err(ApiError::validation(
                        &["body", "file"],
                        "file must be a file part with a filename",
                    ));
                };
                form.part_filename = Some(filename);
                let writer = form.file.insert(state.blobs.writer().await?);
                let mut batch = Vec::with_capacity(WRITE_BATCH);
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    caps.check_request()?;
                    if writer.size() + (batch.len() + chunk.len()) as u64 > caps.file {
                        return Err(too_large(caps.file));
                    }
                    batch.extend_from_slice(&chunk);
                    if batch.len() >= WRITE_BATCH {
                        writer.write(&batch).await?;
                        batch.clear();
                    }
                }
                writer.write(&batch).await?;
            }
            "share_id" => form.share_id = Some(read_text(&mut field, &key).await?),
            "folder_id" => form.folder_id = Some(read_text(&mut field, &key).await?),
            "name" => form.name = Some(read_text(&mut field, &key).await?),
            // FastAPI ignores form fields it does not declare; so do we (multer skips them).
            _ => {}
        }
    }
    // The closing boundary may be what crosses the request cap.
    caps.check_request()
}

/// The checks a new file must pass before it is inserted; returns the parent column value.
fn check_new_file(
    conn: &Connection,
    caller: &Caller,
    share_id: &str,
    folder_id: Option<&str>,
    name: &str,
    size: i64,
) -> ApiResult<String> {
    model::require(conn, caller, share_id, CREATE)?;
    check_name(name)?;
    let parent = model::resolve_parent(conn, caller, share_id, folder_id)?;
    model::ensure_free(conn, share_id, &parent, name)?;
    model::check_quota(conn, share_id, size)?;
    Ok(parent)
}

async fn upload(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    req: Request,
) -> ApiResult<Response> {
    let settings = state.settings();
    let caps = Caps {
        file: settings.max_file_size,
        request: settings.max_request_size,
        received: Arc::new(AtomicU64::new(0)),
    };
    let declared = content_length(req.headers());
    if let Some(len) = declared {
        // Refused before reading, as a proxy with a body limit would.
        let refusal = if len > caps.request {
            Some(request_too_large(caps.request))
        } else if len > caps.file.saturating_add(FORM_OVERHEAD) {
            Some(too_large(caps.file))
        } else {
            None
        };
        if let Some(e) = refusal {
            discard_stream(req.into_body().into_data_stream());
            return Err(e);
        }
    }
    // Count the body as it streams in, so a body without Content-Length (or one longer
    // than it said) meets the request cap too. Counting, not cutting: the rest of a
    // refused body is still read and discarded so the client sees the 413.
    let counter = caps.received.clone();
    let req = req.map(|body| {
        Body::from_stream(body.into_data_stream().inspect(move |r| {
            if let Ok(b) = r {
                counter.fetch_add(b.len() as u64, Ordering::Relaxed);
            }
        }))
    });
    let mut mp = Multipart::from_request(req, &state)
        .await
        .map_err(|e| ApiError::validation(&["body"], e.body_text()))?;
    let mut form = UploadForm::default();
    if let Err(e) = read_form(&state, &mut mp, &mut form, &caps).await {
        form.abort().await;
        discard_multipart(mp);
        return Err(e);
    }
    let Some(share_id) = form.share_id.take() else {
        form.abort().await;
        return Err(ApiError::validation(
            &["body", "share_id"],
            "field required",
        ));
    };
    let Some(writer) = form.file.take() else {
        return Err(ApiError::validation(&["body", "file"], "field required"));
    };
    let name = form
        .name
        .take()
        .or(form.part_filename.take())
        .unwrap_or_default();
    let folder_id = form.folder_id.take();
    let size = writer.size() as i64;

    // Validate while the bytes are still a temp file, so a refused upload leaves nothing.
    let pre = {
        let (caller, share_id, folder_id, name) = (
            caller.clone(),
            share_id.clone(),
            folder_id.clone(),
            name.clone(),
        );
        state
            .db
            .call(move |conn| {
                check_new_file(conn, &caller, &share_id, folder_id.as_deref(), &name, size)
            })
            .await
    };
    if let Err(e) = pre {
        writer.abort().await;
        return Err(e);
    }
    let (sha, size) = writer.finish().await?;
    let now = model::now_iso(&state);
    // The checks run again in the inserting transaction: a concurrent upload may have taken
    // the name or the quota meanwhile. (Should that happen, the stored blob stays
    // unreferenced, like the blobs of permanently deleted files.)
    state
        .db
        .tx(move |tx| {
            let parent = check_new_file(
                tx,
                &caller,
                &share_id,
                folder_id.as_deref(),
                &name,
                size as i64,
            )?;
            let node = model::insert_file(
                tx,
                &caller,
                &share_id,
                &parent,
                &name,
                &sha,
                size as i64,
                mime_for(&name),
                &now,
            )?;
            Ok((StatusCode::CREATED, Json(model::file_json(tx, &node)?)).into_response())
        })
        .await
}

async fn get_file(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    state
        .db
        .call(move |conn| {
            let n = model::load_node(conn, &caller, &id, "file", READ, false)?;
            Ok(Json(model::file_json(conn, &n)?))
        })
        .await
}

#[derive(Deserialize)]
struct ContentQuery {
    version: Option<i64>,
}

async fn content(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<ContentQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let blob = state
        .db
        .call(move |conn| {
            let file = model::load_node(conn, &caller, &id, "file", READ, false)?;
            blob_of(conn, &file, q.version)
        })
        .await?;
    let want = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(r) => parse_range(r, blob.size),
        None => Want::Full,
    };
    serve_blob(&state, blob, want).await
}

#[derive(Deserialize)]
struct SyncDownloadQuery {
    version: Option<i64>,
    range_start: Option<u64>,
    range_end: Option<u64>,
}

async fn sync_download(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<SyncDownloadQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if let (Some(a), Some(b)) = (q.range_start, q.range_end)
        && b < a
    {
        return Err(ApiError::validation(
            &["query", "range_end"],
            "range_end must not be less than range_start",
        ));
    }
    let version = q.version;
    let blob = state
        .db
        .call(move |conn| {
            let file = model::load_node(conn, &caller, &id, "file", READ, false)?;
            blob_of(conn, &file, version)
        })
        .await?;
    let total = blob.size;
    let want = if q.range_start.is_some() || q.range_end.is_some() {
        let start = q.range_start.unwrap_or(0);
        if start >= total {
            Want::Unsatisfiable
        } else {
            Want::Part(start, q.range_end.map_or(total - 1, |e| e.min(total - 1)))
        }
    } else {
        match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
            Some(r) => parse_range(r, total),
            None => Want::Full,
        }
    };
    serve_blob(&state, blob, want).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    name: Option<String>,
    #[serde(default, deserialize_with = "super::util::present")]
    folder_id: Option<Option<String>>,
    #[serde(default)]
    restore: bool,
}

async fn patch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Json(body): Json<PatchBody>,
) -> ApiResult<Json<Value>> {
    let now = model::now_iso(&state);
    state
        .db
        .tx(move |tx| {
            let node = model::load_node(tx, &caller, &id, "file", WRITE, body.restore)?;
            let parent = match &body.folder_id {
                Some(folder) => {
                    // A move through PATCH needs what POST /move needs.
                    model::require(tx, &caller, &node.share_id, DELETE)?;
                    model::require(tx, &caller, &node.share_id, CREATE)?;
                    model::resolve_parent(tx, &caller, &node.share_id, folder.as_deref())?
                }
                None => node.parent_id.clone(),
            };
            let name = body.name.clone().unwrap_or_else(|| node.name.clone());
            if name != node.name {
                check_name(&name)?;
            }
            if body.restore && node.is_deleted() {
                if parent == node.parent_id && !parent.is_empty() {
                    let live = model::get_node(tx, &parent)?.is_some_and(|p| !p.is_deleted());
                    if !live {
                        return Err(ApiError::deleted(format!("parent folder {parent}")));
                    }
                }
                model::ensure_free(tx, &node.share_id, &parent, &name)?;
                tx.execute(
                    "UPDATE nodes SET deleted_at = NULL, deleted_root = NULL, parent_id = ?2, name = ?3, \
                     modified_by = ?4, modified_at = ?5 WHERE id = ?1",
                    params![node.id, parent, name, caller.user_id, now],
                )?;
                let restored = reload(tx, &node.id)?;
                // The restored file is back with its current version: say which one.
                let ver = model::current_version_id(tx, &restored)?;
                model::record_node_change(tx, &restored, "created", &caller.user_id, &now, None, ver.as_deref())?;
                return Ok(Json(model::file_json(tx, &restored)?));
            }
            if parent == node.parent_id && name == node.name {
                return Ok(Json(model::file_json(tx, &node)?));
            }
            model::ensure_free(tx, &node.share_id, &parent, &name)?;
            let old_path = model::node_path(tx, &node)?;
            tx.execute(
                "UPDATE nodes SET parent_id = ?2, name = ?3, modified_by = ?4, modified_at = ?5 WHERE id = ?1",
                params![node.id, parent, name, caller.user_id, now],
            )?;
            let updated = reload(tx, &node.id)?;
            // One entry per request: a move that also renames is reported as the move.
            let change = if parent != node.parent_id { "moved" } else { "renamed" };
            model::record_node_change(tx, &updated, change, &caller.user_id, &now, Some(&old_path), None)?;
            Ok(Json(model::file_json(tx, &updated)?))
        })
        .await
}

fn reload(conn: &Connection, id: &str) -> ApiResult<Node> {
    model::get_node(conn, id)?.ok_or_else(|| ApiError::internal(format!("file {id} vanished")))
}

#[derive(Deserialize)]
struct DeleteQuery {
    #[serde(default)]
    permanent: bool,
}

async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<StatusCode> {
    let now = model::now_iso(&state);
    state
        .db
        .tx(move |tx| {
            let node = model::load_node(tx, &caller, &id, "file", DELETE, q.permanent)?;
            folders::delete_node(tx, &caller, &node, q.permanent, &now)?;
            Ok(StatusCode::NO_CONTENT)
        })
        .await
}

/// Resolves a move/copy destination to (share, folder). A folder id alone names its own
/// share; a share id alone means that share's root; neither means `default_share`'s root.
fn destination(
    conn: &Connection,
    caller: &Caller,
    folder_id: Option<&str>,
    share_id: Option<&str>,
    default_share: &str,
) -> ApiResult<(String, Option<String>)> {
    match folder_id {
        Some(f) if !f.is_empty() && f != "root" => {
            let folder = model::load_node(conn, caller, f, "folder", READ, false)?;
            if share_id.is_some_and(|s| s != folder.share_id) {
                return Err(ApiError::not_found(format!(
                    "folder {f} in share {}",
                    share_id.unwrap_or_default()
                )));
            }
            Ok((folder.share_id, Some(folder.id)))
        }
        _ => Ok((share_id.unwrap_or(default_share).to_string(), None)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveBody {
    #[serde(default, deserialize_with = "super::util::present")]
    target_folder_id: Option<Option<String>>,
    target_share_id: Option<String>,
}

async fn move_file(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Json(body): Json<MoveBody>,
) -> ApiResult<Json<Value>> {
    if body.target_folder_id.is_none() && body.target_share_id.is_none() {
        return Err(ApiError::validation(
            &["body", "target_folder_id"],
            "target_folder_id or target_share_id is required",
        ));
    }
    let now = model::now_iso(&state);
    state
        .db
        .tx(move |tx| {
            let node = model::load_node(tx, &caller, &id, "file", DELETE, false)?;
            let folder = body.target_folder_id.clone().flatten();
            let (share, folder) = destination(
                tx,
                &caller,
                folder.as_deref(),
                body.target_share_id.as_deref(),
                &node.share_id,
            )?;
            if share != node.share_id {
                // The bytes land in another share's quota.
                model::require(tx, &caller, &share, CREATE)?;
                model::check_quota(tx, &share, node.size)?;
            }
            let moved = folders::move_node(tx, &caller, &node, &share, folder.as_deref(), &now)?;
            Ok(Json(model::file_json(tx, &moved)?))
        })
        .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CopyBody {
    target_folder_id: Option<String>,
    target_share_id: Option<String>,
    name: Option<String>,
}

async fn copy(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Json(body): Json<CopyBody>,
) -> ApiResult<Response> {
    if body.target_folder_id.is_some() == body.target_share_id.is_some() {
        return Err(ApiError::validation(
            &["body", "target_folder_id"],
            "exactly one of target_folder_id and target_share_id is required",
        ));
    }
    let now = model::now_iso(&state);
    state
        .db
        .tx(move |tx| {
            let src = model::load_node(tx, &caller, &id, "file", READ, false)?;
            let (share, folder) = destination(
                tx,
                &caller,
                body.target_folder_id.as_deref(),
                body.target_share_id.as_deref(),
                &src.share_id,
            )?;
            let name = body.name.clone().unwrap_or_else(|| src.name.clone());
            let parent = check_new_file(tx, &caller, &share, folder.as_deref(), &name, src.size)?;
            let sha = src
                .sha256
                .clone()
                .ok_or_else(|| ApiError::internal("file without content"))?;
            let mime = match (&src.mime_type, name == src.name) {
                (Some(m), true) => m.clone(),
                _ => mime_for(&name).to_string(),
            };
            // Content-addressed: the copy refers to the same blob, no bytes move.
            let node = model::insert_file(
                tx, &caller, &share, &parent, &name, &sha, src.size, &mime, &now,
            )?;
            Ok((StatusCode::CREATED, Json(model::file_json(tx, &node)?)).into_response())
        })
        .await
}

async fn versions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    state
        .db
        .call(move |conn| {
            let file = model::load_node(conn, &caller, &id, "file", READ, false)?;
            let mut stmt = conn.prepare(
                "SELECT id, version_number, size, sha256, created_by, created_at FROM versions \
                 WHERE file_id = ?1 ORDER BY version_number DESC",
            )?;
            let versions = stmt
                .query_map([&file.id], |r| {
                    Ok(json!({
                        "id": r.get::<_, String>(0)?,
                        "version_number": r.get::<_, i64>(1)?,
                        "size": r.get::<_, i64>(2)?,
                        "checksum_sha256": r.get::<_, String>(3)?,
                        "created_by": r.get::<_, String>(4)?,
                        "created_at": r.get::<_, String>(5)?,
                    }))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let total = versions.len();
            Ok(Json(json!({ "versions": versions, "total": total })))
        })
        .await
}

async fn restore_version(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, version)): Path<(String, i64)>,
) -> ApiResult<Response> {
    let now = model::now_iso(&state);
    state
        .db
        .tx(move |tx| {
            let file = model::load_node(tx, &caller, &id, "file", WRITE, false)?;
            let old = blob_of(tx, &file, Some(version))?;
            let size = old.size as i64;
            model::check_quota(tx, &file.share_id, (size - file.size).max(0))?;
            let updated = model::add_version(tx, &caller, &file, &old.sha256, size, &now)?;
            let obj = model::file_json(tx, &updated)?;
            Ok(id_first(obj, "restored_from_version", json!(version)))
        })
        .await
}

/// Renders a JSON object with `id` and then `extra` first: the docs show the version
/// restore response beginning `{id, restore...`, and serde_json's maps sort their keys.
fn id_first(obj: Value, extra_key: &str, extra: Value) -> Response {
    let Value::Object(map) = obj else {
        return Json(obj).into_response();
    };
    let mut parts = vec![
        format!("\"id\":{}", map.get("id").cloned().unwrap_or(Value::Null)),
        format!("{}:{extra}", Value::String(extra_key.to_string())),
    ];
    for (k, v) in map.iter().filter(|(k, _)| k.as_str() != "id") {
        parts.push(format!("{}:{v}", Value::String(k.clone())));
    }
    let mut resp = Response::new(Body::from(format!("{{{}}}", parts.join(","))));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devserver::download::content_disposition;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Want::Part(0, 9));
        assert_eq!(parse_range("bytes=90-", 100), Want::Part(90, 99));
        assert_eq!(parse_range("bytes=-5", 100), Want::Part(95, 99));
        assert_eq!(parse_range("bytes=-500", 100), Want::Part(0, 99));
        assert_eq!(parse_range("bytes=95-200", 100), Want::Part(95, 99));
        assert_eq!(parse_range("bytes=100-", 100), Want::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Want::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0", 0), Want::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Want::Full);
        assert_eq!(parse_range("bytes=5-1", 100), Want::Full);
        assert_eq!(parse_range("items=0-1", 100), Want::Full);
        assert_eq!(parse_range("bytes=+1-2", 100), Want::Full);
    }

    #[test]
    fn disposition() {
        assert_eq!(
            content_disposition("a b.pdf").to_str().ok(),
            Some("attachment; filename=\"a b.pdf\"")
        );
        assert_eq!(
            content_disposition("q\"\\.txt").to_str().ok(),
            Some("attachment; filename=\"q\\\"\\\\.txt\"")
        );
        assert_eq!(
            content_disposition("ü 1.txt").as_bytes(),
            b"attachment; filename=\"_ 1.txt\"; filename*=UTF-8''%C3%BC%201.txt"
        );
    }
}
