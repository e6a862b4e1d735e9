//! The client's error type: what went wrong talking to ScaiDrive, with enough context to
//! branch on (`status()`, then `code()`) and to log (`request_id()`, one-line `Display`).
//!
//! Both documented error bodies are parsed here — the envelope
//! `{"status":"error","error":{"code","message","details","retry_after"},"meta":{"request_id"}}`
//! and FastAPI's `{"detail": "..."}` / 422 `{"detail": [{loc,msg,type}]}` — so callers
//! never look at body text, and so is the `Retry-After` header ([`parse_retry_after`]).
//! Whether an error is worth retrying is decided by [`Error::is_transient`] and nowhere
//! else; the retry loop in `retry.rs` asks it. This module imports nothing else of the
//! client but the budget names of `pace` (which import nothing back), so the retry loop
//! depends on it and never the other way round.

use std::time::{Duration, SystemTime};

use reqwest::{Method, StatusCode};
use serde_json::Value;

/// [`Error::code`] of a transport error whose cause is a server certificate that did not
/// verify (unknown issuer, expired, wrong name): not transient.
pub const TLS_CERTIFICATE: &str = "TLS_CERTIFICATE";

/// What kind of failure this is; the coarse branch for callers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The server answered with a non-success status (see [`Error::status`]).
    Http,
    /// The access token was refused and could not be refreshed (no refresh token, or the
    /// refresh itself was refused). The daemon must stop and ask for new credentials.
    CredentialsNeeded,
    /// No usable response: connect failure, timeout, connection dropped mid-request.
    Transport,
    /// A success response whose body did not match the expected shape.
    Decode,
    /// A name the API would reject (`INVALID_PATH`), caught before any request.
    InvalidName,
    /// A local file could not be read (or changed size while we read it).
    LocalIo,
    /// The server's checksum of what we uploaded is not the local SHA-256.
    Integrity,
}

/// An error from the ScaiDrive client. `Display` is one line naming the request, the
/// HTTP status, the error code and the request id, e.g.
/// `POST /api/v1/files: HTTP 409 NAME_CONFLICT: name exists [request req_01]`.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.render())]
pub struct Error {
    // Boxed: errors travel through every `Result` of the client, and most are `Ok`.
    d: Box<Details>,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

#[derive(Debug)]
struct Details {
    kind: ErrorKind,
    method: Option<Method>,
    path: Option<String>,
    status: Option<StatusCode>,
    code: Option<String>,
    message: String,
    request_id: Option<String>,
    retry_after: Option<Duration>,
    details: Option<Value>,
}

impl Error {
    fn bare(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            d: Box::new(Details {
                kind,
                method: None,
                path: None,
                status: None,
                code: None,
                message: message.into(),
                request_id: None,
                retry_after: None,
                details: None,
            }),
            source: None,
        }
    }

    /// An error response, parsed from its status, headers and body (either shape).
    pub(crate) fn from_response(
        method: &Method,
        path: &str,
        status: StatusCode,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) -> Error {
        let parsed = ErrorBody::parse(body);
        let header_rid = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let header_retry = headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let message = parsed.message.clone().unwrap_or_else(|| {
            if body.is_empty() || parsed.recognised {
                status.canonical_reason().unwrap_or("error").to_string()
            } else {
                // Not JSON we understand (a proxy's HTML page?): keep a short excerpt.
                let text = String::from_utf8_lossy(body);
                let mut s: String = text.chars().take(200).collect();
                s = s.split_whitespace().collect::<Vec<_>>().join(" ");
                s
            }
        });
        Error {
            d: Box::new(Details {
                kind: ErrorKind::Http,
                method: Some(method.clone()),
                path: Some(path.to_string()),
                status: Some(status),
                code: parsed.code,
                message,
                request_id: parsed.request_id.or(header_rid),
                // The header is the documented signal; the body field is the fallback.
                retry_after: header_retry.or(parsed.retry_after),
                details: parsed.details,
            }),
            source: None,
        }
    }

