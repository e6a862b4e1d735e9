//! API response handling: what the ScaiDrive client makes of an HTTP status, headers and
//! body it does not control (a proxy's HTML page, a truncated body, a server bug).
//!
//! The error parser (`Error::from_response`, `ErrorBody::parse`) is crate-private, so this
//! target compiles the real `src/remote/error.rs` into itself with `#[path]` (a tiny
//! `retry` module forwards its one outside call, `parse_retry_after`, to the library). The
//! typed bodies (`src/remote/types.rs`) and the rate-limit header reading
//! (`remote::pace::Reading`) are public and called directly. What is checked:
//!
//! - nothing panics: not the error parser on any status 100..=999 with any headers and
//!   body, not the typed decoders, not the `Retry-After` / `X-RateLimit-*` parsers;
//! - the error's `Display` is one line (no `\n` or `\r`), non-empty, and names the status;
//!   `status()`, `kind()` and `is_transient()` agree with the status code;
//! - what the error reports agrees with an independent reading of the body: `code()` is
//!   the envelope's string `error.code`, `request_id()` the body's `meta.request_id` (else
//!   the `X-Request-ID` header), and a `{"detail": "..."}` string becomes the message;
//! - a success body that does not decode becomes a `Decode` error whose `Display` is also
//!   one line.
//!
//! The two library bugs this target found (a `retry_after` of 1e30 s panicked; a code or
//! request id with a newline made a multi-line error) are fixed; their inputs are in the
//! corpus (`retry-after-huge`, `code-with-newline`) and nothing is tolerated.
//!
//! Input format (readable seeds): the status on the first line, `name: value` header lines,
//! an empty line, then the body bytes. Seeds are the error bodies of `scaidrive-api.md`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use scaidrive::remote::{self, pace::Reading};
use serde_json::Value;

// Not formatted from here: the file belongs to the main crate (its own `cargo fmt`).
#[rustfmt::skip]
#[allow(dead_code, unused_imports)]
#[path = "../../../src/remote/error.rs"]
mod error;

use error::{Error, ErrorBody, ErrorKind};

/// `error.rs` names the budget a 429 spent with `super::pace::RateDimension`.
mod pace {
    pub use scaidrive::remote::pace::*;
}

struct Input<'a> {
    status: u16,
    headers: HeaderMap,
    raw_headers: Vec<(String, Vec<u8>)>,
    body: &'a [u8],
}

fn parse_input(data: &[u8]) -> Input<'_> {
    let mut rest = data;
    let next_line = |rest: &mut &[u8]| -> Option<Vec<u8>> {
        if rest.is_empty() {
            return None;
        }
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let mut line = rest[..end].to_vec();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        *rest = &rest[(end + 1).min(rest.len())..];
        Some(line)
    };
    let status = next_line(&mut rest)
        .and_then(|l| String::from_utf8_lossy(&l).trim().parse::<u16>().ok())
        .unwrap_or(500);
    let mut headers = HeaderMap::new();
    let mut raw_headers = Vec::new();
    while let Some(line) = next_line(&mut rest) {
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = String::from_utf8_lossy(&line[..colon])
            .trim()
            .to_ascii_lowercase();
        let value = line[colon + 1..].trim_ascii().to_vec();
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) {
            headers.append(n, v);
            raw_headers.push((name, value));
        }
    }
    Input {
        status,
        headers,
        raw_headers,
        body: rest,
    }
}

fn assert_one_line(what: &str, s: &str) {
    assert!(!s.is_empty(), "{what}: empty");
    assert!(
        !s.contains('\n') && !s.contains('\r'),
        "{what}: not one line: {s:?}"
    );
}

