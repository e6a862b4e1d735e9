//! The recipient routes behind a link's `url` (`/share/{token}`) and `short_url`
//! (`/s/{code}`): the gate every access passes (state, then who, then what they know),
//! view, download and the UPLOAD drop-zone, each access written to `link_sessions`.

use std::fmt::Write as _;
use std::net::IpAddr;

use axum::Extension;
use axum::body::Body;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Deserialize;
use serde_json::{Value, json};

use super::rules::{ip_in_cidr, sharing_disabled};
use super::{Health, LINK_COLS, Link, health, live_node, verify_password};
use crate::devserver::Peer;
use crate::devserver::error::{ApiError, ApiResult, Json, Path, Query};
use crate::devserver::model::{self, CREATE, Caller, Node};
use crate::devserver::state::AppState;
use crate::devserver::util;

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
pub(super) struct PublicQuery {
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

pub(super) async fn view_by_token(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Query(q): Query<PublicQuery>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    view(state, Key::Token(token), access(&headers, peer, &q)).await
}

pub(super) async fn view_by_code(
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

pub(super) async fn download_by_token(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Query(q): Query<PublicQuery>,
    peer: Option<Extension<Peer>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let a = access(&headers, peer, &q);
    download(state, Key::Token(token), a, q.file_id).await
}

pub(super) async fn download_by_code(
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

pub(super) async fn upload_by_token(
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

pub(super) async fn upload_by_code(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disposition_escapes() {
        assert_eq!(
            content_disposition("a b.txt"),
            "attachment; filename=\"a b.txt\"; filename*=UTF-8''a%20b.txt"
        );
        assert!(content_disposition("q\"é.txt").starts_with("attachment; filename=\"q__.txt\""));
    }
}