    pub(crate) fn transport(method: &Method, path: &str, e: reqwest::Error) -> Error {
        Error::transport_unplaced(e).at(method, path)
    }

    /// A transport error while reading a body; [`Error::at`] adds the request later.
    pub(crate) fn transport_unplaced(e: reqwest::Error) -> Error {
        let chain = error_chain(&e);
        let what = if e.is_timeout() {
            "timed out"
        } else if is_certificate_error(&chain) {
            "the server's TLS certificate could not be verified"
        } else if e.is_connect() {
            "connection failed"
        } else {
            "connection lost"
        };
        let mut err = Error::bare(ErrorKind::Transport, format!("{what}: {chain}"));
        if is_certificate_error(&chain) {
            err.d.code = Some(TLS_CERTIFICATE.into());
        }
        err.source = Some(Box::new(e));
        err
    }

    /// A success body that does not decode; [`Error::at`] adds the request later.
    pub(crate) fn decode_unplaced(what: impl std::fmt::Display) -> Error {
        Error::bare(
            ErrorKind::Decode,
            format!("unexpected response body: {what}"),
        )
    }

    pub(crate) fn invalid_name(name: &str, why: &str) -> Error {
        let mut err = Error::bare(
            ErrorKind::InvalidName,
            format!("invalid name {name:?}: {why}"),
        );
        err.d.code = Some("INVALID_PATH".into());
        err
    }

    pub(crate) fn local_io(path: &std::path::Path, e: std::io::Error) -> Error {
        let mut err = Error::bare(
            ErrorKind::LocalIo,
            format!("reading {}: {e}", path.display()),
        );
        err.source = Some(Box::new(e));
        err
    }

    pub(crate) fn integrity(message: impl Into<String>) -> Error {
        Error::bare(ErrorKind::Integrity, message)
    }

    /// Turns an auth failure into "credentials needed", keeping the response's context.
    pub(crate) fn into_credentials_needed(mut self, why: &str) -> Error {
        self.d.kind = ErrorKind::CredentialsNeeded;
        self.d.message = format!("{why}: {}", self.d.message);
        self
    }

    /// Attaches the request a lower-level error belongs to (for one-line rendering).
    pub(crate) fn at(mut self, method: &Method, path: &str) -> Error {
        if self.d.method.is_none() {
            self.d.method = Some(method.clone());
            self.d.path = Some(path.to_string());
        }
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.d.kind
    }

    /// The HTTP status, if the server answered.
    pub fn status(&self) -> Option<StatusCode> {
        self.d.status
    }

    /// `error.code` from the enveloped body (`NAME_CONFLICT`, `QUOTA_EXCEEDED`, ...). The
    /// `{"detail"}` shape carries none, so branch on [`Error::status`] first.
    pub fn code(&self) -> Option<&str> {
        self.d.code.as_deref()
    }

    /// The human message (`error.message`, `detail`, or the joined 422 items).
    pub fn message(&self) -> &str {
        &self.d.message
    }

    /// `meta.request_id` from the body, else the `X-Request-ID` header.
    pub fn request_id(&self) -> Option<&str> {
        self.d.request_id.as_deref()
    }

    /// How long the server asked us to wait (`Retry-After`, else `error.retry_after`).
    pub fn retry_after(&self) -> Option<Duration> {
        self.d.retry_after
    }

    /// The budget a 429 names in `error.details.dimension` (`token`, `user`, `tenant`).
    pub fn rate_dimension(&self) -> Option<super::pace::RateDimension> {
        if self.status().is_none_or(|s| s.as_u16() != 429) {
            return None;
        }
        let d = self.d.details.as_ref()?.get("dimension")?.as_str()?;
        super::pace::RateDimension::parse(d)
    }

    /// `error.details` of the enveloped body (e.g. `existing_id` on a name conflict).
    pub fn details(&self) -> Option<&Value> {
        self.d.details.as_ref()
    }

