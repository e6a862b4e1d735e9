//! Health, current user, the caller's shares and share metadata.

use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Router};
use rusqlite::params;
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult, Json, Path, Query};
use super::model::{self, Caller, READ};
use super::state::AppState;

pub fn public_routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/ready", get(ready))
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/users/me", get(me))
        .route("/api/v1/users/me/shares", get(my_shares))
        .route("/api/v1/users/me/quota", get(my_quota))
        .route("/api/v1/shares/{share_id}", get(share))
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "healthy", "version": env!("CARGO_PKG_VERSION") }))
}

async fn ready(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    state
        .db
        .call(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
        .await?;
    Ok(Json(
        json!({ "status": "ready", "checks": { "database": true, "storage": true } }),
    ))
}

async fn me(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    state
        .db
        .call(move |conn| {
            let (email, name, partner): (String, String, String) = conn.query_row(
                "SELECT u.email, u.name, t.partner_id FROM users u JOIN tenants t ON t.id = u.tenant_id WHERE u.id = ?1",
                [&caller.user_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            Ok(Json(json!({
                "id": caller.user_id,
                "email": email,
                "name": name,
                "display_name": name,
                "tenant_id": caller.tenant_id,
                "partner_id": partner,
                "groups": [],
                "scopes": caller.scopes,
                "is_admin": caller.is_admin,
                "admin_role": if caller.is_admin { json!("tenant_admin") } else { Value::Null },
            })))
        })
        .await
}

#[derive(Deserialize)]
struct Page {
    limit: Option<i64>,
    #[serde(default)]
    offset: i64,
}

impl Page {
    /// Documented range 1–100, default 50.
    fn limit(&self) -> ApiResult<i64> {
        let l = self.limit.unwrap_or(50);
        if !(1..=100).contains(&l) {
            return Err(ApiError::validation(
                &["query", "limit"],
                "limit must be between 1 and 100",
            ));
        }
        if self.offset < 0 {
            return Err(ApiError::validation(
                &["query", "offset"],
                "offset must be >= 0",
            ));
        }
        Ok(l)
    }
}

async fn my_shares(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(page): Query<Page>,
) -> ApiResult<Json<Value>> {
    let limit = page.limit()?;
    state
        .db
        .call(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT s.id, s.name, s.share_type, m.role, s.owner_id, s.quota_bytes, s.created_at \
                 FROM shares s JOIN members m ON m.share_id = s.id \
                 WHERE m.user_id = ?1 AND s.is_deleted = 0 ORDER BY s.created_at, s.id",
            )?;
            let rows = stmt
                .query_map([&caller.user_id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                        r.get::<_, String>(6)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let total = rows.len();
            let mut shares = Vec::new();
            for (id, name, ty, role, owner, quota, created) in
                rows.into_iter().skip(page.offset as usize).take(limit as usize)
            {
                let used = model::share_used_bytes(conn, &id)?;
                shares.push(json!({ "id": id, "name": name, "type": ty, "role": role, "owner_id": owner,
                                    "quota_bytes": quota, "used_bytes": used, "created_at": created }));
            }
            Ok(Json(json!({ "shares": shares, "total": total })))
        })
        .await
}

async fn my_quota(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    state
        .db
        .call(move |conn| {
            let used: i64 = conn.query_row(
                "SELECT COALESCE(SUM(size), 0) FROM nodes WHERE owner_id = ?1 AND kind = 'file'",
                [&caller.user_id],
                |r| r.get(0),
            )?;
            Ok(Json(
                json!({ "user_id": caller.user_id, "used_bytes": used, "quota_bytes": Value::Null,
                            "percent_used": 0.0 }),
            ))
        })
        .await
}

async fn share(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    state
        .db
        .call(move |conn| {
            model::require(conn, &caller, &id, READ)?;
            share_json(conn, &id).map(Json)
        })
        .await
}

pub fn share_json(conn: &rusqlite::Connection, id: &str) -> ApiResult<Value> {
    let used = model::share_used_bytes(conn, id)?;
    Ok(conn.query_row(
        "SELECT id, tenant_id, name, description, share_type, owner_id, quota_bytes, settings, created_at, \
         modified_at, is_deleted FROM shares WHERE id = ?1",
        params![id],
        |r| {
            let settings: String = r.get(7)?;
            Ok(json!({
                "id": r.get::<_, String>(0)?,
                "tenant_id": r.get::<_, String>(1)?,
                "name": r.get::<_, String>(2)?,
                "description": r.get::<_, Option<String>>(3)?,
                "share_type": r.get::<_, String>(4)?,
                "owner_id": r.get::<_, String>(5)?,
                "is_public": false,
                "is_deleted": r.get::<_, bool>(10)?,
                "quota_bytes": r.get::<_, Option<i64>>(6)?,
                "used_bytes": used,
                "settings": serde_json::from_str::<Value>(&settings).unwrap_or(json!({})),
                "created_at": r.get::<_, String>(8)?,
                "modified_at": r.get::<_, String>(9)?,
            }))
        },
    )?)
}
