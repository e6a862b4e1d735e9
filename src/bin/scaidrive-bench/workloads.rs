//! Workloads W1–W7 of issue 8. Each one generates its data in its own scratch directory,
//! starts a fresh devserver (so request counts are the daemon's alone), runs the daemon
//! and turns what it measured into table rows. A workload that fails (the daemon exits,
//! stalls or pauses) returns its report with `error` set instead of aborting the run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

use super::harness::{Daemon, MirrorOpts, Scratch, Server, ServerSetup, Stats, TOKEN};
use super::tree::{self, TreeSpec};
use super::{Report, Row, Sizes};
use scaidrive::remote::{Client, ClientConfig, Destination, TokenPair};

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

// --- W1 ---------------------------------------------------------------------------------

pub async fn w1(ctx: &Ctx) -> Report {
    let s = ctx.sizes;
    let report = Report::new(
        "W1",
        "initial mirror, 1–64 KiB files, 20 ms latency",
        format!(
            "{} files / {} folders",
            with_count(s.w1_files),
            s.w1_folders
        ),
    );
    guarded(report, async |r| {
        let scratch = Scratch::new(&ctx.work, "w1", ctx.keep)?;
        let root = scratch.path.join("root");
        let spec = TreeSpec {
            files: s.w1_files,
            folders: s.w1_folders,
            min_size: KIB,
            max_size: 64 * KIB,
            seed: 1,
        };
        let tree = generate(root.clone(), spec).await?;
        let setup = ServerSetup {
            latency_ms: 20,
            rate_limit: 0,
        };
        r.devserver = setup;
        let server = Server::start(&scratch.path.join("server"), setup).await?;
        server.reset_stats().await?;
        let (d, secs) =
            mirror_once(ctx, &scratch.path, &server, &root, &MirrorOpts::default()).await?;
        let proc = d.sample()?;
        let stats = server.stats().await?;
        r.problems.extend(d.log_problems());
        d.stop().await?;
        server.shutdown().await;
        check_uploads(r, &stats, tree.files.len() as u64);

        let files = tree.files.len() as f64;
        let folders = tree.folders.len() as f64;
        let rate = files / secs;
        // The remote base folder the daemon creates counts as one more folder.
        let allowed = 1.03 * files + folders + 1.0;
        r.rows.push(Row::target(
            "files/s",
            rate,
            "",
            "≥ 400".into(),
            rate >= 400.0,
        ));
        r.rows.push(Row::info("time to idle", secs, "s"));
        r.rows.push(Row::target(
            "requests",
            stats.total() as f64,
            "",
            format!("≤ {allowed:.0} (1.03/file + 1/folder)"),
            stats.total() as f64 <= allowed,
        ));
        r.rows.push(Row::info(
            "requests per file",
            stats.total() as f64 / files,
            "",
        ));
        r.rows.push(Row::info("daemon CPU", proc.cpu_secs, "s"));
        r.rows.push(Row::target(
            "peak RSS",
            mib(proc.hwm_kib),
            "MiB",
            "≤ 80 MiB".into(),
            mib(proc.hwm_kib) <= 80.0,
        ));
        r.details = json!({
            "files": tree.files.len(), "folders": tree.folders.len(), "bytes": tree.bytes,
            "secs": secs, "requests_by_route": stats.by_route(), "units": stats.units(),
            "proc": proc,
        });

        // Baseline: the same tree, one request at a time, against a fresh devserver with
        // the same latency (a fresh one so that no blob is already stored).
        let base_server = Server::start(&scratch.path.join("server-baseline"), setup).await?;
        let b = baseline(&base_server, &root, &tree, ctx.baseline_max_files).await;
        base_server.shutdown().await;
        let b = b?;
        let ratio = rate / b.rate;
        r.rows.push(Row::info(
            if b.extrapolated {
                "baseline files/s (sequential, extrapolated)"
            } else {
                "baseline files/s (sequential client)"
            },
            b.rate,
            "",
        ));
        r.rows.push(Row::info("daemon ÷ baseline", ratio, "×"));
        r.details["baseline"] = json!({
            "files_uploaded": b.files, "folder_secs": b.folder_secs, "file_secs": b.file_secs,
            "files_per_sec": b.rate, "extrapolated": b.extrapolated, "requests": b.requests,
        });
        Ok(())
    })
    .await
}

struct Baseline {
    files: usize,
    folder_secs: f64,
    file_secs: f64,
    rate: f64,
    extrapolated: bool,
    requests: u64,
}

/// The seed walkthrough's way: create each folder, then upload each file, one request at a
/// time, with the plain client.
async fn baseline(
    server: &Server,
    root: &Path,
    tree: &tree::Tree,
    max_files: Option<usize>,
) -> Result<Baseline> {
    let client = Client::new(ClientConfig::new(server.url(), TokenPair::bearer(TOKEN)))?;
    let share = server.share_id().to_string();
    server.reset_stats().await?;
    let t = Instant::now();
    let base = client.create_folder(&share, None, "baseline").await?;
    let mut ids: HashMap<&str, String> = HashMap::new();
    for f in &tree.folders {
        let (parent, name) = match f.rsplit_once('/') {
            Some((p, n)) => (ids.get(p).context("parent created first")?.clone(), n),
            None => (base.id.clone(), f.as_str()),
        };
        let created = client.create_folder(&share, Some(&parent), name).await?;
        ids.insert(f, created.id);
    }
    let folder_secs = t.elapsed().as_secs_f64();
    let n = max_files.unwrap_or(usize::MAX).min(tree.files.len());
    let t = Instant::now();
    for (rel, len) in &tree.files[..n] {
        let (folder, name) = match rel.rsplit_once('/') {
            Some((p, n)) => (ids.get(p).context("folder created")?.clone(), n),
            None => (base.id.clone(), rel.as_str()),
        };
        let dest = Destination::new(share.clone(), Some(&folder), name);
        client
            .upload_multipart(&dest, &root.join(rel), *len)
            .await?;
    }
    let file_secs = t.elapsed().as_secs_f64();
    let all = tree.files.len() as f64;
    // With a cap, the per-file time is scaled to the whole tree; folders were all created.
    let total = folder_secs + file_secs * all / n.max(1) as f64;
    Ok(Baseline {
        files: n,
        folder_secs,
        file_secs,
        rate: all / total,
        extrapolated: n < tree.files.len(),
        requests: server.stats().await?.total(),
    })
}

