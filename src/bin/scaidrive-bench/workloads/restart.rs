//! W4 and W6 over one mirrored tree: what a restart costs (time and requests to find
//! nothing changed) and what the daemon costs while idle (CPU, wake-ups, requests).

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::json;

use super::{
    Ctx, KIB, POLL, STALL, check_uploads, find_times, generate, mib, mirror_once, with_count,
};
use crate::harness::{Daemon, MirrorOpts, Scratch, Server, ServerSetup};
use crate::tree::TreeSpec;
use crate::{Report, Row};

/// W4 and W6 share one expensive setup: a tree mirrored once by a first daemon. W4 is the
/// restart of a second daemon over it, W6 that second daemon's next idle minute.
pub async fn w4_w6(ctx: &Ctx, run_w4: bool, run_w6: bool) -> Vec<Report> {
    let s = ctx.sizes;
    let scale = format!(
        "{} files / {} folders",
        with_count(s.w4_files),
        with_count(s.w4_folders)
    );
    let mut w4 = Report::new("W4", "restart, nothing changed", scale.clone());
    let mut w6 = Report::new(
        "W6",
        format!("{} s idle", s.w6_idle_secs),
        format!("{scale}, {} s", s.w6_idle_secs),
    );
    let t = Instant::now();
    if let Err(e) = w4_w6_body(ctx, &mut w4, &mut w6, run_w6).await {
        let msg = format!("{e:#}");
        // The failure belongs to whichever phase had not produced its rows yet.
        if w4.rows.is_empty() {
            w4.error = Some(msg.clone());
        }
        if run_w6 && w6.rows.is_empty() {
            w6.error = Some(msg);
        }
    }
    let secs = t.elapsed().as_secs_f64();
    w4.wall_secs = secs;
    w6.wall_secs = secs;
    let mut out = Vec::new();
    if run_w4 {
        out.push(w4);
    }
    if run_w6 {
        out.push(w6);
    }
    out
}

async fn w4_w6_body(ctx: &Ctx, w4: &mut Report, w6: &mut Report, run_w6: bool) -> Result<()> {
    let s = ctx.sizes;
    let scratch = Scratch::new(&ctx.work, "w4", ctx.keep)?;
    let root = scratch.path.join("root");
    let spec = TreeSpec {
        files: s.w4_files,
        folders: s.w4_folders,
        min_size: KIB,
        max_size: 4 * KIB,
        seed: 4,
    };
    let gen_t = Instant::now();
    let tree = generate(root.clone(), spec).await?;
    let gen_secs = gen_t.elapsed().as_secs_f64();
    let setup = ServerSetup::default();
    w4.devserver = setup;
    w6.devserver = setup;
    let server = Server::start(&scratch.path.join("server"), setup).await?;
    let (d, first_secs) =
        mirror_once(ctx, &scratch.path, &server, &root, &MirrorOpts::default()).await?;
    let first_stats = server.stats().await?;
    let first_proc = d.sample()?;
    w4.problems.extend(
        d.log_problems()
            .into_iter()
            .map(|l| format!("first pass: {l}")),
    );
    d.stop().await?;
    check_uploads(w4, &first_stats, tree.files.len() as u64);

    // The reference: one stat per entry, what any restart must at least do. Three runs,
    // median, all with a warm cache, as the daemon's run will be.
    let (finds, find_secs) = find_times(&root).await?;

    server.reset_stats().await?;
    let (d, idle_secs) = {
        let mut d = Daemon::spawn(
            &ctx.daemon,
            &scratch.path,
            &server,
            &root,
            &MirrorOpts::default(),
        )?;
        let done = d.wait_in_sync(STALL, POLL).await?;
        let secs = done.duration_since(d.started).as_secs_f64();
        (d, secs)
    };
    let stats = server.stats().await?;
    let after_restart = d.sample()?;
    w4.problems.extend(d.log_problems());
    let limit = 2.0 * find_secs;
    w4.rows.push(Row::target(
        "time to idle",
        idle_secs,
        "s",
        format!("≤ {limit:.2} s (2 × find {find_secs:.2} s)"),
        idle_secs <= limit,
    ));
    w4.rows.push(Row::target(
        "uploads",
        stats.uploads() as f64,
        "",
        "0".into(),
        stats.uploads() == 0,
    ));
    w4.rows
        .push(Row::info("requests", stats.total() as f64, ""));
    w4.rows
        .push(Row::info("daemon CPU", after_restart.cpu_secs, "s"));
    w4.rows
        .push(Row::info("peak RSS", mib(after_restart.hwm_kib), "MiB"));
    w4.rows.push(Row::info(
        "first pass files/s (setup, no latency)",
        tree.files.len() as f64 / first_secs,
        "",
    ));
    w4.details = json!({
        "files": tree.files.len(), "folders": tree.folders.len(), "bytes": tree.bytes,
        "generate_secs": gen_secs, "first_pass_secs": first_secs,
        "first_pass_requests": first_stats.total(), "first_pass_proc": first_proc,
        "find_secs": finds, "restart_idle_secs": idle_secs,
        "requests_by_route": stats.by_route(), "proc": after_restart,
    });

    if run_w6 {
        // Let the end of the restart pass (status publication, SQLite checkpoints) pass
        // before the idle minute starts; the harness does not poll during the minute.
        tokio::time::sleep(Duration::from_secs(2)).await;
        server.reset_stats().await?;
        let a = d.sample()?;
        tokio::time::sleep(Duration::from_secs(s.w6_idle_secs)).await;
        let b = d.sample()?;
        let stats = server.stats().await?;
        let secs = s.w6_idle_secs as f64;
        let cpu_pct = (b.cpu_secs - a.cpu_secs) / secs * 100.0;
        let wakeups = crate::sys::ctxt_switches_between(&a, &b) as f64 / secs;
        w6.rows.push(Row::target(
            "CPU",
            cpu_pct,
            "%",
            "< 0.5 %".into(),
            cpu_pct < 0.5,
        ));
        w6.rows.push(Row::target(
            "RSS",
            mib(b.rss_kib),
            "MiB",
            "≤ 100 MiB".into(),
            mib(b.rss_kib) <= 100.0,
        ));
        w6.rows
            .push(Row::info("peak RSS since restart", mib(b.hwm_kib), "MiB"));
        w6.rows
            .push(Row::info("wakeups (context switches)", wakeups, "/s"));
        w6.rows
            .push(Row::info("requests while idle", stats.total() as f64, ""));
        w6.details = json!({
            "before": a, "after": b, "idle_secs": secs, "requests_by_route": stats.by_route(),
            "threads_before": a.per_thread.len(), "threads_after": b.per_thread.len(),
        });
        w6.problems.extend(d.log_problems());
    }
    // Issue 18's units of verify and of the rebuild, from the log and by listing.
    let mut d = super::log_units::rows(ctx, &scratch.path, &server, &root, d, w4).await?;
    d.wait_in_sync(Duration::from_secs(60), POLL).await?;
    d.stop().await?;
    server.shutdown().await;
    Ok(())
}
