//! The progress sampler: a small task per mirror that refreshes the transfer figures of its
//! status once a second (counts, what the batch has left, the smoothed rate, the ETA) from
//! the uploader's counters. The engine itself publishes only at state changes and is busy
//! during a batch, so this is what makes `status --watch` move.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{MirrorStatus, RateLimits};
use crate::remote::{Client, RateDimension};
use crate::upload::Counters;

/// Refreshes the transfer figures of a mirror's status every second while it runs (the
/// engine itself only publishes at state changes, and is busy during a batch): counts,
/// what the batch has left, the rate (smoothed over a few seconds) and the ETA.
pub(super) async fn sample_progress(
    status: Arc<watch::Sender<MirrorStatus>>,
    counters: Arc<Counters>,
    client: Client,
    stop: CancellationToken,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last = counters.bytes_done.load(Relaxed);
    let mut rate = 0.0f64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let done = counters.bytes_done.load(Relaxed);
        rate = 0.7 * rate + 0.3 * (done.saturating_sub(last) as f64);
        last = done;
        let remaining = counters.bytes_remaining.load(Relaxed) + counters.bytes_later.load(Relaxed);
        status.send_if_modified(|s| {
            let before = (
                s.files_done,
                s.bytes_done,
                s.in_flight,
                s.bytes_remaining,
                s.bytes_per_sec,
                s.budget_spent,
                s.rate_limited,
            );
            // Which API budget a 429 said is spent (the daemon's client is shared, so
            // every mirror shows it), and the 429s met by budget.
            s.budget_spent = client.budget_spent();
            let pace = client.pace_stats();
            s.rate_limited = RateLimits {
                token: pace.pauses_for(RateDimension::Token),
                user: pace.pauses_for(RateDimension::User),
                tenant: pace.pauses_for(RateDimension::Tenant),
            };
            s.files_done = counters.files_done.load(Relaxed);
            s.bytes_done = done;
            s.in_flight = counters.in_flight.load(Relaxed);
            s.files_remaining =
                counters.files_remaining.load(Relaxed) + counters.files_later.load(Relaxed);
            s.bytes_remaining = remaining;
            s.bytes_per_sec = rate.round() as u64;
            s.eta_secs =
                (remaining > 0 && rate >= 1.0).then(|| (remaining as f64 / rate).ceil() as u64);
            before
                != (
                    s.files_done,
                    s.bytes_done,
                    s.in_flight,
                    s.bytes_remaining,
                    s.bytes_per_sec,
                    s.budget_spent,
                    s.rate_limited,
                )
        });
    }
}
