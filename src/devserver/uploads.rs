//! Resumable upload sessions (`scaidrive-api.md` §10.2) under `/api/v1/uploads`: create,
//! chunk PUT (0-based, any order, idempotent re-PUT, optional `X-Chunk-SHA256`), status,
//! complete (assembles the chunks into a new file or, with `replace_file_id`, a new version
//! of an existing one) and abort. Chunks are written in place into one file per session
//! (in the session's directory of the blob store), which becomes the blob when the session
//! completes; it is removed when the session is aborted or expires after
//! `session_ttl_secs` of inactivity on the server clock. Sessions belong to the user who
//! created them; everyone else gets 404.

use std::path::{Path as FsPath, PathBuf};

use axum::body::{Body, BodyDataStream};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Extension, Router};
use futures_util::StreamExt;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::error::{ApiError, ApiResult, Json, Path};
use super::files::{content_length, discard_stream};
use super::model::{self, CREATE, Caller, Node, READ, WRITE};
use super::state::{AppState, SparseWriter, write_region};
use super::util::{check_name, iso_unix, mime_for, new_id};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/uploads", post(create))
        .route("/api/v1/uploads/{session_id}", get(status).delete(abort))
        .route(
            "/api/v1/uploads/{session_id}/chunks/{index}",
            put(put_chunk),
        )
        .route("/api/v1/uploads/{session_id}/complete", post(complete))
}

/// The documented default chunk size.
const DEFAULT_CHUNK: u64 = 4 * 1024 * 1024;
/// Documented minimum: a power of two of at least 64 KiB.
const MIN_CHUNK: u64 = 64 * 1024;
/// Larger requested chunk sizes are lowered to this, so one chunk PUT stays bounded.
const MAX_CHUNK: u64 = 256 * 1024 * 1024;
/// Buffer size for chunk bodies and assembly; bounds the memory one request uses.
const IO_BUF: usize = 1 << 20;

const SESSION_COLS: &str = "id, tenant_id, user_id, share_id, folder_id, file_name, file_size, chunk_size, \
    total_chunks, mime_type, checksum_sha256, replace_file_id, status, file_id, last_activity";

#[derive(Clone, Debug)]
struct Session {
    id: String,
    tenant_id: String,
    user_id: String,
    share_id: String,
    /// '' for the share root.
    folder_id: String,
    file_name: String,
    file_size: u64,
    chunk_size: u64,
    total_chunks: u64,
    mime_type: Option<String>,
    checksum_sha256: Option<String>,
    replace_file_id: Option<String>,
    status: String,
    file_id: Option<String>,
    last_activity: i64,
}

impl Session {
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Session> {
        Ok(Session {
            id: r.get(0)?,
            tenant_id: r.get(1)?,
            user_id: r.get(2)?,
            share_id: r.get(3)?,
            folder_id: r.get(4)?,
            file_name: r.get(5)?,
            file_size: r.get::<_, i64>(6)?.max(0) as u64,
            chunk_size: r.get::<_, i64>(7)?.max(1) as u64,
            total_chunks: r.get::<_, i64>(8)?.max(0) as u64,
            mime_type: r.get(9)?,
            checksum_sha256: r.get(10)?,
            replace_file_id: r.get(11)?,
            status: r.get(12)?,
            file_id: r.get(13)?,
            last_activity: r.get(14)?,
        })
    }

    /// Exact length chunk `idx` must have: `chunk_size`, except the last (the remainder).
    fn chunk_len(&self, idx: u64) -> u64 {
        if idx + 1 == self.total_chunks {
            self.file_size - self.chunk_size * (self.total_chunks - 1)
        } else {
            self.chunk_size
        }
    }
}

/// The server clock and TTL a request judges expiry by.
#[derive(Clone, Copy)]
struct Clock {
    now: i64,
    ttl: i64,
}

impl Clock {
    fn of(state: &AppState) -> Clock {
        Clock {
            now: state.now_unix(),
            ttl: i64::try_from(state.settings().session_ttl_secs).unwrap_or(i64::MAX),
        }
    }
    fn expires_at(&self, last_activity: i64) -> String {
        iso_unix(last_activity.saturating_add(self.ttl))
    }
}

