//! The management routes under `/api/v1/external/links`: create, list, get, patch,
//! revoke, and the access log; only a link's creator or a tenant admin may manage it.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;
use serde_json::{Value, json};

use super::rules::{
    check_expiry_policy, check_options, check_upload_folder, invalid, resolve_expiry,
    sharing_disabled, validation_with_code,
};
use super::{
    LINK_COLS, LINK_TYPES, Link, Options, RESOURCE_TYPES, STATUSES, hash_password, link_json,
    tenant_policy,
};
use crate::devserver::error::{ApiError, ApiResult, Json, Path, Query};
use crate::devserver::model::{self, Caller, SHARE};
use crate::devserver::state::AppState;
use crate::devserver::util::{self, new_id, random_token};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBody {
    resource_type: String,
    resource_id: String,
    share_id: String,
    link_type: String,
    password: Option<String>,
    expires_in_days: Option<i64>,
    expires_at: Option<String>,
    max_downloads: Option<i64>,
    max_views: Option<i64>,
    allowed_ips: Option<Vec<String>>,
    allowed_emails: Option<Vec<String>>,
    require_email: Option<bool>,
    custom_name: Option<String>,
    custom_message: Option<String>,
    show_download_button: Option<bool>,
    allow_preview: Option<bool>,
    notify_on_access: Option<bool>,
    notify_on_download: Option<bool>,
    notify_on_upload: Option<bool>,
    notification_email: Option<String>,
    upload_folder_id: Option<String>,
    max_file_size: Option<i64>,
    allowed_extensions: Option<Vec<String>>,
}

