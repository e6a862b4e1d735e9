//! W9 (issue 20 item 4): a million small files in 50,000 folders, the daemon alone
//! measured (it is a child process; the devserver runs in the bench's process). What it
//! reports: the first sync's files/s, the restart's time to idle against `find`, the
//! daemon's peak RSS (`VmHWM`) in each phase and its RSS once idle after each, and the
//! bytes per file those make. A long workload: it runs only with `--long`, at
//! `--w9-files` files (default a million) in one folder per 20 files.
//!
//! RSS is sampled from `/proc` every second while the daemon works, so the table's peaks
//! come with a timeline in the JSON details showing where the memory went up and down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::json;

use super::{Ctx, POLL, STALL, check_uploads, find_times, generate, guarded, mib, with_count};
use crate::harness::{Daemon, MirrorOpts, Scratch, Server, ServerSetup};
use crate::sys::ProcSample;
use crate::tree::TreeSpec;
use crate::{Report, Row};

/// Files per folder, as the 1,000,000 in 50,000.
const FILES_PER_FOLDER: usize = 20;
/// How long the daemon is left alone before its idle RSS is read: twice the change-log
/// follower's default poll (30 s), so what the follower keeps shows, and longer than the
/// default `unload_idle_secs` (30 s) after its last read, so the idle state is measured
/// (the timeline in the details shows the way there).
const IDLE_SECS: u64 = 60;
const IDLE_TARGET_MIB: f64 = 250.0;
const PEAK_TARGET_MIB: f64 = 400.0;

pub async fn w9(ctx: &Ctx, files: usize) -> Report {
    let folders = (files / FILES_PER_FOLDER).max(1);
    let scale = format!(
        "{} files / {} folders",
        with_count(files),
        with_count(folders)
    );
    let report = Report::new("W9", "a million files in a small box", scale);
    let scratch = match Scratch::new(&ctx.work, "w9", ctx.keep) {
        Ok(s) => s,
        Err(e) => {
            let mut report = report;
            report.error = Some(format!("{e:#}"));
            return report;
        }
    };
    let report = guarded(report, async |r: &mut Report| {
        body(ctx, &scratch, r, files, folders).await
    })
    .await;
    // Removing a million files (and the devserver's copies) takes minutes: the figures
    // are shown first, so an interrupted clean-up loses nothing.
    crate::print_table(std::slice::from_ref(&report));
    eprintln!("W9: removing {}", scratch.path.display());
    drop(scratch);
    report
}

/// Samples the daemon's `/proc` counters every second until stopped; the timeline is
/// (seconds since the daemon started, RSS MiB).
struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<(f64, f64)>>,
}

impl Sampler {
    fn start(d: &Daemon) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let (pid, started, flag) = (d.pid, d.started, stop.clone());
        let task = tokio::spawn(async move {
            let mut out = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                if let Ok(s) = crate::sys::sample(pid) {
                    out.push((started.elapsed().as_secs_f64(), mib(s.rss_kib)));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            out
        });
        Sampler { stop, task }
    }

