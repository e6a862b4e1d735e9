//! A mirror whose requests meet 429s for the user's budget (several daemons of one user
//! share 5,000 units a minute) waits them out, syncs, and its status counts the 429s by the
//! budget they named (issue 19, item 6).

use serde_json::json;

use crate::world::World;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_429s_by_the_budget_they_named() {
    let w = World::new().await;
    w.write("a.txt", b"a");
    w.write("b/c.txt", b"c");
    w.faults(json!({ "force_429": 2, "retry_after_secs": 1, "force_429_dimension": "user" }))
        .await;
    let d = w.start().await;
    let s = d.settled().await;
    assert!(s.in_sync() && s.failures == 0, "{s:?}");
    w.assert_mirrored().await;
    // The sampler refreshes the figures once a second.
    let s = d
        .until("the 429s are counted", |s| s.rate_limited.user == 2)
        .await;
    assert_eq!(
        (s.rate_limited.token, s.rate_limited.tenant),
        (0, 0),
        "{s:?}"
    );
    // The spent budget is shown while its pause lasts, then no more.
    d.until("the pause is over", |s| s.budget_spent.is_none())
        .await;
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(
        json["rate_limited"],
        json!({ "token": 0, "user": 2, "tenant": 0 })
    );
    d.stop().await;
}
