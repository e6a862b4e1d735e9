//! The control protocol (`scaidrive::control::protocol`): arbitrary bytes as every request
//! body the daemon's control server extracts (through axum's own `Json` and `Query`
//! extractors, the code the server runs) and as every response `scaidrivectl` parses.
//!
//! Why: the control socket takes input from any process of the daemon's user, and
//! `scaidrivectl` must survive a daemon of another release; the typed protocol is the
//! contract between the two. What is checked:
//!
//! - deserializing arbitrary bytes as any request or response type never panics;
//! - whatever parses survives a round trip: serialize, parse again, and the value (or,
//!   for types without `PartialEq`, its JSON) is unchanged — a field that serializes
//!   differently from how it parses would break `scaidrivectl --json` consumers;
//! - the query strings the client builds (`MirrorQuery::to_query`, `LinksQuery::to_query`)
//!   for any mirror name, appended to the route, form a valid request URI that the
//!   server's `Query` extractor parses back to exactly the same value — a name with `&`,
//!   `=`, `%`, `+`, `#`, spaces or non-ASCII must reach the daemon intact;
//! - an arbitrary query string given to the server's extractors never panics.
//!
//! Input: raw bytes, used whole as a JSON body, as a query string, and (when UTF-8) as
//! a mirror name.

#![no_main]

use axum::extract::Query;
use axum::http::Uri;
use libfuzzer_sys::fuzz_target;
use scaidrive::control::protocol::{
    ActionRequest, ActionResponse, ErrorResponse, FailuresResponse, LinkBody, LinkResponse,
    LinksQuery, LinksResponse, MirrorQuery, ResumeRequest, StatusResponse, UnlinkBody,
    UnlinkResponse, VerifyRequest, VerifyResponse, route,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Parses `data` as `T` the way the control server does (axum's `Json`), and if it parses,
/// checks the serialize → parse round trip on the JSON level.
fn request<T: DeserializeOwned + Serialize>(data: &[u8]) -> Option<T> {
    let via_axum = axum::Json::<T>::from_bytes(data).ok().map(|j| j.0);
    let via_serde = serde_json::from_slice::<T>(data).ok();
    assert_eq!(
        via_axum.is_some(),
        via_serde.is_some(),
        "axum's Json and serde_json disagree on {}",
        std::any::type_name::<T>()
    );
    let v = via_axum?;
    round_trip(&v);
    Some(v)
}

/// Parses `data` as `T` the way `scaidrivectl` does (`serde_json::from_str` of the body).
fn response<T: DeserializeOwned + Serialize>(data: &[u8]) -> Option<T> {
    let text = std::str::from_utf8(data).ok()?;
    let v = serde_json::from_str::<T>(text).ok()?;
    round_trip(&v);
    Some(v)
}

fn round_trip<T: DeserializeOwned + Serialize>(v: &T) {
    let name = std::any::type_name::<T>();
    let json =
        serde_json::to_string(v).unwrap_or_else(|e| panic!("{name} does not serialize: {e}"));
    let back: T = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("{name} does not parse its own JSON {json}: {e}"));
    let first: Value = serde_json::from_str(&json).unwrap();
    let second = serde_json::to_value(&back).unwrap();
    assert_eq!(first, second, "{name} changes across a round trip");
}

fn query<T: DeserializeOwned>(path_and_query: &str) -> Option<T> {
    let uri: Uri = path_and_query.parse().ok()?;
    Query::<T>::try_from_uri(&uri).ok().map(|q| q.0)
}

fuzz_target!(|data: &[u8]| {
    // Requests, as the server extracts them.
    if let Some(v) = request::<MirrorQuery>(data) {
        let again: MirrorQuery = serde_json::from_value(serde_json::to_value(&v).unwrap()).unwrap();
        assert_eq!(again, v);
    }
    if let Some(v) = request::<ActionRequest>(data) {
        let again: ActionRequest =
            serde_json::from_value(serde_json::to_value(&v).unwrap()).unwrap();
        assert_eq!(again, v);
    }
    if let Some(v) = request::<ResumeRequest>(data) {
        let again: ResumeRequest =
            serde_json::from_value(serde_json::to_value(&v).unwrap()).unwrap();
        assert_eq!(again, v);
    }
    if let Some(v) = request::<VerifyRequest>(data) {
        let again: VerifyRequest =
            serde_json::from_value(serde_json::to_value(&v).unwrap()).unwrap();
        assert_eq!(again, v);
    }
    if let Some(mut b) = request::<LinkBody>(data) {
        // The password travels in the body but `Debug` never shows it (unless another
        // field happens to hold the same text).
        let shown = format!("{b:?}");
        if let Some(p) = b.password.take() {
            let quoted = format!("{:?}", p.expose());
            if !format!("{b:?}").contains(&quoted) {
                assert!(
                    !shown.contains(&quoted),
                    "LinkBody's Debug shows its password: {shown}"
                );
            }
        }
    }
    request::<UnlinkBody>(data);

    // Responses, as scaidrivectl parses them.
    response::<ErrorResponse>(data);
    response::<StatusResponse>(data);
    response::<FailuresResponse>(data);
    response::<ActionResponse>(data);
    response::<VerifyResponse>(data);
    response::<LinkResponse>(data);
    response::<LinksResponse>(data);
    response::<UnlinkResponse>(data);

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    // Any query string on the GET routes.
    for r in [route::STATUS, route::FAILURES] {
        let _ = query::<MirrorQuery>(&format!("{r}?{text}"));
    }
    let _ = query::<LinksQuery>(&format!("{}?{text}", route::LINKS));

    // The client's query for a mirror named `text` reaches the server unchanged.
    let mq = MirrorQuery::new(Some(text.to_string()));
    let built = format!("{}{}", route::STATUS, mq.to_query());
    let uri: Uri = built
        .parse()
        .unwrap_or_else(|e| panic!("the client builds an invalid URI {built:?}: {e}"));
    let got = Query::<MirrorQuery>::try_from_uri(&uri)
        .unwrap_or_else(|e| panic!("the server refuses the client's query {built:?}: {e}"))
        .0;
    assert_eq!(got, mq, "mirror name changed on the way: {built:?}");
    assert_eq!(MirrorQuery::new(None).to_query(), "", "no mirror, no query");
    for refresh in [None, Some(true), Some(false)] {
        let lq = LinksQuery {
            mirror: Some(text.to_string()),
            refresh,
        };
        let built = format!("{}{}", route::LINKS, lq.to_query());
        let got: LinksQuery = query(&built)
            .unwrap_or_else(|| panic!("the server cannot read the client's query {built:?}"));
        assert_eq!(got, lq, "links query changed on the way: {built:?}");
    }
});
