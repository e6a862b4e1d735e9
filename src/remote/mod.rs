//! The ScaiDrive client: the daemon's only way to the service (DESIGN.md §4).
//!
//! [`Client`] is a cheap-to-clone handle over one pooled reqwest client (rustls, timeouts,
//! `User-Agent: scaidrive/<version>`) with typed calls for everything the daemon uses:
//! health, current user and shares, folders, files and versions, upload sessions, external
//! links and the sync change log. Every call goes through one path, [`Client::run_call`]:
//! the shared pacer (`pace.rs`) admits it, the retry policy (`retry.rs`) repeats it when
//! that can help, and a 401 triggers at most one token refresh and one more try before it
//! becomes [`ErrorKind::CredentialsNeeded`]. Uploads and the conflict helpers live in
//! `upload.rs` (with what they learn about the server while the client lives: the size
//! from which multipart meets 413, and the throughput that sizes session chunks, measured
//! here in `Client::attempt` on every streamed body); the wire types in `types.rs`;
//! errors in `error.rs`; tokens in `auth.rs`.

pub mod auth;
pub mod bandwidth;
mod call;
pub mod error;
pub mod follow;
mod known;
pub mod pace;
pub mod retry;
pub mod types;
pub mod upload;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

pub use auth::{PersistFuture, Secret, TokenPair, TokenSink};
use call::{Body, Call};
pub use error::{Error, ErrorKind};
pub use pace::{PaceConfig, PaceStats, RateDimension};
pub use retry::RetryPolicy;
pub use types::*;
pub use upload::{ChunkPlan, ResumableUpload, UploadConfig, sha256_file, validate_name};

/// The `User-Agent` every request carries.
pub const USER_AGENT: &str = concat!("scaidrive/", env!("CARGO_PKG_VERSION"));

/// How to reach ScaiDrive and how patiently.
#[derive(Clone)]
pub struct ClientConfig {
    /// e.g. `https://scaidrive.scailabs.ai` (no `/api/v1`).
    pub base_url: String,
    pub tokens: TokenPair,
    /// Receives refreshed token pairs to persist.
    pub token_sink: Option<Arc<dyn TokenSink>>,
    pub connect_timeout: Duration,
    /// Whole-request limit for calls without a streamed body.
    pub request_timeout: Duration,
    /// Longest silence on a connection while streaming (uploads/downloads have no total
    /// limit: a big file on a slow link may take hours).
    pub idle_timeout: Duration,
    pub retry: RetryPolicy,
    pub pace: PaceConfig,
    pub upload: UploadConfig,
    /// PEM file of extra CA certificates to trust (a private CA or a self-signed server),
    /// added to the platform's roots.
    pub ca_file: Option<PathBuf>,
    /// The daemon's bandwidth limiter, shared by every streamed request body.
    pub bandwidth: bandwidth::Bandwidth,
}

impl ClientConfig {
    pub fn new(base_url: impl Into<String>, tokens: TokenPair) -> ClientConfig {
        ClientConfig {
            base_url: base_url.into(),
            tokens,
            token_sink: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            pace: PaceConfig::default(),
            upload: UploadConfig::default(),
            ca_file: None,
            bandwidth: bandwidth::Bandwidth::default(),
        }
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url)
            .field("tokens", &self.tokens)
            .field("token_sink", &self.token_sink.as_ref().map(|_| "..."))
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("retry", &self.retry)
            .field("pace", &self.pace)
            .field("upload", &self.upload)
            .field("ca_file", &self.ca_file)
            .field("bandwidth", &self.bandwidth)
            .finish()
    }
}

/// A handle to ScaiDrive; clones share the connection pool, tokens and pacer.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: String,
    auth: auth::AuthState,
    /// Serialises refreshes: the refresh token is single-use, so two workers that both
    /// meet a 401 must not both spend it. Held across the refresh request on purpose; it
    /// guards no data, only the order of refreshes.
    refresh_gate: tokio::sync::Mutex<()>,
    sink: Option<Arc<dyn TokenSink>>,
    retry: RetryPolicy,
    pacer: pace::Pacer,
    upload: UploadConfig,
    request_timeout: Duration,
    /// What the uploads have learned about this server since start-up (the size from
    /// which a multipart upload meets 413, the recent transfer throughput).
    learned: upload::Learned,
    bandwidth: bandwidth::Bandwidth,
    /// Requests the server answered, and how many of those with 429 (for the metrics).
    answered: AtomicU64,
    rate_limited: AtomicU64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base)
            .finish_non_exhaustive()
    }
}

