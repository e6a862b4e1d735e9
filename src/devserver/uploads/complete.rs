//! Completing a session: checks that every chunk arrived and the file hashes as the
//! client says, then stores the session's file as the blob of a new file or a new version
//! in the transaction that records it. A repeated complete returns the same file.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::chunks::{data_path, open_data};
use super::{
    Clock, IO_BUF, SESSION_COLS, Session, Step, Target, check_target, checksum_mismatch,
    expired_error, load_session, missing, received, remove_session_dir, session_dir, settle,
};
use crate::devserver::error::{ApiError, ApiResult, Json, Path};
use crate::devserver::model::{self, Caller, READ};
use crate::devserver::state::AppState;
use crate::devserver::util::mime_for;

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

pub(super) async fn complete(
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