pub(super) async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(b): Json<CreateBody>,
) -> ApiResult<impl IntoResponse> {
    if !RESOURCE_TYPES.contains(&b.resource_type.as_str()) {
        return Err(invalid(
            "resource_type",
            "resource_type must be one of file, folder, share",
        ));
    }
    if !LINK_TYPES.contains(&b.link_type.as_str()) {
        return Err(invalid(
            "link_type",
            "link_type must be one of VIEW, DOWNLOAD, UPLOAD",
        ));
    }
    if b.link_type == "UPLOAD" && b.resource_type != "folder" {
        return Err(invalid(
            "resource_type",
            "UPLOAD links must target a folder",
        ));
    }
    if b.resource_type == "share" && b.resource_id != b.share_id {
        return Err(invalid(
            "resource_id",
            "for resource_type share, resource_id must be the share id",
        ));
    }
    if b.password.as_deref() == Some("") {
        return Err(invalid("password", "password must not be empty"));
    }
    let now = state.now();
    let expiry = resolve_expiry(b.expires_in_days, b.expires_at.as_deref(), now)?;
    let defaults = Options::default();
    let options = Options {
        max_downloads: b.max_downloads,
        max_views: b.max_views,
        allowed_ips: b.allowed_ips,
        allowed_emails: b.allowed_emails,
        require_email: b.require_email.unwrap_or(defaults.require_email),
        custom_name: b.custom_name,
        custom_message: b.custom_message,
        show_download_button: b
            .show_download_button
            .unwrap_or(defaults.show_download_button),
        allow_preview: b.allow_preview.unwrap_or(defaults.allow_preview),
        notify_on_access: b.notify_on_access.unwrap_or(defaults.notify_on_access),
        notify_on_download: b.notify_on_download.unwrap_or(defaults.notify_on_download),
        notify_on_upload: b.notify_on_upload.unwrap_or(defaults.notify_on_upload),
        notification_email: b.notification_email,
        upload_folder_id: b.upload_folder_id,
        max_file_size: b.max_file_size,
        allowed_extensions: b.allowed_extensions,
    };
    check_options(&options, &b.link_type)?;
    let public_url = state.public_url.clone();
    let now_unix = now.unix_timestamp();
    state
        .db
        .tx(move |tx| {
            model::require(tx, &caller, &b.share_id, SHARE)?;
            let policy = tenant_policy(tx, &caller.tenant_id)?;
            if policy.links_disabled {
                return Err(sharing_disabled());
            }
            if b.resource_type != "share" {
                let what = format!("{} {}", b.resource_type, b.resource_id);
                let node = model::get_node(tx, &b.resource_id)?
                    .filter(|n| n.kind == b.resource_type && n.tenant_id == caller.tenant_id && n.share_id == b.share_id)
                    .ok_or_else(|| ApiError::not_found(format!("{what} in share {}", b.share_id)))?;
                if node.is_deleted() {
                    return Err(ApiError::deleted(what));
                }
            }
            if policy.require_link_password && b.password.is_none() {
                return Err(validation_with_code(
                    "LINK_PASSWORD_REQUIRED",
                    "password",
                    "tenant policy requires a password on external links",
                ));
            }
            check_expiry_policy(&policy, expiry, now)?;
            let link = Link {
                id: new_id("lnk"),
                tenant_id: caller.tenant_id.clone(),
                share_id: b.share_id,
                resource_type: b.resource_type,
                resource_id: b.resource_id,
                link_type: b.link_type,
                token: random_token(32),
                short_code: random_token(8),
                password_hash: b.password.as_deref().map(hash_password),
                options,
                download_count: 0,
                view_count: 0,
                revoked: false,
                created_by: caller.user_id.clone(),
                created_at: util::iso(now),
                expires_at: expiry.map(util::iso),
            };
            check_upload_folder(tx, &link)?;
            let options = serde_json::to_string(&link.options).map_err(|e| ApiError::internal(e.to_string()))?;
            tx.execute(
                &format!("INSERT INTO links ({LINK_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, 0, 0, ?11, ?12, ?13)"),
                params![
                    link.id,
                    link.tenant_id,
                    link.share_id,
                    link.resource_type,
                    link.resource_id,
                    link.link_type,
                    link.token,
                    link.short_code,
                    link.password_hash,
                    options,
                    link.created_by,
                    link.created_at,
                    link.expires_at
                ],
            )?;
            Ok((StatusCode::CREATED, Json(link_json(tx, &public_url, &link, now_unix)?)))
        })
        .await
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    share_id: Option<String>,
    resource_id: Option<String>,
    status: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

pub(super) async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::validation(
            &["query", "limit"],
            "limit must be between 1 and 100",
        ));
    }
    let offset = q.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::validation(
            &["query", "offset"],
            "offset must not be negative",
        ));
    }
    if let Some(s) = q.status.as_deref().filter(|s| !STATUSES.contains(s)) {
        return Err(ApiError::validation(
            &["query", "status"],
            format!("unknown status {s:?}"),
        ));
    }
    let now = state.now_unix();
    let public_url = state.public_url.clone();
    state
        .db
        .call(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {LINK_COLS} FROM links WHERE tenant_id = ?1 AND (?2 OR created_by = ?3) \
                 AND (?4 IS NULL OR share_id = ?4) AND (?5 IS NULL OR resource_id = ?5) ORDER BY rowid DESC"
            ))?;
            let links = stmt
                .query_map(
                    params![caller.tenant_id, caller.is_admin, caller.user_id, q.share_id, q.resource_id],
                    Link::from_row,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            let mut out = Vec::new();
            for link in &links {
                let v = link_json(conn, &public_url, link, now)?;
                if q.status.as_deref().is_none_or(|s| v["status"] == s) {
                    out.push(v);
                }
            }
            let total = out.len();
            let page: Vec<Value> = out.into_iter().skip(offset as usize).take(limit as usize).collect();
            Ok(Json(json!({ "links": page, "total": total })))
        })
        .await
}

/// A link the caller may manage (its creator or a tenant admin); 404 otherwise.
fn load_managed(conn: &Connection, caller: &Caller, id: &str) -> ApiResult<Link> {
    conn.query_row(
        &format!("SELECT {LINK_COLS} FROM links WHERE id = ?1"),
        [id],
        Link::from_row,
    )
    .optional()?
    .filter(|l| l.visible_to(caller))
    .ok_or_else(|| ApiError::not_found(format!("link {id}")))
}

