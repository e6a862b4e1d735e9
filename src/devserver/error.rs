//! The devserver's error type and the two documented error body shapes.
//!
//! Handlers return [`ApiError`]; it becomes a response carrying the error in an extension,
//! and the outer middleware renders the body in the shape the server is configured for
//! (`{"detail": ...}` or the `{"status","error","meta"}` envelope) with the request id.
//! Rendering late keeps the shape switchable at run time without touching handlers.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// Which documented error body shape the server emits.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum ErrorShape {
    /// `{"status":"error","error":{"code","message",...},"meta":{"request_id"}}` (the seed's).
    Envelope,
    /// `{"detail": "..."}` (FastAPI's), except 429 which the rate-limit page documents enveloped.
    Detail,
}

#[derive(Clone, Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// FastAPI-style validation items (`loc`, `msg`, `type`) for 422, or extra details.
    pub details: Option<Value>,
    pub retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("{what} not found"),
        )
    }
    pub fn deleted(what: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::GONE,
            "RESOURCE_DELETED",
            format!("{what} is deleted"),
        )
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "NAME_CONFLICT", message)
    }
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "AUTHZ_PERMISSION_DENIED", message)
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", message)
    }
    /// A 422 for one failing field, in FastAPI's shape.
    pub fn validation(loc: &[&str], msg: impl Into<String>) -> Self {
        let msg = msg.into();
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
            msg.clone(),
        );
        e.details = Some(json!([{ "loc": loc, "msg": msg, "type": "value_error" }]));
        e
    }
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// The JSON body for this error in `shape`.
    pub fn body(&self, shape: ErrorShape, request_id: &str) -> Value {
        let detail_shape =
            shape == ErrorShape::Detail && self.status != StatusCode::TOO_MANY_REQUESTS;
        if detail_shape {
            if self.status == StatusCode::UNPROCESSABLE_ENTITY
                && let Some(items @ Value::Array(_)) = &self.details
            {
                return json!({ "detail": items });
            }
            return json!({ "detail": self.message });
        }
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(d) = &self.details {
            error["details"] = d.clone();
        }
        if let Some(r) = self.retry_after {
            error["retry_after"] = json!(r);
        }
        json!({ "status": "error", "error": error, "meta": { "request_id": request_id } })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = self.status.into_response();
        if let Some(r) = self.retry_after {
            resp.headers_mut().insert("retry-after", r.into());
        }
        resp.extensions_mut().insert(self);
        resp
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(f, _) = &e
            && f.code == rusqlite::ErrorCode::ConstraintViolation
        {
            return ApiError::conflict(format!("constraint violated: {e}"));
        }
        ApiError::internal(format!("database error: {e}"))
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        ApiError::internal(format!("storage error: {e}"))
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        ApiError::validation(&["body"], r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::validation(&["query"], r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::bad_request("INVALID_REQUEST", r.body_text())
    }
}

/// `axum::Json` whose rejection is a documented 422 body.
#[derive(axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Query` whose rejection is a documented 422 body.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// `axum::extract::Path` whose rejection is a 400.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);