    async fn finish(self) -> Vec<(f64, f64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

/// One daemon run: spawn, wait for in sync, then `IDLE_SECS` alone. Returns the seconds to
/// in sync, the sample at in sync, the sample after the idle wait, and the RSS timeline.
async fn run_once(
    ctx: &Ctx,
    dir: &std::path::Path,
    server: &Server,
    root: &std::path::Path,
    report: &mut Report,
    phase: &str,
) -> Result<(f64, ProcSample, ProcSample, Vec<(f64, f64)>)> {
    let mut d = Daemon::spawn(&ctx.daemon, dir, server, root, &MirrorOpts::default())?;
    let sampler = Sampler::start(&d);
    let done = d.wait_in_sync(STALL, POLL).await?;
    let secs = done.duration_since(d.started).as_secs_f64();
    let at_sync = d.sample()?;
    tokio::time::sleep(Duration::from_secs(IDLE_SECS)).await;
    let idle = d.sample()?;
    let timeline = sampler.finish().await;
    report.problems.extend(
        d.log_problems()
            .into_iter()
            .map(|l| format!("{phase}: {l}")),
    );
    d.wait_in_sync(Duration::from_secs(120), POLL).await?;
    d.stop().await?;
    Ok((secs, at_sync, idle, timeline))
}

async fn body(
    ctx: &Ctx,
    scratch: &Scratch,
    r: &mut Report,
    files: usize,
    folders: usize,
) -> Result<()> {
    let root = scratch.path.join("root");
    let spec = TreeSpec {
        files,
        folders,
        min_size: 16,
        max_size: 256,
        seed: 9,
    };
    let gen_t = Instant::now();
    let tree = generate(root.clone(), spec).await?;
    let gen_secs = gen_t.elapsed().as_secs_f64();
    eprintln!("W9: generated {files} files in {gen_secs:.0} s");
    let setup = ServerSetup::default();
    r.devserver = setup;
    let server = Server::start(&scratch.path.join("server"), setup).await?;

    let (first_secs, first_sync, first_idle, first_tl) =
        run_once(ctx, &scratch.path, &server, &root, r, "first sync").await?;
    let first_stats = server.stats().await?;
    check_uploads(r, &first_stats, tree.files.len() as u64);
    eprintln!("W9: first sync {first_secs:.0} s");

    let (finds, find_secs) = find_times(&root).await?;

    server.reset_stats().await?;
    let (restart_secs, restart_sync, restart_idle, restart_tl) =
        run_once(ctx, &scratch.path, &server, &root, r, "restart").await?;
    let restart_stats = server.stats().await?;
    server.shutdown().await;

    let n = files as f64;
    let peak = |s: &ProcSample| mib(s.hwm_kib);
    let first_peak = peak(&first_idle);
    let restart_peak = peak(&restart_idle);
    r.rows
        .push(Row::info("first sync files/s", n / first_secs, ""));
    r.rows
        .push(Row::info("first sync time to idle", first_secs, "s"));
    r.rows.push(Row::target(
        "first sync peak RSS",
        first_peak,
        "MiB",
        format!("≤ {PEAK_TARGET_MIB} MiB"),
        first_peak <= PEAK_TARGET_MIB,
    ));
    let first_idle_mib = mib(first_idle.rss_kib);
    r.rows.push(Row::target(
        &format!("RSS {IDLE_SECS} s after first sync"),
        first_idle_mib,
        "MiB",
        format!("≤ {IDLE_TARGET_MIB} MiB"),
        first_idle_mib <= IDLE_TARGET_MIB,
    ));
    let limit = 2.0 * find_secs;
    r.rows.push(Row::target(
        "restart time to idle",
        restart_secs,
        "s",
        format!("≤ {limit:.2} s (2 × find {find_secs:.2} s)"),
        restart_secs <= limit,
    ));
    r.rows.push(Row::info(
        "restart uploads",
        restart_stats.uploads() as f64,
        "",
    ));
    r.rows.push(Row::target(
        "restart peak RSS",
        restart_peak,
        "MiB",
        format!("≤ {PEAK_TARGET_MIB} MiB"),
        restart_peak <= PEAK_TARGET_MIB,
    ));
    let idle_mib = mib(restart_idle.rss_kib);
    r.rows.push(Row::target(
        &format!("RSS {IDLE_SECS} s after restart"),
        idle_mib,
        "MiB",
        format!("≤ {IDLE_TARGET_MIB} MiB"),
        idle_mib <= IDLE_TARGET_MIB,
    ));
    r.rows.push(Row::info(
        "idle bytes per file (after restart)",
        restart_idle.rss_kib as f64 * 1024.0 / n,
        "B",
    ));
    r.rows.push(Row::info(
        "peak bytes per file (max of both)",
        first_peak.max(restart_peak) * 1024.0 * 1024.0 / n,
        "B",
    ));
    r.details = json!({
        "files": tree.files.len(), "folders": tree.folders.len(), "bytes": tree.bytes,
        "generate_secs": gen_secs, "find_secs": finds,
        "first": { "secs": first_secs, "at_sync": first_sync, "idle": first_idle,
                   "requests": first_stats.total(), "rss_mib_timeline": first_tl },
        "restart": { "secs": restart_secs, "at_sync": restart_sync, "idle": restart_idle,
                     "requests_by_route": restart_stats.by_route(), "rss_mib_timeline": restart_tl },
    });
    Ok(())
}
