//! A 429 naming the user's or the tenant's budget (issue 19, item 6) is honoured like the
//! token's: every request waits out `Retry-After`, then goes on; while it waits, the client
//! says which budget is spent, and counts the 429s by budget.

use std::time::Duration;

use scaidrive::remote::RateDimension;
use serde_json::json;

use crate::harness::Env;

#[tokio::test]
async fn a_429_for_the_user_or_tenant_budget_is_waited_out_and_named() -> anyhow::Result<()> {
    let env = Env::start().await;
    let c = env.client();
    for (dim, want) in [
        ("user", RateDimension::User),
        ("tenant", RateDimension::Tenant),
    ] {
        env.faults(json!({ "force_429": 1, "retry_after_secs": 1, "force_429_dimension": dim }))
            .await;
        let call = tokio::spawn({
            let c = c.clone();
            async move { c.me().await }
        });
        // While the pause lasts, the spent budget is known.
        let seen = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some(d) = c.budget_spent() {
                    return d;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the spent budget is shown during the pause");
        assert_eq!(seen, want);
        call.await??;
        assert_eq!(c.budget_spent(), None, "the pause is over");
        assert_eq!(c.pace_stats().pauses_for(want), 1, "{dim}");
    }
    let stats = c.pace_stats();
    assert_eq!(
        (stats.pauses, stats.pauses_for(RateDimension::Token)),
        (2, 0)
    );
    assert_eq!(env.stats().await["rate_limited_total"], 2);
    Ok(())
}
