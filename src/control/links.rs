//! The control API's link routes, used by `scaidrivectl link`, `links` and `unlink`:
//!
//! - `POST /v1/links` `{path, type, password?, expires_in_days?, expires_at?,
//!   max_downloads?, name?, regenerate?, wait_secs?}` → the link and whether it was
//!   created, reused or regenerated;
//! - `GET /v1/links?mirror=NAME&refresh=true` → stored links, refreshed from the server;
//! - `POST /v1/unlink` `{target, path?}` → revokes a link by id, or every live link of a path.
//!
//! A password arrives only over the 0600 socket, goes straight into a
//! [`Secret`](crate::remote::Secret) (whose `Debug` prints `***`) and on to the server; no
//! response ever contains it. Errors carry a one-line `error` and a machine-readable `code`.
//! The bodies and answers are typed in [`super::protocol`].

use std::path::PathBuf;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::protocol::{ErrorResponse, route};
pub use super::protocol::{
    LinkBody, LinkResponse, LinksQuery, LinksResponse, UnlinkBody, UnlinkResponse,
};
use super::{ControlState, PROTOCOL};
use crate::links::{self, LinkError, LinkRequest};

pub fn routes() -> Router<ControlState> {
    Router::new()
        .route(route::LINKS, get(list).post(create))
        .route(route::UNLINK, post(unlink))
}

fn fail(e: &LinkError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_GATEWAY);
    (
        status,
        Json(ErrorResponse {
            protocol: PROTOCOL,
            error: e.to_string(),
            code: Some(e.code().to_string()),
        }),
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
    Ok(Json(LinkResponse {
        protocol: PROTOCOL,
        mirror: name,
        outcome: got.outcome,
        replaced: got.replaced,
        reason: got.reason,
        link: got.link.into(),
    })
    .into_response())
}

async fn list(State(state): State<ControlState>, Query(q): Query<LinksQuery>) -> Response {
    match state
        .links
        .list(q.mirror.as_deref(), q.refresh.unwrap_or(true))
        .await
    {
        Ok(v) => Json(LinksResponse {
            protocol: PROTOCOL,
            links: v.into_iter().map(Into::into).collect(),
        })
        .into_response(),
        Err(e) => fail(&e),
    }
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
        Ok(revoked) => Json(UnlinkResponse {
            protocol: PROTOCOL,
            revoked: revoked.into_iter().map(Into::into).collect(),
        })
        .into_response(),
        Err(e) => fail(&e),
    }
}