/// A session lookup either yields its value or finds the session expired. Expiry is an
/// `Ok` outcome so the transaction that marks the session expired still commits.
enum Step<T> {
    Done(T),
    Expired,
}

fn expired_error(sid: &str) -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "UPLOAD_SESSION_EXPIRED",
        format!("upload session {sid} has expired"),
    )
}

fn completed_error(sid: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "UPLOAD_SESSION_COMPLETED",
        format!("upload session {sid} is already completed"),
    )
}

fn invalid_chunk(message: String) -> ApiError {
    ApiError::bad_request("INVALID_CHUNK", message)
}

fn checksum_mismatch(what: &str, expected: &str, actual: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "CHECKSUM_MISMATCH",
        format!("{what}: expected sha256 {expected}, got {actual}"),
    )
    .with_details(json!({ "expected": expected, "actual": actual }))
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Loads the caller's session; marks it expired (and reports so) once its last activity is
/// `ttl` old. Other users' sessions do not exist for the caller.
fn load_session(
    conn: &Connection,
    caller: &Caller,
    sid: &str,
    clock: Clock,
) -> ApiResult<Step<Session>> {
    let s = conn
        .query_row(
            &format!("SELECT {SESSION_COLS} FROM upload_sessions WHERE id = ?1"),
            [sid],
            Session::from_row,
        )
        .optional()?
        .filter(|s| s.user_id == caller.user_id && s.tenant_id == caller.tenant_id)
        .ok_or_else(|| ApiError::not_found(format!("upload session {sid}")))?;
    if s.status == "expired" {
        return Ok(Step::Expired);
    }
    if clock.now >= s.last_activity.saturating_add(clock.ttl) {
        conn.execute(
            "UPDATE upload_sessions SET status = 'expired' WHERE id = ?1",
            [sid],
        )?;
        return Ok(Step::Expired);
    }
    Ok(Step::Done(s))
}

fn session_dir(state: &AppState, sid: &str) -> PathBuf {
    state.blobs.session_dir(sid)
}

async fn remove_session_dir(state: &AppState, sid: &str) {
    match tokio::fs::remove_dir_all(session_dir(state, sid)).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("removing chunks of upload session {sid}: {e}"),
    }
}

