//! Bearer auth and the refresh flow: one refresh per 401 (single-flight across workers),
//! rotating single-use refresh tokens handed to the sink, expiry in the middle of a run,
//! and "credentials needed" when refreshing is impossible or refused.

use std::time::{Duration, Instant};

use scaidrive::remote::{Client, ErrorKind};
use serde_json::json;

use crate::harness::{Env, RecordingSink};

const TOKEN_ROUTE: &str = "POST /api/v1/auth/token";

#[tokio::test]
async fn expired_token_is_refreshed_once_and_rotation_is_persisted() -> anyhow::Result<()> {
    let env = Env::start().await;
    let original = env.token_pair(3600).await;
    let sink = RecordingSink::new();
    let mut cfg = env.config(original.clone());
    cfg.token_sink = Some(sink.clone());
    let c = Client::new(cfg)?;
    c.me().await?;
    assert!(
        sink.persisted().is_empty(),
        "no refresh while the token is valid"
    );

    env.expire_tokens().await;
    c.me().await?;
    let first = sink.persisted();
    assert_eq!(first.len(), 1, "one refresh for one 401");
    let rotated = first[0].refresh_token.clone().expect("a new refresh token");
    assert_ne!(
        rotated,
        original.refresh_token.clone().unwrap(),
        "refresh tokens rotate"
    );
    assert_eq!(
        c.tokens().access_token,
        first[0].access_token,
        "the client uses what it handed over"
    );
    assert_eq!(first[0].expires_in, Some(3600));

    // The rotated token works for the next expiry.
    env.expire_tokens().await;
    c.me().await?;
    assert_eq!(sink.persisted().len(), 2);

    // The original refresh token is spent: a client still holding it needs new credentials.
    let stale = Client::new(env.config(original.clone()))?;
    let e = stale.me().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CredentialsNeeded, "{e}");
    assert!(!e.is_transient());
    let shown = format!("{e} {e:?}");
    assert!(shown.contains("credentials needed"), "{shown}");
    assert!(
        !shown.contains(original.access_token.expose()),
        "no token in errors: {shown}"
    );
    assert!(
        !shown.contains(original.refresh_token.as_ref().unwrap().expose()),
        "{shown}"
    );
    assert_eq!(
        env.count(TOKEN_ROUTE).await,
        3,
        "two refreshes plus the refused one"
    );
    Ok(())
}

#[tokio::test]
async fn concurrent_401s_share_one_refresh() -> anyhow::Result<()> {
    let env = Env::start().await;
    let sink = RecordingSink::new();
    let mut cfg = env.config(env.token_pair(3600).await);
    cfg.token_sink = Some(sink.clone());
    let c = Client::new(cfg)?;
    c.me().await?;
    env.expire_tokens().await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move { c.me().await }));
    }
    for t in tasks {
        t.await??;
    }
    assert_eq!(
        sink.persisted().len(),
        1,
        "single-flight: the rotating token is spent once"
    );
    assert_eq!(env.count(TOKEN_ROUTE).await, 1);
    Ok(())
}

#[tokio::test]
async fn without_refresh_token_a_401_needs_credentials() -> anyhow::Result<()> {
    let env = Env::start().await;
    let c = env.client();
    c.me().await?;
    env.expire_tokens().await;
    let e = c.me().await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CredentialsNeeded, "{e}");
    assert_eq!(e.status().map(|s| s.as_u16()), Some(401));
    assert_eq!(e.code(), Some("AUTH_TOKEN_EXPIRED"));
    let line = e.to_string();
    assert!(
        line.starts_with("GET /api/v1/users/me: credentials needed"),
        "{line}"
    );
    assert!(
        line.contains("HTTP 401 AUTH_TOKEN_EXPIRED") && line.contains("[request req_"),
        "{line}"
    );
    assert!(!line.contains('\n'));
    assert_eq!(env.count(TOKEN_ROUTE).await, 0, "nothing to refresh with");
    assert_eq!(
        env.count("GET /api/v1/users/me").await,
        2,
        "a 401 is not retried blindly"
    );
    Ok(())
}

#[tokio::test]
async fn tokens_expiring_mid_run_are_refreshed_under_load() -> anyhow::Result<()> {
    let env = Env::start().await;
    // Refreshed tokens live two seconds (whole seconds on the server: at least one), so
    // a 4.5 s run crosses several expiries.
    env.settings(json!({ "access_token_ttl_secs": 2 })).await;
    let sink = RecordingSink::new();
    let mut cfg = env.config(env.token_pair(2).await);
    cfg.token_sink = Some(sink.clone());
    let c = Client::new(cfg)?;
    let folder = c.create_folder(&env.share, None, "load").await?;
    let until = Instant::now() + Duration::from_millis(4500);
    let mut tasks = Vec::new();
    for w in 0..4 {
        let c = c.clone();
        let share = env.share.clone();
        let parent = folder.id.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while Instant::now() < until {
                c.create_folder(&share, Some(&parent), &format!("w{w}-{n}"))
                    .await?;
                c.me().await?;
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            anyhow::Ok(n)
        }));
    }
    let mut done = 0;
    for t in tasks {
        done += t.await??;
    }
    let listed = c.children(&env.share, Some(&folder.id)).await?;
    assert_eq!(listed.total, done, "every create succeeded exactly once");
    let refreshes = sink.persisted().len();
    assert!(
        refreshes >= 2,
        "expected several refreshes, saw {refreshes}"
    );
    assert_eq!(
        env.count(TOKEN_ROUTE).await as usize,
        refreshes,
        "no refresh was wasted"
    );
    Ok(())
}
