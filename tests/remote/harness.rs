//! Test harness: a devserver in a temp dir, clients configured for quick retries, and
//! helpers for the admin routes (faults, settings, tokens, stats).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use scaidrive::devserver::{self, DevServerConfig, RunningServer};
use scaidrive::remote::{Client, ClientConfig, PersistFuture, RetryPolicy, TokenPair, TokenSink};
use serde_json::{Value, json};

pub const TOKEN: &str = "test-token";

pub struct Env {
    pub dir: tempfile::TempDir,
    pub server: RunningServer,
    pub url: String,
    pub share: String,
    http: reqwest::Client,
}

impl Env {
    pub async fn start() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = DevServerConfig::for_tests(dir.path().join("data"));
        let server = devserver::start(config).await.expect("devserver starts");
        let url = server.url().to_string();
        let share = server.share_id().to_string();
        Env {
            dir,
            server,
            url,
            share,
            http: reqwest::Client::new(),
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
        let mut rb = self
            .http
            .request(method, format!("{}/_devserver{path}", self.url));
        if !body.is_null() {
            rb = rb.json(&body);
        }
        let resp = rb.send().await.expect("admin request");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "admin {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    pub async fn faults(&self, faults: Value) {
        self.admin(Method::POST, "/faults", faults).await;
    }

    pub async fn settings(&self, patch: Value) {
        self.admin(Method::PATCH, "/settings", patch).await;
    }

    pub async fn reset_stats(&self) {
        self.admin(Method::POST, "/stats/reset", Value::Null).await;
    }

    pub async fn stats(&self) -> Value {
        self.admin(Method::GET, "/stats", Value::Null).await
    }

    /// Requests recorded for `route` (e.g. `"POST /api/v1/files"`), any status.
    pub async fn count(&self, route: &str) -> u64 {
        self.stats().await["by_route"][route].as_u64().unwrap_or(0)
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

impl Drop for Env {
    fn drop(&mut self) {
        self.server.shutdown_token().cancel();
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
        let p = self.dir.path().join("local").join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
        p
    }

    /// Moves the server clock forward.
    pub async fn advance_clock(&self, secs: i64) {
        self.admin(Method::POST, "/clock", json!({ "advance_secs": secs }))
            .await;
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
