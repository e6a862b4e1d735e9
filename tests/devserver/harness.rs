//! Test harness: a real devserver on 127.0.0.1:0 in a temp dir (the shared
//! `support::Server`), and a reqwest client that talks to it over a real socket. Helpers
//! return [`Resp`] with the status, headers and parsed JSON so tests can assert on the
//! documented wire format.

// Shared by every test module; each uses a different subset.
#![allow(dead_code)]

use reqwest::Method;
use scaidrive::devserver::DevServerConfig;
use serde_json::{Value, json};

use crate::support::Server;
pub use crate::support::TOKEN;

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub server: Server,
    pub http: reqwest::Client,
    pub url: String,
    pub share: String,
    pub token: String,
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub bytes: Vec<u8>,
    pub json: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
    /// `error.code` of an enveloped error body.
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
    pub fn id(&self) -> String {
        self.json["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no id in {self:?}"))
            .to_string()
    }
    #[track_caller]
    pub fn expect(self, status: u16) -> Resp {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            String::from_utf8_lossy(&self.bytes)
        );
        self
    }
    #[track_caller]
    pub fn expect_err(self, status: u16, code: &str) -> Resp {
        assert_eq!(
            self.status,
            status,
            "unexpected status; body: {}",
            String::from_utf8_lossy(&self.bytes)
        );
        assert_eq!(
            self.code(),
            code,
            "unexpected code; body: {}",
            String::from_utf8_lossy(&self.bytes)
        );
        assert!(
            self.json["meta"]["request_id"]
                .as_str()
                .is_some_and(|r| r.starts_with("req_")),
            "no request id"
        );
        self
    }
}

impl Harness {
    pub async fn start() -> Harness {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(f: impl FnOnce(&mut DevServerConfig)) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Server::start_with(dir.path().join("data"), f).await;
        let url = server.url.clone();
        let share = server.share.clone();
        Harness {
            dir,
            server,
            http: reqwest::Client::new(),
            url,
            share,
            token: TOKEN.into(),
        }
    }

    /// Stops the server and starts a new one on the same data directory.
    pub async fn restart(&mut self) {
        self.server.restart().await;
        self.url = self.server.url.clone();
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}/api/v1{}", self.url, path)
    }

    pub async fn send(&self, rb: reqwest::RequestBuilder) -> Resp {
        let resp = rb.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body read").to_vec();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            bytes,
            json,
        }
    }

    pub fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.api(path))
            .bearer_auth(&self.token)
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.req(Method::GET, path)).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(self.req(Method::POST, path).json(&body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.send(self.req(Method::PATCH, path).json(&body)).await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.send(self.req(Method::DELETE, path)).await
    }

    /// Calls an admin route (`/_devserver/...`) and returns its JSON.
    pub async fn admin(&self, method: Method, path: &str, body: Value) -> Value {
        self.server.admin(method, path, body).await
    }

    /// Creates a folder (parent None = share root) and returns its id.
    pub async fn mkdir(&self, parent: Option<&str>, name: &str) -> String {
        self.post(
            "/folders",
            json!({ "share_id": self.share, "name": name, "parent_id": parent }),
        )
        .await
        .expect(201)
        .id()
    }

    /// Multipart upload with an explicit `name` field; returns the raw response.
    pub async fn upload(&self, folder: Option<&str>, name: &str, data: Vec<u8>) -> Resp {
        let mut form = reqwest::multipart::Form::new()
            .text("share_id", self.share.clone())
            .text("name", name.to_string());
        if let Some(f) = folder {
            form = form.text("folder_id", f.to_string());
        }
        form = form.part(
            "file",
            reqwest::multipart::Part::bytes(data).file_name(name.to_string()),
        );
        self.send(self.req(Method::POST, "/files").multipart(form))
            .await
    }

    /// Creates a user with `role` on the default share and returns (user id, token).
    pub async fn user_with_role(&self, role: &str) -> (String, String) {
        let user = self
            .admin(Method::POST, "/users", json!({ "name": role }))
            .await;
        let uid = user["id"].as_str().unwrap().to_string();
        self.admin(
            Method::POST,
            "/members",
            json!({ "share_id": self.share, "user_id": uid, "role": role }),
        )
        .await;
        let tok = self
            .admin(Method::POST, "/tokens", json!({ "user_id": uid }))
            .await;
        (uid, tok["access_token"].as_str().unwrap().to_string())
    }

    /// The same harness speaking with another token.
    pub fn as_token(&self, token: &str) -> HarnessView<'_> {
        HarnessView {
            h: self,
            token: token.to_string(),
        }
    }

    /// Request counts by route from the admin stats.
    pub async fn stats(&self) -> Value {
        self.server.stats().await
    }
}

/// Requests made with a different bearer token.
pub struct HarnessView<'a> {
    pub h: &'a Harness,
    pub token: String,
}

impl HarnessView<'_> {
    pub fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.h
            .http
            .request(method, self.h.api(path))
            .bearer_auth(&self.token)
    }
    pub async fn get(&self, path: &str) -> Resp {
        self.h.send(self.req(Method::GET, path)).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.h.send(self.req(Method::POST, path).json(&body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.h.send(self.req(Method::PATCH, path).json(&body)).await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.h.send(self.req(Method::DELETE, path)).await
    }
}
