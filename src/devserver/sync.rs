//! Sync routes, `scaidrive-api.md` §12: the cursor-based change feed of a share
//! (`/sync/changes`), per-device server-side cursors (`/sync/status`, `/sync/cursor`),
//! device registration (`/sync/devices`) and the conflict list (`/sync/conflicts`).
//!
//! The cursor is the `seq` of the `changes` table (the log every mutation appends to via
//! `model::record_change`); "head" is the tenant's newest `seq`. `/sync/apply` is not
//! offered, so no conflict objects ever exist and the conflict list is always empty.
//! `/sync/download/{id}` lives with the file routes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Router};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult, Json, Query};
use super::model::{self, Caller, READ};
use super::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/sync/changes", get(changes))
        .route("/api/v1/sync/status", get(status))
        .route("/api/v1/sync/cursor", axum::routing::post(set_cursor))
        .route(
            "/api/v1/sync/devices",
            get(list_devices).post(register_device),
        )
        .route("/api/v1/sync/conflicts", get(conflicts))
}

const DEFAULT_LIMIT: i64 = 1000;
const MAX_LIMIT: i64 = 5000;

/// The newest change position of the tenant (0 when its log is empty; never below the
/// retention floor, so a truncated log keeps its positions).
fn head(conn: &Connection, tenant_id: &str) -> ApiResult<i64> {
    let newest: i64 = conn.query_row(
        "SELECT COALESCE(MAX(seq), 0) FROM changes WHERE tenant_id = ?1",
        [tenant_id],
        |r| r.get(0),
    )?;
    Ok(newest.max(log_floor(conn)?))
}

/// The key in `kv` holding the retention floor: every change at or below it is gone.
pub const LOG_FLOOR_KEY: &str = "changelog_floor";

/// The position up to which the change log was truncated (0 = nothing dropped). A cursor
/// below it would silently miss changes, so it is refused with 410 `CURSOR_EXPIRED`.
pub fn log_floor(conn: &Connection) -> ApiResult<i64> {
    let v: Option<String> = conn
        .query_row(
            "SELECT value FROM kv WHERE key = ?1",
            [LOG_FLOOR_KEY],
            |r| r.get(0),
        )
        .optional()?;
    Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// Drops every change at or below `through` (capped at the head) and raises the floor;
/// returns the new floor. Models a server whose log retention ran out for old cursors.
pub fn truncate_log(conn: &Connection, through: Option<i64>) -> ApiResult<i64> {
    let newest: i64 = conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM changes", [], |r| {
        r.get(0)
    })?;
    let floor = through
        .unwrap_or(newest)
        .min(newest.max(log_floor(conn)?))
        .max(log_floor(conn)?);
    conn.execute("DELETE FROM changes WHERE seq <= ?1", [floor])?;
    conn.execute(
        "INSERT INTO kv (key, value) VALUES (?1, ?2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![LOG_FLOOR_KEY, floor.to_string()],
    )?;
    Ok(floor)
}

/// 410 `CURSOR_EXPIRED` for a cursor older than the retained log.
fn check_retained(conn: &Connection, cursor: i64) -> ApiResult<()> {
    let floor = log_floor(conn)?;
    if cursor < floor {
        return Err(ApiError::new(
            StatusCode::GONE,
            "CURSOR_EXPIRED",
            format!(
                "cursor {cursor} is older than the retained change log (oldest position {floor}); \
                 list the share and continue from the current cursor"
            ),
        ));
    }
    Ok(())
}

fn change_json(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, Value)> {
    let metadata: Option<String> = r.get(12)?;
    let metadata = metadata
        .and_then(|m| serde_json::from_str::<Value>(&m).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    Ok((
        r.get(0)?,
        json!({
            "id": r.get::<_, String>(1)?,
            "tenant_id": r.get::<_, String>(2)?,
            "share_id": r.get::<_, String>(3)?,
            "resource_type": r.get::<_, String>(4)?,
            "resource_id": r.get::<_, String>(5)?,
            "change_type": r.get::<_, String>(6)?,
            "changed_by": r.get::<_, String>(7)?,
            "changed_at": r.get::<_, String>(8)?,
            "old_path": r.get::<_, Option<String>>(9)?,
            "new_path": r.get::<_, Option<String>>(10)?,
            "version_id": r.get::<_, Option<String>>(11)?,
            "metadata": metadata,
        }),
    ))
}

/// Parses a cursor as sent by a client: a non-negative integer, else 400 (it is malformed
/// path/query input rather than a schema failure).
fn parse_cursor(raw: &str) -> ApiResult<i64> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .filter(|c| *c >= 0)
        .ok_or_else(|| {
            ApiError::bad_request(
                "INVALID_CURSOR",
                format!("cursor {raw:?} is not a valid cursor"),
            )
        })
}

