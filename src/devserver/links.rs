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

use std::fmt::Write as _;
use std::net::IpAddr;

use axum::body::Body;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::Peer;
use super::error::{ApiError, ApiResult, Json, Path, Query};
use super::model::{self, CREATE, Caller, Node, SHARE};
use super::state::AppState;
use super::util::{self, new_id, random_token, sha256_hex};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/external/links", post(create).get(list))
        .route(
            "/api/v1/external/links/{link_id}",
            get(get_link).patch(patch).delete(revoke),
        )
        .route("/api/v1/external/links/{link_id}/sessions", get(sessions))
}

pub fn public_routes() -> Router<AppState> {
    Router::new()
        .route("/share/{token}", get(view_by_token))
        .route("/share/{token}/download", get(download_by_token))
        .route("/share/{token}/upload", post(upload_by_token))
        .route("/s/{code}", get(view_by_code))
        .route("/s/{code}/download", get(download_by_code))
        .route("/s/{code}/upload", post(upload_by_code))
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

/// A single IP (`10.0.0.1`) or a CIDR range (`10.0.0.0/8`, `2001:db8::/32`).
fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => {
            l.parse::<u8>().ok()?
        }
        Some(_) => return None,
        None => max,
    };
    (len <= max).then_some((ip, len))
}

