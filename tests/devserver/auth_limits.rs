//! Authentication, token refresh, users and shares, rate limits, both error shapes, and
//! the fault-injection hooks (5xx, lost responses, dropped connections, forced 429s).

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_needs_no_auth_and_api_needs_a_token() {
    let h = Harness::start().await;
    let r = h.send(h.http.get(h.api("/health"))).await.expect(200);
    assert_eq!(r.json["status"], "healthy");
    assert!(r.json["version"].is_string());
    assert!(
        r.header("x-request-id")
            .is_some_and(|v| v.starts_with("req_"))
    );
    h.send(h.http.get(h.api("/ready"))).await.expect(200);

    h.send(h.http.get(h.api("/users/me")))
        .await
        .expect_err(401, "AUTH_TOKEN_INVALID");
    h.send(h.http.get(h.api("/users/me")).bearer_auth("nope"))
        .await
        .expect_err(401, "AUTH_TOKEN_INVALID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_me_and_shares_have_documented_fields() {
    let h = Harness::start().await;
    let me = h.get("/users/me").await.expect(200);
    for k in [
        "id",
        "email",
        "name",
        "display_name",
        "tenant_id",
        "partner_id",
        "groups",
        "scopes",
        "is_admin",
        "admin_role",
    ] {
        assert!(me.json.get(k).is_some(), "users/me lacks {k}: {}", me.json);
    }
    assert!(me.json["id"].as_str().unwrap().starts_with("usr_"));

    let shares = h.get("/users/me/shares").await.expect(200);
    assert_eq!(shares.json["total"], 1);
    let s = &shares.json["shares"][0];
    for k in [
        "id",
        "name",
        "type",
        "role",
        "owner_id",
        "quota_bytes",
        "used_bytes",
        "created_at",
    ] {
        assert!(s.get(k).is_some(), "share list item lacks {k}: {s}");
    }
    assert_eq!(s["id"], h.share.as_str());
    assert_eq!(s["role"], "owner");
    h.get("/users/me/shares?limit=0")
        .await
        .expect_err(422, "VALIDATION_ERROR");
    h.get("/users/me/shares?limit=101")
        .await
        .expect_err(422, "VALIDATION_ERROR");
    assert_eq!(
        h.get("/users/me/shares?offset=1").await.expect(200).json["shares"],
        json!([])
    );

    let full = h.get(&format!("/shares/{}", h.share)).await.expect(200);
    for k in [
        "id",
        "tenant_id",
        "name",
        "description",
        "share_type",
        "owner_id",
        "is_public",
        "is_deleted",
        "quota_bytes",
        "used_bytes",
        "settings",
        "created_at",
        "modified_at",
    ] {
        assert!(
            full.json.get(k).is_some(),
            "share object lacks {k}: {}",
            full.json
        );
    }
    h.get("/shares/shr_missing")
        .await
        .expect_err(404, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_is_401_and_refresh_rotates() {
    let h = Harness::start_with(|c| c.settings.access_token_ttl_secs = 60).await;
    let issued = h
        .admin(
            Method::POST,
            "/tokens",
            json!({ "ttl_secs": 60, "refresh": true }),
        )
        .await;
    let access = issued["access_token"].as_str().unwrap().to_string();
    let refresh = issued["refresh_token"].as_str().unwrap().to_string();
    assert!(refresh.starts_with("rt_"));
    h.as_token(&access).get("/users/me").await.expect(200);

    h.admin(Method::POST, "/clock", json!({ "advance_secs": 61 }))
        .await;
    h.as_token(&access)
        .get("/users/me")
        .await
        .expect_err(401, "AUTH_TOKEN_EXPIRED");

    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
    ];
    let r = h
        .send(h.http.post(h.api("/auth/token")).form(&form))
        .await
        .expect(200);
    for k in ["access_token", "token_type", "expires_in", "refresh_token"] {
        assert!(r.json.get(k).is_some(), "token response lacks {k}");
    }
    assert_eq!(r.json["token_type"], "Bearer");
    assert_eq!(r.json["expires_in"], 60);
    let new_access = r.json["access_token"].as_str().unwrap().to_string();
    let new_refresh = r.json["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(new_refresh, refresh, "refresh tokens rotate");
    h.as_token(&new_access).get("/users/me").await.expect(200);

    // Single use: the old refresh token is refused, the new one works once.
    h.send(h.http.post(h.api("/auth/token")).form(&form))
        .await
        .expect_err(401, "AUTH_TOKEN_INVALID");
    let form2 = [
        ("grant_type", "refresh_token"),
        ("refresh_token", new_refresh.as_str()),
    ];
    h.send(h.http.post(h.api("/auth/token")).form(&form2))
        .await
        .expect(200);
    h.send(h.http.post(h.api("/auth/token")).form(&form2))
        .await
        .expect_err(401, "AUTH_TOKEN_INVALID");
    // Unsupported grant.
    h.send(
        h.http
            .post(h.api("/auth/token"))
            .form(&[("grant_type", "password")]),
    )
    .await
    .expect(400);

    // The admin hook expires tokens at once.
    h.admin(Method::POST, "/tokens/expire", json!({})).await;
    h.get("/users/me")
        .await
        .expect_err(401, "AUTH_TOKEN_EXPIRED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_user_is_403() {
    let h = Harness::start().await;
    let u = h
        .admin(Method::POST, "/users", json!({ "suspended": true }))
        .await;
    let t = h
        .admin(Method::POST, "/tokens", json!({ "user_id": u["id"] }))
        .await;
    h.as_token(t["access_token"].as_str().unwrap())
        .get("/users/me")
        .await
        .expect_err(403, "AUTHZ_USER_SUSPENDED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_headers_and_429_with_documented_costs() {
    let h = Harness::start_with(|c| c.settings.rate_limit = 20).await;
    let r = h.get("/users/me").await.expect(200);
    assert_eq!(r.header("x-ratelimit-limit").as_deref(), Some("20"));
    assert_eq!(
        r.header("x-ratelimit-remaining").as_deref(),
        Some("19"),
        "metadata GET costs 1"
    );
    let reset: i64 = r.header("x-ratelimit-reset").unwrap().parse().unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        reset > now && reset <= now + 61,
        "reset {reset} is a unix time within the window"
    );

    let r = h
        .get(&format!("/folders/root/children?share_id={}", h.share))
        .await
        .expect(200);
    assert_eq!(
        r.header("x-ratelimit-remaining").as_deref(),
        Some("17"),
        "a listing costs 2"
    );
    let r = h
        .post("/folders", json!({ "share_id": h.share, "name": "A" }))
        .await
        .expect(201);
    assert_eq!(
        r.header("x-ratelimit-remaining").as_deref(),
        Some("15"),
        "a write costs 2"
    );
    // Error responses are charged and carry the headers too.
    let r = h.get("/folders/fld_missing").await.expect(404);
    assert_eq!(r.header("x-ratelimit-remaining").as_deref(), Some("14"));

    for _ in 0..14 {
        h.get("/users/me").await.expect(200);
    }
    let r = h.get("/users/me").await.expect_err(429, "RATE_LIMITED");
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(r.json["error"]["retry_after"], retry);
    assert_eq!(r.json["error"]["details"]["dimension"], "token");
    assert_eq!(r.json["error"]["details"]["limit"], 20);
    assert_eq!(r.json["error"]["details"]["window_seconds"], 60);
    assert_eq!(r.header("x-ratelimit-remaining").as_deref(), Some("0"));

    // Another token has its own budget; unauthenticated health is not limited.
    let other = h.admin(Method::POST, "/tokens", json!({})).await;
    h.as_token(other["access_token"].as_str().unwrap())
        .get("/users/me")
        .await
        .expect(200);
    h.send(h.http.get(h.api("/health"))).await.expect(200);
    let stats = h.stats().await;
    assert_eq!(stats["rate_limited_total"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detail_shape_is_selectable_but_429_stays_enveloped() {
    let h =
        Harness::start_with(|c| c.settings.error_shape = scaidrive::devserver::ErrorShape::Detail)
            .await;
    let r = h.get("/folders/fld_missing").await.expect(404);
    assert!(r.json["detail"].is_string(), "detail shape: {}", r.json);
    assert!(r.json.get("error").is_none());
    let r = h
        .post("/folders", json!({ "share_id": h.share }))
        .await
        .expect(422);
    let items = r.json["detail"].as_array().expect("422 detail is an array");
    assert!(
        items[0]["loc"].is_array() && items[0]["msg"].is_string() && items[0]["type"].is_string()
    );

    h.admin(
        Method::POST,
        "/faults",
        json!({ "force_429": 1, "retry_after_secs": 3 }),
    )
    .await;
    let r = h.get("/users/me").await.expect_err(429, "RATE_LIMITED");
    assert_eq!(r.header("retry-after").as_deref(), Some("3"));
    h.get("/users/me").await.expect(200);

    // Switch back at run time.
    h.admin(
        Method::PATCH,
        "/settings",
        json!({ "error_shape": "envelope" }),
    )
    .await;
    h.get("/folders/fld_missing")
        .await
        .expect_err(404, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_route_is_an_enveloped_404() {
    let h = Harness::start().await;
    h.get("/no/such/route").await.expect_err(404, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_failures_before_and_after_apply() {
    let h = Harness::start().await;
    h.admin(Method::POST, "/faults", json!({ "fail_next": 2 }))
        .await;
    h.post("/folders", json!({ "share_id": h.share, "name": "A" }))
        .await
        .expect(503);
    h.post("/folders", json!({ "share_id": h.share, "name": "A" }))
        .await
        .expect(503);
    h.post("/folders", json!({ "share_id": h.share, "name": "A" }))
        .await
        .expect(201);

    // A lost response: the folder exists although the client saw a 500.
    h.admin(Method::POST, "/faults", json!({ "fail_after_rate": 1.0 }))
        .await;
    h.post("/folders", json!({ "share_id": h.share, "name": "B" }))
        .await
        .expect(500);
    h.admin(Method::POST, "/faults", json!({})).await;
    h.post("/folders", json!({ "share_id": h.share, "name": "B" }))
        .await
        .expect_err(409, "NAME_CONFLICT");

    // path_prefix limits faults to matching routes.
    h.admin(
        Method::POST,
        "/faults",
        json!({ "fail_rate": 1.0, "path_prefix": "/api/v1/files" }),
    )
    .await;
    h.get("/users/me").await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connection_reaches_the_client_as_a_transport_error() {
    let h = Harness::start().await;
    h.admin(
        Method::POST,
        "/faults",
        json!({ "drop_next": 1, "drop_after_bytes": 10 }),
    )
    .await;
    let err = h
        .req(Method::POST, "/folders")
        .json(&json!({ "share_id": h.share, "name": "Dropped" }))
        .send()
        .await
        .expect_err("the connection is cut without a response");
    assert!(!err.is_status(), "{err}");
    // Nothing was applied.
    h.post(
        "/folders",
        json!({ "share_id": h.share, "name": "Dropped" }),
    )
    .await
    .expect(201);
}

/// `apply_delay_ms`: a request read whole is applied after the delay even though its
/// client gave up (timed out, connection closed) before the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_request_is_applied_after_its_client_gave_up() {
    let h = Harness::start().await;
    h.admin(
        Method::POST,
        "/faults",
        json!({ "apply_delay_ms": 700, "path_prefix": "/api/v1/folders" }),
    )
    .await;
    let err = h
        .req(Method::POST, "/folders")
        .json(&json!({ "share_id": h.share, "name": "Late" }))
        .timeout(Duration::from_millis(150))
        .send()
        .await
        .expect_err("the client gives up first");
    assert!(err.is_timeout(), "{err}");
    h.admin(Method::POST, "/faults", json!({})).await;
    let listed = |v: &Value| {
        v["items"]
            .as_array()
            .is_some_and(|a| a.iter().any(|i| i["name"] == "Late"))
    };
    let path = format!("/folders/root/children?share_id={}", h.share);
    assert!(
        !listed(&h.get(&path).await.expect(200).json),
        "not applied yet"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        listed(&h.get(&path).await.expect(200).json),
        "applied after the delay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_is_added_per_request() {
    let h = Harness::start().await;
    h.admin(Method::POST, "/faults", json!({ "latency_ms": 150 }))
        .await;
    let t = Instant::now();
    h.get("/users/me").await.expect(200);
    assert!(t.elapsed() >= Duration::from_millis(150));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_requests_by_route() {
    let h = Harness::start().await;
    h.mkdir(None, "A").await;
    h.mkdir(None, "B").await;
    h.get("/users/me").await.expect(200);
    let s = h.stats().await;
    assert_eq!(s["by_route"]["POST /api/v1/folders"], 2);
    assert_eq!(s["by_route"]["GET /api/v1/users/me"], 1);
    h.admin(Method::POST, "/stats/reset", Value::Null).await;
    assert_eq!(h.stats().await["requests_total"], 0);
}
