//! The keeper of a mirror's `[mirror.link]`: once the mirror's first complete pass is
//! done, it makes sure a link to the mirror root exists with the configured options, and
//! keeps one valid from then on, so a server that publishes a folder always has a working
//! URL. It logs the URL at info level whenever it changes (never the password, which is
//! read from `password_file` each time it is needed and dropped after the call).
//!
//! Every check asks the server about the stored link (so a revoked or expired one is
//! replaced at the next check) and renews it ahead of its expiry: when less than a tenth of
//! its lifetime, capped at one day, remains. The cap keeps a long link from being renewed
//! days early; the tenth keeps a short one from being renewed right after it was made.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{LinkError, LinkManager, LinkRecord, LinkRequest, Outcome, parse_iso, unix_now};
use crate::config::{LinkConfig, MirrorConfig, read_secret_file};
use crate::mirror::MirrorHandle;
use crate::remote::Secret;
use crate::watch::RelPath;

/// How often the keeper checks the link by default.
pub const DEFAULT_CHECK_EVERY: Duration = Duration::from_secs(3600);

/// How early before its expiry a link is renewed: a tenth of its lifetime, at most a day.
pub fn renew_margin(lifetime_secs: i64) -> i64 {
    (lifetime_secs.max(0) / 10).min(86_400)
}

/// Unix time at which a link created at `created_at` and expiring at `expires_at` should
/// be replaced.
pub fn renew_at(created_at: i64, expires_at: i64) -> i64 {
    expires_at - renew_margin(expires_at - created_at)
}

/// Runs until `stop`; does nothing for a mirror without `[mirror.link]`.
pub async fn run(
    manager: LinkManager,
    cfg: MirrorConfig,
    handle: MirrorHandle,
    check_every: Duration,
    stop: CancellationToken,
) {
    let Some(link_cfg) = cfg.link.clone() else {
        return;
    };
    let name = cfg.display_name();
    let mut rx = handle.status.clone();
    loop {
        if rx.borrow_and_update().first_pass_done {
            break;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            r = rx.changed() => if r.is_err() { return },
        }
    }
    let mut announced: Option<String> = None;
    loop {
        let wait = match check(&manager, &name, &link_cfg).await {
            Ok((link, outcome)) => {
                if announced.as_deref() != Some(link.url.as_str()) {
                    let what = match outcome {
                        Outcome::Created => "created",
                        Outcome::Reused => "kept",
                        Outcome::Regenerated => "renewed",
                    };
                    tracing::info!(
                        mirror = %name,
                        link = %link.id,
                        url = %link.url,
                        expires_at = link.expires_at.as_deref().unwrap_or("never"),
                        password_required = link.options.password_required,
                        "sharing link for the mirror root {what}: {}",
                        link.url
                    );
                    announced = Some(link.url.clone());
                }
                let until_renewal = link
                    .expires_at
                    .as_deref()
                    .and_then(parse_iso)
                    .map(|exp| renew_at(link.created_at, exp) - unix_now());
                match until_renewal {
                    Some(s) => check_every.min(Duration::from_secs(s.max(1) as u64)),
                    None => check_every,
                }
            }
            Err(e) => {
                tracing::warn!(mirror = %name, "cannot keep the sharing link of the mirror root: {e}");
                check_every.min(Duration::from_secs(300))
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// One check: the root link exists, is active, and is not due for renewal.
async fn check(
    manager: &LinkManager,
    mirror: &str,
    cfg: &LinkConfig,
) -> Result<(LinkRecord, Outcome), LinkError> {
    let password = match cfg.password_file.clone() {
        Some(p) => {
            let s = tokio::task::spawn_blocking(move || read_secret_file(&p, true))
                .await
                .map_err(|e| LinkError::Invalid(format!("reading the password file: {e}")))?
                .map_err(|e| LinkError::Invalid(format!("link password: {e}")))?;
            Some(Secret::new(s))
        }
        None => None,
    };
    let mut req = LinkRequest {
        link_type: super::parse_link_type(&cfg.r#type)?.to_string(),
        password,
        expires_in_days: cfg.expires_in_days,
        ..LinkRequest::default()
    };
    let record = manager
        .mirror_record(mirror)
        .await?
        .ok_or_else(|| LinkError::NotYetRemote {
            path: "the mirror root".into(),
            why: format!("mirror {mirror} is not registered yet"),
        })?;
    let target = manager
        .target(&record, &RelPath::root())
        .await?
        .ok_or_else(|| LinkError::NotYetRemote {
            path: "the mirror root".into(),
            why: "its remote base folder is not known yet".into(),
        })?;
    let got = manager.ensure(&target, &req).await?;
    let due = got
        .link
        .expires_at
        .as_deref()
        .and_then(parse_iso)
        .is_some_and(|exp| unix_now() >= renew_at(got.link.created_at, exp));
    if due && got.outcome == Outcome::Reused {
        req.regenerate = true;
        let renewed = manager.ensure(&target, &req).await?;
        return Ok((renewed.link, Outcome::Regenerated));
    }
    Ok((got.link, got.outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_comes_a_tenth_of_the_lifetime_early_at_most_a_day() {
        const DAY: i64 = 86_400;
        // (lifetime, margin)
        let cases = [
            (DAY, DAY / 10),
            (10 * DAY, DAY),
            (14 * DAY, DAY),
            (365 * DAY, DAY),
            (600, 60),
            (0, 0),
            (-5, 0),
        ];
        for (lifetime, margin) in cases {
            assert_eq!(renew_margin(lifetime), margin, "lifetime {lifetime}");
            assert_eq!(renew_at(1000, 1000 + lifetime), 1000 + lifetime - margin);
        }
    }
}