pub(super) async fn get_link(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let now = state.now_unix();
    let public_url = state.public_url.clone();
    state
        .db
        .call(move |conn| {
            let link = load_managed(conn, &caller, &id)?;
            Ok(Json(link_json(conn, &public_url, &link, now)?))
        })
        .await
}

/// PATCH body: every field distinguishes absent (`None`) from `null` (`Some(None)`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PatchBody {
    #[serde(default, deserialize_with = "util::present")]
    resource_type: Option<Option<Value>>,
    #[serde(default, deserialize_with = "util::present")]
    resource_id: Option<Option<Value>>,
    #[serde(default, deserialize_with = "util::present")]
    link_type: Option<Option<Value>>,
    #[serde(default, deserialize_with = "util::present")]
    share_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "util::present")]
    password: Option<Option<String>>,
    #[serde(default, deserialize_with = "util::present")]
    expires_in_days: Option<Option<i64>>,
    #[serde(default, deserialize_with = "util::present")]
    expires_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "util::present")]
    max_downloads: Option<Option<i64>>,
    #[serde(default, deserialize_with = "util::present")]
    max_views: Option<Option<i64>>,
    #[serde(default, deserialize_with = "util::present")]
    allowed_ips: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "util::present")]
    allowed_emails: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "util::present")]
    require_email: Option<Option<bool>>,
    #[serde(default, deserialize_with = "util::present")]
    custom_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "util::present")]
    custom_message: Option<Option<String>>,
    #[serde(default, deserialize_with = "util::present")]
    show_download_button: Option<Option<bool>>,
    #[serde(default, deserialize_with = "util::present")]
    allow_preview: Option<Option<bool>>,
    #[serde(default, deserialize_with = "util::present")]
    notify_on_access: Option<Option<bool>>,
    #[serde(default, deserialize_with = "util::present")]
    notify_on_download: Option<Option<bool>>,
    #[serde(default, deserialize_with = "util::present")]
    notify_on_upload: Option<Option<bool>>,
    #[serde(default, deserialize_with = "util::present")]
    notification_email: Option<Option<String>>,
    #[serde(default, deserialize_with = "util::present")]
    upload_folder_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "util::present")]
    max_file_size: Option<Option<i64>>,
    #[serde(default, deserialize_with = "util::present")]
    allowed_extensions: Option<Option<Vec<String>>>,
}

/// Applies a nullable field: absent keeps, `null` clears, a value sets.
fn set_nullable<T>(slot: &mut Option<T>, v: Option<Option<T>>) {
    if let Some(v) = v {
        *slot = v;
    }
}

/// Applies a field that may not be `null`.
fn set_required<T>(slot: &mut T, v: Option<Option<T>>, field: &str) -> ApiResult<()> {
    match v {
        None => Ok(()),
        Some(None) => Err(invalid(field, format!("{field} must not be null"))),
        Some(Some(v)) => {
            *slot = v;
            Ok(())
        }
    }
}