/// The documented cost classes (rate-limiting page): transfers 5, lists and writes 2,
/// metadata reads 1; the public endpoints are free.
pub fn documented_cost(method: &Method, path: &str) -> u64 {
    let p = path.trim_start_matches("/api/v1");
    if p == "/health" || p == "/ready" || p.starts_with("/auth/") {
        return 0;
    }
    let transfer = (method == Method::PUT && p.starts_with("/uploads/") && p.contains("/chunks/"))
        || (method == Method::POST && p == "/files")
        || (method == Method::GET && (p.ends_with("/content") || p.starts_with("/sync/download/")));
    if transfer {
        return 5;
    }
    if p.starts_with("/search") {
        return 10;
    }
    if method == Method::GET {
        let list = p.ends_with("/children")
            || p.ends_with("/versions")
            || matches!(
                p,
                "/users/me/shares" | "/shares" | "/external/links" | "/sync/changes"
            );
        return if list { 2 } else { 1 };
    }
    2
}

/// The certificates of a PEM bundle; an unreadable file or one without a certificate is
/// an error naming the file.
fn read_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>, Error> {
    let pem = std::fs::read(path).map_err(|e| Error::local_io(path, e))?;
    let bad = |why: String| {
        Error::local_io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, why),
        )
    };
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| bad(format!("not a PEM certificate bundle (ca_file): {e}")))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it (ca_file)".into()));
    }
    Ok(certs)
}

/// Guards an offset-paged listing against a server that never finishes it (a `total` it
/// never reaches, or the same page whatever the offset): such a listing fails with one
/// line instead of looping and growing forever.
#[derive(Default)]
struct Paging {
    pages: u32,
    last_ids: Vec<String>,
}

impl Paging {
    /// At most this many pages (of 100) in one listing.
    const MAX_PAGES: u32 = 10_000;

    fn next_page(&mut self, path: &str, ids: Vec<String>) -> Result<(), Error> {
        self.pages += 1;
        let fail = |why: String| Error::decode_unplaced(why).at(&Method::GET, path);
        if !ids.is_empty() && ids == self.last_ids {
            return Err(fail(format!(
                "the server sent the same page twice (page {}); it ignores the offset",
                self.pages
            )));
        }
        if self.pages >= Self::MAX_PAGES {
            return Err(fail(format!(
                "the listing did not end after {} pages",
                Self::MAX_PAGES
            )));
        }
        self.last_ids = ids;
        Ok(())
    }
}

