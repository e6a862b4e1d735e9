//! What a client may set on a link: option checks by link type, expiry against the
//! tenant policy, the UPLOAD folder's place, and the IP ranges a link may be limited to.
//! Shared by create and patch (and the recipient gate, for the ranges).

use std::net::IpAddr;

use axum::http::StatusCode;
use rusqlite::Connection;
use time::OffsetDateTime;

use super::{Link, MAX_EXPIRY_DAYS, Options, Policy};
use crate::devserver::error::{ApiError, ApiResult};
use crate::devserver::model;
use crate::devserver::util;

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

pub(super) fn ip_in_cidr(ip: IpAddr, cidr: &str) -> bool {
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

pub(super) fn invalid(field: &str, msg: impl Into<String>) -> ApiError {
    ApiError::validation(&["body", field], msg)
}

pub(super) fn validation_with_code(
    code: &'static str,
    field: &str,
    msg: impl Into<String>,
) -> ApiError {
    let mut e = invalid(field, msg);
    e.code = code;
    e
}

/// Checks the options that do not need the database, for the given link type.
pub(super) fn check_options(o: &Options, link_type: &str) -> ApiResult<()> {
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
pub(super) fn check_upload_folder(conn: &Connection, link: &Link) -> ApiResult<()> {
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
pub(super) fn resolve_expiry(
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

pub(super) fn check_expiry_policy(
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

pub(super) fn sharing_disabled() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "EXTERNAL_SHARING_DISABLED",
        "external sharing is disabled for this tenant",
    )
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
}
