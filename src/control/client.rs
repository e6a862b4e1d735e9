//! The control API's client side, used by `scaidrivectl`: one HTTP/1 request per call
//! over the daemon's Unix socket.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("scaidrived is not running (no control socket at {0})")]
    NotRunning(PathBuf),
    #[error("control socket {0}: {1}")]
    Io(PathBuf, String),
    #[error("daemon answered {status}: {message}")]
    Daemon { status: u16, message: String },
}

/// Sends one request; returns the JSON body of a success response.
pub async fn call(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, CtlError> {
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
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "scaidrived")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .map_err(|e| io(&e))?;
    let resp = sender.send_request(req).await.map_err(|e| io(&e))?;
    let status = resp.status().as_u16();
    let raw = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| io(&e))?
        .to_bytes();
    let text = String::from_utf8_lossy(&raw).to_string();
    let json: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
    if status >= 400 {
        let message = json
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or(text);
        return Err(CtlError::Daemon { status, message });
    }
    Ok(json)
}

/// Fetches a plain-text route (`/metrics`).
pub async fn call_text(socket: &Path, path: &str) -> Result<String, CtlError> {
    match call(socket, "GET", path, None).await? {
        Value::String(s) => Ok(s),
        other => Ok(other.to_string()),
    }
}