/// Percent-encodes an id for use as one path segment (ids are opaque).
pub(crate) fn seg(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Serialize)]
struct NewFolder<'a> {
    share_id: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent_id: Option<&'a str>,
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Client, Error> {
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.idle_timeout)
            .pool_idle_timeout(Duration::from_secs(90));
        if let Some(path) = &config.ca_file {
            builder = builder.tls_certs_merge(read_ca_file(path)?);
        }
        let http = builder
            .build()
            .map_err(|e| Error::transport(&Method::GET, &config.base_url, e))?;
        let base = config.base_url.trim_end_matches('/').to_string();
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                auth: auth::AuthState::new(config.tokens),
                refresh_gate: tokio::sync::Mutex::new(()),
                sink: config.token_sink,
                retry: config.retry,
                pacer: pace::Pacer::new(config.pace),
                upload: config.upload,
                request_timeout: config.request_timeout,
                learned: upload::Learned::default(),
                bandwidth: config.bandwidth,
                answered: AtomicU64::new(0),
                rate_limited: AtomicU64::new(0),
            }),
        })
    }

    /// The current token pair (after any refresh).
    pub fn tokens(&self) -> TokenPair {
        self.inner.auth.pair()
    }

    /// Puts a newly provisioned token pair in place of the current one (a credentials
    /// reload): requests from now on use it, and a request that meets a 401 with the old
    /// token retries with the new one instead of spending a refresh.
    pub fn set_tokens(&self, pair: TokenPair) {
        self.inner.auth.replace(pair);
    }

    pub fn pace_stats(&self) -> PaceStats {
        self.inner.pacer.stats()
    }

    /// The budget (token, user, tenant) a 429 said is spent, while its pause lasts.
    pub fn budget_spent(&self) -> Option<RateDimension> {
        self.inner.pacer.spent()
    }

    /// The pacer's current belief about the budget: (limit, remaining units).
    pub fn rate_budget(&self) -> (Option<u64>, u64) {
        self.inner.pacer.budget()
    }

    /// Requests answered by the server since start, and how many of them were 429s.
    pub fn request_counts(&self) -> (u64, u64) {
        (
            self.inner.answered.load(Ordering::Relaxed),
            self.inner.rate_limited.load(Ordering::Relaxed),
        )
    }

    /// The bandwidth limiter file bodies stream through.
    pub fn bandwidth(&self) -> &bandwidth::Bandwidth {
        &self.inner.bandwidth
    }

    pub fn upload_config(&self) -> &UploadConfig {
        &self.inner.upload
    }

    fn learned(&self) -> &upload::Learned {
        &self.inner.learned
    }

    /// The longest a (non-streaming) request is waited for before it counts as failed.
    pub fn request_timeout(&self) -> Duration {
        self.inner.request_timeout
    }

    /// One attempt: pace, send, and turn an error status into an [`Error`].
    async fn attempt(&self, call: &Call, used_gen: &AtomicU64) -> Result<reqwest::Response, Error> {
        let permit = self.inner.pacer.acquire(call.cost).await;
        let url = format!("{}{}", self.inner.base, call.path);
        let mut rb = self.inner.http.request(call.method.clone(), url);
        if !call.query.is_empty() {
            rb = rb.query(&call.query);
        }
        if call.auth {
            let (token, generation) = self.inner.auth.current();
            used_gen.store(generation, Ordering::SeqCst);
            // reqwest marks this header sensitive, so it is not shown in its Debug either.
            rb = rb.bearer_auth(token.expose());
        }
        if !call.streaming {
            rb = rb.timeout(self.inner.request_timeout);
        }
        if let Some(from) = call.range_from {
            rb = rb.header(reqwest::header::RANGE, format!("bytes={from}-"));
        }
        rb = call
            .body
            .apply(rb, &self.inner.bandwidth)
            .await
            .map_err(|e| e.at(&call.method, &call.path))?;
        let sent = std::time::Instant::now();
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => return Err(Error::transport(&call.method, &call.path, e)),
        };
        permit.observe(resp.headers());
        let status = resp.status();
        self.inner.answered.fetch_add(1, Ordering::Relaxed);
        if status == StatusCode::TOO_MANY_REQUESTS {
            self.inner.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
        if status.is_success() {
            if let Body::FileRange { len, .. } | Body::Multipart { len, .. } = &call.body {
                // The server answers once it has the whole body: the time to the answer is
                // the transfer's, which sizes later upload chunks.
                self.inner.learned.record_transfer(*len, sent.elapsed());
            }
            return Ok(resp);
        }
        let headers = resp.headers().clone();
        // If even the error body cannot be read, the status still says what happened.
        let body = resp.bytes().await.unwrap_or_default();
        Err(Error::from_response(
            &call.method,
            &call.path,
            status,
            &headers,
            &body,
        ))
    }

    /// Sends `call` with pacing, retries and the 401 → refresh → retry-once rule, and
    /// hands the successful response to `finish` (inside the retry loop, so a body that
    /// breaks off while being read is retried like any transport error).
    async fn run_call<T, F, Fut>(&self, call: &Call, finish: F) -> Result<T, Error>
    where
        F: Fn(reqwest::Response) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut refreshed = false;
        let tuned;
        let policy = match call.max_transport_failures {
            Some(n) => {
                tuned = RetryPolicy {
                    max_transport_failures: Some(n),
                    ..self.inner.retry.clone()
                };
                &tuned
            }
            None => &self.inner.retry,
        };
        loop {
            let used_gen = AtomicU64::new(0);
            let result = retry::run(policy, &self.inner.pacer, |_| async {
                let resp = self.attempt(call, &used_gen).await?;
                finish(resp)
                    .await
                    .map_err(|e| e.at(&call.method, &call.path))
            })
            .await;
            match result {
                Err(e) if call.auth && e.status() == Some(StatusCode::UNAUTHORIZED) => {
                    if refreshed {
                        return Err(e.into_credentials_needed(
                            "the refreshed access token was refused too",
                        ));
                    }
                    refreshed = true;
                    self.refresh_after(e, used_gen.load(Ordering::SeqCst))
                        .await?;
                }
                other => return other,
            }
        }
    }

    /// Refreshes the token pair after `failed` (a 401 for a request sent with token
    /// generation `used_gen`), unless another worker already did.
    async fn refresh_after(&self, failed: Error, used_gen: u64) -> Result<(), Error> {
        if self.inner.auth.refresh_token().is_none() {
            return Err(failed
                .into_credentials_needed("access token refused and no refresh token configured"));
        }
        let _gate = self.inner.refresh_gate.lock().await;
        if self.inner.auth.generation() != used_gen {
            return Ok(()); // someone refreshed while we waited; just try the new token
        }
        let Some(rt) = self.inner.auth.refresh_token() else {
            return Err(failed
                .into_credentials_needed("access token refused and no refresh token configured"));
        };
        let mut call = Call::new(Method::POST, "/api/v1/auth/token".into());
        call.auth = false;
        call.body = Body::Form(vec![
            ("grant_type", Secret::new("refresh_token")),
            ("refresh_token", rt),
        ]);
        // Not through run_call: a 401 here must not trigger another refresh.
        let unused = AtomicU64::new(0);
        let resp: Result<TokenResponse, Error> =
            retry::run(&self.inner.retry, &self.inner.pacer, |_| async {
                let resp = self.attempt(&call, &unused).await?;
                decode_json(resp)
                    .await
                    .map_err(|e| e.at(&call.method, &call.path))
            })
            .await;
        let tr = match resp {
            Ok(tr) => tr,
            // Any refusal of the refresh token means a human must provide new credentials.
            Err(e) if !e.is_transient() => {
                return Err(e.into_credentials_needed("token refresh refused"));
            }
            Err(e) => return Err(e),
        };
        let pair = TokenPair {
            access_token: Secret::new(tr.access_token),
            refresh_token: tr.refresh_token.map(Secret::new),
            expires_in: tr.expires_in,
        };
        self.inner.auth.replace(pair.clone());
        tracing::info!(expires_in = ?pair.expires_in, "access token refreshed");
        if let Some(sink) = &self.inner.sink
            && let Err(e) = sink.persist(&pair).await
        {
            tracing::warn!(error = %e, "could not persist the refreshed tokens; they live in memory until restart");
        }
        Ok(())
    }

    async fn call_json<T: DeserializeOwned>(&self, call: Call) -> Result<T, Error> {
        self.run_call(&call, decode_json).await
    }

    async fn call_empty(&self, call: Call) -> Result<(), Error> {
        self.run_call(&call, |resp| async move {
            // Drain so the connection goes back to the pool.
            let _ = resp.bytes().await;
            Ok(())
        })
        .await
    }

    // --- health, user, shares -------------------------------------------------------

    /// `GET /api/v1/health`: unauthenticated connectivity probe.
    pub async fn health(&self) -> Result<Health, Error> {
        let mut call = Call::get("/api/v1/health".into());
        call.auth = false;
        self.call_json(call).await
    }

    /// `GET /api/v1/users/me`.
    pub async fn me(&self) -> Result<User, Error> {
        self.call_json(Call::get("/api/v1/users/me".into())).await
    }

    /// `GET /api/v1/users/me/shares`, all pages.
    pub async fn my_shares(&self) -> Result<Vec<ShareSummary>, Error> {
        let mut out = Vec::new();
        let mut paging = Paging::default();
        loop {
            let page: SharesPage = self
                .call_json(
                    Call::get("/api/v1/users/me/shares".into())
                        .query("limit", "100")
                        .query("offset", out.len().to_string()),
                )
                .await?;
            let got = page.shares.len();
            let ids: Vec<String> = page.shares.iter().map(|s| s.id.clone()).collect();
            out.extend(page.shares);
            if got == 0 || out.len() as u64 >= page.total {
                return Ok(out);
            }
            paging.next_page("/api/v1/users/me/shares", ids)?;
        }
    }

    /// `GET /api/v1/shares/{id}`.
    pub async fn share(&self, share_id: &str) -> Result<Share, Error> {
        self.call_json(Call::get(format!("/api/v1/shares/{}", seg(share_id))))
            .await
    }

    // --- folders --------------------------------------------------------------------

    /// `GET /api/v1/folders/{id}`.
    pub async fn folder(&self, folder_id: &str) -> Result<Folder, Error> {
        self.call_json(Call::get(format!("/api/v1/folders/{}", seg(folder_id))))
            .await
    }

    /// `GET /api/v1/folders/{id}/children` (`None` = share root).
    pub async fn children(
        &self,
        share_id: &str,
        folder_id: Option<&str>,
    ) -> Result<Children, Error> {
        self.children_with(share_id, folder_id, false).await
    }

    /// Like [`Client::children`], optionally including soft-deleted items (trash view).
    pub async fn children_with(
        &self,
        share_id: &str,
        folder_id: Option<&str>,
        include_deleted: bool,
    ) -> Result<Children, Error> {
        let mut call = Call::get(format!(
            "/api/v1/folders/{}/children",
            seg(folder_id.unwrap_or("root"))
        ))
        .query("share_id", share_id);
        if include_deleted {
            call = call.query("include_deleted", "true");
        }
        self.call_json(call).await
    }

    /// `POST /api/v1/folders` (`parent_id` `None` = share root). 409 if the name is taken;
    /// see [`Client::create_folder_or_adopt`].
    pub async fn create_folder(
        &self,
        share_id: &str,
        parent_id: Option<&str>,
        name: &str,
    ) -> Result<Folder, Error> {
        validate_name(name)?;
        let body = NewFolder {
            share_id,
            name,
            parent_id,
        };
        self.call_json(Call::new(Method::POST, "/api/v1/folders".into()).json(&body))
            .await
    }

    /// `PATCH /api/v1/folders/{id}` `{"name"}`.
    pub async fn rename_folder(&self, folder_id: &str, name: &str) -> Result<Folder, Error> {
        validate_name(name)?;
        let call = Call::new(Method::PATCH, format!("/api/v1/folders/{}", seg(folder_id)))
            .json(&json!({ "name": name }));
        self.call_json(call).await
    }

    /// `POST /api/v1/folders/{id}/move` `{"target_parent_id"}` (`None` = share root).
    pub async fn move_folder(
        &self,
        folder_id: &str,
        target_parent_id: Option<&str>,
    ) -> Result<Folder, Error> {
        let call = Call::new(
            Method::POST,
            format!("/api/v1/folders/{}/move", seg(folder_id)),
        )
        .json(&json!({ "target_parent_id": target_parent_id }));
        self.call_json(call).await
    }

    /// `DELETE /api/v1/folders/{id}`: soft (trash) unless `permanent`.
    pub async fn delete_folder(&self, folder_id: &str, permanent: bool) -> Result<(), Error> {
        let call = Call::new(
            Method::DELETE,
            format!("/api/v1/folders/{}", seg(folder_id)),
        )
        .query("permanent", permanent.to_string());
        self.call_empty(call).await
    }

    // --- files ----------------------------------------------------------------------

    /// `GET /api/v1/files/{id}`.
    pub async fn file(&self, file_id: &str) -> Result<RemoteFile, Error> {
        self.call_json(Call::get(format!("/api/v1/files/{}", seg(file_id))))
            .await
    }

    /// `PATCH /api/v1/files/{id}` `{"name"}`.
    pub async fn rename_file(&self, file_id: &str, name: &str) -> Result<RemoteFile, Error> {
        validate_name(name)?;
        let call = Call::new(Method::PATCH, format!("/api/v1/files/{}", seg(file_id)))
            .json(&json!({ "name": name }));
        self.call_json(call).await
    }

    /// `POST /api/v1/files/{id}/move` `{"target_folder_id"}` (`None` = share root).
    pub async fn move_file(
        &self,
        file_id: &str,
        target_folder_id: Option<&str>,
    ) -> Result<RemoteFile, Error> {
        let call = Call::new(Method::POST, format!("/api/v1/files/{}/move", seg(file_id)))
            .json(&json!({ "target_folder_id": target_folder_id }));
        self.call_json(call).await
    }

    /// `DELETE /api/v1/files/{id}?permanent=`: soft (trash) unless `permanent`.
    pub async fn delete_file(&self, file_id: &str, permanent: bool) -> Result<(), Error> {
        let call = Call::new(Method::DELETE, format!("/api/v1/files/{}", seg(file_id)))
            .query("permanent", permanent.to_string());
        self.call_empty(call).await
    }

    /// `GET /api/v1/files/{id}/versions` (newest first).
    pub async fn file_versions(&self, file_id: &str) -> Result<Versions, Error> {
        self.call_json(Call::get(format!(
            "/api/v1/files/{}/versions",
            seg(file_id)
        )))
        .await
    }

    /// Streams the current content of a file into `dest` (created or truncated), retrying
    /// from scratch if the transfer breaks off. Returns the byte count.
    pub async fn download_to(&self, file_id: &str, dest: &Path) -> Result<u64, Error> {
        let call =
            Call::get(format!("/api/v1/files/{}/content", seg(file_id))).body(Body::Empty, true);
        self.run_call(&call, |resp| async move {
            let mut out = tokio::fs::File::create(dest)
                .await
                .map_err(|e| Error::local_io(dest, e))?;
            let mut n = 0u64;
            let mut resp = resp;
            loop {
                let chunk = match resp.chunk().await {
                    Ok(Some(c)) => c,
                    Ok(None) => break,
                    Err(e) => return Err(Error::transport_unplaced(e)),
                };
                n += chunk.len() as u64;
                out.write_all(&chunk)
                    .await
                    .map_err(|e| Error::local_io(dest, e))?;
            }
            out.flush().await.map_err(|e| Error::local_io(dest, e))?;
            Ok(n)
        })
        .await
    }

    /// Streams version `version` of a file (`GET /files/{id}/content?version=N`) into
    /// `dest`, appending from byte `from` with `Range: bytes=from-` when `from > 0` (the
    /// part already on disk stays). A server that ignores the range (200) rewrites the file
    /// from the start. A transfer that breaks off is retried from where the file then
    /// ends. Returns the file's length afterwards.
    pub async fn download_version_to(
        &self,
        file_id: &str,
        version: u64,
        dest: &Path,
        from: u64,
    ) -> Result<u64, Error> {
        let path = format!("/api/v1/files/{}/content", seg(file_id));
        let mut at = from;
        loop {
            let mut call = Call::get(path.clone())
                .query("version", version.to_string())
                .body(Body::Empty, true);
            call.range_from = (at > 0).then_some(at);
            let start = at;
            let written = std::sync::atomic::AtomicU64::new(start);
            let r = self
                .run_call(&call, |resp| {
                    let written = &written;
                    async move {
                        let partial = resp.status() == StatusCode::PARTIAL_CONTENT;
                        let mut n = if partial { start } else { 0 };
                        // Cut whatever an earlier attempt of this call left beyond `n`.
                        let mut out = tokio::fs::OpenOptions::new()
                            .create(true)
                            .truncate(false)
                            .write(true)
                            .open(dest)
                            .await
                            .map_err(|e| Error::local_io(dest, e))?;
                        out.set_len(n).await.map_err(|e| Error::local_io(dest, e))?;
                        out.seek(std::io::SeekFrom::Start(n))
                            .await
                            .map_err(|e| Error::local_io(dest, e))?;
                        written.store(n, Ordering::SeqCst);
                        let mut resp = resp;
                        loop {
                            let chunk = match resp.chunk().await {
                                Ok(Some(c)) => c,
                                Ok(None) => break,
                                Err(e) => {
                                    let _ = out.flush().await;
                                    return Err(Error::transport_unplaced(e));
                                }
                            };
                            out.write_all(&chunk)
                                .await
                                .map_err(|e| Error::local_io(dest, e))?;
                            n += chunk.len() as u64;
                            written.store(n, Ordering::SeqCst);
                        }
                        out.flush().await.map_err(|e| Error::local_io(dest, e))?;
                        Ok(n)
                    }
                })
                .await;
            match r {
                Ok(n) => return Ok(n),
                // Broke off mid-body after the retries: continue from what arrived, as long
                // as something did (otherwise the error stands).
                Err(e) if e.is_transient() && written.load(Ordering::SeqCst) > at => {
                    at = written.load(Ordering::SeqCst);
                }
                Err(e) => return Err(e),
            }
        }
    }

    // --- external links -------------------------------------------------------------

    /// `POST /api/v1/external/links` → 201.
    pub async fn create_link(&self, link: &NewLink) -> Result<Link, Error> {
        self.call_json(Call::new(Method::POST, "/api/v1/external/links".into()).json(link))
            .await
    }

    /// `GET /api/v1/external/links` (optionally of one share), all pages.
    pub async fn links(&self, share_id: Option<&str>) -> Result<Vec<Link>, Error> {
        let mut out = Vec::new();
        let mut paging = Paging::default();
        loop {
            let mut call = Call::get("/api/v1/external/links".into())
                .query("limit", "100")
                .query("offset", out.len().to_string());
            if let Some(s) = share_id {
                call = call.query("share_id", s);
            }
            let page: LinksPage = self.call_json(call).await?;
            let got = page.links.len();
            let ids: Vec<String> = page.links.iter().map(|l| l.id.clone()).collect();
            out.extend(page.links);
            if got == 0 || out.len() as u64 >= page.total {
                return Ok(out);
            }
            paging.next_page("/api/v1/external/links", ids)?;
        }
    }

    /// `GET /api/v1/external/links/{id}`.
    pub async fn link(&self, link_id: &str) -> Result<Link, Error> {
        self.call_json(Call::get(format!(
            "/api/v1/external/links/{}",
            seg(link_id)
        )))
        .await
    }

    /// `PATCH /api/v1/external/links/{id}`.
    pub async fn update_link(&self, link_id: &str, options: &LinkOptions) -> Result<Link, Error> {
        let call = Call::new(
            Method::PATCH,
            format!("/api/v1/external/links/{}", seg(link_id)),
        )
        .json(options);
        self.call_json(call).await
    }

    /// `DELETE /api/v1/external/links/{id}` → 204 (irreversible).
    pub async fn revoke_link(&self, link_id: &str) -> Result<(), Error> {
        self.call_empty(Call::new(
            Method::DELETE,
            format!("/api/v1/external/links/{}", seg(link_id)),
        ))
        .await
    }

    // --- sync -----------------------------------------------------------------------

    /// `GET /api/v1/sync/changes` after `cursor` (`None` = from the current position).
    pub async fn changes(
        &self,
        share_id: &str,
        cursor: Option<&Cursor>,
        limit: Option<u32>,
    ) -> Result<Changes, Error> {
        let mut call = Call::get("/api/v1/sync/changes".into()).query("share_id", share_id);
        if let Some(c) = cursor {
            call = call.query("cursor", c.0.clone());
        }
        if let Some(l) = limit {
            call = call.query("limit", l.to_string());
        }
        self.call_json(call).await
    }

    /// `GET /api/v1/sync/status`.
    pub async fn sync_status(&self, share_id: &str, device_id: &str) -> Result<SyncStatus, Error> {
        let call = Call::get("/api/v1/sync/status".into())
            .query("share_id", share_id)
            .query("device_id", device_id);
        self.call_json(call).await
    }

    /// `POST /api/v1/sync/cursor` (query parameters, no body).
    pub async fn set_cursor(
        &self,
        share_id: &str,
        device_id: &str,
        position: &Cursor,
    ) -> Result<CursorAck, Error> {
        let call = Call::new(Method::POST, "/api/v1/sync/cursor".into())
            .query("share_id", share_id)
            .query("device_id", device_id)
            .query("position", position.0.clone());
        self.call_json(call).await
    }
}

