//! Test harness: a devserver in a temp dir (the shared `support::Server`), clients
//! configured for quick retries, and helpers for the admin routes (faults, settings,
//! tokens, stats).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use scaidrive::remote::{Client, ClientConfig, PersistFuture, RetryPolicy, TokenPair, TokenSink};
use serde_json::{Value, json};

use crate::support::Server;
pub use crate::support::TOKEN;

pub struct Env {
    pub dir: tempfile::TempDir,
    pub server: Server,
    pub url: String,
    pub share: String,
}

impl Env {
    pub async fn start() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Server::start(dir.path().join("data")).await;
        let url = server.url.clone();
        let share = server.share.clone();
        Env {
            dir,
            server,
            url,
            share,
        }
    }

    /// Retries fast enough for tests; everything else as in production.
    pub fn config(&self, tokens: TokenPair) -> ClientConfig {
        let mut c = ClientConfig::new(self.url.clone(), tokens);
        c.retry = RetryPolicy {
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            ..RetryPolicy::default()
        };
        c
    }

    pub fn client(&self) -> Client {
        Client::new(self.config(TokenPair::bearer(TOKEN))).expect("client builds")
    }

    pub fn client_with(&self, f: impl FnOnce(&mut ClientConfig)) -> Client {
        let mut c = self.config(TokenPair::bearer(TOKEN));
        f(&mut c);
        Client::new(c).expect("client builds")
    }

    /// Calls an admin route (`/_devserver/...`) and returns its JSON.
    pub async fn admin(&self, method: Method, path: &str, body: Value) -> Value {
        self.server.admin(method, path, body).await
    }

    pub async fn faults(&self, faults: Value) {
        self.server.faults(faults).await;
    }

    pub async fn settings(&self, patch: Value) {
        self.server.settings(patch).await;
    }

    pub async fn reset_stats(&self) {
        self.server.reset_stats().await;
    }

    pub async fn stats(&self) -> Value {
        self.server.stats().await
    }

    /// Requests recorded for `route` (e.g. `"POST /api/v1/files"`), any status.
    pub async fn count(&self, route: &str) -> u64 {
        self.server.count(route).await
    }

    /// A fresh access token with a refresh token, valid for `ttl_secs`.
    pub async fn token_pair(&self, ttl_secs: i64) -> TokenPair {
        let t = self
            .admin(
                Method::POST,
                "/tokens",
                json!({ "ttl_secs": ttl_secs, "refresh": true }),
            )
            .await;
        TokenPair::with_refresh(
            t["access_token"].as_str().expect("access token"),
            t["refresh_token"].as_str().expect("refresh token"),
        )
    }

    /// Expires every access token now (the static test token too).
    pub async fn expire_tokens(&self) {
        self.admin(Method::POST, "/tokens/expire", Value::Null)
            .await;
    }
}

/// A token sink that remembers every pair it was asked to persist.
#[derive(Default)]
pub struct RecordingSink {
    pub pairs: Mutex<Vec<TokenPair>>,
}

impl RecordingSink {
    pub fn new() -> Arc<RecordingSink> {
        Arc::new(RecordingSink::default())
    }
    pub fn persisted(&self) -> Vec<TokenPair> {
        self.pairs.lock().unwrap().clone()
    }
}

impl TokenSink for RecordingSink {
    fn persist<'a>(&'a self, pair: &'a TokenPair) -> PersistFuture<'a> {
        Box::pin(async move {
            self.pairs.lock().unwrap().push(pair.clone());
            Ok(())
        })
    }
}

/// API requests (not admin routes) in a stats snapshot.
pub fn api_total(stats: &Value) -> u64 {
    stats["by_route"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.contains(" /api/"))
                .map(|(_, v)| v.as_u64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

/// Responses with `status` in a stats snapshot (admin routes included).
pub fn with_status(stats: &Value, status: u16) -> u64 {
    stats["by_status"][status.to_string()].as_u64().unwrap_or(0)
}

impl Env {
    /// Writes `data` to a file in the test's temp dir and returns its path.
    pub fn write(&self, name: &str, data: &[u8]) -> std::path::PathBuf {
        let local = self.dir.path().join("local");
        crate::support::write_file(&local, name, data);
        local.join(name)
    }

    /// Moves the server clock forward.
    pub async fn advance_clock(&self, secs: i64) {
        self.server.advance_clock(secs).await;
    }
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut v = vec![0u8; n];
    rand::rng().fill_bytes(&mut v);
    v
}

pub fn sha_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}