/// Turns a lookup outcome into the value or the 410, removing an expired session's chunks.
async fn settle<T>(state: &AppState, sid: &str, r: ApiResult<Step<T>>) -> ApiResult<T> {
    match r? {
        Step::Done(v) => Ok(v),
        Step::Expired => {
            remove_session_dir(state, sid).await;
            Err(expired_error(sid))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    share_id: String,
    file_name: String,
    file_size: u64,
    folder_id: Option<String>,
    chunk_size: Option<u64>,
    mime_type: Option<String>,
    checksum_sha256: Option<String>,
    replace_file_id: Option<String>,
}

/// The file a finished upload is written to.
enum Target {
    New { parent: String },
    Replace(Box<Node>),
}

/// Permission, location, name and quota checks for an upload of `size` bytes; run when the
/// session is created and again when it is completed.
#[allow(clippy::too_many_arguments)]
fn check_target(
    conn: &Connection,
    caller: &Caller,
    share_id: &str,
    folder_id: Option<&str>,
    file_name: &str,
    replace_file_id: Option<&str>,
    size: u64,
) -> ApiResult<Target> {
    let size = i64::try_from(size).unwrap_or(i64::MAX);
    match replace_file_id {
        Some(fid) => {
            let file = model::load_node(conn, caller, fid, "file", READ, true)?;
            if file.share_id != share_id {
                return Err(ApiError::not_found(format!(
                    "file {fid} in share {share_id}"
                )));
            }
            if file.is_deleted() {
                return Err(ApiError::deleted(format!("file {fid}")));
            }
            model::require(conn, caller, share_id, WRITE)?;
            // Replacing frees the old current size: only growth needs room.
            model::check_quota(conn, share_id, (size - file.size).max(0))?;
            Ok(Target::Replace(Box::new(file)))
        }
        None => {
            model::require(conn, caller, share_id, CREATE)?;
            let parent = model::resolve_parent(conn, caller, share_id, folder_id)?;
            model::ensure_free(conn, share_id, &parent, file_name)?;
            model::check_quota(conn, share_id, size)?;
            Ok(Target::New { parent })
        }
    }
}

async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<CreateBody>,
) -> ApiResult<impl IntoResponse> {
    let chunk_size = match body.chunk_size {
        None => DEFAULT_CHUNK,
        Some(c) if c >= MIN_CHUNK && c.is_power_of_two() => c.min(MAX_CHUNK),
        Some(_) => {
            return Err(ApiError::validation(
                &["body", "chunk_size"],
                "chunk_size must be a power of two of at least 65536",
            ));
        }
    };
    let checksum = match &body.checksum_sha256 {
        None => None,
        Some(c) if is_sha256_hex(c) => Some(c.to_ascii_lowercase()),
        Some(_) => {
            return Err(ApiError::validation(
                &["body", "checksum_sha256"],
                "checksum_sha256 must be 64 hex digits",
            ));
        }
    };
    let max = state.settings().max_file_size;
    if body.file_size > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!(
                "file_size {} is larger than the per-file limit of {max} bytes",
                body.file_size
            ),
        )
        .with_details(json!({ "max_file_size": max })));
    }
    check_name(&body.file_name)?;
    let total_chunks = body.file_size.div_ceil(chunk_size);
    let clock = Clock::of(&state);
    let (resp, stale) = state
        .db
        .tx(move |tx| {
            model::require(tx, &caller, &body.share_id, READ)?;
            let target = check_target(
                tx,
                &caller,
                &body.share_id,
                body.folder_id.as_deref(),
                &body.file_name,
                body.replace_file_id.as_deref(),
                body.file_size,
            )?;
            let folder = match &target {
                Target::New { parent } => parent.clone(),
                Target::Replace(file) => file.parent_id.clone(),
            };
            // Sweep sessions that ran out meanwhile, so abandoned chunks do not pile up.
            let stale: Vec<String> = {
                let mut stmt = tx.prepare(
                    "SELECT id FROM upload_sessions WHERE status = 'active' AND last_activity + ?2 <= ?1",
                )?;
                stmt.query_map(params![clock.now, clock.ttl], |r| r.get(0))?.collect::<Result<_, _>>()?
            };
            for sid in &stale {
                tx.execute("UPDATE upload_sessions SET status = 'expired' WHERE id = ?1", [sid])?;
            }
            let id = new_id("ups");
            tx.execute(
                &format!("INSERT INTO upload_sessions ({SESSION_COLS}, created_at) VALUES \
                          (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'active', NULL, ?13, ?13)"),
                params![
                    id,
                    caller.tenant_id,
                    caller.user_id,
                    body.share_id,
                    folder,
                    body.file_name,
                    body.file_size as i64,
                    chunk_size as i64,
                    total_chunks as i64,
                    body.mime_type,
                    checksum,
                    body.replace_file_id,
                    clock.now,
                ],
            )?;
            let resp = json!({
                "session_id": id,
                "chunk_size": chunk_size,
                "total_chunks": total_chunks,
                "expires_at": clock.expires_at(clock.now),
                "status": "active",
            });
            Ok((resp, stale))
        })
        .await?;
    for sid in stale {
        remove_session_dir(&state, &sid).await;
    }
    Ok((StatusCode::CREATED, Json(resp)))
}

