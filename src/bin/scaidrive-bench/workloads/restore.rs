//! W11 (issue 22): `scaidrivectl restore`'s engine against the devserver: a tree mirrored
//! once by the daemon, then restored (as of now) into an empty directory with the library
//! the command uses: files/s and MB/s, requests and units (one change-log page per 5,000
//! changes at 2 units, one download per file at 5).

use std::time::Instant;

use anyhow::bail;
use scaidrive::remote::{Client, ClientConfig, TokenPair};
use scaidrive::restore::{self, Progress, Scope};
use serde_json::json;

use super::{Ctx, KIB, generate, guarded, mib, mirror_once, with_count};
use crate::harness::{MirrorOpts, REMOTE_BASE, Scratch, Server, ServerSetup, TOKEN};
use crate::tree::TreeSpec;
use crate::{Report, Row};

pub async fn w11(ctx: &Ctx) -> Report {
    let files = ctx.sizes.w1_files;
    let report = Report::new(
        "W11",
        "restore a mirrored tree (as of now), 1–64 KiB files",
        format!("{} files / 20 folders", with_count(files)),
    );
    guarded(report, async |r| {
        let scratch = Scratch::new(&ctx.work, "w11", ctx.keep)?;
        let root = scratch.path.join("root");
        let spec = TreeSpec {
            files,
            folders: 20,
            min_size: KIB,
            max_size: 64 * KIB,
            seed: 11,
        };
        let tree = generate(root.clone(), spec).await?;
        let setup = ServerSetup::default();
        r.devserver = setup;
        let server = Server::start(&scratch.path.join("server"), setup).await?;
        let (d, _) =
            mirror_once(ctx, &scratch.path, &server, &root, &MirrorOpts::default()).await?;
        r.problems.extend(d.log_problems());
        d.stop().await?;
        server.reset_stats().await?;

        let t0 = Instant::now();
        let client = Client::new(ClientConfig::new(server.url(), TokenPair::bearer(TOKEN)))?;
        let scope = Scope {
            share_id: server.share_id().to_string(),
            base: REMOTE_BASE.to_string(),
            sub: String::new(),
        };
        let (log, pages) = restore::read_log(&client, &scope.share_id).await?;
        let plan = restore::plan(&log, &scope, None)?;
        let dir = scratch.path.join("restored");
        let s = restore::execute(&client, &plan, &dir, &Progress::default()).await?;
        let secs = t0.elapsed().as_secs_f64();
        let stats = server.stats().await?;
        server.shutdown().await;
        if s.files != tree.files.len() as u64 || s.bytes != tree.bytes || !s.missing.is_empty() {
            bail!(
                "restored {} files / {} bytes ({} missing), the tree has {} / {}",
                s.files,
                s.bytes,
                s.missing.len(),
                tree.files.len(),
                tree.bytes
            );
        }
        r.rows.push(Row::info("files/s", s.files as f64 / secs, ""));
        r.rows
            .push(Row::info("MB/s", s.bytes as f64 / 1e6 / secs, ""));
        r.rows.push(Row::info("time", secs, "s"));
        r.rows.push(Row::info("requests", stats.total() as f64, ""));
        r.rows.push(Row::target(
            "units",
            stats.units() as f64,
            "",
            format!("= {} (5/file + 2/log page)", s.files * 5 + pages * 2),
            stats.units() == s.files * 5 + pages * 2,
        ));
        r.details = json!({
            "files": s.files, "bytes": s.bytes, "mib": mib(s.bytes / 1024),
            "log_pages": pages, "requests_by_route": stats.by_route(), "secs": secs,
        });
        Ok(())
    })
    .await
}
