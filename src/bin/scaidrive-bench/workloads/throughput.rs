//! W1 (a tree of small files: first mirror against the sequential one-request-at-a-time
//! baseline of the seed walkthrough) and W2 (one large file against a plain curl upload):
//! how fast the daemon gets bytes and files to the server.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use scaidrive::remote::{Client, ClientConfig, Destination, TokenPair};
use serde_json::json;

use super::{Ctx, KIB, MIB, check_uploads, generate, guarded, mib, mirror_once, with_count};
use crate::harness::{MirrorOpts, Scratch, Server, ServerSetup, TOKEN};
use crate::tree::{self, TreeSpec};
use crate::{Report, Row};

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
