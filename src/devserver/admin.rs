//! Loopback-only admin routes under `/_devserver`: fixtures (users, tokens, shares,
//! members, tenant link policy), run-time settings and faults, the clock, and request
//! statistics. Not part of the ScaiDrive API; tests and benchmarks steer the server here.
//!
//! | route | body | effect |
//! | --- | --- | --- |
//! | `GET /_devserver/info` | | url, default share/user/tenant ids |
//! | `GET`/`PATCH /_devserver/settings` | partial [`Settings`] | read / change limits, faults, error shape |
//! | `POST /_devserver/faults` | [`Faults`] | replace the fault set |
//! | `POST /_devserver/clock` | `{"advance_secs": N}` | move the server clock |
//! | `GET /_devserver/stats`, `POST /_devserver/stats/reset` | | request counts by route and status |
//! | `POST /_devserver/users` | `{"name","email","is_admin","suspended"}` | new user in the default tenant |
//! | `POST /_devserver/tokens` | `{"user_id","ttl_secs","scopes","refresh"}` | new access (+ refresh) token |
//! | `POST /_devserver/tokens/expire` | `{"user_id"?}` | expire access tokens now |
//! | `POST /_devserver/shares` | `{"name","owner_id","quota_bytes"}` | new share (owner membership) |
//! | `PATCH /_devserver/shares/{id}` | `{"quota_bytes"}` | change quota (null = unlimited) |
//! | `POST /_devserver/members` | `{"share_id","user_id","role"}` | add or change a member |
//! | `POST /_devserver/changelog/truncate` | `{"through"?}` | drop the change log up to a position (default: all); older cursors get 410 `CURSOR_EXPIRED` |
//! | `PATCH /_devserver/tenant` | `{"links_disabled","require_link_password","max_link_expiry_days"}` | link policy |

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use rusqlite::params;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult, ErrorShape, Json, Path};
use super::state::{AppState, Faults};
use super::util::{iso, new_id};
use super::{Peer, auth};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_devserver/info", get(info))
        .route(
            "/_devserver/settings",
            get(get_settings).patch(patch_settings),
        )
        .route("/_devserver/faults", post(set_faults))
        .route("/_devserver/clock", post(clock))
        .route("/_devserver/stats", get(stats))
        .route("/_devserver/stats/reset", post(reset_stats))
        .route("/_devserver/users", post(create_user))
        .route("/_devserver/tokens", post(create_token))
        .route("/_devserver/tokens/expire", post(expire_tokens))
        .route("/_devserver/shares", post(create_share))
        .route("/_devserver/shares/{share_id}", patch(patch_share))
        .route("/_devserver/members", post(set_member))
        .route("/_devserver/tenant", patch(patch_tenant))
        .route("/_devserver/changelog/truncate", post(truncate_changelog))
        .route_layer(middleware::from_fn(loopback_only))
}

async fn loopback_only(req: Request, next: Next) -> Response {
    let ok = req
        .extensions()
        .get::<Peer>()
        .is_some_and(|p| p.0.ip().is_loopback());
    if !ok {
        return ApiError::denied("admin routes are loopback-only").into_response();
    }
    next.run(req).await
}

fn fixture(conn: &rusqlite::Connection) -> ApiResult<Value> {
    let v: String = conn.query_row("SELECT value FROM kv WHERE key = 'fixture'", [], |r| {
        r.get(0)
    })?;
    serde_json::from_str(&v).map_err(|e| ApiError::internal(e.to_string()))
}

async fn info(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let url = state.public_url.clone();
    state
        .db
        .call(move |conn| {
            let f = fixture(conn)?;
            Ok(Json(json!({ "url": url, "share_id": f["share"], "user_id": f["user"], "tenant_id": f["tenant"] })))
        })
        .await
}

