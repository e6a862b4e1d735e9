//! Workloads W1–W7 of issue 8. Each one generates its data in its own scratch directory,
//! starts a fresh devserver (so request counts are the daemon's alone), runs the daemon
//! and turns what it measured into table rows. A workload that fails (the daemon exits,
//! stalls or pauses) returns its report with `error` set instead of aborting the run.
//!
//! One file per kind of measurement: `throughput` (W1, W2), `latency` (W3), `restart`
//! (W4 with W6, which share a setup), `rename` (W5), `rate_limit` (W7), `units` (W8, API
//! units per change against the documented floor, issue 19), `bandwidth` (W10, issue 21), `restore` (W11, issue 22),
//! `million` (W9, issue 20: a million files, behind `--long`);
//! here the context
//! and the steps they share (generate a tree, mirror it once, check the upload count).

mod bandwidth;
mod latency;
mod log_units;
mod million;
mod rate_limit;
mod rename;
mod restart;
mod restore;
mod throughput;
mod units;

pub use bandwidth::w10;
pub use latency::w3;
pub use million::w9;
pub use rate_limit::w7;
pub use rename::w5;
pub use restart::w4_w6;
pub use restore::w11;
pub use throughput::{w1, w2};
pub use units::{W8_FULL, W8_QUICK, w8};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::harness::{Daemon, MirrorOpts, Server, Stats};
use crate::tree::{self, TreeSpec};
use crate::{Report, Sizes};

pub struct Ctx {
    pub daemon: PathBuf,
    pub work: PathBuf,
    pub keep: bool,
    pub sizes: Sizes,
    pub baseline_max_files: Option<usize>,
}

const KIB: usize = 1024;
const MIB: f64 = 1024.0 * 1024.0;
/// The daemon's documented default quiet period (`quiet_period_ms`); the benchmark runs
/// the daemon with its defaults, so W3's target is computed from this.
const DEFAULT_QUIET_MS: u64 = 2000;
/// How often the harness asks the daemon for its status while waiting for idle: often
/// enough for sub-second timings, rarely enough not to cost the daemon anything visible.
const POLL: Duration = Duration::from_millis(50);
/// Upper bound for any wait for idle; a daemon slower than this is reported as stalled.
const STALL: Duration = Duration::from_secs(45 * 60);

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn with_count(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Runs `body`; an error becomes the report's `error`, keeping the rows measured so far.
async fn guarded(mut report: Report, body: impl AsyncFnOnce(&mut Report) -> Result<()>) -> Report {
    let t = Instant::now();
    if let Err(e) = body(&mut report).await {
        report.error = Some(format!("{e:#}"));
    }
    report.wall_secs = t.elapsed().as_secs_f64();
    report
}

/// `find` over `root` printing size, mtime and inode (one stat per entry, what any restart
/// must at least do), three runs with a warm cache: every time, sorted, and the median.
async fn find_times(root: &Path) -> Result<(Vec<f64>, f64)> {
    let mut finds = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let st = tokio::process::Command::new("find")
            .arg(root)
            .args(["-printf", "%s %T@ %i\n"])
            .stdout(std::process::Stdio::null())
            .status()
            .await?;
        if !st.success() {
            anyhow::bail!("find failed: {st}");
        }
        finds.push(t.elapsed().as_secs_f64());
    }
    finds.sort_by(f64::total_cmp);
    let median = finds[1];
    Ok((finds, median))
}

async fn generate(root: PathBuf, spec: TreeSpec) -> Result<tree::Tree> {
    tokio::task::spawn_blocking(move || tree::generate(&root, spec)).await?
}

/// Starts the daemon on `root` and waits until its first pass is done; returns the daemon
/// and the seconds from spawn to in-sync.
async fn mirror_once(
    ctx: &Ctx,
    dir: &Path,
    server: &Server,
    root: &Path,
    opts: &MirrorOpts,
) -> Result<(Daemon, f64)> {
    let mut d = Daemon::spawn(&ctx.daemon, dir, server, root, opts)?;
    let done = d.wait_in_sync(STALL, POLL).await?;
    let secs = done.duration_since(d.started).as_secs_f64();
    Ok((d, secs))
}

/// Checks that the daemon uploaded what it should have; a shortfall is a daemon problem
/// worth a line in the report even when it went idle. The route counts include answers
/// of every status, so an upload refused with 429 and retried counts twice.
fn check_uploads(report: &mut Report, stats: &Stats, expected: u64) {
    let got = stats.uploads();
    if got < expected || got - expected > stats.rate_limited() {
        report.problems.push(format!(
            "harness: expected {expected} uploads, the devserver saw {got} upload requests \
             ({} answered 429; routes: {})",
            stats.rate_limited(),
            stats.by_route()
        ));
    }
}
