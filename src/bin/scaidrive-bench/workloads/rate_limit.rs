//! W7: the W1 shape under the default rate limit: the daemon should pace itself rather
//! than spend its time on 429s.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{Ctx, KIB, POLL, STALL, check_uploads, generate, guarded};
use crate::harness::{Daemon, MirrorOpts, Scratch, Server, ServerSetup};
use crate::tree::TreeSpec;
use crate::{Report, Row};

pub async fn w7(ctx: &Ctx) -> Report {
    let s = ctx.sizes;
    let report = Report::new(
        "W7",
        "W1 shape under the default rate limit",
        format!(
            "{} files / {} folders, 1000 units/min",
            s.w7_files, s.w7_folders
        ),
    );
    guarded(report, async |r| {
        let scratch = Scratch::new(&ctx.work, "w7", ctx.keep)?;
        let root = scratch.path.join("root");
        let spec = TreeSpec {
            files: s.w7_files,
            folders: s.w7_folders,
            min_size: KIB,
            max_size: 64 * KIB,
            seed: 7,
        };
        let tree = generate(root.clone(), spec).await?;
        let limit = 1000u64;
        let setup = ServerSetup {
            latency_ms: 20,
            rate_limit: limit,
        };
        r.devserver = setup;
        let server = Arc::new(Server::start(&scratch.path.join("server"), setup).await?);
        server.reset_stats().await?;

        // Sample the units the server admitted (admin route: costs no units) four times a
        // second, to compute what was spent in each full 60 s window of the run.
        let stop = tokio_util::sync::CancellationToken::new();
        let mut d = Daemon::spawn(
            &ctx.daemon,
            &scratch.path,
            &server,
            &root,
            &MirrorOpts::default(),
        )?;
        let start = d.started;
        let sampler = {
            let (server, stop) = (server.clone(), stop.clone());
            tokio::spawn(async move {
                let mut samples: Vec<(f64, u64)> = vec![(0.0, 0)];
                while !stop.is_cancelled() {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    if let Ok(st) = server.stats().await {
                        samples.push((start.elapsed().as_secs_f64(), st.units()));
                    }
                }
                samples
            })
        };
        let done = d.wait_in_sync(STALL, POLL).await;
        stop.cancel();
        let samples = sampler.await.unwrap_or_default();
        let done = done?;
        let secs = done.duration_since(start).as_secs_f64();
        let stats = server.stats().await?;
        r.problems.extend(d.log_problems());
        d.stop().await?;
        if let Ok(server) = Arc::try_unwrap(server) {
            server.shutdown().await;
        }
        check_uploads(r, &stats, tree.files.len() as u64);

        // Units spent in each full window [60k, 60(k+1)) after the daemon started, read
        // from the last sample at or before each edge.
        let at = |t: f64| {
            samples
                .iter()
                .take_while(|(st, _)| *st <= t)
                .last()
                .map_or(0, |(_, u)| *u)
        };
        let full = (secs / 60.0).floor() as usize;
        let windows: Vec<u64> = (0..full)
            .map(|k| at(60.0 * (k + 1) as f64) - at(60.0 * k as f64))
            .collect();
        let r429 = stats.rate_limited();
        r.rows.push(Row::target(
            "429s received",
            r429 as f64,
            "",
            "0–3".into(),
            r429 <= 3,
        ));
        if windows.is_empty() {
            r.rows.push(Row::missing(
                "budget used per full 60 s window",
                "≥ 90 % (run shorter than one window)".into(),
            ));
        } else {
            let share =
                windows.iter().sum::<u64>() as f64 / (windows.len() as u64 * limit) as f64 * 100.0;
            r.rows.push(Row::target(
                "budget used per full 60 s window",
                share,
                "%",
                "≥ 90 %".into(),
                share >= 90.0,
            ));
        }
        r.rows.push(Row::info("time to idle", secs, "s"));
        r.rows
            .push(Row::info("units spent", stats.units() as f64, ""));
        r.details = json!({
            "windows_units": windows, "secs": secs, "units": stats.units(),
            "requests_by_route": stats.by_route(), "by_status": stats.0["by_status"],
            "samples": samples.len(),
        });
        Ok(())
    })
    .await
}