fn ip_in_cidr(ip: IpAddr, cidr: &str) -> bool {
    let Some((net, len)) = parse_cidr(cidr) else {
        return false;
    };
    match (ip.to_canonical(), net.to_canonical()) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

fn invalid(field: &str, msg: impl Into<String>) -> ApiError {
    ApiError::validation(&["body", field], msg)
}

fn validation_with_code(code: &'static str, field: &str, msg: impl Into<String>) -> ApiError {
    let mut e = invalid(field, msg);
    e.code = code;
    e
}

/// Checks the options that do not need the database, for the given link type.
fn check_options(o: &Options, link_type: &str) -> ApiResult<()> {
    for (field, v) in [
        ("max_downloads", o.max_downloads),
        ("max_views", o.max_views),
        ("max_file_size", o.max_file_size),
    ] {
        if v.is_some_and(|n| n < 1) {
            return Err(invalid(field, format!("{field} must be at least 1")));
        }
    }
    for ip in o.allowed_ips.iter().flatten() {
        if parse_cidr(ip).is_none() {
            return Err(invalid(
                "allowed_ips",
                format!("{ip:?} is not an IP address or CIDR range"),
            ));
        }
    }
    let bad_email = |e: &String| {
        !e.contains('@')
            || e.starts_with('@')
            || e.ends_with('@')
            || e.contains(char::is_whitespace)
    };
    if let Some(e) = o.allowed_emails.iter().flatten().find(|e| bad_email(e)) {
        return Err(invalid(
            "allowed_emails",
            format!("{e:?} is not an email address"),
        ));
    }
    if let Some(e) = o.notification_email.as_ref().filter(|e| bad_email(e)) {
        return Err(invalid(
            "notification_email",
            format!("{e:?} is not an email address"),
        ));
    }
    if o.allowed_extensions
        .iter()
        .flatten()
        .any(|e| e.trim_start_matches('.').is_empty())
    {
        return Err(invalid(
            "allowed_extensions",
            "extensions must not be empty",
        ));
    }
    if link_type == "UPLOAD" {
        if o.upload_folder_id.is_none() {
            return Err(invalid(
                "upload_folder_id",
                "upload_folder_id is required for UPLOAD links",
            ));
        }
    } else {
        for (field, set) in [
            ("upload_folder_id", o.upload_folder_id.is_some()),
            ("max_file_size", o.max_file_size.is_some()),
            ("allowed_extensions", o.allowed_extensions.is_some()),
        ] {
            if set {
                return Err(invalid(
                    field,
                    format!("{field} only applies to UPLOAD links"),
                ));
            }
        }
    }
    Ok(())
}

/// Checks that an UPLOAD link's folder lives in the linked folder's subtree.
fn check_upload_folder(conn: &Connection, link: &Link) -> ApiResult<()> {
    let Some(folder_id) = &link.options.upload_folder_id else {
        return Ok(());
    };
    let node = model::get_node(conn, folder_id)?
        .filter(|n| n.tenant_id == link.tenant_id && n.share_id == link.share_id)
        .ok_or_else(|| {
            ApiError::not_found(format!("folder {folder_id} in share {}", link.share_id))
        })?;
    if node.kind != "folder" {
        return Err(invalid(
            "upload_folder_id",
            format!("{folder_id} is not a folder"),
        ));
    }
    if node.is_deleted() {
        return Err(ApiError::deleted(format!("folder {folder_id}")));
    }
    if !model::is_within(conn, &node.id, &link.resource_id)? {
        return Err(invalid(
            "upload_folder_id",
            "upload_folder_id must be the linked folder or lie inside it",
        ));
    }
    Ok(())
}

/// The absolute expiry from `expires_in_days` or `expires_at` (at most one may be given).
fn resolve_expiry(
    days: Option<i64>,
    at: Option<&str>,
    now: OffsetDateTime,
) -> ApiResult<Option<OffsetDateTime>> {
    match (days, at) {
        (Some(_), Some(_)) => Err(invalid(
            "expires_at",
            "give either expires_in_days or expires_at, not both",
        )),
        (Some(d), None) => {
            if !(1..=MAX_EXPIRY_DAYS).contains(&d) {
                return Err(invalid(
                    "expires_in_days",
                    format!("expires_in_days must be between 1 and {MAX_EXPIRY_DAYS}"),
                ));
            }
            Ok(Some(now + time::Duration::days(d)))
        }
        (None, Some(s)) => {
            let t = util::parse_iso(s).ok_or_else(|| {
                invalid("expires_at", format!("{s:?} is not an ISO-8601 timestamp"))
            })?;
            if t <= now {
                return Err(invalid("expires_at", "expires_at must be in the future"));
            }
            Ok(Some(t))
        }
        (None, None) => Ok(None),
    }
}

fn check_expiry_policy(
    policy: &Policy,
    expiry: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> ApiResult<()> {
    let Some(max_days) = policy.max_link_expiry_days else {
        return Ok(());
    };
    let Some(expiry) = expiry else {
        return Err(validation_with_code(
            "LINK_EXPIRY_REQUIRED",
            "expires_at",
            format!("tenant policy requires links to expire within {max_days} days"),
        ));
    };
    if expiry > now + time::Duration::days(max_days) {
        return Err(validation_with_code(
            "LINK_EXPIRY_TOO_LONG",
            "expires_at",
            format!("tenant policy allows link expiry of at most {max_days} days"),
        ));
    }
    Ok(())
}

fn sharing_disabled() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "EXTERNAL_SHARING_DISABLED",
        "external sharing is disabled for this tenant",
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
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

async fn create(
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
struct ListQuery {
    share_id: Option<String>,
    resource_id: Option<String>,
    status: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

async fn list(
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

async fn get_link(
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
struct PatchBody {
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

async fn patch(
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

async fn revoke(
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

fn log_session(
    conn: &Connection,
    link: &Link,
    at: &str,
    access: &Access,
    action: &str,
) -> ApiResult<()> {
    conn.execute(
        "INSERT INTO link_sessions (link_id, accessed_at, ip, action, email) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![link.id, at, access.ip.map(|ip| ip.to_canonical().to_string()), action, access.email],
    )?;
    Ok(())
}

async fn sessions(
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

// ---- recipient side -------------------------------------------------------------------

/// How a public route names its link.
#[derive(Clone)]
enum Key {
    Token(String),
    Code(String),
}

fn find_link(conn: &Connection, key: &Key) -> ApiResult<Link> {
    let (col, value) = match key {
        Key::Token(t) => ("token", t),
        Key::Code(c) => ("short_code", c),
    };
    conn.query_row(
        &format!("SELECT {LINK_COLS} FROM links WHERE {col} = ?1"),
        [value],
        Link::from_row,
    )
    .optional()?
    .ok_or_else(|| ApiError::not_found("link"))
}

#[derive(Deserialize)]
struct PublicQuery {
    password: Option<String>,
    email: Option<String>,
    file_id: Option<String>,
}

/// What a recipient presents: their address and, if sent, a password and an email.
#[derive(Clone)]
struct Access {
    ip: Option<IpAddr>,
    password: Option<String>,
    email: Option<String>,
}

fn access(headers: &HeaderMap, peer: Option<Extension<Peer>>, q: &PublicQuery) -> Access {
    let header = |name: &str| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    Access {
        ip: peer.map(|Extension(Peer(addr))| addr.ip()),
        password: header("x-link-password").or_else(|| q.password.clone()),
        email: header("x-link-email").or_else(|| q.email.clone()),
    }
}

/// The recipient gate: link state first (410s), then who is asking (403), then what they
/// know (401), so that a dead link never invites password guessing.
fn admit(conn: &Connection, link: &Link, now_unix: i64, access: &Access) -> ApiResult<()> {
    let gone = |code, msg: &str| Err(ApiError::new(StatusCode::GONE, code, msg));
    match health(conn, link, now_unix)? {
        Health::Active => {}
        Health::Revoked => return gone("LINK_REVOKED", "this link has been revoked"),
        Health::Expired => return gone("LINK_EXPIRED", "this link has expired"),
        Health::Exhausted => {
            return gone(
                "LINK_EXHAUSTED",
                "this link has reached its download or view limit",
            );
        }
        Health::ResourceGone => {
            return gone("RESOURCE_DELETED", "the linked item no longer exists");
        }
        Health::SharingDisabled => return Err(sharing_disabled()),
    }
    let o = &link.options;
    if let Some(ranges) = &o.allowed_ips {
        let allowed = access
            .ip
            .is_some_and(|ip| ranges.iter().any(|r| ip_in_cidr(ip, r)));
        if !allowed {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "LINK_IP_NOT_ALLOWED",
                "your address may not use this link",
            ));
        }
    }
    if o.require_email || o.allowed_emails.is_some() {
        let Some(email) = access.email.as_deref().filter(|e| !e.is_empty()) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "LINK_EMAIL_REQUIRED",
                "this link requires your email address",
            ));
        };
        if let Some(list) = &o.allowed_emails
            && !list.iter().any(|a| a.eq_ignore_ascii_case(email))
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "LINK_EMAIL_NOT_ALLOWED",
                "this email may not use this link",
            ));
        }
    }
    if let Some(stored) = &link.password_hash {
        match access.password.as_deref() {
            None | Some("") => {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "LINK_PASSWORD_REQUIRED",
                    "this link requires a password",
                ));
            }
            Some(p) if !verify_password(stored, p) => {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "LINK_PASSWORD_INVALID",
                    "wrong password",
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn public_link_json(link: &Link) -> Value {
    json!({
        "custom_name": link.options.custom_name,
        "custom_message": link.options.custom_message,
        "link_type": link.link_type,
        "resource_type": link.resource_type,
        "expires_at": link.expires_at,
    })
}

fn file_meta(n: &Node) -> Value {
    json!({ "id": n.id, "name": n.name, "type": "file", "size": n.size, "mime_type": n.mime_type,
            "checksum_sha256": n.sha256, "modified_at": n.modified_at })
}

/// Every live item under a folder or share link, with paths relative to the linked root.
fn listing(conn: &Connection, link: &Link) -> ApiResult<Value> {
    let (root, nodes, prefix) = if link.resource_type == "share" {
        let name: String = conn.query_row(
            "SELECT name FROM shares WHERE id = ?1",
            [&link.share_id],
            |r| r.get(0),
        )?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {} FROM nodes WHERE share_id = ?1 AND deleted_at IS NULL",
            model::NODE_COLS
        ))?;
        let nodes = stmt
            .query_map([&link.share_id], Node::from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        (
            json!({ "id": link.share_id, "name": name, "type": "share" }),
            nodes,
            String::new(),
        )
    } else {
        let folder = live_node(conn, link, &link.resource_id, "folder")?
            .ok_or_else(|| ApiError::deleted(format!("folder {}", link.resource_id)))?;
        let nodes = model::descendants(conn, &folder.id)?
            .into_iter()
            .filter(|n| !n.is_deleted())
            .collect();
        let prefix = model::node_path(conn, &folder)?;
        (
            json!({ "id": folder.id, "name": folder.name, "type": "folder" }),
            nodes,
            prefix,
        )
    };
    let mut items = Vec::with_capacity(nodes.len());
    for n in &nodes {
        let path = model::node_path(conn, n)?;
        let rel = path
            .strip_prefix(prefix.as_str())
            .unwrap_or(&path)
            .to_string();
        let size = if n.kind == "file" {
            json!(n.size)
        } else {
            Value::Null
        };
        items.push((
            rel.clone(),
            json!({ "id": n.id, "name": n.name, "type": n.kind, "path": rel, "size": size }),
        ));
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = root;
    out["total"] = json!(items.len());
    out["items"] = Value::Array(items.into_iter().map(|(_, v)| v).collect());
    Ok(out)
}

async fn view_by_token(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Query(q): Query<PublicQuery>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    view(state, Key::Token(token), access(&headers, peer, &q)).await
}

async fn view_by_code(
    State(state): State<AppState>,
    Path(code): Path<String>,
    Query(q): Query<PublicQuery>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    view(state, Key::Code(code), access(&headers, peer, &q)).await
}

async fn view(state: AppState, key: Key, access: Access) -> ApiResult<Json<Value>> {
    let now = state.now_unix();
    let now_iso = model::now_iso(&state);
    state
        .db
        .tx(move |tx| {
            let link = find_link(tx, &key)?;
            admit(tx, &link, now, &access)?;
            let mut body = json!({ "link": public_link_json(&link) });
            // UPLOAD recipients never see what is already in the folder.
            let resource = match (link.link_type.as_str(), link.resource_type.as_str()) {
                ("UPLOAD", _) => {
                    body["upload"] = json!({ "max_file_size": link.options.max_file_size,
                                             "allowed_extensions": link.options.allowed_extensions });
                    Value::Null
                }
                (_, "file") => {
                    let n = live_node(tx, &link, &link.resource_id, "file")?
                        .ok_or_else(|| ApiError::deleted(format!("file {}", link.resource_id)))?;
                    file_meta(&n)
                }
                _ => listing(tx, &link)?,
            };
            body["resource"] = resource;
            tx.execute("UPDATE links SET view_count = view_count + 1 WHERE id = ?1", [&link.id])?;
            log_session(tx, &link, &now_iso, &access, "view")?;
            Ok(Json(body))
        })
        .await
}

async fn download_by_token(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Query(q): Query<PublicQuery>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let a = access(&headers, peer, &q);
    download(state, Key::Token(token), a, q.file_id).await
}

async fn download_by_code(
    State(state): State<AppState>,
    Path(code): Path<String>,
    Query(q): Query<PublicQuery>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let a = access(&headers, peer, &q);
    download(state, Key::Code(code), a, q.file_id).await
}

/// The file a download asks for: the linked file itself, or `file_id` inside the linked
/// folder/share. Anything outside the link's subtree is invisible (404).
fn target_file(conn: &Connection, link: &Link, file_id: Option<&str>) -> ApiResult<Node> {
    if link.resource_type == "file" {
        if file_id.is_some_and(|f| f != link.resource_id) {
            return Err(ApiError::not_found(format!(
                "file {} in this link",
                file_id.unwrap_or_default()
            )));
        }
        return live_node(conn, link, &link.resource_id, "file")?
            .ok_or_else(|| ApiError::deleted(format!("file {}", link.resource_id)));
    }
    let Some(file_id) = file_id else {
        return Err(ApiError::validation(
            &["query", "file_id"],
            "file_id is required for folder and share links",
        ));
    };
    let node = live_node(conn, link, file_id, "file")?;
    let inside = match &node {
        Some(n) if link.resource_type == "folder" => {
            model::is_within(conn, &n.id, &link.resource_id)?
        }
        Some(_) => true,
        None => false,
    };
    match node {
        Some(n) if inside => Ok(n),
        _ => Err(ApiError::not_found(format!("file {file_id} in this link"))),
    }
}

fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(b as char);
        } else {
            let _ = write!(encoded, "%{b:02X}");
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

async fn download(
    state: AppState,
    key: Key,
    access: Access,
    file_id: Option<String>,
) -> ApiResult<Response> {
    let now = state.now_unix();
    let now_iso = model::now_iso(&state);
    let file = state
        .db
        .tx(move |tx| {
            let link = find_link(tx, &key)?;
            admit(tx, &link, now, &access)?;
            match link.link_type.as_str() {
                "DOWNLOAD" => {}
                "VIEW" => {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "LINK_VIEW_ONLY",
                        "this link allows viewing only",
                    ));
                }
                _ => {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "LINK_UPLOAD_ONLY",
                        "this link only accepts uploads",
                    ));
                }
            }
            let file = target_file(tx, &link, file_id.as_deref())?;
            tx.execute(
                "UPDATE links SET download_count = download_count + 1 WHERE id = ?1",
                [&link.id],
            )?;
            log_session(tx, &link, &now_iso, &access, "download")?;
            Ok(file)
        })
        .await?;
    let sha = file
        .sha256
        .as_deref()
        .ok_or_else(|| ApiError::internal(format!("file {} has no content", file.id)))?;
    let content = tokio::fs::File::open(state.blobs.path(sha)).await?;
    let mut resp = Body::from_stream(tokio_util::io::ReaderStream::new(content)).into_response();
    let h = resp.headers_mut();
    let mime = file
        .mime_type
        .as_deref()
        .unwrap_or("application/octet-stream");
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(mime).unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(file.size.max(0) as u64),
    );
    if let Ok(v) = HeaderValue::from_str(&content_disposition(&file.name)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

async fn upload_by_token(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Query(q): Query<PublicQuery>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Response> {
    upload(
        state,
        Key::Token(token),
        access(&headers, peer, &q),
        multipart,
    )
    .await
}

async fn upload_by_code(
    State(state): State<AppState>,
    Path(code): Path<String>,
    Query(q): Query<PublicQuery>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Response> {
    upload(
        state,
        Key::Code(code),
        access(&headers, peer, &q),
        multipart,
    )
    .await
}

fn check_extension(link: &Link, name: &str) -> ApiResult<()> {
    let Some(allowed) = &link.options.allowed_extensions else {
        return Ok(());
    };
    let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    if allowed
        .iter()
        .any(|a| a.trim_start_matches('.').eq_ignore_ascii_case(ext) && !ext.is_empty())
    {
        return Ok(());
    }
    let mut e = ApiError::validation(
        &["body", "file"],
        format!("files of type {ext:?} are not accepted by this link"),
    );
    e.code = "EXTENSION_NOT_ALLOWED";
    Err(e)
}

fn too_large(cap: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        format!("file is larger than {cap} bytes"),
    )
}

async fn upload(
    state: AppState,
    key: Key,
    access: Access,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Response> {
    let now = state.now_unix();
    // Gate before reading the body: a refused recipient must not get to stream content.
    let (k, a) = (key.clone(), access.clone());
    let link = state
        .db
        .call(move |conn| {
            let link = find_link(conn, &k)?;
            admit(conn, &link, now, &a)?;
            if link.link_type != "UPLOAD" {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "LINK_NOT_UPLOAD",
                    "this link does not accept uploads",
                ));
            }
            Ok(link)
        })
        .await?;
    let mut form = multipart.map_err(|e| ApiError::validation(&["body"], e.body_text()))?;
    let bad_form = |e: axum::extract::multipart::MultipartError| {
        ApiError::bad_request("INVALID_REQUEST", e.body_text())
    };
    let tenant_cap = state.settings().max_file_size;
    let cap = link
        .options
        .max_file_size
        .map_or(tenant_cap, |m| (m.max(0) as u64).min(tenant_cap));
    let mut name_field: Option<String> = None;
    let mut content: Option<(String, u64, Option<String>)> = None;
    while let Some(mut field) = form.next_field().await.map_err(bad_form)? {
        let field_name = field.name().map(str::to_string);
        match field_name.as_deref() {
            Some("name") => name_field = Some(field.text().await.map_err(bad_form)?),
            Some("file") => {
                if content.is_some() {
                    return Err(ApiError::validation(
                        &["body", "file"],
                        "exactly one file part is allowed",
                    ));
                }
                let part_name = field.file_name().map(str::to_string);
                if let Some(n) = name_field.as_deref().or(part_name.as_deref()) {
                    check_extension(&link, n)?;
                }
                let mut writer = state.blobs.writer().await?;
                loop {
                    match field.chunk().await {
                        Ok(Some(chunk)) => {
                            if writer.size() + chunk.len() as u64 > cap {
                                writer.abort().await;
                                return Err(too_large(cap));
                            }
                            if let Err(e) = writer.write(&chunk).await {
                                writer.abort().await;
                                return Err(e.into());
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            writer.abort().await;
                            return Err(bad_form(e));
                        }
                    }
                }
                let (sha, size) = writer.finish().await?;
                content = Some((sha, size, part_name));
            }
            other => {
                let other = other.unwrap_or_default().to_string();
                return Err(ApiError::validation(
                    &["body", &other],
                    format!("unexpected form field {other:?}"),
                ));
            }
        }
    }
    let Some((sha, size, part_name)) = content else {
        return Err(ApiError::validation(
            &["body", "file"],
            "a file part is required",
        ));
    };
    let name = name_field.or(part_name).ok_or_else(|| {
        ApiError::validation(
            &["body", "name"],
            "the file needs a name (a name field or a part filename)",
        )
    })?;
    util::check_name(&name)?;
    check_extension(&link, &name)?;
    let now_iso = model::now_iso(&state);
    state
        .db
        .tx(move |tx| {
            // Re-checked inside the write transaction: the link may have been revoked or
            // the folder deleted while the body streamed.
            let link = find_link(tx, &key)?;
            admit(tx, &link, now, &access)?;
            let folder_id = link.options.upload_folder_id.clone().unwrap_or_default();
            let folder = live_node(tx, &link, &folder_id, "folder")?
                .ok_or_else(|| ApiError::deleted(format!("folder {folder_id}")))?;
            // The upload is the link creator's act: their permissions, their change entry.
            let creator: Option<(String, bool)> = tx
                .query_row(
                    "SELECT tenant_id, is_admin FROM users WHERE id = ?1",
                    [&link.created_by],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((tenant_id, is_admin)) = creator else {
                return Err(ApiError::new(
                    StatusCode::GONE,
                    "LINK_REVOKED",
                    "the link's creator no longer exists",
                ));
            };
            let acting = Caller {
                user_id: link.created_by.clone(),
                tenant_id,
                is_admin,
                scopes: Vec::new(),
            };
            model::require(tx, &acting, &link.share_id, CREATE)?;
            model::ensure_free(tx, &link.share_id, &folder.id, &name)?;
            model::check_quota(tx, &link.share_id, size as i64)?;
            let node = model::insert_file(
                tx,
                &acting,
                &link.share_id,
                &folder.id,
                &name,
                &sha,
                size as i64,
                util::mime_for(&name),
                &now_iso,
            )?;
            log_session(tx, &link, &now_iso, &access, "upload")?;
            let body = json!({ "name": node.name, "size": node.size, "mime_type": node.mime_type,
                               "checksum_sha256": node.sha256, "uploaded_at": node.created_at });
            Ok((StatusCode::CREATED, Json(body)).into_response())
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_matching() {
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(ip_in_cidr(v4, "10.0.0.0/8"));
        assert!(!ip_in_cidr(v4, "192.168.0.0/16"));
        assert!(ip_in_cidr(v4, "10.1.2.3"));
        assert!(ip_in_cidr(v4, "0.0.0.0/0"));
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert!(ip_in_cidr(mapped, "10.0.0.0/8"));
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert!(ip_in_cidr(v6, "2001:db8::/32"));
        assert!(!ip_in_cidr(v6, "10.0.0.0/8"));
        for bad in [
            "10.0.0.0/33",
            "10.0.0/8",
            "x",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "::/129",
        ] {
            assert!(parse_cidr(bad).is_none(), "{bad} should be rejected");
        }
    }

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

    #[test]
    fn disposition_escapes() {
        assert_eq!(
            content_disposition("a b.txt"),
            "attachment; filename=\"a b.txt\"; filename*=UTF-8''a%20b.txt"
        );
        assert!(content_disposition("q\"é.txt").starts_with("attachment; filename=\"q__.txt\""));
    }
}
