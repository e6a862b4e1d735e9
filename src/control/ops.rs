//! Operator routes of the control API: the bandwidth limit (`GET`/`POST /v1/limit`).
//! A limit set here holds until the next reload (HUP) or restart, which go back to
//! `daemon.bandwidth_limit`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::protocol::{LimitRequest, LimitResponse, PROTOCOL, route};
use super::{ControlState, error};
use crate::remote::bandwidth::Schedule;

pub(super) fn routes() -> Router<ControlState> {
    Router::new().route(route::LIMIT, get(show).post(set))
}

async fn show(State(state): State<ControlState>) -> Response {
    Json(LimitResponse {
        protocol: PROTOCOL,
        bandwidth: state.bandwidth.snapshot().into(),
    })
    .into_response()
}

async fn set(State(state): State<ControlState>, Json(req): Json<LimitRequest>) -> Response {
    match Schedule::parse(&req.limit) {
        Ok(s) => {
            tracing::info!("bandwidth limit set to {s} until the next reload");
            state.bandwidth.set_override(s);
            show(State(state)).await
        }
        Err(e) => error(StatusCode::BAD_REQUEST, format!("limit: {e}")),
    }
}