// --- W2 ---------------------------------------------------------------------------------

pub async fn w2(ctx: &Ctx) -> Report {
    let s = ctx.sizes;
    let report = Report::new(
        "W2",
        "initial mirror of two large files vs raw curl upload",
        format!("2 × {:.0} MiB", s.w2_file_bytes as f64 / MIB),
    );
    guarded(report, async |r| {
        let scratch = Scratch::new(&ctx.work, "w2", ctx.keep)?;
        let root = scratch.path.join("root");
        std::fs::create_dir_all(&root)?;
        let mut paths = Vec::new();
        for i in 0..2u64 {
            let p = root.join(format!("big{i}.bin"));
            let len = s.w2_file_bytes;
            let p2 = p.clone();
            tokio::task::spawn_blocking(move || tree::large_file(&p2, len, 20 + i)).await??;
            paths.push(p);
        }
        let bytes = 2 * s.w2_file_bytes;
        let setup = ServerSetup::default();
        r.devserver = setup;

        // Raw: one curl at a time, one stream each, a multipart POST /api/v1/files (the
        // devserver streams the part into its blob store), into a devserver of its own
        // that is removed before the daemon runs (disk space).
        let raw_dir = scratch.path.join("server-raw");
        let server = Server::start(&raw_dir, setup).await?;
        let t = Instant::now();
        for p in &paths {
            curl_upload(&server, p).await?;
        }
        let raw_secs = t.elapsed().as_secs_f64();
        server.shutdown().await;
        std::fs::remove_dir_all(&raw_dir)?;

        let server = Server::start(&scratch.path.join("server"), setup).await?;
        server.reset_stats().await?;
        let (d, secs) =
            mirror_once(ctx, &scratch.path, &server, &root, &MirrorOpts::default()).await?;
        let proc = d.sample()?;
        let stats = server.stats().await?;
        r.problems.extend(d.log_problems());
        d.stop().await?;
        server.shutdown().await;
        check_uploads(r, &stats, 2);

        let mbs = bytes as f64 / 1e6 / secs;
        let raw_mbs = bytes as f64 / 1e6 / raw_secs;
        let ratio = mbs / raw_mbs;
        r.rows
            .push(Row::info("daemon MB/s (spawn to idle)", mbs, "MB/s"));
        r.rows.push(Row::info("raw curl MB/s", raw_mbs, "MB/s"));
        r.rows.push(Row::target(
            "daemon ÷ raw",
            ratio,
            "×",
            "≥ 0.9×".into(),
            ratio >= 0.9,
        ));
        r.rows.push(Row::info("daemon CPU", proc.cpu_secs, "s"));
        r.rows.push(Row::target(
            "peak RSS",
            mib(proc.hwm_kib),
            "MiB",
            "≤ 64 MiB".into(),
            mib(proc.hwm_kib) <= 64.0,
        ));
        r.details = json!({
            "bytes": bytes, "daemon_secs": secs, "raw_secs": raw_secs,
            "requests_by_route": stats.by_route(), "proc": proc,
        });
        Ok(())
    })
    .await
}

async fn curl_upload(server: &Server, path: &Path) -> Result<()> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("big.bin");
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .arg(format!("{}/api/v1/files", server.url()))
        .arg("-H")
        .arg(format!("Authorization: Bearer {TOKEN}"))
        .arg("-F")
        .arg(format!("share_id={}", server.share_id()))
        .arg("-F")
        .arg(format!("name=raw-{name}"))
        .arg("-F")
        .arg(format!("file=@{}", path.display()))
        .output()
        .await
        .context("running curl (is it installed?)")?;
    let code = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() || !code.starts_with('2') {
        bail!(
            "curl upload of {} failed: HTTP {code} {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

// --- W3 ---------------------------------------------------------------------------------

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

// --- W4 + W6 ----------------------------------------------------------------------------

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
    let mut finds = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let st = tokio::process::Command::new("find")
            .arg(&root)
            .args(["-printf", "%s %T@ %i\n"])
            .stdout(std::process::Stdio::null())
            .status()
            .await?;
        if !st.success() {
            bail!("find failed: {st}");
        }
        finds.push(t.elapsed().as_secs_f64());
    }
    finds.sort_by(f64::total_cmp);
    let find_secs = finds[1];

    server.reset_stats().await?;
    let (mut d, idle_secs) = {
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
        let wakeups = super::sys::ctxt_switches_between(&a, &b) as f64 / secs;
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
    d.wait_in_sync(Duration::from_secs(60), POLL).await?;
    d.stop().await?;
    server.shutdown().await;
    Ok(())
}

// --- W5 ---------------------------------------------------------------------------------

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
        let done = d
            .wait_change_settled(Duration::from_secs(600), POLL, async || {
                srv.stats().await.map(|s| s.total() > 0).unwrap_or(false)
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
        let total = stats.total();
        r.rows.push(Row::target(
            "requests",
            total as f64,
            "",
            "1 (a folder move/rename)".into(),
            total == 1 && moves == 1,
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

// --- W7 ---------------------------------------------------------------------------------

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