    pub fn method(&self) -> Option<&Method> {
        self.d.method.as_ref()
    }

    pub fn path(&self) -> Option<&str> {
        self.d.path.as_deref()
    }

    /// Whether repeating the same request later may succeed: 429, 5xx (500/502/503/504)
    /// and transport failures. Every other 4xx needs a change of state first.
    pub fn is_transient(&self) -> bool {
        match self.d.kind {
            // A certificate that failed verification fails the same way next time.
            ErrorKind::Transport => self.code() != Some(TLS_CERTIFICATE),
            ErrorKind::Http => self
                .d
                .status
                .is_some_and(|s| matches!(s.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)),
            _ => false,
        }
    }

    /// Whether the server may still apply the request after this error was seen: no
    /// answer came (a timeout or a connection lost after the body went out), or a
    /// gateway answered for a backend that may still be working (502/503/504). Any other
    /// answer means the server finished with the request.
    pub fn may_apply_later(&self) -> bool {
        match self.d.kind {
            ErrorKind::Transport => self.code() != Some(TLS_CERTIFICATE),
            ErrorKind::Http => self
                .d
                .status
                .is_some_and(|s| matches!(s.as_u16(), 502..=504)),
            _ => false,
        }
    }

    /// True for errors that only a change on the local side can fix (bad name, unreadable
    /// file): the item should be recorded as failed, not retried soon.
    pub fn is_local(&self) -> bool {
        matches!(self.d.kind, ErrorKind::InvalidName | ErrorKind::LocalIo)
    }

    /// 409 from a create: a sibling with this name exists. The `{"detail"}` shape has
    /// no code, and a create's only documented 409 is the name collision, so a 409
    /// without a code counts as one.
    pub fn is_name_conflict(&self) -> bool {
        self.d.status == Some(StatusCode::CONFLICT)
            && matches!(self.code(), None | Some("NAME_CONFLICT"))
    }

    /// 413 `PAYLOAD_TOO_LARGE`. The seed's advice for it is "Use Resumable Uploads for
    /// large files": from a multipart upload it means "send this by session"; only from a
    /// session (judged against the per-file cap) is it final. The status alone decides
    /// (the `{"detail"}` shape has no code).
    pub fn is_payload_too_large(&self) -> bool {
        self.d.status == Some(StatusCode::PAYLOAD_TOO_LARGE)
    }

    /// A transport failure worth trying again (no usable response: connect error,
    /// timeout, a connection dropped mid-body); not a certificate that failed to verify.
    pub fn is_transient_transport(&self) -> bool {
        self.d.kind == ErrorKind::Transport && self.is_transient()
    }

    /// 410: the resource (or upload session) is gone or expired.
    pub fn is_gone(&self) -> bool {
        self.d.status == Some(StatusCode::GONE)
    }

    /// 404 or 410: the item (or the folder named in the path) is not there, or is deleted.
    pub fn is_absent(&self) -> bool {
        matches!(
            self.d.status,
            Some(StatusCode::NOT_FOUND | StatusCode::GONE)
        )
    }

    /// `error.details.existing_id` on a name conflict, when the server names the sibling.
    pub fn existing_id(&self) -> Option<&str> {
        self.d.details.as_ref()?.get("existing_id")?.as_str()
    }

    /// `error.details.existing_type` (`file` or `folder`) on a name conflict, if given.
    pub fn existing_type(&self) -> Option<&str> {
        self.d.details.as_ref()?.get("existing_type")?.as_str()
    }