#[derive(Deserialize)]
struct ChangesQuery {
    share_id: String,
    cursor: Option<String>,
    limit: Option<i64>,
}

async fn changes(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ChangesQuery>,
) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::validation(
            &["query", "limit"],
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let cursor = q.cursor.as_deref().map(parse_cursor).transpose()?;
    state
        .db
        .call(move |conn| {
            model::require(conn, &caller, &q.share_id, READ)?;
            let Some(cursor) = cursor else {
                // A client without a cursor starts from "now" and lists the share itself.
                let head = head(conn, &caller.tenant_id)?;
                return Ok(Json(json!({ "changes": [], "cursor": head, "has_more": false, "share_id": q.share_id })));
            };
            check_retained(conn, cursor)?;
            let mut stmt = conn.prepare(
                "SELECT seq, id, tenant_id, share_id, resource_type, resource_id, change_type, changed_by, \
                 changed_at, old_path, new_path, version_id, metadata FROM changes \
                 WHERE share_id = ?1 AND tenant_id = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4",
            )?;
            let mut rows = stmt
                .query_map(params![q.share_id, caller.tenant_id, cursor, limit + 1], change_json)?
                .collect::<Result<Vec<_>, _>>()?;
            let has_more = rows.len() as i64 > limit;
            rows.truncate(limit as usize);
            let next = rows.last().map_or(cursor, |(seq, _)| *seq);
            let changes: Vec<Value> = rows.into_iter().map(|(_, v)| v).collect();
            Ok(Json(json!({ "changes": changes, "cursor": next, "has_more": has_more, "share_id": q.share_id })))
        })
        .await
}

/// Records that a registered device was heard from.
fn touch_device(conn: &Connection, user_id: &str, device_id: &str, now: &str) -> ApiResult<()> {
    conn.execute(
        "UPDATE devices SET last_seen_at = ?3 WHERE user_id = ?1 AND device_id = ?2",
        params![user_id, device_id, now],
    )?;
    Ok(())
}

fn pending(conn: &Connection, share_id: &str, tenant_id: &str, position: i64) -> ApiResult<i64> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM changes WHERE share_id = ?1 AND tenant_id = ?2 AND seq > ?3",
        params![share_id, tenant_id, position],
        |r| r.get(0),
    )?)
}

#[derive(Deserialize)]
struct StatusQuery {
    share_id: String,
    device_id: String,
}

