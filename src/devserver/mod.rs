//! `scaidrive-devserver`: a local ScaiDrive-compatible server for tests, benchmarks and the
//! demo. It implements the API surface of `scaidrive-api.md` §14 with the seed pages' wire
//! formats, keeps its state in SQLite plus content-addressed blob files under `--data`, and
//! injects faults (5xx, latency, 429s, dropped connections, token expiry, clock jumps) on
//! request, by flag or through the loopback-only admin routes under `/_devserver`.
//!
//! Layout: `state` (db, blobs, settings, limiter), `error` (both error shapes), `auth`
//! (bearer, rate limit, token endpoint), `model` (permissions, nodes, change log), one
//! module per API area, `admin` (fixtures and faults), and here the router, the outer
//! middleware and the accept loop (which owns connections so that faults can drop them).

pub mod admin;
pub mod auth;
pub mod download;
pub mod error;
pub mod files;
pub mod folders;
pub mod links;
pub mod model;
pub mod state;
pub mod sync;
pub mod uploads;
pub mod users;
pub mod util;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rand::Rng;
use rusqlite::{OptionalExtension, params};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

pub use error::{ApiError, ErrorShape};
pub use state::{AppState, Faults, Settings};

use state::{Blobs, Db, Inner, RateLimiter, Stats};
use util::{new_id, sha256_hex};

/// Default per-file cap: the documented 5 GB.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 5_000_000_000;
/// Default per-request cap of a multipart upload: the documented "default 5 GB per
/// request" (a reverse proxy may cut lower; `--max-request-size` models that).
pub const DEFAULT_MAX_REQUEST_SIZE: u64 = 5_000_000_000;

#[derive(Clone, Debug)]
pub struct DevServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Base URL for links; defaults to the bound address.
    pub public_url: Option<String>,
    /// Static access tokens of the default user (never expire unless told to).
    pub tokens: Vec<String>,
    /// Name of the default share created on first start.
    pub share_name: String,
    pub quota_bytes: Option<u64>,
    pub settings: Settings,
}

impl DevServerConfig {
    /// A config for tests: loopback port 0, token `test-token`, no rate limit.
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> DevServerConfig {
        DevServerConfig {
            data_dir: data_dir.into(),
            listen: "127.0.0.1:0".parse().expect("static address"),
            public_url: None,
            tokens: vec!["test-token".into()],
            share_name: "Test Share".into(),
            quota_bytes: None,
            settings: Settings {
                rate_limit: 0,
                user_rate_limit: state::default_user_rate_limit(),
                tenant_rate_limit: state::default_tenant_rate_limit(),
                max_file_size: DEFAULT_MAX_FILE_SIZE,
                max_request_size: DEFAULT_MAX_REQUEST_SIZE,
                session_ttl_secs: 24 * 3600,
                access_token_ttl_secs: 3600,
                error_shape: ErrorShape::Envelope,
                faults: Faults::default(),
                clock_offset_secs: 0,
            },
        }
    }
}

/// What a started server tells its user: where it listens and the fixture ids.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ServerInfo {
    pub url: String,
    pub share_id: String,
    pub user_id: String,
    pub tenant_id: String,
}

/// A running devserver; dropping the handle does not stop it, `shutdown` does.
pub struct RunningServer {
    pub info: ServerInfo,
    pub state: AppState,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl RunningServer {
    pub fn url(&self) -> &str {
        &self.info.url
    }
    pub fn share_id(&self) -> &str {
        &self.info.share_id
    }
    /// Stops accepting, closes connections and waits for the tasks to end.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.tracker.wait()).await;
    }
    /// A token that ends the server when cancelled (for callers that own shutdown).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
    pub async fn wait(&self) {
        self.tracker.wait().await;
    }
}