    fn render(&self) -> String {
        let mut out = String::new();
        if let (Some(m), Some(p)) = (&self.d.method, &self.d.path) {
            out.push_str(&format!("{m} {p}: "));
        }
        match self.d.kind {
            ErrorKind::CredentialsNeeded => out.push_str("credentials needed: "),
            ErrorKind::Integrity => out.push_str("integrity check failed: "),
            _ => {}
        }
        if let Some(s) = self.d.status {
            out.push_str(&format!("HTTP {}", s.as_u16()));
            if let Some(c) = &self.d.code {
                out.push_str(&format!(" {}", one_line(c)));
            }
            if let Some(hint) = status_hint(s) {
                out.push_str(&format!(" ({hint})"));
            }
            out.push_str(": ");
        }
        // Keep it one line even if the server put newlines in its message.
        out.push_str(&one_line(&self.d.message.replace(['\n', '\r'], " ")));
        if let Some(r) = &self.d.request_id {
            out.push_str(&format!(" [request {}]", one_line(r)));
        }
        out
    }
}

/// Server-chosen text as it may appear in a log line: control characters (newlines, ESC)
/// are escaped, so a body can neither break the one-line promise nor forge a line or
/// colour a terminal.
fn one_line(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// Plain words for the statuses an operator must act on.
fn status_hint(s: StatusCode) -> Option<&'static str> {
    Some(match s.as_u16() {
        401 => "not authenticated",
        403 => "permission denied",
        413 => "file is larger than the server's per-file size limit",
        429 => "rate limited",
        507 => "storage quota exceeded",
        _ => return None,
    })
}

/// rustls reports verification failures as "invalid peer certificate: ..." (unknown
/// issuer, expired, wrong name); say so in plain words instead of "connection failed".
fn is_certificate_error(chain: &str) -> bool {
    let c = chain.to_ascii_lowercase();
    c.contains("invalid peer certificate") || c.contains("certificate verify failed")
}

/// reqwest's `Display` hides the cause ("error sending request"); the chain says why.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// What we could read out of an error body of either documented shape.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ErrorBody {
    pub code: Option<String>,
    pub message: Option<String>,
    pub request_id: Option<String>,
    pub retry_after: Option<Duration>,
    pub details: Option<Value>,
    /// Whether the body was JSON in one of the documented shapes.
    pub recognised: bool,
}