/// Every typed body the client decodes; a failure becomes a one-line `Decode` error.
fn decode_all(body: &[u8]) {
    fn one<T: serde::de::DeserializeOwned>(body: &[u8]) -> Option<T> {
        match serde_json::from_slice::<T>(body) {
            Ok(v) => Some(v),
            Err(e) => {
                let err = Error::decode_unplaced(e).at(&Method::GET, "/api/v1/x");
                assert_eq!(err.kind(), ErrorKind::Decode);
                assert!(!err.is_transient(), "a decode error is not transient");
                assert_one_line("decode error", &err.to_string());
                None
            }
        }
    }
    one::<remote::Health>(body);
    one::<remote::User>(body);
    one::<remote::ShareSummary>(body).map(|s| s.can_write());
    one::<remote::Share>(body);
    one::<remote::Folder>(body);
    if let Some(c) = one::<remote::Children>(body) {
        for item in &c.items {
            // `find` returns a live item of that name and kind, never another.
            if let Some(found) = c.find(&item.name, item.kind) {
                assert_eq!((&found.name, found.kind), (&item.name, item.kind));
                assert_ne!(found.is_deleted, Some(true));
            }
        }
    }
    one::<remote::RemoteFile>(body);
    one::<remote::Versions>(body);
    one::<remote::UploadSession>(body);
    one::<remote::UploadStatus>(body);
    one::<remote::Completed>(body);
    one::<remote::Link>(body);
    one::<remote::LinksPage>(body);
    one::<remote::Changes>(body);
    one::<remote::SyncStatus>(body);
    one::<remote::CursorAck>(body);
    one::<remote::Cursor>(body);
}

fuzz_target!(|data: &[u8]| {
    let input = parse_input(data);
    let body = input.body;

    // Headers the client reads on every response.
    let _ = Reading::from_headers(&input.headers);
    let now = std::time::SystemTime::now();
    for (name, value) in &input.raw_headers {
        if name == "retry-after"
            && let Ok(v) = std::str::from_utf8(value)
        {
            let _ = error::parse_retry_after(v, now);
        }
    }

    let json: Option<Value> = serde_json::from_slice(body).ok();

    let parsed = ErrorBody::parse(body);
    decode_all(body);

    let Ok(status) = StatusCode::from_u16(input.status) else {
        return;
    };
    for (method, path) in [
        (Method::POST, "/api/v1/files"),
        (Method::GET, "/api/v1/folders/fld_1/children"),
    ] {
        let e = Error::from_response(&method, path, status, &input.headers, body);
        let text = e.to_string();
        assert_one_line("error", &text);
        let _ = format!("{e:?}");
        assert!(
            text.contains(&format!("HTTP {}", status.as_u16())),
            "the status is not named: {text:?}"
        );
        assert_eq!(e.kind(), ErrorKind::Http);
        assert_eq!(e.status(), Some(status));
        assert_eq!(
            e.is_transient(),
            matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504),
            "{text}"
        );
        let _ = (
            e.is_name_conflict(),
            e.existing_id(),
            e.existing_type(),
            e.retry_after(),
        );

        // An independent reading of the documented shapes.
        let envelope = json
            .as_ref()
            .and_then(|v| v.get("error"))
            .filter(|e| e.is_object());
        let want_code = envelope.and_then(|e| e.get("code")).and_then(Value::as_str);
        assert_eq!(e.code(), want_code, "code of {text}");
        assert_eq!(parsed.code.as_deref(), want_code);
        let body_rid = envelope
            .and(json.as_ref())
            .and_then(|v| v.get("meta"))
            .and_then(|m| m.get("request_id"))
            .and_then(Value::as_str);
        let header_rid = input
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok());
        assert_eq!(
            e.request_id(),
            body_rid.or(header_rid),
            "request id of {text}"
        );
        let envelope_msg = envelope
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str);
        let detail_msg = json
            .as_ref()
            .and_then(|v| v.get("detail"))
            .and_then(Value::as_str);
        if let Some(m) = envelope_msg.or(detail_msg) {
            assert_eq!(e.message(), m, "message of {text}");
        }
    }
});
