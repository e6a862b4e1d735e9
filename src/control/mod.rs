//! The control API: HTTP/JSON on a Unix socket in the runtime directory, answered by the
//! daemon and used by `scaidrivectl` (or `curl --unix-socket`).
//!
//! The socket is created with mode 0600 and every connection's peer uid must equal the
//! socket owner's, so only the user running the daemon can steer it. A socket file left
//! by a dead daemon is detected (nothing accepts on it) and replaced. What each route takes
//! and answers is typed in [`protocol`]; every response carries `"protocol": PROTOCOL` so a
//! newer `scaidrivectl` can tell what it talks to.

pub mod client;
pub mod events;
pub mod links;
pub mod metrics;
mod ops;
pub mod protocol;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::mirror::{MirrorCmd, MirrorHandle};
pub use protocol::{
    ActionRequest, ActionResponse, DaemonInfo, ErrorResponse, FailuresResponse, MirrorFailures,
    MirrorQuery, MirrorView, PROTOCOL, ResumeRequest, StatusResponse, VerifyRequest,
    VerifyResponse, route,
};

#[derive(Clone)]
pub struct ControlState {
    pub info: Arc<DaemonInfo>,
    /// The current mirrors (replaced on configuration reload).
    pub mirrors: watch::Receiver<Arc<Vec<MirrorHandle>>>,
    /// Sharing links (`link`, `links`, `unlink`).
    pub links: crate::links::LinkManager,
    /// The daemon's bandwidth limiter (`limit`, and the rate in `status`).
    pub bandwidth: crate::remote::bandwidth::Bandwidth,
    /// What the mirrors do, for `GET /v1/events`.
    pub events: crate::events::EventBus,
    /// Cancelled when the daemon stops: ends the open event streams.
    pub shutdown: CancellationToken,
    /// What `GET /metrics` (and `daemon.metrics_file`) shows.
    pub metrics: Arc<metrics::Metrics>,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("control socket {0} is in use by a running daemon")]
    InUse(PathBuf),
}

/// Binds the socket (replacing a stale one) with mode 0600.
pub async fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    let err = |source| ControlError::Bind {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    if path.exists() {
        match tokio::time::timeout(
            Duration::from_secs(1),
            tokio::net::UnixStream::connect(path),
        )
        .await
        {
            Ok(Ok(_)) => return Err(ControlError::InUse(path.to_path_buf())),
            // Nobody accepts: a dead daemon's socket.
            _ => std::fs::remove_file(path).map_err(err)?,
        }
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}

/// Serves the control API until `shutdown`, then removes the socket file.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    state: ControlState,
    shutdown: CancellationToken,
) {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(&path).map(|m| m.uid()).ok();
    let app = router(state);
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("control socket accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let peer_ok = match (stream.peer_cred(), owner) {
            (Ok(cred), Some(uid)) => cred.uid() == uid,
            _ => false,
        };
        if !peer_ok {
            tracing::warn!("control socket: refused a connection from another user");
            // Say why instead of just closing, so the caller gets a clear message.
            let body = serde_json::to_string(&ErrorResponse::new(format!(
                "the control socket {} belongs to uid {}; run scaidrivectl as that user",
                path.display(),
                owner.map(|u| u.to_string()).unwrap_or_else(|| "?".into())
            )))
            .unwrap_or_default();
            let reply = format!(
                "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let mut stream = stream;
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                // Read the request head first: a reply written (and the socket closed)
                // while the client is still sending makes it fail with a broken pipe
                // instead of showing the 403.
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), read_request_head(&mut stream))
                        .await;
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
            continue;
        }
        let app = app.clone();
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    app.clone().oneshot(req.map(axum::body::Body::new))
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
    let _ = std::fs::remove_file(&path);
}

/// Reads until the end of an HTTP request head (or 16 KiB, or EOF), discarding it.
async fn read_request_head(stream: &mut tokio::net::UnixStream) {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while seen.len() < 16 * 1024 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
        if seen.windows(4).any(|w| w == b"\r\n\r\n") {
            return;
        }
    }
}

pub fn router(state: ControlState) -> Router {
    Router::new()
        .route(route::STATUS, get(status))
        .route(route::FAILURES, get(failures))
        .route(route::PAUSE, post(pause))
        .route(route::RESUME, post(resume))
        .route(route::RESCAN, post(rescan))
        .route(route::RETRY, post(retry))
        .route(route::VERIFY, post(verify))
        .route(route::METRICS, get(metrics))
        .route(route::EVENTS, get(events::stream))
        .merge(links::routes())
        .merge(ops::routes())
        .fallback(|req: axum::extract::Request| async move {
            error(
                StatusCode::NOT_FOUND,
                format!(
                    "no such control route: {} {}",
                    req.method(),
                    req.uri().path()
                ),
            )
        })
        .layer(axum::middleware::from_fn(json_errors))
        .with_state(state)
}

