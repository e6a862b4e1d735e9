//! Bearer authentication, rate limiting and the token endpoint.
//!
//! The middleware resolves `Authorization: Bearer` against the token table (hashes only),
//! charges the route's documented cost units to the token's sliding window, sends the
//! `X-RateLimit-*` headers on every authenticated response, and answers 429 with
//! `Retry-After` and the enveloped body when the budget is spent.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Form, Router, routing::post};
use rusqlite::{OptionalExtension, params};
use serde::Deserialize;
use serde_json::json;

use super::error::{ApiError, ApiResult, Json};
use super::model::Caller;
use super::state::AppState;
use super::util::{random_token, sha256_hex};

/// Documented cost units: metadata GET 1, list 2, write 2, upload/download/chunk 5.
pub fn cost_of(method: &Method, path: &str) -> u64 {
    let p = path.trim_start_matches("/api/v1");
    let is_transfer = (method == Method::PUT
        && p.starts_with("/uploads/")
        && p.contains("/chunks/"))
        || (method == Method::POST && p == "/files")
        || (method == Method::GET && (p.ends_with("/content") || p.starts_with("/sync/download/")));
    if is_transfer {
        return 5;
    }
    if p.starts_with("/search") {
        return 10;
    }
    if method == Method::GET {
        let is_list = p.ends_with("/children")
            || p.ends_with("/versions")
            || p == "/users/me/shares"
            || p == "/shares"
            || p == "/external/links"
            || p == "/sync/changes"
            || p == "/sync/devices"
            || p == "/sync/conflicts";
        return if is_list { 2 } else { 1 };
    }
    2
}

/// Looks up an access token; errors are the documented 401/403s.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> ApiResult<(Caller, String)> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "AUTH_TOKEN_INVALID",
                "missing bearer token",
            )
        })?;
    let hash = sha256_hex(token.as_bytes());
    let now = state.now_unix();
    let h = hash.clone();
    let caller = state
        .db
        .call(move |conn| {
            let row: Option<(String, String, Option<i64>, String, bool, bool)> = conn
                .query_row(
                    "SELECT t.user_id, t.scopes, t.expires_at, u.tenant_id, u.is_admin, u.suspended \
                     FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = ?1 AND t.kind = 'access'",
                    [&h],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
                )
                .optional()?;
            let Some((user_id, scopes, expires_at, tenant_id, is_admin, suspended)) = row else {
                return Err(ApiError::new(StatusCode::UNAUTHORIZED, "AUTH_TOKEN_INVALID", "invalid token"));
            };
            if expires_at.is_some_and(|e| e <= now) {
                return Err(ApiError::new(StatusCode::UNAUTHORIZED, "AUTH_TOKEN_EXPIRED", "token expired"));
            }
            if suspended {
                return Err(ApiError::new(StatusCode::FORBIDDEN, "AUTHZ_USER_SUSPENDED", "user is suspended"));
            }
            let scopes = scopes.split_whitespace().map(str::to_string).collect();
            Ok(Caller { user_id, tenant_id, is_admin, scopes })
        })
        .await?;
    Ok((caller, hash))
}

fn set_rate_headers(resp: &mut Response, limit: u64, remaining: u64, reset: i64) {
    let h = resp.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from(limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    h.insert("x-ratelimit-reset", HeaderValue::from(reset));
}

/// Route layer for every authenticated API route.
pub async fn require_auth(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let (caller, token_hash) = match authenticate(&state, req.headers()).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let cost = cost_of(req.method(), req.uri().path());
    let settings = state.settings();
    let limit = if settings.rate_limit == 0 {
        u64::MAX / 4
    } else {
        settings.rate_limit
    };
    // The token's, the user's (all their tokens) and the tenant's budgets: a request
    // goes only if all three allow it, and is then charged to all three. A refusal names
    // the budget that keeps it waiting longest (the narrowest of equals); the headers
    // stay the token's, as documented.
    let (decision, refused) = {
        let mut limiter = state.limiter.lock().unwrap_or_else(|e| e.into_inner());
        let (now, now_unix) = (Instant::now(), state.now_unix());
        let off = |l: u64| {
            if settings.rate_limit == 0 || l == 0 {
                u64::MAX / 4
            } else {
                l
            }
        };
        let budgets = [
            ("token", token_hash.clone(), limit),
            (
                "user",
                format!("user:{}", caller.user_id),
                off(settings.user_rate_limit),
            ),
            (
                "tenant",
                format!("tenant:{}", caller.tenant_id),
                off(settings.tenant_rate_limit),
            ),
        ];
        let decisions: Vec<_> = budgets
            .iter()
            .map(|(_, key, l)| limiter.peek(key, cost, *l, now, now_unix))
            .collect();
        let mut refused: Option<(&str, u64, u64)> = None;
        for ((dim, _, l), d) in budgets.iter().zip(&decisions) {
            if let Some(wait) = d.retry_after
                && refused.is_none_or(|(_, w, _)| wait > w)
            {
                refused = Some((dim, wait, *l));
            }
        }
        if refused.is_none() {
            for (_, key, _) in &budgets {
                limiter.charge(key, cost, now);
            }
        }
        let token = decisions.into_iter().next().expect("three budgets");
        (token, refused.map(|(d, w, l)| (d.to_string(), w, l)))
    };
    let shown_limit = if settings.rate_limit == 0 { 0 } else { limit };
    if let Some((dimension, wait, dim_limit)) = refused {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            format!("rate limit exceeded ({dimension} budget)"),
        );
        e.retry_after = Some(wait);
        e.details =
            Some(json!({ "dimension": dimension, "limit": dim_limit, "window_seconds": 60 }));
        let mut resp = e.into_response();
        set_rate_headers(
            &mut resp,
            shown_limit,
            decision.remaining,
            decision.reset_unix,
        );
        return resp;
    }
    state
        .stats
        .units
        .fetch_add(cost, std::sync::atomic::Ordering::Relaxed);
    req.extensions_mut().insert(caller);
    let mut resp = next.run(req).await;
    if settings.rate_limit > 0 {
        set_rate_headers(&mut resp, limit, decision.remaining, decision.reset_unix);
    }
    resp
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/token", post(token))
        .route("/api/v1/auth/config", axum::routing::get(auth_config))
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    refresh_token: Option<String>,
}

