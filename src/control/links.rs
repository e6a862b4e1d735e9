//! The control API's link routes, used by `scaidrivectl link`, `links` and `unlink`:
//!
//! - `POST /v1/links` `{path, type, password?, expires_in_days?, expires_at?,
//!   max_downloads?, name?, regenerate?, wait_secs?}` → the link and whether it was
//!   created, reused or regenerated;
//! - `GET /v1/links?mirror=NAME&refresh=true` → stored links, refreshed from the server;
//! - `POST /v1/unlink` `{target, path?}` → revokes a link by id, or every live link of a path.
//!
//! A password arrives only over the 0600 socket, goes straight into a [`Secret`] (whose
//! `Debug` prints `***`) and on to the server; no response ever contains it. Errors carry a
//! one-line `error` and a machine-readable `code`.

use std::path::PathBuf;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Deserializer};
use serde_json::json;

use super::{ControlState, PROTOCOL};
use crate::links::{self, LinkError, LinkRequest};
use crate::remote::Secret;

pub fn routes() -> Router<ControlState> {
    Router::new()
        .route("/v1/links", get(list).post(create))
        .route("/v1/unlink", post(unlink))
}

fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(Secret::new))
}

/// `POST /v1/links` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkBody {
    /// Absolute local path inside a mirror root.
    pub path: PathBuf,
    #[serde(default, rename = "type")]
    pub link_type: Option<String>,
    #[serde(default, deserialize_with = "secret")]
    pub password: Option<Secret>,
    #[serde(default)]
    pub expires_in_days: Option<u32>,
    #[serde(default)]
    pub expires_at: Option<String>,
    #[serde(default)]
    pub max_downloads: Option<u64>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub regenerate: bool,
    /// How long to wait for the path to reach the remote (default 60 s).
    #[serde(default)]
    pub wait_secs: Option<u64>,
}

fn fail(e: &LinkError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_GATEWAY);
    (
        status,
        Json(json!({ "protocol": PROTOCOL, "error": e.to_string(), "code": e.code() })),
    )
        .into_response()
}

async fn create(State(state): State<ControlState>, Json(b): Json<LinkBody>) -> Response {
    match create_inner(&state, b).await {
        Ok(r) => r,
        Err(e) => fail(&e),
    }
}

async fn create_inner(state: &ControlState, b: LinkBody) -> Result<Response, LinkError> {
    let link_type = links::parse_link_type(b.link_type.as_deref().unwrap_or("download"))?;
    let req = LinkRequest {
        link_type: link_type.to_string(),
        password: b.password,
        expires_in_days: b.expires_in_days,
        expires_at: b.expires_at,
        max_downloads: b.max_downloads,
        custom_name: b.name,
        regenerate: b.regenerate,
    };
    req.validate()?;
    let manager = &state.links;
    let located = manager.locate(&b.path).await?;
    let name = located.config.display_name();
    let handle = state
        .mirrors
        .borrow()
        .iter()
        .find(|h| h.name == name)
        .cloned();
    let wait = b
        .wait_secs
        .map(Duration::from_secs)
        .unwrap_or(links::DEFAULT_WAIT);
    let target = manager
        .target_waiting(&located, handle.as_ref(), wait)
        .await?;
    let got = manager.ensure(&target, &req).await?;
    Ok(Json(json!({
        "protocol": PROTOCOL,
        "mirror": name,
        "outcome": got.outcome,
        "replaced": got.replaced,
        "reason": got.reason,
        "link": got.link,
    }))
    .into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub mirror: Option<String>,
    /// Ask the server for each link's status first (default true).
    #[serde(default)]
    pub refresh: Option<bool>,
}

async fn list(State(state): State<ControlState>, Query(q): Query<ListQuery>) -> Response {
    match state
        .links
        .list(q.mirror.as_deref(), q.refresh.unwrap_or(true))
        .await
    {
        Ok(v) => Json(json!({ "protocol": PROTOCOL, "links": v })).into_response(),
        Err(e) => fail(&e),
    }
}

/// `POST /v1/unlink` body: `target` is a link id or a path; `path` is that path made
/// absolute by the caller (whose working directory the daemon does not know).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnlinkBody {
    pub target: String,
    #[serde(default)]
    pub path: Option<PathBuf>,
}

async fn unlink(State(state): State<ControlState>, Json(b): Json<UnlinkBody>) -> Response {
    let manager = &state.links;
    let result = match manager.store().link(&b.target).await {
        Ok(Some(_)) => manager.revoke(&b.target).await.map(|l| vec![l]),
        Ok(None) => {
            let path = b.path.unwrap_or_else(|| PathBuf::from(&b.target));
            if path.is_absolute() {
                match manager.locate(&path).await {
                    Ok(located) => manager.revoke_path(&located).await,
                    // A path that no longer exists locally may still name stored links.
                    Err(LinkError::NoSuchPath(_)) => Err(LinkError::UnknownLink(b.target)),
                    Err(e) => Err(e),
                }
            } else {
                Err(LinkError::UnknownLink(b.target))
            }
        }
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(revoked) => Json(json!({ "protocol": PROTOCOL, "revoked": revoked })).into_response(),
        Err(e) => fail(&e),
    }
}
