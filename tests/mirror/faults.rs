//! The fault matrix (issue 9): server errors, slow and dropped responses, rate-limit
//! storms, token expiry and refused refreshes, a full quota, the per-file cap and a server
//! restart, each against the real daemon and devserver. Every case ends with the remote
//! tree equal to the local tree and no name twice in any remote folder.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use scaidrive::config::Config;
use scaidrive::daemon::RunOptions;
use scaidrive::mirror::{MirrorCmd, MirrorState, MirrorStatus};
use serde_json::{Value, json};

use crate::support::{self, Proc};
use crate::world::{Daemon, World};

/// Deterministic, incompressible-looking content of `len` bytes.
fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes one chunked (resumable) file and `small` small files in a few folders.
fn populate(w: &World, big: usize, small: usize) {
    w.write("big/large.bin", &payload(1, big));
    for i in 0..small {
        w.write(
            &format!("d{}/f{i:03}.txt", i % 4),
            format!("small file {i}").as_bytes(),
        );
    }
}

/// Settles, retries what ran out of attempts while faults were on, and checks the end
/// state every case must reach.
async fn finish_in_sync(w: &World, d: &Daemon) -> MirrorStatus {
    let s = d.settled().await;
    let s = if s.in_sync() && s.failures == 0 {
        s
    } else {
        d.handle.ask(MirrorCmd::Retry).await;
        d.until("in sync without failures", |s| {
            s.in_sync() && s.failures == 0
        })
        .await
    };
    w.assert_mirrored().await;
    w.assert_unique_names().await;
    s
}