/// Reads a success body and decodes it; a body that breaks off is a transport error.
async fn decode_json<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, Error> {
    let bytes = resp.bytes().await.map_err(Error::transport_unplaced)?;
    serde_json::from_slice(&bytes).map_err(Error::decode_unplaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_follow_the_docs() {
        let cases = [
            (Method::GET, "/api/v1/health", 0),
            (Method::POST, "/api/v1/auth/token", 0),
            (Method::GET, "/api/v1/files/fil_1", 1),
            (Method::GET, "/api/v1/folders/root/children", 2),
            (Method::GET, "/api/v1/users/me/shares", 2),
            (Method::PATCH, "/api/v1/files/fil_1", 2),
            (Method::POST, "/api/v1/folders", 2),
            (Method::POST, "/api/v1/files", 5),
            (Method::PUT, "/api/v1/uploads/ups_1/chunks/0", 5),
            (Method::GET, "/api/v1/files/fil_1/content", 5),
        ];
        for (m, p, c) in cases {
            assert_eq!(documented_cost(&m, p), c, "{m} {p}");
        }
    }

    #[test]
    fn ids_are_escaped_as_one_segment() {
        assert_eq!(seg("fil_01J3K"), "fil_01J3K");
        assert_eq!(seg("a/b c"), "a%2Fb%20c");
        assert_eq!(seg("../x"), "..%2Fx");
    }

    #[test]
    fn config_debug_hides_tokens() {
        let c = ClientConfig::new(
            "http://127.0.0.1:1",
            TokenPair::with_refresh("sdat_topsecret", "rt_topsecret"),
        );
        let s = format!("{c:?}");
        assert!(!s.contains("topsecret"), "{s}");
        assert!(USER_AGENT.starts_with("scaidrive/"));
    }
}