impl ErrorBody {
    pub(crate) fn parse(body: &[u8]) -> ErrorBody {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return ErrorBody::default();
        };
        let mut out = ErrorBody::default();
        if let Some(err) = v.get("error").filter(|e| e.is_object()) {
            out.recognised = true;
            out.code = err.get("code").and_then(Value::as_str).map(str::to_string);
            out.message = err
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string);
            out.details = err.get("details").cloned().filter(|d| !d.is_null());
            out.retry_after = err
                .get("retry_after")
                .and_then(|r| {
                    r.as_f64()
                        .or_else(|| r.as_str().and_then(|s| s.trim().parse().ok()))
                })
                .filter(|s| s.is_finite() && *s >= 0.0)
                // Clamped as the header's is: beyond 2^64 s `from_secs_f64` panics.
                .map(|s| Duration::from_secs_f64(s.min(1e9)));
            out.request_id = v
                .get("meta")
                .and_then(|m| m.get("request_id"))
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        match v.get("detail") {
            Some(Value::String(s)) => {
                out.recognised = true;
                out.message.get_or_insert_with(|| s.clone());
            }
            Some(Value::Array(items)) => {
                // FastAPI validation: one item per failing field.
                out.recognised = true;
                let joined = items
                    .iter()
                    .map(|it| {
                        let loc = it
                            .get("loc")
                            .and_then(Value::as_array)
                            .map(|l| {
                                l.iter()
                                    .map(|p| {
                                        p.as_str()
                                            .map(str::to_string)
                                            .unwrap_or_else(|| p.to_string())
                                    })
                                    .collect::<Vec<_>>()
                                    .join(".")
                            })
                            .unwrap_or_default();
                        let msg = it.get("msg").and_then(Value::as_str).unwrap_or("invalid");
                        if loc.is_empty() {
                            msg.to_string()
                        } else {
                            format!("{loc}: {msg}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                out.message.get_or_insert(joined);
                out.details
                    .get_or_insert_with(|| Value::Array(items.clone()));
            }
            _ => {}
        }
        out
    }
}

/// Parses `Retry-After`: delta-seconds (integer, or decimal from lenient servers) or an
/// HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`), relative to `now`. A date in the past
/// means "now" (zero); garbage means no hint.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)));
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(v, format).ok()?.assume_utc();
    let now = time::OffsetDateTime::from(now);
    let delta = at - now;
    Some(if delta.is_positive() {
        delta.try_into().unwrap_or_default()
    } else {
        Duration::ZERO
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn retry_after_formats() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        let cases: [(&str, Option<Duration>); 8] = [
            ("3", Some(Duration::from_secs(3))),
            (" 120 ", Some(Duration::from_secs(120))),
            ("1.5", Some(Duration::from_millis(1500))),
            ("-1", None),
            ("soon", None),
            (
                "Sun, 06 Nov 1994 08:49:47 GMT",
                Some(Duration::from_secs(10)),
            ),
            ("Sun, 06 Nov 1994 08:49:00 GMT", Some(Duration::ZERO)),
            ("Sunday, 06-Nov-94 08:49:37 GMT", None),
        ];
        for (v, want) in cases {
            assert_eq!(parse_retry_after(v, now), want, "{v:?}");
        }
    }

    fn err(status: u16, headers: &[(&str, &str)], body: &str) -> Error {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        Error::from_response(
            &Method::POST,
            "/api/v1/files",
            StatusCode::from_u16(status).unwrap(),
            &h,
            body.as_bytes(),
        )
    }

    #[test]
    fn envelope_body() {
        let e = err(
            409,
            &[("x-request-id", "req_header")],
            r#"{"status":"error","error":{"code":"NAME_CONFLICT","message":"a.txt exists",
               "details":{"existing_id":"fil_1"}},"meta":{"request_id":"req_body"}}"#,
        );
        assert_eq!(e.kind(), ErrorKind::Http);
        assert_eq!(e.status(), Some(StatusCode::CONFLICT));
        assert_eq!(e.code(), Some("NAME_CONFLICT"));
        assert_eq!(e.message(), "a.txt exists");
        assert_eq!(
            e.request_id(),
            Some("req_body"),
            "body meta wins over the header"
        );
        assert_eq!(e.existing_id(), Some("fil_1"));
        assert!(e.is_name_conflict());
        assert!(!e.is_transient());
        assert_eq!(
            e.to_string(),
            "POST /api/v1/files: HTTP 409 NAME_CONFLICT: a.txt exists [request req_body]"
        );
    }

    #[test]
    fn detail_string_body() {
        let e = err(
            403,
            &[("x-request-id", "req_h")],
            r#"{"detail":"Permission denied: WRITE on file/fil_1"}"#,
        );
        assert_eq!(e.code(), None);
        assert_eq!(e.message(), "Permission denied: WRITE on file/fil_1");
        assert_eq!(e.request_id(), Some("req_h"), "falls back to X-Request-ID");
        assert_eq!(
            e.to_string(),
            "POST /api/v1/files: HTTP 403 (permission denied): Permission denied: WRITE on file/fil_1 [request req_h]"
        );
    }

    #[test]
    fn detail_validation_array() {
        let e = err(
            422,
            &[],
            r#"{"detail":[{"loc":["body","name"],"msg":"field required","type":"missing"},
                          {"loc":["query","limit",0],"msg":"too big","type":"value_error"}]}"#,
        );
        assert_eq!(
            e.message(),
            "body.name: field required; query.limit.0: too big"
        );
        assert!(e.details().is_some_and(Value::is_array));
        assert!(!e.is_transient());
        assert_eq!(e.request_id(), None);
    }

    #[test]
    fn rate_limited_retry_after_sources() {
        let body = r#"{"status":"error","error":{"code":"RATE_LIMITED","message":"slow down","retry_after":22},"meta":{"request_id":"r"}}"#;
        let with_header = err(429, &[("retry-after", "3")], body);
        assert_eq!(
            with_header.retry_after(),
            Some(Duration::from_secs(3)),
            "header wins"
        );
        let body_only = err(429, &[], body);
        assert_eq!(body_only.retry_after(), Some(Duration::from_secs(22)));
        assert!(body_only.is_transient());
        assert_eq!(body_only.code(), Some("RATE_LIMITED"));
    }

    #[test]
    fn transient_classification_by_status() {
        let cases = [
            (400, false),
            (401, false),
            (403, false),
            (404, false),
            (408, true),
            (409, false),
            (410, false),
            (413, false),
            (422, false),
            (429, true),
            (500, true),
            (501, false),
            (502, true),
            (503, true),
            (504, true),
            (507, false),
        ];
        for (status, transient) in cases {
            assert_eq!(
                err(status, &[], "").is_transient(),
                transient,
                "status {status}"
            );
        }
    }

    #[test]
    fn non_json_body_is_kept_short_and_on_one_line() {
        let html = format!(
            "<html>\n<body>Bad gateway {}</body></html>",
            "x".repeat(500)
        );
        let e = err(502, &[], &html);
        assert!(e.message().starts_with("<html> <body>Bad gateway"));
        assert!(e.message().len() <= 200);
        assert!(!e.to_string().contains('\n'));
        let empty = err(504, &[], "");
        assert_eq!(empty.message(), "Gateway Timeout");
    }

    #[test]
    fn clear_messages_for_size_and_quota() {
        let e = err(413, &[], r#"{"detail":"file too large"}"#);
        assert!(
            e.to_string()
                .contains("HTTP 413 (file is larger than the server's per-file size limit)"),
            "{e}"
        );
        let e = err(
            507,
            &[],
            r#"{"status":"error","error":{"code":"QUOTA_EXCEEDED","message":"share quota"},"meta":{"request_id":"q"}}"#,
        );
        assert_eq!(
            e.to_string(),
            "POST /api/v1/files: HTTP 507 QUOTA_EXCEEDED (storage quota exceeded): share quota [request q]"
        );
        assert!(!e.is_transient());
    }

    #[test]
    fn name_conflict_without_code_counts_only_for_409() {
        assert!(err(409, &[], r#"{"detail":"exists"}"#).is_name_conflict());
        assert!(
            !err(
                409,
                &[],
                r#"{"status":"error","error":{"code":"UPLOAD_INCOMPLETE","message":"m"}}"#
            )
            .is_name_conflict()
        );
        assert!(!err(400, &[], r#"{"detail":"x"}"#).is_name_conflict());
    }

    #[test]
    fn local_errors_render_without_request() {
        let e = Error::invalid_name("a/b", "contains '/'");
        assert_eq!(e.to_string(), "invalid name \"a/b\": contains '/'");
        assert_eq!(e.kind(), ErrorKind::InvalidName);
        assert_eq!(e.code(), Some("INVALID_PATH"));
        assert!(!e.is_transient());
    }

    /// Found by the api_response fuzz target: a body's `retry_after` of 2^64 s or more
    /// panicked, and `error.code` / `meta.request_id` with control characters made a
    /// multi-line error that could forge a log line.
    #[test]
    fn hostile_error_bodies_neither_panic_nor_break_the_line() {
        let body = br#"{"status":"error","error":{"code":"RATE_LIMITED","message":"m","retry_after":1e30}}"#;
        let parsed = ErrorBody::parse(body);
        assert_eq!(parsed.retry_after, Some(Duration::from_secs(1_000_000_000)));
        let body = "{\"status\":\"error\",\"error\":{\"code\":\"A\\nB\",\"message\":\"x\\u001b[31m\"},\"meta\":{\"request_id\":\"r\\r\\nERROR forged\"}}";
        let e = err(409, &[], body);
        let shown = e.to_string();
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(
            shown.contains("A\\nB") && shown.contains("r\\r\\nERROR forged"),
            "{shown}"
        );
        assert_eq!(
            e.code(),
            Some("A\nB"),
            "the code itself is kept for branching"
        );
    }
}
