//! W5: a folder rename over many files, which should be one move on the server, not a
//! re-upload.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{Ctx, KIB, POLL, generate, guarded, mirror_once, with_count};
use crate::harness::{MirrorOpts, Scratch, Server, ServerSetup};
use crate::tree::TreeSpec;
use crate::{Report, Row};

pub async fn w5(ctx: &Ctx) -> Report {
    let s = ctx.sizes;
    let report = Report::new(
        "W5",
        "rename a folder holding many files",
        format!("{} files", with_count(s.w5_files)),
    );
    guarded(report, async |r| {
        let scratch = Scratch::new(&ctx.work, "w5", ctx.keep)?;
        let root = scratch.path.join("root");
        let spec = TreeSpec {
            files: s.w5_files,
            folders: 10,
            min_size: KIB,
            max_size: 4 * KIB,
            seed: 5,
        };
        generate(root.join("big"), spec).await?;
        let setup = ServerSetup::default();
        r.devserver = setup;
        let server = Server::start(&scratch.path.join("server"), setup).await?;
        let (mut d, _) =
            mirror_once(ctx, &scratch.path, &server, &root, &MirrorOpts::default()).await?;
        server.reset_stats().await?;

        let t0 = Instant::now();
        std::fs::rename(root.join("big"), root.join("big-renamed"))?;
        let srv = &server;
        // The change log's reads (issue 18) go on in the background: what counts is the
        // first request that is not one of them.
        let done = d
            .wait_change_settled(Duration::from_secs(600), POLL, async || {
                srv.stats()
                    .await
                    .map(|s| s.total() > s.routes(is_log_read))
                    .unwrap_or(false)
            })
            .await?;
        let secs = done.duration_since(t0).as_secs_f64();
        let stats = server.stats().await?;
        r.problems.extend(d.log_problems());
        d.stop().await?;
        server.shutdown().await;

        let moves = stats.routes(|k| {
            k.starts_with("PATCH /api/v1/folders/")
                || (k.contains("/move") && k.starts_with("POST"))
        });
        let log_reads = stats.routes(is_log_read);
        let total = stats.total() - log_reads;
        r.rows.push(Row::target(
            "requests",
            total as f64,
            "",
            "1 (a folder move/rename)".into(),
            total == 1 && moves == 1,
        ));
        r.rows.push(Row::info(
            "change-log reads meanwhile (not counted above)",
            log_reads as f64,
            "",
        ));
        r.rows
            .push(Row::info("uploads", stats.uploads() as f64, ""));
        r.rows.push(Row::target(
            "time to idle",
            secs,
            "s",
            "< 2 s".into(),
            secs < 2.0,
        ));
        r.details = json!({ "requests_by_route": stats.by_route(), "secs": secs });
        Ok(())
    })
    .await
}

/// The change-log follower's background requests (issue 18), not the rename's.
fn is_log_read(route: &str) -> bool {
    route.starts_with("GET /api/v1/sync/") || route.starts_with("POST /api/v1/sync/cursor")
}