async fn status(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<StatusQuery>,
) -> ApiResult<Json<Value>> {
    if q.device_id.is_empty() {
        return Err(ApiError::validation(
            &["query", "device_id"],
            "device_id must not be empty",
        ));
    }
    let now = model::now_iso(&state);
    state
        .db
        .tx(move |tx| {
            model::require(tx, &caller, &q.share_id, READ)?;
            let stored: Option<(i64, Option<String>)> = tx
                .query_row(
                    "SELECT position, last_sync_at FROM cursors WHERE user_id = ?1 AND share_id = ?2 AND device_id = ?3",
                    params![caller.user_id, q.share_id, q.device_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let (position, last_sync_at) = match stored {
                Some(s) => s,
                None => {
                    // Documented: a device without a cursor starts at the current head.
                    let head = head(tx, &caller.tenant_id)?;
                    tx.execute(
                        "INSERT INTO cursors (user_id, share_id, device_id, position, last_sync_at) \
                         VALUES (?1, ?2, ?3, ?4, NULL)",
                        params![caller.user_id, q.share_id, q.device_id, head],
                    )?;
                    (head, None)
                }
            };
            touch_device(tx, &caller.user_id, &q.device_id, &now)?;
            Ok(Json(json!({
                "cursor_position": position,
                "last_sync_at": last_sync_at,
                "pending_changes": pending(tx, &q.share_id, &caller.tenant_id, position)?,
                "has_conflicts": false,
            })))
        })
        .await
}

#[derive(Deserialize)]
struct CursorQuery {
    share_id: String,
    device_id: String,
    position: i64,
}

async fn set_cursor(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<CursorQuery>,
) -> ApiResult<Json<Value>> {
    if q.device_id.is_empty() {
        return Err(ApiError::validation(
            &["query", "device_id"],
            "device_id must not be empty",
        ));
    }
    if q.position < 0 {
        return Err(ApiError::validation(
            &["query", "position"],
            "position must not be negative",
        ));
    }
    let now = model::now_iso(&state);
    state
        .db
        .tx(move |tx| {
            model::require(tx, &caller, &q.share_id, READ)?;
            // A position the server never handed out would silently skip future changes.
            let head = head(tx, &caller.tenant_id)?;
            if q.position > head {
                return Err(ApiError::bad_request(
                    "INVALID_CURSOR",
                    format!("position {} is beyond the change log head {head}", q.position),
                ));
            }
            tx.execute(
                "INSERT INTO cursors (user_id, share_id, device_id, position, last_sync_at) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (user_id, share_id, device_id) DO UPDATE SET position = excluded.position, \
                 last_sync_at = excluded.last_sync_at",
                params![caller.user_id, q.share_id, q.device_id, q.position, now],
            )?;
            touch_device(tx, &caller.user_id, &q.device_id, &now)?;
            Ok(Json(json!({ "cursor_position": q.position, "last_sync_at": now })))
        })
        .await
}

fn device_json(r: &rusqlite::Row<'_>) -> rusqlite::Result<Value> {
    Ok(json!({
        "device_id": r.get::<_, String>(0)?,
        "device_name": r.get::<_, Option<String>>(1)?,
        "platform": r.get::<_, Option<String>>(2)?,
        "client_version": r.get::<_, Option<String>>(3)?,
        "created_at": r.get::<_, String>(4)?,
        "last_seen_at": r.get::<_, String>(5)?,
    }))
}

const DEVICE_COLS: &str =
    "device_id, device_name, platform, client_version, created_at, last_seen_at";

async fn list_devices(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<Value>> {
    state
        .db
        .call(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {DEVICE_COLS} FROM devices WHERE user_id = ?1 ORDER BY created_at, device_id"
            ))?;
            let devices = stmt.query_map([&caller.user_id], device_json)?.collect::<Result<Vec<_>, _>>()?;
            Ok(Json(Value::Array(devices)))
        })
        .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceBody {
    device_id: String,
    device_name: Option<String>,
    platform: Option<String>,
    client_version: Option<String>,
}

async fn register_device(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(b): Json<DeviceBody>,
) -> ApiResult<impl IntoResponse> {
    if b.device_id.trim().is_empty() {
        return Err(ApiError::validation(
            &["body", "device_id"],
            "device_id must not be empty",
        ));
    }
    let now = model::now_iso(&state);
    state
        .db
        .tx(move |tx| {
            let exists = tx
                .query_row(
                    "SELECT 1 FROM devices WHERE user_id = ?1 AND device_id = ?2",
                    params![caller.user_id, b.device_id],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if exists {
                tx.execute(
                    "UPDATE devices SET device_name = ?3, platform = ?4, client_version = ?5, last_seen_at = ?6 \
                     WHERE user_id = ?1 AND device_id = ?2",
                    params![caller.user_id, b.device_id, b.device_name, b.platform, b.client_version, now],
                )?;
            } else {
                tx.execute(
                    "INSERT INTO devices (user_id, device_id, device_name, platform, client_version, created_at, \
                     last_seen_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                    params![caller.user_id, b.device_id, b.device_name, b.platform, b.client_version, now],
                )?;
            }
            let device = tx.query_row(
                &format!("SELECT {DEVICE_COLS} FROM devices WHERE user_id = ?1 AND device_id = ?2"),
                params![caller.user_id, b.device_id],
                device_json,
            )?;
            let status = if exists { StatusCode::OK } else { StatusCode::CREATED };
            Ok((status, Json(device)))
        })
        .await
}

#[derive(Deserialize)]
struct ConflictsQuery {
    share_id: String,
    device_id: String,
    #[serde(default)]
    include_resolved: bool,
}

async fn conflicts(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ConflictsQuery>,
) -> ApiResult<Json<Value>> {
    if q.device_id.is_empty() {
        return Err(ApiError::validation(
            &["query", "device_id"],
            "device_id must not be empty",
        ));
    }
    state
        .db
        .call(move |conn| {
            model::require(conn, &caller, &q.share_id, READ)?;
            // Conflicts only arise from /sync/apply, which this server does not offer; the
            // flag is accepted because the docs list it, and changes nothing here.
            let _ = q.include_resolved;
            Ok(Json(json!([])))
        })
        .await
}