pub(super) async fn patch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Json(b): Json<PatchBody>,
) -> ApiResult<Json<Value>> {
    for (field, sent) in [
        ("resource_type", b.resource_type.is_some()),
        ("resource_id", b.resource_id.is_some()),
        ("link_type", b.link_type.is_some()),
    ] {
        if sent {
            return Err(invalid(
                field,
                format!("{field} cannot be changed; create a new link instead"),
            ));
        }
    }
    if matches!(&b.password, Some(Some(p)) if p.is_empty()) {
        return Err(invalid(
            "password",
            "password must not be empty (send null to remove it)",
        ));
    }
    if matches!(b.expires_in_days, Some(None)) {
        return Err(invalid(
            "expires_in_days",
            "expires_in_days must not be null (send expires_at: null to remove the expiry)",
        ));
    }
    if b.expires_in_days.is_some() && b.expires_at.is_some() {
        return Err(invalid(
            "expires_at",
            "give either expires_in_days or expires_at, not both",
        ));
    }
    let now = state.now();
    let now_unix = now.unix_timestamp();
    let new_expiry = match (&b.expires_in_days, &b.expires_at) {
        (Some(Some(d)), _) => Some(resolve_expiry(Some(*d), None, now)?),
        (_, Some(Some(at))) => Some(resolve_expiry(None, Some(at), now)?),
        (_, Some(None)) => Some(None),
        _ => None,
    };
    let public_url = state.public_url.clone();
    state
        .db
        .tx(move |tx| {
            let mut link = load_managed(tx, &caller, &id)?;
            if let Some(share) = &b.share_id
                && share.as_deref() != Some(link.share_id.as_str())
            {
                return Err(invalid("share_id", "share_id cannot be changed"));
            }
            let o = &mut link.options;
            set_nullable(&mut o.max_downloads, b.max_downloads);
            set_nullable(&mut o.max_views, b.max_views);
            set_nullable(&mut o.allowed_ips, b.allowed_ips);
            set_nullable(&mut o.allowed_emails, b.allowed_emails);
            set_required(&mut o.require_email, b.require_email, "require_email")?;
            set_nullable(&mut o.custom_name, b.custom_name);
            set_nullable(&mut o.custom_message, b.custom_message);
            set_required(
                &mut o.show_download_button,
                b.show_download_button,
                "show_download_button",
            )?;
            set_required(&mut o.allow_preview, b.allow_preview, "allow_preview")?;
            set_required(
                &mut o.notify_on_access,
                b.notify_on_access,
                "notify_on_access",
            )?;
            set_required(
                &mut o.notify_on_download,
                b.notify_on_download,
                "notify_on_download",
            )?;
            set_required(
                &mut o.notify_on_upload,
                b.notify_on_upload,
                "notify_on_upload",
            )?;
            set_nullable(&mut o.notification_email, b.notification_email);
            set_nullable(&mut o.upload_folder_id, b.upload_folder_id.clone());
            set_nullable(&mut o.max_file_size, b.max_file_size);
            set_nullable(&mut o.allowed_extensions, b.allowed_extensions);
            check_options(&link.options, &link.link_type)?;
            if b.upload_folder_id.is_some() {
                check_upload_folder(tx, &link)?;
            }
            // Policy applies to what this request changes; an unrelated edit of a link made
            // before the policy tightened still goes through.
            let policy = tenant_policy(tx, &link.tenant_id)?;
            if let Some(p) = b.password {
                if p.is_none() && policy.require_link_password {
                    return Err(validation_with_code(
                        "LINK_PASSWORD_REQUIRED",
                        "password",
                        "tenant policy requires a password on external links",
                    ));
                }
                link.password_hash = p.as_deref().map(hash_password);
            }
            if let Some(expiry) = new_expiry {
                check_expiry_policy(&policy, expiry, now)?;
                link.expires_at = expiry.map(util::iso);
            }
            let options = serde_json::to_string(&link.options)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            tx.execute(
                "UPDATE links SET password_hash = ?2, options = ?3, expires_at = ?4 WHERE id = ?1",
                params![link.id, link.password_hash, options, link.expires_at],
            )?;
            Ok(Json(link_json(tx, &public_url, &link, now_unix)?))
        })
        .await
}

pub(super) async fn revoke(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .db
        .call(move |conn| {
            let link = load_managed(conn, &caller, &id)?;
            conn.execute("UPDATE links SET revoked = 1 WHERE id = ?1", [&link.id])?;
            Ok(StatusCode::NO_CONTENT)
        })
        .await
}

pub(super) async fn sessions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    state
        .db
        .call(move |conn| {
            let link = load_managed(conn, &caller, &id)?;
                    let mut stmt = conn
                .prepare("SELECT accessed_at, ip, action, email FROM link_sessions WHERE link_id = ?1 ORDER BY seq")?;
            let rows = stmt
                .query_map([&link.id], |r| {
                    Ok(json!({ "accessed_at": r.get::<_, String>(0)?, "ip": r.get::<_, Option<String>>(1)?,
                               "action": r.get::<_, String>(2)?, "email": r.get::<_, Option<String>>(3)? }))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let total = rows.len();
            Ok(Json(json!({ "sessions": rows, "total": total })))
        })
        .await
}