/// Every error answer is JSON with a one-line `error`: axum's own rejections (wrong
/// method, missing content type, a body or query that does not parse) are plain text or
/// empty, so they are rewrapped here, naming the request.
async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let allow = resp
        .headers()
        .get(axum::http::header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = axum::body::to_bytes(resp.into_body(), 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let text: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let message = if status == StatusCode::METHOD_NOT_ALLOWED {
        format!(
            "method {method} is not allowed on {path} (allowed: {})",
            allow.as_deref().unwrap_or("none")
        )
    } else if text.is_empty() {
        format!(
            "{method} {path}: {}",
            status.canonical_reason().unwrap_or("error")
        )
    } else {
        format!("{method} {path}: {text}")
    };
    let mut out = error(status, message);
    if let Some(a) = allow.and_then(|a| axum::http::HeaderValue::from_str(&a).ok()) {
        out.headers_mut().insert(axum::http::header::ALLOW, a);
    }
    out
}

pub(crate) fn error(status: StatusCode, message: String) -> Response {
    (status, Json(ErrorResponse::new(message))).into_response()
}

fn select(
    state: &ControlState,
    mirror: &Option<String>,
) -> Result<Vec<MirrorHandle>, Box<Response>> {
    let all = state.mirrors.borrow().clone();
    match mirror {
        None => Ok(all.iter().cloned().collect()),
        Some(name) => match all.iter().find(|m| &m.name == name) {
            Some(m) => Ok(vec![m.clone()]),
            None => {
                let names: Vec<&str> = all.iter().map(|m| m.name.as_str()).collect();
                Err(Box::new(error(
                    StatusCode::NOT_FOUND,
                    format!("no mirror named {name:?} (mirrors: {})", names.join(", ")),
                )))
            }
        },
    }
}

async fn status(State(state): State<ControlState>, Query(t): Query<MirrorQuery>) -> Response {
    let mirrors = match select(&state, &t.mirror) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let body = StatusResponse {
        protocol: PROTOCOL,
        daemon: (*state.info).clone(),
        mirrors: mirrors
            .iter()
            .map(|m| MirrorView::from(m.status()))
            .collect(),
        bandwidth: Some(state.bandwidth.snapshot().into()),
    };
    Json(body).into_response()
}

async fn failures(State(state): State<ControlState>, Query(t): Query<MirrorQuery>) -> Response {
    let mirrors = match select(&state, &t.mirror) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let mut out = Vec::new();
    for m in mirrors {
        let list = m.ask(MirrorCmd::Failures).await.unwrap_or_default();
        out.push(MirrorFailures {
            mirror: m.name,
            failures: list.into_iter().map(Into::into).collect(),
        });
    }
    Json(FailuresResponse {
        protocol: PROTOCOL,
        mirrors: out,
    })
    .into_response()
}

async fn each(
    state: &ControlState,
    mirror: &Option<String>,
    what: &str,
    make: impl Fn(tokio::sync::oneshot::Sender<()>) -> MirrorCmd,
) -> Response {
    let mirrors = match select(state, mirror) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let mut done = Vec::new();
    for m in mirrors {
        if m.ask(&make).await.is_some() {
            done.push(m.name.clone());
        }
    }
    Json(ActionResponse {
        protocol: PROTOCOL,
        action: what.to_string(),
        mirrors: done,
    })
    .into_response()
}

async fn pause(State(state): State<ControlState>, Json(t): Json<ActionRequest>) -> Response {
    each(&state, &t.mirror, "pause", MirrorCmd::Pause).await
}

async fn resume(State(state): State<ControlState>, Json(t): Json<ResumeRequest>) -> Response {
    let allow = t.allow_deletes;
    each(&state, &t.mirror, "resume", move |reply| {
        MirrorCmd::Resume {
            allow_deletes: allow,
            reply,
        }
    })
    .await
}

async fn rescan(State(state): State<ControlState>, Json(t): Json<ActionRequest>) -> Response {
    each(&state, &t.mirror, "rescan", MirrorCmd::Rescan).await
}

async fn retry(State(state): State<ControlState>, Json(t): Json<ActionRequest>) -> Response {
    each(&state, &t.mirror, "retry", MirrorCmd::Retry).await
}

async fn verify(State(state): State<ControlState>, Json(v): Json<VerifyRequest>) -> Response {
    let mirrors = match select(&state, &v.mirror) {
        Ok(m) => m,
        Err(r) => return *r,
    };
    let mut reports = Vec::new();
    for m in mirrors {
        let (checksums, repair) = (v.checksums, v.repair);
        if let Some(r) = m
            .ask(move |reply| MirrorCmd::Verify {
                checksums,
                repair,
                reply,
            })
            .await
        {
            reports.push(r);
        }
    }
    Json(VerifyResponse {
        protocol: PROTOCOL,
        reports,
    })
    .into_response()
}

/// Prometheus text exposition (see [`metrics`]).
async fn metrics(State(state): State<ControlState>) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
