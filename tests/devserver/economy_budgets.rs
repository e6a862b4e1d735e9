//! The three rate-limit budgets of `scaidrive-api.md` §5 (issue 19, item 6): a token's,
//! its user's across all their tokens, and the tenant's across all its users. A request is
//! charged to all three only if all three allow it; a refusal is the enveloped 429 naming
//! the spent budget in `error.details.dimension` with that budget's limit, while the
//! `X-RateLimit-*` headers stay the token's.

use reqwest::Method;
use serde_json::json;

use crate::harness::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_tenant_budgets_are_shared_and_named_in_the_429() {
    let h = Harness::start_with(|c| {
        c.settings.rate_limit = 1000;
        c.settings.user_rate_limit = 10;
        c.settings.tenant_rate_limit = 16;
    })
    .await;
    // Token A spends the user's 10 units (metadata GETs cost 1).
    for i in 0..10 {
        let r = h.get("/users/me").await.expect(200);
        assert_eq!(
            r.header("x-ratelimit-remaining"),
            Some((999 - i).to_string()),
            "the headers are the token's budget"
        );
    }
    // Token B of the same user: its own token budget is untouched, the user's is spent.
    let b = h.admin(Method::POST, "/tokens", json!({})).await;
    let b = b["access_token"].as_str().unwrap().to_string();
    let r = h
        .as_token(&b)
        .get("/users/me")
        .await
        .expect_err(429, "RATE_LIMITED");
    assert_eq!(
        r.json["error"]["details"]["dimension"], "user",
        "{}",
        r.json
    );
    assert_eq!(r.json["error"]["details"]["limit"], 10);
    assert_eq!(r.json["error"]["details"]["window_seconds"], 60);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(r.header("x-ratelimit-limit").as_deref(), Some("1000"));

    // Another user of the tenant has a user budget of its own, and spends the tenant's
    // last 6 units (the refused request above was not charged anywhere).
    let (_, c) = h.user_with_role("reader").await;
    for _ in 0..6 {
        h.as_token(&c).get("/users/me").await.expect(200);
    }
    let r = h
        .as_token(&c)
        .get("/users/me")
        .await
        .expect_err(429, "RATE_LIMITED");
    assert_eq!(
        r.json["error"]["details"]["dimension"], "tenant",
        "{}",
        r.json
    );
    assert_eq!(r.json["error"]["details"]["limit"], 16);
    let stats = h.stats().await;
    assert_eq!(stats["rate_limited_total"], 2, "{stats}");
    assert_eq!(
        stats["units_total"], 16,
        "refusals are not charged: {stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_defaults_and_a_forced_429_naming_a_budget() {
    let h = Harness::start_with(|c| c.settings.rate_limit = 1000).await;
    let s = h.admin(Method::GET, "/settings", json!(null)).await;
    assert_eq!(
        (
            s["user_rate_limit"].as_u64(),
            s["tenant_rate_limit"].as_u64()
        ),
        (Some(5000), Some(50000))
    );
    h.admin(
        Method::POST,
        "/faults",
        json!({ "force_429": 1, "retry_after_secs": 2, "force_429_dimension": "user" }),
    )
    .await;
    let r = h.get("/users/me").await.expect_err(429, "RATE_LIMITED");
    assert_eq!(r.json["error"]["details"]["dimension"], "user");
    assert_eq!(r.json["error"]["details"]["limit"], 5000);
    assert_eq!(r.header("retry-after").as_deref(), Some("2"));
    h.get("/users/me").await.expect(200);
}