/// Creates the default tenant, user, share and the configured tokens on first start; on
/// later starts reuses them and adds any newly configured tokens.
async fn bootstrap(db: &Db, config: &DevServerConfig) -> anyhow::Result<(String, String, String)> {
    let cfg = config.clone();
    let config = config.clone();
    let r = db
        .tx(move |tx| {
            let existing: Option<String> =
                tx.query_row("SELECT value FROM kv WHERE key = 'fixture'", [], |r| r.get(0)).optional()?;
            let (tenant, user, share) = match existing {
                Some(v) => {
                    let v: serde_json::Value = serde_json::from_str(&v).map_err(|e| ApiError::internal(e.to_string()))?;
                    let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
                    (s("tenant"), s("user"), s("share"))
                }
                None => {
                    let tenant = new_id("tnt");
                    let user = new_id("usr");
                    let share = new_id("shr");
                    let now = util::iso(time::OffsetDateTime::now_utc());
                    tx.execute(
                        "INSERT INTO tenants (id, name, partner_id) VALUES (?1, 'Dev Tenant', ?2)",
                        params![tenant, new_id("prt")],
                    )?;
                    tx.execute(
                        "INSERT INTO users (id, tenant_id, email, name) VALUES (?1, ?2, 'dev@example.invalid', 'Dev User')",
                        params![user, tenant],
                    )?;
                    tx.execute(
                        "INSERT INTO shares (id, tenant_id, name, share_type, owner_id, quota_bytes, created_at, modified_at) \
                         VALUES (?1, ?2, ?3, 'central', ?4, ?5, ?6, ?6)",
                        params![share, tenant, config.share_name, user, config.quota_bytes.map(|q| q as i64), now],
                    )?;
                    tx.execute(
                        "INSERT INTO members (share_id, user_id, role) VALUES (?1, ?2, 'owner')",
                        params![share, user],
                    )?;
                    let v = serde_json::json!({ "tenant": tenant, "user": user, "share": share });
                    tx.execute("INSERT INTO kv (key, value) VALUES ('fixture', ?1)", [v.to_string()])?;
                    (tenant, user, share)
                }
            };
            for t in &config.tokens {
                tx.execute(
                    "INSERT OR IGNORE INTO tokens (hash, kind, user_id, scopes, expires_at, created_at) \
                     VALUES (?1, 'access', ?2, '', NULL, 0)",
                    params![sha256_hex(t.as_bytes()), user],
                )?;
            }
            Ok((tenant, user, share))
        })
        .await;
    r.map_err(|e| anyhow::anyhow!("bootstrapping {}: {e}", cfg.data_dir.display()))
}

/// Binds, bootstraps and starts serving in the background.
pub async fn start(config: DevServerConfig) -> anyhow::Result<RunningServer> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| anyhow::anyhow!("creating data dir {}: {e}", config.data_dir.display()))?;
    let db = Db::open(&config.data_dir.join("devserver.db")).map_err(|e| {
        anyhow::anyhow!(
            "opening {}: {e}",
            config.data_dir.join("devserver.db").display()
        )
    })?;
    let blobs = Blobs::new(&config.data_dir)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("binding {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    let url = format!("http://{addr}");
    let (tenant_id, user_id, share_id) = bootstrap(&db, &config).await?;
    let state = AppState(Arc::new(Inner {
        db,
        blobs,
        settings: RwLock::new(config.settings.clone()),
        limiter: Mutex::new(RateLimiter::default()),
        stats: Stats::default(),
        sessions: Default::default(),
        public_url: config.public_url.clone().unwrap_or_else(|| url.clone()),
    }));
    let app = router(state.clone());
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    tracker.spawn(accept_loop(
        listener,
        app,
        shutdown.clone(),
        tracker.clone(),
    ));
    Ok(RunningServer {
        info: ServerInfo {
            url,
            share_id,
            user_id,
            tenant_id,
        },
        state,
        shutdown,
        tracker,
    })
}

/// Cancels the connection it belongs to: used by the drop-connection fault.
#[derive(Clone)]
pub struct ConnKill(CancellationToken);

/// The peer address of the connection.
#[derive(Clone, Copy)]
pub struct Peer(pub SocketAddr);

async fn accept_loop(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let kill = CancellationToken::new();
            let k = kill.clone();
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ConnKill(k.clone()));
                    req.extensions_mut().insert(Peer(peer));
                    app.clone().oneshot(req.map(Body::new))
                },
            );
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = kill.cancelled() => {}
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(2), conn.as_mut()).await;
                }
            }
        });
    }
}

/// The route a response came from, for statistics.
#[derive(Clone)]
struct RouteTag(String);

async fn tag_route(req: Request, next: Next) -> Response {
    let tag = format!(
        "{} {}",
        req.method(),
        req.extensions()
            .get::<MatchedPath>()
            .map(|m| m.as_str().to_string())
            .unwrap_or_default()
    );
    let mut resp = next.run(req).await;
    resp.extensions_mut().insert(RouteTag(tag));
    resp
}

pub fn router(state: AppState) -> Router {
    let authed = Router::new()
        .merge(users::routes())
        .merge(folders::routes())
        .merge(files::routes())
        .merge(uploads::routes())
        .merge(links::routes())
        .merge(sync::routes())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_auth,
        ));
    let public = Router::new()
        .merge(users::public_routes())
        .merge(auth::routes())
        .merge(links::public_routes());
    Router::new()
        .merge(authed)
        .merge(public)
        .merge(admin::routes())
        .route_layer(middleware::from_fn(tag_route))
        .fallback(fallback)
        .layer(middleware::from_fn_with_state(state.clone(), finalize))
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

