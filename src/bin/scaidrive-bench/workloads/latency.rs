//! W3: seconds from a save to the new version on the server, over a run of saves at a
//! steady interval, against the debounce quiet period the daemon waits for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

use super::{Ctx, DEFAULT_QUIET_MS, KIB, POLL, generate, guarded, mirror_once};
use crate::harness::{MirrorOpts, Scratch, Server, ServerSetup};
use crate::tree::{self, TreeSpec};
use crate::{Report, Row};

pub async fn w3(ctx: &Ctx) -> Report {
    let s = ctx.sizes;
    let report = Report::new(
        "W3",
        "single-file saves: close to remote version",
        format!("{} saves / {} ms", s.w3_saves, s.w3_interval_ms),
    );
    guarded(report, async |r| {
        let scratch = Scratch::new(&ctx.work, "w3", ctx.keep)?;
        let root = scratch.path.join("root");
        // One file per save, all mirrored first: each save makes version 2 of its file.
        let spec = TreeSpec {
            files: s.w3_saves,
            folders: 0,
            min_size: KIB,
            max_size: 64 * KIB,
            seed: 3,
        };
        let tree = generate(root.clone(), spec).await?;
        let setup = ServerSetup::default();
        r.devserver = setup;
        let server = Arc::new(Server::start(&scratch.path.join("server"), setup).await?);
        let (mut d, _) = mirror_once(ctx, &scratch.path, &server, &root, &MirrorOpts::default()).await?;
        server.reset_stats().await?;

        // Watch the change feed for new versions; the time the harness first sees a
        // version in the feed is the time the server applied it, to within one poll (10 ms
        // plus a loopback round trip).
        let head = server.changes(None).await?;
        let cursor = match &head["cursor"] {
            Value::String(c) => c.clone(),
            other => other.to_string(),
        };
        let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let stop = tokio_util::sync::CancellationToken::new();
        let poller = {
            let (server, seen, stop) = (server.clone(), seen.clone(), stop.clone());
            tokio::spawn(async move {
                let mut cursor = cursor;
                let mut polls = 0u64;
                while !stop.is_cancelled() {
                    polls += 1;
                    if let Ok(v) = server.changes(Some(&cursor)).await {
                        let now = Instant::now();
                        for c in v["changes"].as_array().into_iter().flatten() {
                            if c["resource_type"] == "file"
                                && c["metadata"]["version"].as_u64().unwrap_or(0) >= 2
                                && let Some(p) = c["new_path"].as_str()
                            {
                                let name = p.rsplit('/').next().unwrap_or(p).to_string();
                                seen.lock().unwrap_or_else(|e| e.into_inner()).entry(name).or_insert(now);
                            }
                        }
                        cursor = match &v["cursor"] {
                            Value::String(c) => c.clone(),
                            Value::Null => cursor,
                            other => other.to_string(),
                        };
                        if v["has_more"] == true {
                            continue;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                polls
            })
        };

        let mut rng = StdRng::seed_from_u64(33);
        let mut closed: Vec<(String, Instant)> = Vec::new();
        let t0 = Instant::now();
        for (i, (rel, len)) in tree.files.iter().enumerate() {
            let at = t0 + Duration::from_millis(s.w3_interval_ms * i as u64);
            tokio::time::sleep_until(at.into()).await;
            let path = root.join(rel);
            let len = *len as usize;
            let mut r2 = StdRng::from_rng(&mut rng);
            // std::fs::write returns after close(2): the instant taken next is the close.
            tokio::task::spawn_blocking(move || tree::rewrite(&path, len, &mut r2)).await??;
            closed.push((rel.clone(), Instant::now()));
        }
        // Every save must show up within a generous bound past the quiet period.
        let deadline = Instant::now() + Duration::from_millis(DEFAULT_QUIET_MS) + Duration::from_secs(60);
        loop {
            let n = seen.lock().unwrap_or_else(|e| e.into_inner()).len();
            if n >= closed.len() || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.cancel();
        let polls = poller.await.unwrap_or(0);
        d.wait_in_sync(Duration::from_secs(120), POLL).await?;
        let stats = server.stats().await?;
        r.problems.extend(d.log_problems());
        d.stop().await?;
        if let Ok(server) = Arc::try_unwrap(server) {
            server.shutdown().await;
        }

        let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut lat: Vec<f64> = closed
            .iter()
            .filter_map(|(rel, t)| {
                seen.get(rel.rsplit('/').next().unwrap_or(rel))
                    .map(|s| s.saturating_duration_since(*t).as_secs_f64() * 1000.0)
            })
            .collect();
        lat.sort_by(f64::total_cmp);
        let missing = closed.len() - lat.len();
        if missing > 0 {
            r.problems.push(format!(
                "harness: {missing} of {} saves never reached the remote as a new version within the quiet period + 60 s",
                closed.len()
            ));
        }
        let target = DEFAULT_QUIET_MS + 150;
        match (percentile(&lat, 0.5), percentile(&lat, 0.99)) {
            (Some(p50), Some(p99)) => {
                r.rows.push(Row::target(
                    "p50 close → remote version",
                    p50,
                    "ms",
                    format!("≤ {target} ms (quiet {DEFAULT_QUIET_MS} + 150)"),
                    p50 <= target as f64,
                ));
                r.rows.push(Row::info("p99 close → remote version", p99, "ms"));
            }
            _ => r.rows.push(Row::missing("p50 close → remote version", format!("≤ {target} ms"))),
        }
        // The feed polls are the harness's own; they are not the daemon's requests.
        let feed = stats.routes(|k| k == "GET /api/v1/sync/changes");
        let daemon_requests = stats.total().saturating_sub(feed);
        r.rows.push(Row::info("saves seen remotely", lat.len() as f64, ""));
        r.rows.push(Row::info(
            "daemon requests per save",
            daemon_requests as f64 / closed.len().max(1) as f64,
            "",
        ));
        r.details = json!({
            "latencies_ms": lat, "missing": missing, "feed_polls": polls,
            "requests_by_route": stats.by_route(), "quiet_period_ms": DEFAULT_QUIET_MS,
        });
        Ok(())
    })
    .await
}

fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    // Nearest rank: the smallest value with at least q of the samples at or below it.
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}
