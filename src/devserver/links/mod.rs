//! External (public) links, `scaidrive-api.md` §11: the authenticated management routes
//! under `/api/v1/external/links` (create, list, get, patch, revoke, access log) and the
//! unauthenticated recipient routes behind a link's `url` (`/share/{token}`) and
//! `short_url` (`/s/{code}`): view, download and the UPLOAD drop-zone.
//!
//! A link's status is never stored; it is derived on every read from the revoke flag, the
//! server clock (which tests can move), the tenant's link policy, whether the linked
//! resource still lives, and the download/view caps. Passwords are kept only as salted
//! SHA-256 (`sha256$<salt>$<hex>`) and never leave the server. Options that have no column
//! of their own live in the `options` JSON column. Recipient accesses are logged in
//! `link_sessions`.
//!
//! The parts: this file holds what a link is (its row, options, derived health and JSON
//! form, password hashing); [`rules`] the checks of what a client may set; [`manage`] the
//! management routes; [`public`] the recipient routes and their gate.

mod manage;
mod public;
mod rules;

use axum::Router;
use axum::routing::{get, post};
use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::model::{self, Caller, Node};
use super::state::AppState;
use super::util::{self, random_token, sha256_hex};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/external/links",
            post(manage::create).get(manage::list),
        )
        .route(
            "/api/v1/external/links/{link_id}",
            get(manage::get_link)
                .patch(manage::patch)
                .delete(manage::revoke),
        )
        .route(
            "/api/v1/external/links/{link_id}/sessions",
            get(manage::sessions),
        )
}

pub fn public_routes() -> Router<AppState> {
    Router::new()
        .route("/share/{token}", get(public::view_by_token))
        .route("/share/{token}/download", get(public::download_by_token))
        .route("/share/{token}/upload", post(public::upload_by_token))
        .route("/s/{code}", get(public::view_by_code))
        .route("/s/{code}/download", get(public::download_by_code))
        .route("/s/{code}/upload", post(public::upload_by_code))
}

const RESOURCE_TYPES: [&str; 3] = ["file", "folder", "share"];
const LINK_TYPES: [&str; 3] = ["VIEW", "DOWNLOAD", "UPLOAD"];
const STATUSES: [&str; 4] = ["active", "expired", "revoked", "disabled"];
/// Upper bound for `expires_in_days`, so the arithmetic cannot overflow.
const MAX_EXPIRY_DAYS: i64 = 36_500;

/// Link settings without a column of their own (the `options` JSON column).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
struct Options {
    max_downloads: Option<i64>,
    max_views: Option<i64>,
    allowed_ips: Option<Vec<String>>,
    allowed_emails: Option<Vec<String>>,
    require_email: bool,
    custom_name: Option<String>,
    custom_message: Option<String>,
    show_download_button: bool,
    allow_preview: bool,
    notify_on_access: bool,
    notify_on_download: bool,
    notify_on_upload: bool,
    notification_email: Option<String>,
    upload_folder_id: Option<String>,
    max_file_size: Option<i64>,
    allowed_extensions: Option<Vec<String>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_downloads: None,
            max_views: None,
            allowed_ips: None,
            allowed_emails: None,
            require_email: false,
            custom_name: None,
            custom_message: None,
            show_download_button: true,
            allow_preview: true,
            notify_on_access: false,
            notify_on_download: false,
            notify_on_upload: false,
            notification_email: None,
            upload_folder_id: None,
            max_file_size: None,
            allowed_extensions: None,
        }
    }
}

#[derive(Clone, Debug)]
struct Link {
    id: String,
    tenant_id: String,
    share_id: String,
    resource_type: String,
    resource_id: String,
    link_type: String,
    token: String,
    short_code: String,
    password_hash: Option<String>,
    options: Options,
    download_count: i64,
    view_count: i64,
    revoked: bool,
    created_by: String,
    created_at: String,
    expires_at: Option<String>,
}

const LINK_COLS: &str = "id, tenant_id, share_id, resource_type, resource_id, link_type, token, short_code, \
    password_hash, options, download_count, view_count, revoked, created_by, created_at, expires_at";

impl Link {
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Link> {
        let options: String = r.get(9)?;
        let options = serde_json::from_str(&options).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(9, rusqlite::types::Type::Text, Box::new(e))
        })?;
        Ok(Link {
            id: r.get(0)?,
            tenant_id: r.get(1)?,
            share_id: r.get(2)?,
            resource_type: r.get(3)?,
            resource_id: r.get(4)?,
            link_type: r.get(5)?,
            token: r.get(6)?,
            short_code: r.get(7)?,
            password_hash: r.get(8)?,
            options,
            download_count: r.get(10)?,
            view_count: r.get(11)?,
            revoked: r.get(12)?,
            created_by: r.get(13)?,
            created_at: r.get(14)?,
            expires_at: r.get(15)?,
        })
    }

    fn visible_to(&self, caller: &Caller) -> bool {
        self.tenant_id == caller.tenant_id && (caller.is_admin || self.created_by == caller.user_id)
    }
}

/// Why a link does or does not work right now; `status()` is the documented field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Health {
    Active,
    Revoked,
    Expired,
    SharingDisabled,
    ResourceGone,
    Exhausted,
}

impl Health {
    fn status(self) -> &'static str {
        match self {
            Health::Active => "active",
            Health::Revoked => "revoked",
            Health::Expired => "expired",
            Health::SharingDisabled | Health::ResourceGone | Health::Exhausted => "disabled",
        }
    }
}