/// Waits until the mirror is idle without failures *and* the remote equals the disk (the
/// changes may not have reached the daemon when it first looks idle); panics naming
/// `what` after `secs`.
async fn until_mirrored(w: &World, d: &Daemon, secs: u64, what: &str) -> MirrorStatus {
    tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            let s = d.handle.wait_settled().await;
            if s.in_sync() && s.failures == 0 && w.remote_tree().await == w.local_tree() {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: {:?}", d.handle.status()))
}

fn status_count(stats: &Value, status: u16) -> u64 {
    stats["by_status"][status.to_string()].as_u64().unwrap_or(0)
}

/// Re-arms a fault set every `every`, `times` times (bursts), or until the returned flag
/// is set.
fn keep_arming(w: &World, faults: Value, every: Duration, times: usize) -> Arc<AtomicBool> {
    let done = Arc::new(AtomicBool::new(false));
    let (url, flag) = (w.url.clone(), done.clone());
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        for _ in 0..times {
            if flag.load(Ordering::Relaxed) {
                break;
            }
            let _ = http
                .post(format!("{url}/_devserver/faults"))
                .json(&faults)
                .send()
                .await;
            tokio::time::sleep(every).await;
        }
    });
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_survives_5xx_bursts_and_lost_responses() {
    let w = World::new().await;
    populate(&w, 3 * 1024 * 1024 + 12_345, 24);
    // Slow requests (so the run spans the bursts), a burst of three 5xx every 400 ms,
    // and one response in ten lost after the change was applied (chunk PUTs, session
    // completes, folder creates, uploads).
    let bursts = keep_arming(
        &w,
        json!({ "fail_next": 3, "fail_after_rate": 0.1, "latency_ms": 60 }),
        Duration::from_millis(400),
        10,
    );
    let d = w.start().await;
    d.settled().await;
    bursts.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    w.faults(json!({})).await;
    let stats = w.stats().await;
    assert!(
        status_count(&stats, 503) > 0 && status_count(&stats, 500) > 0,
        "bursts and lost responses were injected: {stats}"
    );
    assert!(
        w.count("PUT /api/v1/uploads/{session_id}/chunks/{index}")
            .await
            > 0,
        "the large file went through an upload session: {stats}"
    );
    finish_in_sync(&w, &d).await;
    assert_eq!(
        w.versions("big/large.bin").await.len(),
        1,
        "a lost complete response does not make a second version"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_slower_than_the_client_timeout_are_retried_without_duplicates() {
    let w = World::new().await;
    for i in 0..6 {
        w.write(
            &format!("slow{}/f{i}.txt", i % 3),
            format!("slow {i}").as_bytes(),
        );
    }
    let mut config = w.config_with(w.mirror_config());
    config.remote.timeout_secs = 1;
    // File requests are answered after 1.5 s: the daemon gives up on each after 1 s and
    // tries again, until the server is quick again.
    w.faults(json!({ "latency_ms": 1500, "path_prefix": "/api/v1/files" }))
        .await;
    let d = w.start_config(config, RunOptions::default()).await;
    d.until("uploading", |s| s.in_flight > 0).await;
    tokio::time::sleep(Duration::from_millis(4000)).await;
    // Each upload took longer than the timeout allows: none was waited for to the end.
    // (The devserver drops a request whose client went away, so none was applied.)
    assert_eq!(
        w.count("POST /api/v1/files").await,
        0,
        "the daemon waited for slow responses beyond its 1 s timeout"
    );
    w.faults(json!({})).await;
    finish_in_sync(&w, &d).await;
    for i in 0..6 {
        let rel = format!("slow{}/f{i}.txt", i % 3);
        assert_eq!(w.versions(&rel).await.len(), 1, "{rel}");
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_dropped_mid_body_lose_and_duplicate_nothing() {
    let w = World::new().await;
    populate(&w, 2 * 1024 * 1024 + 777, 30);
    w.write("medium.bin", &payload(7, 300_000));
    // One request in six loses its connection after 100 kB of body (chunks and the
    // medium file mid-body, small requests after their whole body), plus bursts of two.
    let drops = keep_arming(
        &w,
        json!({ "drop_rate": 0.15, "drop_next": 2, "drop_after_bytes": 100_000, "latency_ms": 40 }),
        Duration::from_millis(500),
        8,
    );
    let d = w.start().await;
    d.settled().await;
    drops.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(250)).await;
    w.faults(json!({})).await;
    finish_in_sync(&w, &d).await;
    assert_eq!(w.versions("big/large.bin").await.len(), 1);
    assert_eq!(w.versions("medium.bin").await.len(), 1);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_storm_is_waited_out_as_told() {
    let w = World::new().await;
    for i in 0..12 {
        w.write(&format!("r/f{i:02}.txt"), format!("rate {i}").as_bytes());
    }
    w.faults(json!({ "force_429": 6, "retry_after_secs": 2 }))
        .await;
    w.reset_stats().await;
    let d = w.start().await;
    // From the first 429 on, the daemon must hold off for about Retry-After (2 s, ±20 %):
    // in the next second only requests already in flight may arrive.
    let first = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let s = w.stats().await;
            if status_count(&s, 429) > 0 {
                return s["requests_total"].as_u64().unwrap_or(0);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the daemon met a 429");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let during = w.stats().await["requests_total"].as_u64().unwrap_or(0) - first;
    assert!(
        during <= 6,
        "{during} requests within 1 s of a 429 that said Retry-After: 2"
    );
    let s = finish_in_sync(&w, &d).await;
    assert_ne!(s.state, MirrorState::NeedsCredentials);
    assert_eq!(
        w.settings(json!({})).await["faults"]["force_429"],
        json!(0),
        "the whole storm was met"
    );
    d.stop().await;
}

/// Writes a secret file the daemon accepts (mode 0600).
fn write_secret(path: &Path, value: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, value).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A config whose credentials come from a token file and a refresh token file.
fn config_with_token_files(w: &World, access: &str, refresh: &str) -> (Config, PathBuf) {
    let token_file = w.dir.path().join("token");
    let refresh_file = w.dir.path().join("refresh-token");
    write_secret(&token_file, access);
    write_secret(&refresh_file, refresh);
    let mut config = w.config_with(w.mirror_config());
    config.remote.token_file = Some(token_file.clone());
    config.remote.refresh_token_file = Some(refresh_file);
    (config, token_file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_access_tokens_are_refreshed_without_user_action() {
    let w = World::new().await;
    w.settings(json!({ "access_token_ttl_secs": 30 })).await;
    let (access, refresh) = w.new_token(Some(30), true).await;
    let (config, _) = config_with_token_files(&w, &access, &refresh.unwrap());
    for i in 0..40 {
        w.write(
            &format!("t{}/f{i:02}.txt", i % 3),
            format!("token {i}").as_bytes(),
        );
    }
    // Slow requests, and the server clock jumping past every token's lifetime meanwhile.
    w.faults(json!({ "latency_ms": 20 })).await;
    let d = w.start_config(config, RunOptions::default()).await;
    let mut jumps = 0;
    while !d.handle.status().in_sync() && jumps < 200 {
        w.advance_clock(31).await;
        jumps += 1;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    w.faults(json!({})).await;
    let s = finish_in_sync(&w, &d).await;
    assert_eq!(s.state, MirrorState::Idle);
    let refreshes = w.count("POST /api/v1/auth/token").await;
    assert!(
        refreshes >= 2,
        "the rotating refresh token was used more than once ({refreshes} refreshes, {jumps} clock jumps)"
    );
    let stored = std::fs::read_to_string(w.state_dir().join("credentials.json")).unwrap();
    assert!(
        !stored.contains(&access),
        "the rotated pair replaced the first token"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_refresh_needs_credentials_until_hup_reloads_them() {
    let w = World::new().await;
    let (access, refresh) = w.new_token(Some(3600), true).await;
    let refresh = refresh.unwrap();
    // Someone else spends the single-use refresh token: the daemon's refresh is refused.
    let r = w
        .http
        .post(format!("{}/api/v1/auth/token", w.url))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let (config, token_file) = config_with_token_files(&w, &access, &refresh);
    let reloaded = config.clone();
    let (hup, hup_rx) = tokio::sync::mpsc::channel(1);
    let opts = RunOptions {
        reload: Some(Box::new(move || Ok(reloaded.clone()))),
        reload_rx: Some(hup_rx),
        ..RunOptions::default()
    };
    w.write("before.txt", b"uploaded with the first token");
    let d = w.start_config(config, opts).await;
    let s = d.settled().await;
    assert!(s.in_sync(), "{s:?}");

    w.advance_clock(7200).await; // the access token expires
    w.write("after/one.txt", b"needs a valid token");
    w.write("after/two.txt", b"this one too");
    let s = d
        .until("needs-credentials", |s| {
            s.state == MirrorState::NeedsCredentials
        })
        .await;
    let reason = s.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("refresh") && reason.contains("401") && !reason.contains('\n'),
        "one line naming the refused refresh: {reason}"
    );
    assert!(
        !reason.contains(&access) && !reason.contains(&refresh),
        "no secret in the reason"
    );
    assert_eq!(s.state.to_string(), "needs-credentials");
    assert_eq!(s.failures, 0, "nothing recorded as failed: {s:?}");

    // The operator provisions a new token and sends HUP.
    let (fresh, _) = w.new_token(None, false).await;
    write_secret(&token_file, &fresh);
    hup.send(()).await.unwrap();
    d.until("in sync after the reload", |s| s.in_sync()).await;
    finish_in_sync(&w, &d).await;
    assert!(w.remote_id("after/two.txt").await.is_some());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_quota_pauses_once_and_resumes_when_space_is_freed() {
    let w = World::new().await;
    for i in 0..20 {
        w.write(
            &format!("q{}/f{i:02}.bin", i % 2),
            &payload(100 + i, 10_000),
        );
    }
    w.set_quota(Some(45_000)).await;
    let mut config = w.config_with(w.mirror_config());
    config.remote.quota_recheck_secs = 1;
    let in_flight = config.daemon.upload_concurrency as u64;
    w.reset_stats().await;
    let d = w.start_config(config, RunOptions::default()).await;
    let s = d
        .until("paused for the quota", |s| s.state == MirrorState::Paused)
        .await;
    let reason = s.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("quota") && reason.contains("507") && !reason.contains('\n'),
        "the reason names the quota: {reason}"
    );
    assert_eq!(
        s.failures, 0,
        "no per-file failures for a full share: {s:?}"
    );
    // No upload starts after the first 507; those already in flight are refused too.
    let refused = status_count(&w.stats().await, 507);
    assert!(
        (1..=in_flight).contains(&refused),
        "the daemon stops uploading at the first refusals ({refused} × 507, at most {in_flight} in flight)"
    );
    // Paused: re-checks every second but sends no uploads while nothing was freed.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let stats = w.stats().await;
    assert_eq!(status_count(&stats, 507), refused, "no 507 spam: {stats}");
    assert!(
        w.count("GET /api/v1/shares/{share_id}").await >= 2,
        "the quota is re-checked periodically: {stats}"
    );
    assert_eq!(d.handle.status().state, MirrorState::Paused);

    // Space is freed: the mirror resumes by itself.
    w.set_quota(Some(10_000_000)).await;
    finish_in_sync(&w, &d).await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_over_the_size_cap_fails_alone_with_413() {
    let w = World::new().await;
    w.settings(json!({ "max_file_size": 100_000 })).await;
    w.write("too-big.bin", &payload(3, 150_000));
    w.write("big/huge.bin", &payload(4, 1_200_000)); // an upload session
    for i in 0..8 {
        w.write(&format!("ok/f{i}.txt"), format!("fits {i}").as_bytes());
    }
    let d = w.start().await;
    let s = d.settled().await;
    assert_eq!(s.failures, 2, "{s:?}");
    for i in 0..8 {
        assert!(w.remote_id(&format!("ok/f{i}.txt")).await.is_some());
    }
    let failures = d.handle.ask(MirrorCmd::Failures).await.unwrap();
    let mut paths: Vec<&str> = failures.iter().map(|f| f.path.as_str()).collect();
    paths.sort();
    assert_eq!(paths, ["big/huge.bin", "too-big.bin"]);
    for f in &failures {
        assert!(
            f.reason.contains("413") && !f.reason.contains('\n'),
            "{f:?}"
        );
        assert!(f.permanent, "{f:?}");
    }
    assert!(w.remote_id("too-big.bin").await.is_none());
    // The cap is raised: a retry mirrors them.
    w.settings(json!({ "max_file_size": 5_000_000 })).await;
    finish_in_sync(&w, &d).await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devserver_restart_mid_run_is_ridden_out() {
    let mut w = World::new().await;
    populate(&w, 2 * 1024 * 1024 + 99, 150);
    w.faults(json!({ "latency_ms": 10 })).await;
    let d = w.start().await;
    d.until("uploads under way", |s| s.files_done >= 20).await;
    w.restart_server().await;
    let s = finish_in_sync(&w, &d).await;
    assert!(s.files_done >= 151, "{s:?}");
    assert_eq!(w.versions("big/large.bin").await.len(), 1);
    d.stop().await;
}

fn ctl_status(w: &World) -> Value {
    let out = support::ctl(
        &w.dir.path().join("run").join("scaidrived.sock"),
        &["status", "--json"],
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

async fn wait_status(w: &World, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    let start = std::time::Instant::now();
    loop {
        let v = ctl_status(w);
        if f(&v["mirrors"][0]) {
            return v["mirrors"][0].clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "timed out waiting for {what}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_makes_the_daemon_binary_take_a_new_token() {
    let w = World::new().await;
    let (access, _) = w.new_token(Some(3600), false).await;
    let token_file = w.dir.path().join("token");
    write_secret(&token_file, &access);
    let mut cfg = w.config_file();
    cfg.remote = format!("token_file = {token_file:?}");
    let cfg_path = cfg.write();
    w.write("before.txt", b"first token");
    let child = Proc(
        support::scaidrived_bare()
            .arg("--config")
            .arg(&cfg_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("scaidrived starts"),
    );
    wait_status(&w, "first sync", |m| {
        m["state"] == "idle" && m["first_pass_done"] == true
    })
    .await;

    w.advance_clock(7200).await; // the token expires; there is no refresh token
    w.write("after.txt", b"needs a new token");
    let m = wait_status(&w, "needs_credentials", |m| {
        m["state"] == "needs_credentials"
    })
    .await;
    let reason = m["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("401") && !reason.contains('\n') && !reason.contains(&access),
        "{reason}"
    );

    let (fresh, _) = w.new_token(None, false).await;
    write_secret(&token_file, &fresh);
    support::signal(&child, "HUP");
    wait_status(&w, "in sync after SIGHUP", |m| {
        m["state"] == "idle" && m["queue_depth"] == 0 && m["in_flight"] == 0
    })
    .await;
    tokio::time::timeout(Duration::from_secs(30), async {
        while w.remote_id("after.txt").await.is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("after.txt mirrored after the reload");
    w.assert_mirrored().await;
    w.assert_unique_names().await;
    drop(child);
}

/// A folder rename whose request fails until the client gives up is retried later as a
/// move: the retry looks at the old path too, so it does not create the new folder and
/// upload its files again next to the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_folder_move_is_retried_as_a_move() {
    let w = World::new().await;
    w.write("d/a.txt", b"a");
    w.write("d/b.txt", b"b");
    w.write("keep.txt", b"keep");
    let d = w.start().await;
    assert!(d.settled().await.in_sync());
    let id = w.remote_id("d").await.expect("folder mirrored");
    w.reset_stats().await;
    // Enough 503s on folder calls for the client to give up on the rename once.
    w.faults(json!({ "fail_next": 5, "path_prefix": "/api/v1/folders/" }))
        .await;
    std::fs::rename(w.root.join("d"), w.root.join("e")).unwrap();
    w.write("e/c.txt", b"c, new inside the moved folder");
    // Planned under the new name too: a delete that must not be lost with the failed move.
    std::fs::remove_file(w.root.join("e/b.txt")).unwrap();
    d.until("the move to fail", |s| s.failures > 0).await;
    let s = tokio::time::timeout(Duration::from_secs(90), async {
        loop {
            let s = d.handle.wait_settled().await;
            if s.in_sync() && s.failures == 0 {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the retry settles the move");
    assert_eq!(s.retrying, 0);
    w.assert_mirrored().await;
    assert_eq!(
        w.remote_id("e").await.as_deref(),
        Some(id.as_str()),
        "same folder"
    );
    assert_eq!(
        w.count("POST /api/v1/folders").await,
        0,
        "no folder created"
    );
    d.stop().await;
}

/// Another client trashes a mirrored folder on the remote while it stays on the disk. The
/// daemon's cached id for it now answers 410: an upload into it and a move into it must
/// not fail for good, and the move must not forget the moved file (which would leave it
/// remotely at its old path and upload a second copy). Local is the truth: the folder and
/// everything in it come back, the moved file is moved, and nothing is left over. A file
/// trashed remotely and then edited locally comes back as a new remote file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_trashed_remotely_by_someone_else_comes_back() {
    let w = World::new().await;
    w.write("a/moved.txt", b"moves into b");
    w.write("a/stays.txt", b"stays in a");
    w.write("a/renamed.txt", b"moves into c under a new name");
    w.write("b/old.txt", b"was in b");
    w.write("c/old.txt", b"was in c");
    w.write("edited.txt", b"version 1");
    let d = w.start().await;
    assert!(d.settled().await.in_sync());
    let edited_id = w.remote_id("edited.txt").await.expect("mirrored");
    w.trash("files", &edited_id).await;
    let moved_id = w.remote_id("a/moved.txt").await.expect("mirrored");
    let renamed_id = w.remote_id("a/renamed.txt").await.expect("mirrored");
    for folder in ["b", "c"] {
        let id = w.remote_id(folder).await.expect("folder mirrored");
        w.trash("folders", &id).await;
    }
    // A move into one trashed folder, a move with a new name and a new file in the other.
    std::fs::rename(w.root.join("a/moved.txt"), w.root.join("b/moved.txt")).unwrap();
    std::fs::rename(w.root.join("a/renamed.txt"), w.root.join("c/new-name.txt")).unwrap();
    w.write("c/new.txt", b"new in c");
    // And a new version of a file someone trashed.
    w.write("edited.txt", b"version 2, longer");
    let s = until_mirrored(&w, &d, 60, "never settled").await;
    assert_eq!(s.retrying, 0);
    w.assert_mirrored().await;
    w.assert_unique_names().await;
    assert_eq!(
        w.remote_id("b/moved.txt").await.as_deref(),
        Some(moved_id.as_str()),
        "the moved file is the same remote file, not a second upload"
    );
    assert_eq!(
        w.remote_id("c/new-name.txt").await.as_deref(),
        Some(renamed_id.as_str()),
        "the renamed and moved file is the same remote file"
    );
    d.stop().await;
}

/// The crash loop's rare orphan, made deterministic: an upload is applied but its response
/// is lost (500), and the file is deleted before the retry, which then fails for good on
/// the local side. The server holds a file the daemon never recorded; the failed create's
/// intent must stay open and be settled, so the file is recorded and then trashed like
/// any deleted file, instead of staying on the remote forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applied_upload_whose_retry_fails_is_not_left_behind() {
    let w = World::new().await;
    w.write("keep.txt", b"keep");
    let d = w.start().await;
    assert!(d.settled().await.in_sync());
    // Every file request is answered 500 after it is applied, 400 ms late.
    w.faults(json!({ "fail_after_rate": 1.0, "latency_ms": 400, "path_prefix": "/api/v1/files" }))
        .await;
    w.write(
        "doomed.txt",
        b"uploaded, then deleted locally while its response was lost",
    );
    d.until("the upload to start", |s| s.in_flight > 0).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    std::fs::remove_file(w.root.join("doomed.txt")).unwrap();
    // The retry finds no file to send.
    tokio::time::sleep(Duration::from_millis(600)).await;
    w.faults(json!({})).await;
    let s = until_mirrored(&w, &d, 60, "doomed.txt left on the remote").await;
    assert_eq!(s.retrying, 0);
    w.assert_mirrored().await;
    assert!(
        w.trashed().await.iter().any(|n| n == "doomed.txt"),
        "the uploaded file is in the trash: {:?}",
        w.trashed().await
    );
    d.stop().await;
}
