//! Chunk PUTs: what a PUT is checked against before its body is read, and how the body
//! reaches the session's file (in place at its offset, or, for a re-PUT of a chunk the
//! session already holds, through a file of its own that is copied in only once whole).

use std::path::{Path as FsPath, PathBuf};

use axum::Extension;
use axum::body::{Body, BodyDataStream};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use futures_util::StreamExt;
use rusqlite::params;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{
    Clock, IO_BUF, Step, checksum_mismatch, completed_error, invalid_chunk, is_sha256_hex,
    load_session, received, session_dir, settle,
};
use crate::devserver::error::{ApiError, ApiResult, Json, Path};
use crate::devserver::files::{content_length, discard_stream};
use crate::devserver::model::Caller;
use crate::devserver::state::{AppState, SparseWriter, write_region};
use crate::devserver::util::new_id;

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
pub(super) fn data_path(dir: &FsPath) -> PathBuf {
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
pub(super) async fn open_data(path: &FsPath, size: u64) -> std::io::Result<std::fs::File> {
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

pub(super) async fn put_chunk(
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
