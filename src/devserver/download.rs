//! Serving stored file content (`scaidrive-api.md` §9.2, §10.3): which blob a file (or
//! one of its versions) is, single byte ranges, and the response headers (length, type,
//! disposition, ranges) every route that sends file content answers with.

use std::io::SeekFrom;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rusqlite::{Connection, OptionalExtension, params};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::error::{ApiError, ApiResult};
use super::model::Node;
use super::state::AppState;

/// Read size when streaming a blob out.
const READ_CHUNK: usize = 256 * 1024;

/// The content to send: which blob, how big, and the name and type to announce.
pub struct BlobRef {
    pub sha256: String,
    pub size: u64,
    pub name: String,
    pub mime_type: String,
}

/// The blob of `file` at `version` (current when `None`); unknown version → 404.
pub fn blob_of(conn: &Connection, file: &Node, version: Option<i64>) -> ApiResult<BlobRef> {
    let (sha, size) = match version {
        None => (
            file.sha256
                .clone()
                .ok_or_else(|| ApiError::internal("file without content"))?,
            file.size,
        ),
        Some(v) => conn
            .query_row(
                "SELECT sha256, size FROM versions WHERE file_id = ?1 AND version_number = ?2",
                params![file.id, v],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
            )
            .optional()?
            .ok_or_else(|| ApiError::not_found(format!("version {v} of file {}", file.id)))?,
    };
    Ok(BlobRef {
        sha256: sha,
        size: size.max(0) as u64,
        name: file.name.clone(),
        mime_type: file
            .mime_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".into()),
    })
}

/// Which bytes a download asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    Full,
    /// Inclusive first and last byte, already clamped to the content.
    Part(u64, u64),
    Unsatisfiable,
}

fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Interprets a `Range` header for content of `total` bytes. Only one `bytes=` range is
/// served; several ranges, other units and malformed values get the whole body, as RFC
/// 9110 allows a server to ignore a Range it does not support.
pub fn parse_range(value: &str, total: u64) -> Want {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Want::Full;
    };
    if spec.contains(',') {
        return Want::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Want::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let Some(n) = digits(b) else {
            return Want::Full;
        };
        if n == 0 || total == 0 {
            return Want::Unsatisfiable;
        }
        return Want::Part(total - n.min(total), total - 1);
    }
    let Some(start) = digits(a) else {
        return Want::Full;
    };
    let end = if b.is_empty() {
        None
    } else {
        match digits(b) {
            Some(e) => Some(e),
            None => return Want::Full,
        }
    };
    if end.is_some_and(|e| e < start) {
        return Want::Full;
    }
    if start >= total {
        return Want::Unsatisfiable;
    }
    Want::Part(start, end.map_or(total - 1, |e| e.min(total - 1)))
}

/// RFC 5987 `attr-char`s stay, everything else is percent-encoded UTF-8.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `attachment; filename="..."` with quotes and backslashes escaped; names that are not
/// plain printable ASCII also get `filename*=UTF-8''...` and an ASCII stand-in in `filename`.
pub fn content_disposition(name: &str) -> HeaderValue {
    let printable = |c: char| c.is_ascii() && !c.is_ascii_control();
    let mut fallback = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '"' | '\\' => {
                fallback.push('\\');
                fallback.push(c);
            }
            c if printable(c) => fallback.push(c),
            _ => fallback.push('_'),
        }
    }
    let mut v = format!("attachment; filename=\"{fallback}\"");
    if !name.chars().all(printable) {
        v.push_str("; filename*=UTF-8''");
        v.push_str(&percent_encode(name));
    }
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// Streams (part of) a blob from disk with the documented download headers.
pub async fn serve_blob(state: &AppState, blob: BlobRef, want: Want) -> ApiResult<Response> {
    let total = blob.size;
    let (status, start, len) = match want {
        Want::Full => (StatusCode::OK, 0, total),
        Want::Part(a, b) => (StatusCode::PARTIAL_CONTENT, a, b - a + 1),
        Want::Unsatisfiable => {
            let mut resp = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "RANGE_NOT_SATISFIABLE",
                format!("requested range not satisfiable for {total} bytes"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(resp);
        }
    };
    let path = state.blobs.path(&blob.sha256);
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| ApiError::internal(format!("content blob {} unreadable: {e}", blob.sha256)))?;
    if start > 0 {
        file.seek(SeekFrom::Start(start)).await?;
    }
    let mut resp = Response::new(Body::from_stream(ReaderStream::with_capacity(
        file.take(len),
        READ_CHUNK,
    )));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&blob.mime_type)
            .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::CONTENT_DISPOSITION, content_disposition(&blob.name));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{total}", start + len - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(resp)
}