/// Received chunk indexes with their sizes, ascending.
fn received(conn: &Connection, sid: &str) -> ApiResult<Vec<(u64, u64)>> {
    let mut stmt =
        conn.prepare("SELECT idx, size FROM session_chunks WHERE session_id = ?1 ORDER BY idx")?;
    let rows = stmt
        .query_map([sid], |r| {
            Ok((
                r.get::<_, i64>(0)?.max(0) as u64,
                r.get::<_, i64>(1)?.max(0) as u64,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

fn missing(s: &Session, got: &[(u64, u64)]) -> Vec<u64> {
    let mut have = got.iter().map(|(i, _)| *i).peekable();
    let mut out = Vec::new();
    for i in 0..s.total_chunks {
        if have.peek() == Some(&i) {
            have.next();
        } else {
            out.push(i);
        }
    }
    out
}

async fn status(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(sid): Path<String>,
) -> ApiResult<Json<Value>> {
    let clock = Clock::of(&state);
    let s2 = sid.clone();
    let r = state
        .db
        .tx(move |tx| {
            let Step::Done(s) = load_session(tx, &caller, &s2, clock)? else {
                return Ok(Step::Expired);
            };
            let got = received(tx, &s.id)?;
            Ok(Step::Done(json!({
                "session_id": s.id,
                "status": s.status,
                "file_name": s.file_name,
                "file_size": s.file_size,
                "chunk_size": s.chunk_size,
                "total_chunks": s.total_chunks,
                "received_chunks": got.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
                "missing_chunks": missing(&s, &got),
                "bytes_received": got.iter().map(|(_, n)| *n).sum::<u64>(),
                "expires_at": clock.expires_at(s.last_activity),
                "file_id": s.file_id,
            })))
        })
        .await;
    Ok(Json(settle(&state, &sid, r).await?))
}

/// Streams a chunk body into `path`, refusing more than `expected` bytes; returns its
/// SHA-256 when `hash` is set.
/// Where an accepted chunk goes: the session's directory and file, the chunk's offset and
/// length, and whether the session already holds this chunk (a re-PUT).
struct ChunkPlan {
    dir: PathBuf,
    data: PathBuf,
    file_size: u64,
    offset: u64,
    expected: u64,
    received: bool,
}

/// The session's file: chunks are written into it at their offsets as they arrive, and
/// `complete` stores it as the blob without copying it.
fn data_path(dir: &FsPath) -> PathBuf {
    dir.join("data")
}

/// A chunk index as the URL gives it (`None` if it is not one; `plan_chunk` says why).
fn chunk_index(index: &str) -> Option<u64> {
    index
        .parse::<u64>()
        .ok()
        .filter(|_| index.bytes().all(|b| b.is_ascii_digit()))
}

/// Everything a chunk PUT checks before it reads the body.
async fn plan_chunk(
    state: &AppState,
    caller: &Caller,
    sid: &str,
    index: &str,
    headers: &HeaderMap,
    clock: Clock,
) -> ApiResult<(u64, Option<String>, ChunkPlan)> {
    let Some(idx) = chunk_index(index) else {
        return Err(invalid_chunk(format!(
            "chunk index {index:?} is not a non-negative integer"
        )));
    };
    let want_sha = match headers.get("x-chunk-sha256") {
        None => None,
        Some(v) => match v.to_str().ok().map(str::trim).filter(|s| is_sha256_hex(s)) {
            Some(s) => Some(s.to_ascii_lowercase()),
            None => {
                return Err(ApiError::validation(
                    &["header", "x-chunk-sha256"],
                    "X-Chunk-SHA256 must be 64 hex digits",
                ));
            }
        },
    };
    let (c2, s2) = (caller.clone(), sid.to_string());
    let r = state
        .db
        .tx(move |tx| {
            let Step::Done(s) = load_session(tx, &c2, &s2, clock)? else {
                return Ok(Step::Expired);
            };
            let received = received(tx, &s2)?.iter().any(|(i, _)| *i == idx);
            Ok(Step::Done((s, received)))
        })
        .await;
    let (session, received) = settle(state, sid, r).await?;
    if session.status == "completed" {
        return Err(completed_error(sid));
    }
    if idx >= session.total_chunks {
        return Err(invalid_chunk(format!(
            "chunk index {idx} is out of range: the session has {} chunks",
            session.total_chunks
        )));
    }
    let expected = session.chunk_len(idx);
    if let Some(len) = content_length(headers)
        && len != expected
    {
        return Err(invalid_chunk(format!(
            "chunk {idx} must be exactly {expected} bytes, got {len}"
        )));
    }
    let dir = session_dir(state, sid);
    tokio::fs::create_dir_all(&dir).await?;
    Ok((
        idx,
        want_sha,
        ChunkPlan {
            data: data_path(&dir),
            dir,
            file_size: session.file_size,
            offset: idx * session.chunk_size,
            expected,
            received,
        },
    ))
}

/// Opens the session's file for writing, creating it at its full (sparse) length.
async fn open_data(path: &FsPath, size: u64) -> std::io::Result<std::fs::File> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)?;
        if f.metadata()?.len() < size {
            f.set_len(size)?;
        }
        Ok(f)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Writes one buffer at `offset` on the blocking pool; gives the file and buffer back.
async fn write_at(
    file: std::fs::File,
    offset: u64,
    buf: Vec<u8>,
) -> std::io::Result<(std::fs::File, Vec<u8>)> {
    tokio::task::spawn_blocking(move || {
        write_region(&file, offset, &buf)?;
        Ok((file, buf))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Streams a chunk body straight into the session's file at its offset, checking its
/// length (and hashing it if `hash`). A body that fails leaves the range unfinished, which
/// is harmless for a chunk the session does not hold yet: it is not recorded, and the next
/// PUT of it overwrites the whole range.
async fn write_in_place(
    stream: &mut BodyDataStream,
    plan: &ChunkPlan,
    hash: bool,
) -> ApiResult<Option<String>> {
    let mut file = Some(open_data(&plan.data, plan.file_size).await?);
    let mut hasher = hash.then(Sha256::new);
    let mut buf = Vec::with_capacity(IO_BUF);
    let (mut size, mut at) = (0u64, plan.offset);
    loop {
        let next = stream.next().await;
        if let Some(data) = &next {
            let data = data
                .as_ref()
                .map_err(|e| invalid_chunk(format!("reading the chunk body failed: {e}")))?;
            size += data.len() as u64;
            if size > plan.expected {
                return Err(invalid_chunk(format!(
                    "chunk is longer than its expected {} bytes",
                    plan.expected
                )));
            }
            if let Some(h) = hasher.as_mut() {
                h.update(data);
            }
            buf.extend_from_slice(data);
        }
        if buf.len() >= IO_BUF || (next.is_none() && !buf.is_empty()) {
            let len = buf.len() as u64;
            let f = file
                .take()
                .expect("the file is given back after each write");
            let (f, mut back) = write_at(f, at, std::mem::take(&mut buf)).await?;
            back.clear();
            (file, buf, at) = (Some(f), back, at + len);
        }
        if next.is_none() {
            break;
        }
    }
    if size != plan.expected {
        return Err(invalid_chunk(format!(
            "chunk has {size} bytes, expected exactly {}",
            plan.expected
        )));
    }
    Ok(hasher.map(|h| hex::encode(h.finalize())))
}

/// Receives a chunk body into a file of its own, checking its length (and hashing it if
/// `hash`): a re-PUT of a chunk the session holds is only copied over it once whole.
async fn receive_chunk(
    stream: &mut BodyDataStream,
    path: &FsPath,
    expected: u64,
    hash: bool,
) -> ApiResult<Option<String>> {
    let mut out = SparseWriter::create(path).await?;
    let mut hasher = hash.then(Sha256::new);
    let mut size = 0u64;
    while let Some(data) = stream.next().await {
        let data =
            data.map_err(|e| invalid_chunk(format!("reading the chunk body failed: {e}")))?;
        size += data.len() as u64;
        if size > expected {
            return Err(invalid_chunk(format!(
                "chunk is longer than its expected {expected} bytes"
            )));
        }
        if let Some(h) = hasher.as_mut() {
            h.update(&data);
        }
        out.write(&data).await?;
    }
    if size != expected {
        return Err(invalid_chunk(format!(
            "chunk has {size} bytes, expected exactly {expected}"
        )));
    }
    out.finish().await?;
    Ok(hasher.map(|h| hex::encode(h.finalize())))
}

/// Copies a whole received chunk file over its range of the session's file.
async fn copy_in(tmp: &FsPath, plan: &ChunkPlan) -> std::io::Result<()> {
    let (tmp, data) = (tmp.to_path_buf(), plan.data.clone());
    let (size, offset) = (plan.file_size, plan.offset);
    let file = open_data(&data, size).await?;
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut src = std::fs::File::open(&tmp)?;
        let mut buf = vec![0u8; IO_BUF];
        let mut at = offset;
        loop {
            let n = src.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            write_region(&file, at, &buf[..n])?;
            at += n as u64;
        }
    })
    .await
    .map_err(std::io::Error::other)?
}

/// The body of a chunk PUT once it is planned: straight into place for a chunk the
/// session does not hold yet; through a file of its own for a re-PUT, so a body that
/// fails leaves the chunk the session holds intact.
async fn write_chunk(
    state: &AppState,
    sid: &str,
    stream: &mut BodyDataStream,
    plan: &ChunkPlan,
    idx: u64,
    want_sha: Option<&String>,
) -> ApiResult<()> {
    let check = |digest: Option<String>| match (want_sha, digest) {
        (Some(want), Some(got)) if *want != got => {
            Err(checksum_mismatch(&format!("chunk {idx}"), want, &got))
        }
        _ => Ok(()),
    };
    if !plan.received {
        return check(write_in_place(stream, plan, want_sha.is_some()).await?);
    }
    let tmp = plan.dir.join(format!(".{idx}.{}.part", new_id("tmp")));
    let received =
        async { check(receive_chunk(stream, &tmp, plan.expected, want_sha.is_some()).await?) }
            .await;
    let r = match received {
        Ok(()) => copy_in(&tmp, plan)
            .await
            .map_err(|e| (ApiError::from(e), true)),
        Err(e) => Err((e, false)),
    };
    let _ = tokio::fs::remove_file(&tmp).await;
    match r {
        Ok(()) => Ok(()),
        Err((e, damaged)) => {
            if damaged {
                // The copy over the chunk the session held broke off: it no longer holds
                // it, and `status` and `complete` say so until it is sent again.
                let s2 = sid.to_string();
                let _ = state
                    .db
                    .tx(move |tx| {
                        tx.execute(
                            "DELETE FROM session_chunks WHERE session_id = ?1 AND idx = ?2",
                            params![s2, idx as i64],
                        )?;
                        Ok(())
                    })
                    .await;
            }
            Err(e)
        }
    }
}

async fn put_chunk(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((sid, index)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let clock = Clock::of(&state);
    let mut stream = body.into_data_stream();
    // Shared with other chunks, exclusive of `complete`; one PUT per chunk at a time.
    let lock = state.sessions.of(&sid);
    let _writing = lock.file.read().await;
    let chunk_lock = chunk_index(&index).map(|i| lock.chunk(i));
    let _this_chunk = match &chunk_lock {
        Some(l) => Some(l.lock().await),
        None => None,
    };
    let (idx, want_sha, plan) =
        match plan_chunk(&state, &caller, &sid, &index, &headers, clock).await {
            Ok(p) => p,
            Err(e) => {
                discard_stream(stream);
                if matches!(e.status, StatusCode::NOT_FOUND | StatusCode::GONE) {
                    // No live session by that id: keep no locks for it.
                    state.sessions.forget(&sid);
                }
                return Err(e);
            }
        };
    if let Err(e) = write_chunk(&state, &sid, &mut stream, &plan, idx, want_sha.as_ref()).await {
        discard_stream(stream);
        return Err(e);
    }

    let s2 = sid.clone();
    let expected = plan.expected;
    let r = state
        .db
        .tx(move |tx| {
            let Step::Done(s) = load_session(tx, &caller, &s2, clock)? else { return Ok(Step::Expired) };
            if s.status == "completed" {
                return Err(completed_error(&s2));
            }
            tx.execute(
                "INSERT INTO session_chunks (session_id, idx, size) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (session_id, idx) DO UPDATE SET size = excluded.size",
                params![s2, idx as i64, expected as i64],
            )?;
            tx.execute("UPDATE upload_sessions SET last_activity = ?2 WHERE id = ?1", params![s2, clock.now])?;
            let count: i64 =
                tx.query_row("SELECT COUNT(*) FROM session_chunks WHERE session_id = ?1", [&s2], |r| r.get(0))?;
            Ok(Step::Done(json!({ "session_id": s2, "chunk_index": idx, "size": expected, "received_chunks": count })))
        })
        .await;
    Ok(Json(settle(&state, &sid, r).await?))
}

/// `{"file_id", "file"}` for a completed session.
fn completed_json(conn: &Connection, caller: &Caller, s: &Session) -> ApiResult<Value> {
    let fid = s
        .file_id
        .clone()
        .ok_or_else(|| ApiError::internal("completed session without a file"))?;
    let file = model::load_node(conn, caller, &fid, "file", READ, true)?;
    Ok(json!({ "file_id": fid, "file": model::file_json(conn, &file)? }))
}

/// What the first look at a session tells `complete` to do.
enum Plan {
    AlreadyDone(Value),
    Assemble(Box<Session>),
}

async fn complete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(sid): Path<String>,
) -> ApiResult<Json<Value>> {
    let clock = Clock::of(&state);
    // No chunk PUT runs while the file is checked and stored (PUTs under way finish first).
    let lock = state.sessions.of(&sid);
    let _storing = lock.file.write().await;
    let (c2, s2) = (caller.clone(), sid.clone());
    // Everything that can be judged without the bytes is judged first, so a doomed
    // request does not hash gigabytes.
    let r = state
        .db
        .tx(move |tx| {
            let Step::Done(s) = load_session(tx, &c2, &s2, clock)? else {
                return Ok(Step::Expired);
            };
            if s.status == "completed" {
                return Ok(Step::Done(Plan::AlreadyDone(completed_json(tx, &c2, &s)?)));
            }
            let absent = missing(&s, &received(tx, &s.id)?);
            if !absent.is_empty() {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "UPLOAD_INCOMPLETE",
                    format!("{} of {} chunks are missing", absent.len(), s.total_chunks),
                )
                .with_details(json!({ "missing_chunks": absent })));
            }
            let folder = Some(s.folder_id.as_str()).filter(|f| !f.is_empty());
            check_target(
                tx,
                &c2,
                &s.share_id,
                folder,
                &s.file_name,
                s.replace_file_id.as_deref(),
                s.file_size,
            )?;
            Ok(Step::Done(Plan::Assemble(Box::new(s))))
        })
        .await;
    let session = match settle(&state, &sid, r).await? {
        Plan::AlreadyDone(v) => return Ok(Json(v)),
        Plan::Assemble(s) => s,
    };

    let (sha, size) = check_session_file(&state, &session).await?;
    let data = data_path(&session_dir(&state, &sid));
    let blob = state.blobs.path(&sha);
    let now = model::now_iso(&state);
    let s2 = sid.clone();
    let done = state
        .db
        .tx(move |tx| {
            // Re-read without the expiry rule: the session was live when assembly began.
            let s = tx
                .query_row(
                    &format!("SELECT {SESSION_COLS} FROM upload_sessions WHERE id = ?1"),
                    [&s2],
                    Session::from_row,
                )
                .optional()?
                .filter(|s| s.user_id == caller.user_id)
                .ok_or_else(|| ApiError::not_found(format!("upload session {s2}")))?;
            match s.status.as_str() {
                // A concurrent complete got there first: answer as it did.
                "completed" => return completed_json(tx, &caller, &s),
                "active" => {}
                _ => return Err(expired_error(&s2)),
            }
            let folder = Some(s.folder_id.as_str()).filter(|f| !f.is_empty());
            let target = check_target(
                tx,
                &caller,
                &s.share_id,
                folder,
                &s.file_name,
                s.replace_file_id.as_deref(),
                size,
            )?;
            // The file becomes the blob (linked, not copied) in the transaction that
            // records it, so no other request sees one without the other.
            let mut linked = false;
            if !blob.exists() {
                std::fs::create_dir_all(blob.parent().expect("blob path has a parent"))?;
                match std::fs::hard_link(&data, &blob) {
                    Ok(()) => linked = true,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let recorded = record_file(tx, &caller, &s, &s2, target, &sha, size, &now);
            if recorded.is_err() && linked {
                // Nothing refers to it; the session keeps the file for another try.
                let _ = std::fs::remove_file(&blob);
            }
            recorded
        })
        .await?;
    remove_session_dir(&state, &sid).await;
    state.sessions.forget(&sid);
    Ok(Json(done))
}

/// Records a completed session's file: a new file or a new version, and the session as
/// completed with it.
#[allow(clippy::too_many_arguments)]
fn record_file(
    tx: &rusqlite::Transaction<'_>,
    caller: &Caller,
    s: &Session,
    sid: &str,
    target: Target,
    sha: &str,
    size: u64,
    now: &str,
) -> ApiResult<Value> {
    let node = match target {
        Target::New { parent } => {
            let mime = s
                .mime_type
                .clone()
                .unwrap_or_else(|| mime_for(&s.file_name).to_string());
            model::insert_file(
                tx,
                caller,
                &s.share_id,
                &parent,
                &s.file_name,
                sha,
                size as i64,
                &mime,
                now,
            )?
        }
        Target::Replace(file) => model::add_version(tx, caller, &file, sha, size as i64, now)?,
    };
    tx.execute(
        "UPDATE upload_sessions SET status = 'completed', file_id = ?2 WHERE id = ?1",
        params![sid, node.id],
    )?;
    Ok(json!({ "file_id": node.id, "file": model::file_json(tx, &node)? }))
}

/// Hashes the session's file (every chunk is in place) and checks its size and the
/// session's checksum; then syncs it, so it can become the blob as it is.
async fn check_session_file(state: &AppState, s: &Session) -> ApiResult<(String, u64)> {
    let data = data_path(&session_dir(state, &s.id));
    tokio::fs::create_dir_all(session_dir(state, &s.id)).await?;
    // A file of no bytes has no chunks, so nothing has created it yet.
    let file = open_data(&data, s.file_size).await?;
    let (sid, want_size) = (s.id.clone(), s.file_size);
    let (sha, size) = tokio::task::spawn_blocking(move || -> ApiResult<(String, u64)> {
        use std::io::Read;
        let size = file.metadata()?.len();
        if size != want_size {
            return Err(ApiError::internal(format!(
                "the file of session {sid} has {size} bytes, expected {want_size}"
            )));
        }
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; IO_BUF];
        let mut f = &file;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        file.sync_all()?;
        Ok((hex::encode(hasher.finalize()), size))
    })
    .await
    .map_err(|e| ApiError::internal(format!("hashing session {}: {e}", s.id)))??;
    if let Some(want) = &s.checksum_sha256
        && *want != sha
    {
        return Err(checksum_mismatch("assembled file", want, &sha));
    }
    Ok((sha, size))
}

async fn abort(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(sid): Path<String>,
) -> ApiResult<StatusCode> {
    let clock = Clock::of(&state);
    let lock = state.sessions.of(&sid);
    let _removing = lock.file.write().await;
    let s2 = sid.clone();
    let r = state
        .db
        .tx(move |tx| {
            let Step::Done(s) = load_session(tx, &caller, &s2, clock)? else {
                return Ok(Step::Expired);
            };
            tx.execute("DELETE FROM session_chunks WHERE session_id = ?1", [&s.id])?;
            tx.execute("DELETE FROM upload_sessions WHERE id = ?1", [&s.id])?;
            Ok(Step::Done(()))
        })
        .await;
    settle(&state, &sid, r).await?;
    remove_session_dir(&state, &sid).await;
    state.sessions.forget(&sid);
    Ok(StatusCode::NO_CONTENT)
}
