//! Resumable upload sessions (`scaidrive-api.md` §10.2) under `/api/v1/uploads`: create,
//! chunk PUT (0-based, any order, idempotent re-PUT, optional `X-Chunk-SHA256`), status,
//! complete (assembles the chunks into a new file or, with `replace_file_id`, a new version
//! of an existing one) and abort. Chunks are written in place into one file per session
//! (in the session's directory of the blob store), which becomes the blob when the session
//! completes; it is removed when the session is aborted or expires after
//! `session_ttl_secs` of inactivity on the server clock. Sessions belong to the user who
//! created them; everyone else gets 404.
//!
//! The parts: this file holds the session (its row, expiry on the server clock, the
//! routes' shared errors), create, status and abort; [`chunks`] the chunk PUT and the
//! session's file; [`complete`] turning that file into a file or a new version.

mod chunks;
mod complete;

use std::path::PathBuf;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Extension, Router};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult, Json, Path};
use super::model::{self, CREATE, Caller, Node, READ, WRITE};
use super::state::AppState;
use super::util::{check_name, iso_unix, new_id};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/uploads", post(create))
        .route("/api/v1/uploads/{session_id}", get(status).delete(abort))
        .route(
            "/api/v1/uploads/{session_id}/chunks/{index}",
            put(chunks::put_chunk),
        )
        .route(
            "/api/v1/uploads/{session_id}/complete",
            post(complete::complete),
        )
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
