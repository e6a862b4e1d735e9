//! Small helpers the devserver's handlers share: ids, timestamps, name rules, MIME types.

use rand::Rng;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::error::ApiError;

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// `<prefix>_` + a 26-character ULID (48-bit milliseconds, 80 random bits).
pub fn new_id(prefix: &str) -> String {
    let ms = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let rand: u128 = rand::rng().random::<u128>() & ((1u128 << 80) - 1);
    let value: u128 = ((ms as u128 & ((1u128 << 48) - 1)) << 80) | rand;
    let mut out = String::with_capacity(prefix.len() + 27);
    out.push_str(prefix);
    out.push('_');
    for i in (0..26).rev() {
        out.push(CROCKFORD[((value >> (i * 5)) & 31) as usize] as char);
    }
    out
}

/// A random URL-safe token of `len` characters.
pub fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// ISO-8601 UTC with `Z`, second precision, as the docs show (`2026-04-23T10:15:00Z`).
pub fn iso(t: OffsetDateTime) -> String {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

pub fn iso_unix(secs: i64) -> String {
    iso(OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH))
}

pub fn parse_iso(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// The documented name rules: no `/`, no NUL, no leading/trailing whitespace, not empty,
/// not `.`/`..`, at most 255 bytes. Violations are 400 `INVALID_PATH`.
pub fn check_name(name: &str) -> Result<(), ApiError> {
    let bad = |why: &str| {
        Err(ApiError::bad_request(
            "INVALID_PATH",
            format!("invalid name {name:?}: {why}"),
        ))
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name == "." || name == ".." {
        return bad("reserved name");
    }
    if name.contains('/') {
        return bad("contains '/'");
    }
    if name.contains('\0') {
        return bad("contains NUL");
    }
    if name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace) {
        return bad("leading or trailing whitespace");
    }
    if name.len() > 255 {
        return bad("longer than 255 bytes");
    }
    Ok(())
}

/// MIME type from the extension, as the server derives it.
pub fn mime_for(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "log" | "md" => "text/plain",
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "csv" => "text/csv",
        "json" => "application/json",
        "xml" => "application/xml",
        "js" => "text/javascript",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "tar" => "application/x-tar",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "webp" => "image/webp",
        "mp3" => "audio/mpeg",
        "mp4" => "video/mp4",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "pptx" => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        _ => "application/octet-stream",
    }
}

/// Serde helper: distinguishes an explicit `null` (`Some(None)`) from an absent field
/// (`None`, with `#[serde(default)]`).
pub fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    Ok(Some(serde::Deserialize::deserialize(d)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_prefix_and_ulid_length() {
        let id = new_id("fld");
        assert!(id.starts_with("fld_"));
        assert_eq!(id.len(), 4 + 26);
        assert_ne!(new_id("fld"), new_id("fld"));
    }

    #[test]
    fn name_rules() {
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a\0b",
            " a",
            "a ",
            "\ta",
            &"x".repeat(256),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} should be rejected");
        }
        for good in [
            "a",
            "a b",
            "report (1).pdf",
            "ünïcødé",
            "a\\b",
            &"x".repeat(255),
        ] {
            assert!(check_name(good).is_ok(), "{good:?} should be accepted");
        }
    }

    #[test]
    fn iso_has_z_and_seconds() {
        assert_eq!(iso_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            parse_iso("2026-04-23T10:15:00Z").map(|t| t.unix_timestamp()),
            Some(1776939300)
        );
    }
}