/// The tenant's external-link policy (admin `PATCH /_devserver/tenant`). Read leniently by
/// value type because the admin route stores whatever JSON it is given.
#[derive(Default)]
struct Policy {
    links_disabled: bool,
    require_link_password: bool,
    max_link_expiry_days: Option<i64>,
}

fn tenant_policy(conn: &Connection, tenant_id: &str) -> ApiResult<Policy> {
    let raw: Option<String> = conn
        .query_row(
            "SELECT settings FROM tenants WHERE id = ?1",
            [tenant_id],
            |r| r.get(0),
        )
        .optional()?;
    let Some(raw) = raw else {
        return Ok(Policy::default());
    };
    let v: Value = serde_json::from_str(&raw)
        .map_err(|e| ApiError::internal(format!("tenant settings: {e}")))?;
    Ok(Policy {
        links_disabled: v["links_disabled"].as_bool().unwrap_or(false),
        require_link_password: v["require_link_password"].as_bool().unwrap_or(false),
        max_link_expiry_days: v["max_link_expiry_days"].as_i64(),
    })
}

fn share_live(conn: &Connection, share_id: &str) -> ApiResult<bool> {
    let deleted: Option<bool> = conn
        .query_row(
            "SELECT is_deleted FROM shares WHERE id = ?1",
            [share_id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(deleted == Some(false))
}

/// The live node `id` of `kind` in the link's share, if there is one. A node that moved to
/// another share counts as gone: the link was granted on its old share.
fn live_node(conn: &Connection, link: &Link, id: &str, kind: &str) -> ApiResult<Option<Node>> {
    Ok(model::get_node(conn, id)?.filter(|n| {
        n.kind == kind
            && n.tenant_id == link.tenant_id
            && n.share_id == link.share_id
            && !n.is_deleted()
    }))
}

fn resource_live(conn: &Connection, link: &Link) -> ApiResult<bool> {
    if !share_live(conn, &link.share_id)? {
        return Ok(false);
    }
    if link.resource_type != "share"
        && live_node(conn, link, &link.resource_id, &link.resource_type)?.is_none()
    {
        return Ok(false);
    }
    if let Some(folder) = &link.options.upload_folder_id
        && live_node(conn, link, folder, "folder")?.is_none()
    {
        return Ok(false);
    }
    Ok(true)
}

fn health(conn: &Connection, link: &Link, now_unix: i64) -> ApiResult<Health> {
    if link.revoked {
        return Ok(Health::Revoked);
    }
    let expired = link
        .expires_at
        .as_deref()
        .and_then(util::parse_iso)
        .is_some_and(|t| t.unix_timestamp() <= now_unix);
    if expired {
        return Ok(Health::Expired);
    }
    if tenant_policy(conn, &link.tenant_id)?.links_disabled {
        return Ok(Health::SharingDisabled);
    }
    if !resource_live(conn, link)? {
        return Ok(Health::ResourceGone);
    }
    let o = &link.options;
    if o.max_downloads.is_some_and(|m| link.download_count >= m)
        || o.max_views.is_some_and(|m| link.view_count >= m)
    {
        return Ok(Health::Exhausted);
    }
    Ok(Health::Active)
}

fn link_json(conn: &Connection, public_url: &str, link: &Link, now_unix: i64) -> ApiResult<Value> {
    let base = public_url.trim_end_matches('/');
    let o = &link.options;
    Ok(json!({
        "id": link.id,
        "tenant_id": link.tenant_id,
        "share_id": link.share_id,
        "resource_type": link.resource_type,
        "resource_id": link.resource_id,
        "link_type": link.link_type,
        "token": link.token,
        "short_code": link.short_code,
        "url": format!("{base}/share/{}", link.token),
        "short_url": format!("{base}/s/{}", link.short_code),
        "status": health(conn, link, now_unix)?.status(),
        "password_required": link.password_hash.is_some(),
        "max_downloads": o.max_downloads,
        "download_count": link.download_count,
        "max_views": o.max_views,
        "view_count": link.view_count,
        "allowed_ips": o.allowed_ips,
        "allowed_emails": o.allowed_emails,
        "require_email": o.require_email,
        "custom_name": o.custom_name,
        "custom_message": o.custom_message,
        "created_by": link.created_by,
        "created_at": link.created_at,
        "expires_at": link.expires_at,
        "show_download_button": o.show_download_button,
        "allow_preview": o.allow_preview,
        "notify_on_access": o.notify_on_access,
        "notify_on_download": o.notify_on_download,
        "notify_on_upload": o.notify_on_upload,
        "notification_email": o.notification_email,
        "upload_folder_id": o.upload_folder_id,
        "max_file_size": o.max_file_size,
        "allowed_extensions": o.allowed_extensions,
    }))
}

fn hash_password(password: &str) -> String {
    let salt = random_token(16);
    format!(
        "sha256${salt}${}",
        sha256_hex(format!("{salt}:{password}").as_bytes())
    )
}

fn verify_password(stored: &str, password: &str) -> bool {
    let mut parts = stored.splitn(3, '$');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("sha256"), Some(salt), Some(digest)) => {
            let got = sha256_hex(format!("{salt}:{password}").as_bytes());
            // Constant time, so response timing does not leak how much of a guess matched.
            got.len() == digest.len()
                && got
                    .bytes()
                    .zip(digest.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_salted_and_verified() {
        let a = hash_password("hunter2");
        let b = hash_password("hunter2");
        assert_ne!(a, b, "salt differs per hash");
        assert!(!a.contains("hunter2"));
        assert!(verify_password(&a, "hunter2"));
        assert!(!verify_password(&a, "hunter3"));
        assert!(!verify_password("garbage", "hunter2"));
    }
}