/// Issues an access token (and, if asked, a refresh token) for `user_id`; returns the
/// plain tokens. Only hashes are stored.
pub fn issue_tokens(
    conn: &rusqlite::Connection,
    user_id: &str,
    scopes: &str,
    access_ttl: Option<i64>,
    with_refresh: bool,
    now: i64,
) -> ApiResult<(String, Option<String>)> {
    let access = format!("sdat_{}", random_token(40));
    conn.execute(
        "INSERT INTO tokens (hash, kind, user_id, scopes, expires_at, created_at) VALUES (?1, 'access', ?2, ?3, ?4, ?5)",
        params![sha256_hex(access.as_bytes()), user_id, scopes, access_ttl.map(|t| now + t), now],
    )?;
    let refresh = if with_refresh {
        let rt = format!("rt_{}", random_token(40));
        conn.execute(
            "INSERT INTO tokens (hash, kind, user_id, scopes, expires_at, created_at) VALUES (?1, 'refresh', ?2, ?3, NULL, ?4)",
            params![sha256_hex(rt.as_bytes()), user_id, scopes, now],
        )?;
        Some(rt)
    } else {
        None
    };
    Ok((access, refresh))
}

async fn token(
    State(state): State<AppState>,
    form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> ApiResult<impl IntoResponse> {
    let Form(form) = form.map_err(|e| ApiError::validation(&["body"], e.body_text()))?;
    let invalid = |msg: &str| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "AUTH_TOKEN_INVALID",
            msg.to_string(),
        )
    };
    if form.grant_type != "refresh_token" {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "AUTH_TOKEN_INVALID",
            format!(
                "unsupported grant_type {:?} on this server",
                form.grant_type
            ),
        ));
    }
    let rt = form
        .refresh_token
        .ok_or_else(|| ApiError::validation(&["body", "refresh_token"], "field required"))?;
    let hash = sha256_hex(rt.as_bytes());
    let now = state.now_unix();
    let ttl = state.settings().access_token_ttl_secs as i64;
    let (access, refresh) = state
        .db
        .tx(move |tx| {
            let row: Option<(String, String, bool)> = tx
                .query_row(
                    "SELECT user_id, scopes, used FROM tokens WHERE hash = ?1 AND kind = 'refresh'",
                    [&hash],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let Some((user, scopes, used)) = row else {
                return Err(invalid("unknown refresh token"));
            };
            if used {
                return Err(invalid("refresh token already used"));
            }
            tx.execute("UPDATE tokens SET used = 1 WHERE hash = ?1", [&hash])?;
            issue_tokens(tx, &user, &scopes, Some(ttl), true, now)
        })
        .await?;
    Ok(Json(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ttl,
        "refresh_token": refresh,
        "id_token": serde_json::Value::Null,
    })))
}

async fn auth_config(State(state): State<AppState>) -> impl IntoResponse {
    Json(json!({
        "authorize_url": format!("{}/oauth2/authorize", state.public_url),
        "token_url": format!("{}/api/v1/auth/token", state.public_url),
        "client_id": "scaidrive-desktop",
        "desktop_callback_url": format!("{}/api/v1/auth/callback", state.public_url),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_costs() {
        let cases = [
            (Method::GET, "/api/v1/files/fil_1", 1),
            (Method::GET, "/api/v1/folders/root/children", 2),
            (Method::PATCH, "/api/v1/files/fil_1", 2),
            (Method::POST, "/api/v1/folders", 2),
            (Method::POST, "/api/v1/files", 5),
            (Method::GET, "/api/v1/files/fil_1/content", 5),
            (Method::PUT, "/api/v1/uploads/ups_1/chunks/0", 5),
            (Method::GET, "/api/v1/sync/download/fil_1", 5),
            (Method::GET, "/api/v1/users/me/shares", 2),
        ];
        for (m, p, c) in cases {
            assert_eq!(cost_of(&m, p), c, "{m} {p}");
        }
    }
}