async fn get_settings(State(state): State<AppState>) -> Json<Value> {
    Json(serde_json::to_value(state.settings()).unwrap_or_default())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsPatch {
    rate_limit: Option<u64>,
    user_rate_limit: Option<u64>,
    tenant_rate_limit: Option<u64>,
    max_file_size: Option<u64>,
    max_request_size: Option<u64>,
    session_ttl_secs: Option<u64>,
    access_token_ttl_secs: Option<u64>,
    error_shape: Option<ErrorShape>,
    faults: Option<Faults>,
}

async fn patch_settings(
    State(state): State<AppState>,
    Json(p): Json<SettingsPatch>,
) -> Json<Value> {
    state.update_settings(|s| {
        if let Some(v) = p.rate_limit {
            s.rate_limit = v;
        }
        if let Some(v) = p.user_rate_limit {
            s.user_rate_limit = v;
        }
        if let Some(v) = p.tenant_rate_limit {
            s.tenant_rate_limit = v;
        }
        if let Some(v) = p.max_file_size {
            s.max_file_size = v;
        }
        if let Some(v) = p.max_request_size {
            s.max_request_size = v;
        }
        if let Some(v) = p.session_ttl_secs {
            s.session_ttl_secs = v;
        }
        if let Some(v) = p.access_token_ttl_secs {
            s.access_token_ttl_secs = v;
        }
        if let Some(v) = p.error_shape {
            s.error_shape = v;
        }
        if let Some(v) = p.faults {
            s.faults = v;
        }
    });
    get_settings(State(state)).await
}

async fn set_faults(State(state): State<AppState>, Json(f): Json<Faults>) -> Json<Value> {
    state.update_settings(|s| s.faults = f);
    get_settings(State(state)).await
}

#[derive(Deserialize)]
struct ClockBody {
    advance_secs: i64,
}

async fn clock(State(state): State<AppState>, Json(b): Json<ClockBody>) -> Json<Value> {
    state.update_settings(|s| s.clock_offset_secs += b.advance_secs);
    Json(json!({ "now": iso(state.now()), "offset_secs": state.settings().clock_offset_secs }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TruncateBody {
    through: Option<i64>,
}

async fn truncate_changelog(
    State(state): State<AppState>,
    Json(b): Json<TruncateBody>,
) -> ApiResult<Json<Value>> {
    state
        .db
        .tx(move |tx| {
            let floor = super::sync::truncate_log(tx, b.through)?;
            Ok(Json(json!({ "floor": floor })))
        })
        .await
}

async fn stats(State(state): State<AppState>) -> Json<Value> {
    Json(state.stats.snapshot())
}

async fn reset_stats(State(state): State<AppState>) -> StatusCode {
    state.stats.reset();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct UserBody {
    name: Option<String>,
    email: Option<String>,
    #[serde(default)]
    is_admin: bool,
    #[serde(default)]
    suspended: bool,
}

async fn create_user(
    State(state): State<AppState>,
    Json(b): Json<UserBody>,
) -> ApiResult<impl IntoResponse> {
    state
        .db
        .tx(move |tx| {
            let f = fixture(tx)?;
            let id = new_id("usr");
            let name = b.name.unwrap_or_else(|| "Test User".into());
            let email = b.email.unwrap_or_else(|| format!("{}@example.invalid", id.to_lowercase()));
            tx.execute(
                "INSERT INTO users (id, tenant_id, email, name, is_admin, suspended) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, f["tenant"].as_str(), email, name, b.is_admin, b.suspended],
            )?;
            Ok((StatusCode::CREATED, Json(json!({ "id": id, "name": name, "email": email }))))
        })
        .await
}

#[derive(Deserialize)]
struct TokenBody {
    user_id: Option<String>,
    ttl_secs: Option<i64>,
    #[serde(default)]
    scopes: String,
    #[serde(default)]
    refresh: bool,
}

async fn create_token(
    State(state): State<AppState>,
    Json(b): Json<TokenBody>,
) -> ApiResult<impl IntoResponse> {
    let now = state.now_unix();
    state
        .db
        .tx(move |tx| {
            let user = match b.user_id {
                Some(u) => u,
                None => fixture(tx)?["user"].as_str().unwrap_or_default().to_string(),
            };
            let (access, refresh) = auth::issue_tokens(tx, &user, &b.scopes, b.ttl_secs, b.refresh, now)?;
            Ok((
                StatusCode::CREATED,
                Json(json!({ "access_token": access, "refresh_token": refresh, "expires_in": b.ttl_secs,
                             "user_id": user })),
            ))
        })
        .await
}

#[derive(Deserialize, Default)]
struct ExpireBody {
    user_id: Option<String>,
}

async fn expire_tokens(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let b: ExpireBody = if body.is_empty() {
        ExpireBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::validation(&["body"], e.to_string()))?
    };
    let now = state.now_unix();
    state
        .db
        .call(move |conn| {
            let n = match b.user_id {
                Some(u) => conn.execute(
                    "UPDATE tokens SET expires_at = ?1 WHERE kind = 'access' AND user_id = ?2",
                    params![now, u],
                )?,
                None => conn.execute(
                    "UPDATE tokens SET expires_at = ?1 WHERE kind = 'access'",
                    [now],
                )?,
            };
            Ok(Json(json!({ "expired": n })))
        })
        .await
}

#[derive(Deserialize)]
struct ShareBody {
    name: String,
    owner_id: Option<String>,
    quota_bytes: Option<i64>,
}

async fn create_share(
    State(state): State<AppState>,
    Json(b): Json<ShareBody>,
) -> ApiResult<impl IntoResponse> {
    let now = iso(state.now());
    state
        .db
        .tx(move |tx| {
            let f = fixture(tx)?;
            let owner = b.owner_id.unwrap_or_else(|| f["user"].as_str().unwrap_or_default().to_string());
            let id = new_id("shr");
            tx.execute(
                "INSERT INTO shares (id, tenant_id, name, share_type, owner_id, quota_bytes, created_at, modified_at) \
                 VALUES (?1, ?2, ?3, 'central', ?4, ?5, ?6, ?6)",
                params![id, f["tenant"].as_str(), b.name, owner, b.quota_bytes, now],
            )?;
            tx.execute("INSERT INTO members (share_id, user_id, role) VALUES (?1, ?2, 'owner')", params![id, owner])?;
            Ok((StatusCode::CREATED, Json(super::users::share_json(tx, &id)?)))
        })
        .await
}

#[derive(Deserialize)]
struct SharePatch {
    #[serde(default, deserialize_with = "super::util::present")]
    quota_bytes: Option<Option<i64>>,
}

async fn patch_share(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(b): Json<SharePatch>,
) -> ApiResult<Json<Value>> {
    state
        .db
        .call(move |conn| {
            if let Some(q) = b.quota_bytes
                && conn.execute(
                    "UPDATE shares SET quota_bytes = ?2 WHERE id = ?1",
                    params![id, q],
                )? == 0
            {
                return Err(ApiError::not_found(format!("share {id}")));
            }
            Ok(Json(super::users::share_json(conn, &id)?))
        })
        .await
}

#[derive(Deserialize)]
struct MemberBody {
    share_id: String,
    user_id: String,
    role: String,
}

async fn set_member(
    State(state): State<AppState>,
    Json(b): Json<MemberBody>,
) -> ApiResult<Json<Value>> {
    if !matches!(
        b.role.as_str(),
        "owner" | "admin" | "contributor" | "reader"
    ) {
        return Err(ApiError::validation(
            &["body", "role"],
            "role must be owner, admin, contributor or reader",
        ));
    }
    state
        .db
        .call(move |conn| {
            conn.execute(
                "INSERT INTO members (share_id, user_id, role) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (share_id, user_id) DO UPDATE SET role = excluded.role",
                params![b.share_id, b.user_id, b.role],
            )?;
            Ok(Json(
                json!({ "share_id": b.share_id, "user_id": b.user_id, "role": b.role }),
            ))
        })
        .await
}

async fn patch_tenant(
    State(state): State<AppState>,
    Json(patch): Json<Value>,
) -> ApiResult<Json<Value>> {
    let Value::Object(patch) = patch else {
        return Err(ApiError::validation(&["body"], "expected an object"));
    };
    for k in patch.keys() {
        if !matches!(
            k.as_str(),
            "links_disabled" | "require_link_password" | "max_link_expiry_days"
        ) {
            return Err(ApiError::validation(&["body", k], "unknown tenant setting"));
        }
    }
    state
        .db
        .call(move |conn| {
            let f = fixture(conn)?;
            let tenant = f["tenant"].as_str().unwrap_or_default().to_string();
            let cur: String = conn.query_row(
                "SELECT settings FROM tenants WHERE id = ?1",
                [&tenant],
                |r| r.get(0),
            )?;
            let mut cur: Value = serde_json::from_str(&cur).unwrap_or(json!({}));
            for (k, v) in patch {
                cur[k] = v;
            }
            conn.execute(
                "UPDATE tenants SET settings = ?2 WHERE id = ?1",
                params![tenant, cur.to_string()],
            )?;
            Ok(Json(cur))
        })
        .await
}