async fn fallback() -> ApiError {
    ApiError::not_found("route")
}

/// Outer middleware: request id, fault injection, statistics and error body rendering.
async fn finalize(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let request_id = new_id("req");
    let path = req.uri().path().to_string();
    let settings = state.settings();
    let faults = &settings.faults;
    let faultable = path.starts_with("/api/") && path.starts_with(faults.path_prefix.as_str());
    let mut resp = if faultable {
        apply_faults(&state, req, next).await
    } else {
        next.run(req).await
    };
    if let Some(err) = resp.extensions_mut().remove::<ApiError>() {
        let body = err.body(settings.error_shape, &request_id);
        *resp.body_mut() = Body::from(body.to_string());
        resp.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
        resp.headers_mut().remove("content-length");
    }
    // Admin traffic is the test's own bookkeeping, not API use.
    if !path.starts_with("/_devserver") {
        let route = resp
            .extensions()
            .get::<RouteTag>()
            .map(|t| t.0.clone())
            .unwrap_or_else(|| "unmatched".into());
        state.stats.record(&route, resp.status().as_u16());
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// Takes one unit from a "next N requests" counter; true if one was taken.
fn take_one(state: &AppState, pick: impl Fn(&mut Faults) -> &mut u64) -> bool {
    let mut taken = false;
    state.update_settings(|s| {
        let n = pick(&mut s.faults);
        if *n > 0 {
            *n -= 1;
            taken = true;
        }
    });
    taken
}

async fn apply_faults(state: &AppState, req: Request, next: Next) -> Response {
    let faults = state.settings().faults;
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    if take_one(state, |f| &mut f.force_429) {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            "rate limit exceeded (injected)",
        );
        let wait = faults.retry_after_secs.max(1);
        e.retry_after = Some(wait);
        e.details = Some(forced_429_details(&state.settings()));
        let mut resp = e.into_response();
        resp.headers_mut()
            .insert("x-ratelimit-remaining", HeaderValue::from(0));
        return resp;
    }
    let (roll_fail, roll_drop, roll_after) = {
        let mut rng = rand::rng();
        (
            rng.random::<f64>(),
            rng.random::<f64>(),
            rng.random::<f64>(),
        )
    };
    if take_one(state, |f| &mut f.fail_next) || roll_fail < faults.fail_rate {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "injected fault",
        )
        .into_response();
    }
    let drop = take_one(state, |f| &mut f.drop_next) || roll_drop < faults.drop_rate;
    if drop && let Some(kill) = req.extensions().get::<ConnKill>().cloned() {
        // Read part of the body so the client is mid-upload, then cut the connection.
        let mut body = req.into_body().into_data_stream();
        let mut read = 0u64;
        while read < faults.drop_after_bytes {
            match futures_util::StreamExt::next(&mut body).await {
                Some(Ok(chunk)) => read += chunk.len() as u64,
                _ => break,
            }
        }
        kill.0.cancel();
        std::future::pending::<()>().await;
        unreachable!("the connection task drops this future");
    }
    let resp = if faults.apply_delay_ms > 0 {
        let (parts, body) = req.into_parts();
        let Ok(body) = body.collect().await else {
            // The client went away before the request was whole: nothing to apply.
            return ApiError::bad_request("INVALID_REQUEST", "request body incomplete")
                .into_response();
        };
        let req = Request::from_parts(parts, Body::from(body.to_bytes()));
        let delay = Duration::from_millis(faults.apply_delay_ms);
        // Detached: dropping this handler (the connection closed) does not cancel it.
        let applying = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            next.run(req).await
        });
        match applying.await {
            Ok(resp) => resp,
            Err(e) => {
                ApiError::internal(format!("applying the request failed: {e}")).into_response()
            }
        }
    } else {
        next.run(req).await
    };
    if roll_after < faults.fail_after_rate {
        // The change is applied; the client only sees a failure (a lost response).
        let (_, body) = resp.into_parts();
        let _ = body.collect().await;
        return ApiError::internal("injected fault after the request was applied").into_response();
    }
    resp
}

/// `error.details` of an injected 429: the budget `force_429_dimension` names, with its
/// limit.
fn forced_429_details(s: &Settings) -> serde_json::Value {
    let (dimension, limit) = match s.faults.force_429_dimension.as_str() {
        "user" => ("user", s.user_rate_limit),
        "tenant" => ("tenant", s.tenant_rate_limit),
        _ => ("token", s.rate_limit),
    };
    serde_json::json!({ "dimension": dimension, "limit": limit, "window_seconds": 60 })
}
