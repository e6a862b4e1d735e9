//! The control API's client side, used by `scaidrivectl`: one HTTP/1 request per call
//! over the daemon's Unix socket. [`get`] and [`post`] parse the answer into the route's
//! [`protocol`](super::protocol) type; [`call`] keeps the untyped JSON for tools and tests
//! that poke at the API like `curl` would.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::protocol::{ErrorResponse, route};

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("scaidrived is not running (no control socket at {0})")]
    NotRunning(PathBuf),
    #[error("control socket {0}: {1}")]
    Io(PathBuf, String),
    #[error("daemon answered {status}: {message}")]
    Daemon { status: u16, message: String },
    /// A success answer that is not what this `scaidrivectl` expects (another release's
    /// daemon, say).
    #[error("the daemon's answer to {path} does not parse: {message}")]
    Answer { path: String, message: String },
}

/// `GET path` (with its query), parsed into the route's response type.
pub async fn get<R: DeserializeOwned>(socket: &Path, path: &str) -> Result<R, CtlError> {
    let text = exchange(socket, "GET", path, String::new()).await?;
    parse(path, &text)
}

/// `POST path` with a JSON body, parsed into the route's response type.
pub async fn post<B: Serialize, R: DeserializeOwned>(
    socket: &Path,
    path: &str,
    body: &B,
) -> Result<R, CtlError> {
    let body = serde_json::to_string(body).map_err(|e| CtlError::Answer {
        path: path.to_string(),
        message: format!("the request does not serialize: {e}"),
    })?;
    let text = exchange(socket, "POST", path, body).await?;
    parse(path, &text)
}

fn parse<R: DeserializeOwned>(path: &str, text: &str) -> Result<R, CtlError> {
    serde_json::from_str(text).map_err(|e| CtlError::Answer {
        path: path.to_string(),
        message: e.to_string(),
    })
}

/// Sends one request; returns the JSON body of a success response (a body that is not
/// JSON comes back as a JSON string).
pub async fn call(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, CtlError> {
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    let text = exchange(socket, method, path, bytes).await?;
    Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Connects and sends one request; returns the answer with its body still to read.
async fn send(
    socket: &Path,
    method: &str,
    path: &str,
    bytes: String,
) -> Result<hyper::Response<hyper::body::Incoming>, CtlError> {
    let io = |e: &dyn std::fmt::Display| CtlError::Io(socket.to_path_buf(), e.to_string());
    let stream = match tokio::net::UnixStream::connect(socket).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(CtlError::NotRunning(socket.to_path_buf()));
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(CtlError::Io(
                socket.to_path_buf(),
                "permission denied: the socket belongs to the user running scaidrived; run scaidrivectl as that user".into(),
            ));
        }
        Err(e) => return Err(io(&e)),
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| io(&e))?;
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "scaidrived")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .map_err(|e| io(&e))?;
    sender.send_request(req).await.map_err(|e| io(&e))
}

/// An error status as [`CtlError::Daemon`] with the daemon's one-line `error` (or the raw
/// body if it sent none).
fn daemon_error(status: u16, text: String) -> CtlError {
    let message = serde_json::from_str::<ErrorResponse>(&text)
        .map(|e| e.error)
        .unwrap_or(text);
    CtlError::Daemon { status, message }
}

/// One request and its answer's body; an error status becomes [`CtlError::Daemon`] with
/// the daemon's one-line `error` (or the raw body if it sent none).
async fn exchange(
    socket: &Path,
    method: &str,
    path: &str,
    bytes: String,
) -> Result<String, CtlError> {
    let io = |e: &dyn std::fmt::Display| CtlError::Io(socket.to_path_buf(), e.to_string());
    let resp = send(socket, method, path, bytes).await?;
    let status = resp.status().as_u16();
    let raw = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| io(&e))?
        .to_bytes();
    let text = String::from_utf8_lossy(&raw).to_string();
    if status >= 400 {
        return Err(daemon_error(status, text));
    }
    Ok(text)
}

/// `GET path` of a streaming route (`/v1/events`): calls `line` with each line as it
/// arrives, until the daemon ends the stream (`Ok`) or `line` returns `false`.
pub async fn stream_lines(
    socket: &Path,
    path: &str,
    mut line: impl FnMut(&str) -> bool,
) -> Result<(), CtlError> {
    let io = |e: &dyn std::fmt::Display| CtlError::Io(socket.to_path_buf(), e.to_string());
    let resp = send(socket, "GET", path, String::new()).await?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    if status >= 400 {
        let raw = body.collect().await.map_err(|e| io(&e))?.to_bytes();
        return Err(daemon_error(status, String::from_utf8_lossy(&raw).into()));
    }
    let mut pending: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| io(&e))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        pending.extend_from_slice(data);
        while let Some(nl) = pending.iter().position(|&b| b == b'\n') {
            let rest = pending.split_off(nl + 1);
            let text = String::from_utf8_lossy(&pending[..nl]).into_owned();
            pending = rest;
            if !line(&text) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Fetches a plain-text route (`/metrics`).
pub async fn call_text(socket: &Path, path: &str) -> Result<String, CtlError> {
    exchange(socket, "GET", path, String::new()).await
}

/// The Prometheus text of `GET /metrics`.
pub async fn metrics(socket: &Path) -> Result<String, CtlError> {
    call_text(socket, route::METRICS).await
}
