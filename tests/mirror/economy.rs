//! Units spent per change (issues 19 and 17 item 10), counted on the devserver's request
//! statistics, which are deterministic: a 413 from multipart ends in one session (and the
//! next file that large goes straight to one), a 60 MB new file is one multipart request,
//! a session's chunk count follows the chunk size chosen for the file, and a session the
//! file no longer fits is cancelled with one `DELETE /api/v1/uploads/{id}`.

use std::time::Duration;

use scaidrive::config::{Config, RemoteSection};
use scaidrive::daemon::RunOptions;
use serde_json::json;

use crate::world::{Daemon, World};

const MULTIPART: &str = "POST /api/v1/files";
const SESSION_CREATE: &str = "POST /api/v1/uploads";
const CHUNK_PUT: &str = "PUT /api/v1/uploads/{session_id}/chunks/{index}";
const SESSION_DELETE: &str = "DELETE /api/v1/uploads/{session_id}";
const MIB: usize = 1024 * 1024;

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

/// The world's config with the shipped upload defaults (the harness lowers the session
/// threshold and pins small chunks for speed elsewhere).
fn shipped_upload_defaults(w: &World) -> Config {
    let mut c = w.config_with(w.mirror_config());
    let d = RemoteSection::default();
    c.remote.large_file_threshold = d.large_file_threshold;
    c.remote.chunk_size = d.chunk_size;
    c.remote.max_chunk_size = d.max_chunk_size;
    c.remote.max_chunk_secs = d.max_chunk_secs;
    c
}

async fn start(w: &World, c: Config) -> Daemon {
    w.start_config(c, RunOptions::default()).await
}

async fn in_sync(w: &World, d: &Daemon) {
    let s = d.settled().await;
    assert!(s.in_sync() && s.failures == 0, "{s:?}");
    w.assert_mirrored().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_413_from_multipart_ends_in_one_session_and_is_remembered() {
    let w = World::new().await;
    // A request cap under the file, as a proxy might set; the per-file cap is far above.
    w.settings(json!({ "max_request_size": 8 * MIB })).await;
    w.write("big.bin", &payload(1, 12 * MIB));
    let d = start(&w, shipped_upload_defaults(&w)).await;
    in_sync(&w, &d).await;
    let stats = w.stats().await;
    assert_eq!(w.count(MULTIPART).await, 1, "{stats}");
    assert_eq!(stats["by_status"]["413"], 1, "{stats}");
    assert_eq!(w.count(SESSION_CREATE).await, 1, "{stats}");

    // The next file that large goes straight to a session.
    w.write("big2.bin", &payload(2, 12 * MIB));
    in_sync(&w, &d).await;
    let stats = w.stats().await;
    assert_eq!(w.count(MULTIPART).await, 1, "{stats}");
    assert_eq!(stats["by_status"]["413"], 1, "{stats}");
    assert_eq!(w.count(SESSION_CREATE).await, 2, "{stats}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_60_mb_new_file_is_one_multipart_request() {
    let w = World::new().await;
    w.write("video.bin", &payload(3, 60_000_000));
    let d = start(&w, shipped_upload_defaults(&w)).await;
    in_sync(&w, &d).await;
    let stats = w.stats().await;
    assert_eq!(w.count(MULTIPART).await, 1, "{stats}");
    assert_eq!(w.count(SESSION_CREATE).await, 0, "{stats}");
    assert_eq!(w.count(CHUNK_PUT).await, 0, "{stats}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessions_chunk_count_follows_the_chosen_chunk_size() {
    let w = World::new().await;
    let mut c = shipped_upload_defaults(&w);
    c.remote.large_file_threshold = 16 * MIB as u64;
    // 40 MiB, nothing measured yet: one 64 MiB chunk (fixed 8 MiB chunks were five).
    w.write("a.bin", &payload(4, 40 * MIB));
    let d = start(&w, c.clone()).await;
    in_sync(&w, &d).await;
    assert_eq!(w.count(SESSION_CREATE).await, 1);
    assert_eq!(w.count(CHUNK_PUT).await, 1);
    d.stop().await;

    // A ceiling of 16 MiB: three chunks for the next 40 MiB file.
    c.remote.max_chunk_size = 16 * MIB as u64;
    w.write("b.bin", &payload(5, 40 * MIB));
    w.reset_stats().await;
    let d = start(&w, c).await;
    in_sync(&w, &d).await;
    assert_eq!(w.count(SESSION_CREATE).await, 1);
    assert_eq!(w.count(CHUNK_PUT).await, 3);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_session_the_file_no_longer_fits_is_cancelled_once() {
    let w = World::new().await;
    // Sessions from 1 MiB in 256 KiB chunks (the world's config); every request under
    // /api/v1/uploads/ fails, so the session is created and then left behind.
    w.faults(json!({ "fail_rate": 1.0, "path_prefix": "/api/v1/uploads/" }))
        .await;
    w.write("big.bin", &payload(6, 2 * MIB));
    let d = w.start().await;
    d.until("the upload failed", |s| s.failures >= 1).await;
    d.stop().await;
    assert_eq!(w.count(SESSION_CREATE).await, 1);
    assert_eq!(w.count(SESSION_DELETE).await, 0);

    // Rewritten while the daemon was down: the stored session is for other content.
    w.faults(json!({})).await;
    w.write("big.bin", &payload(7, 3 * MIB / 2));
    w.reset_stats().await;
    let d = w.start().await;
    in_sync(&w, &d).await;
    let stats = w.stats().await;
    assert_eq!(w.count(SESSION_DELETE).await, 1, "{stats}");
    assert_eq!(w.count(SESSION_CREATE).await, 1, "a new session: {stats}");
    // Forgotten once cancelled: a later pass does not cancel it again.
    w.write("other.txt", b"x");
    in_sync(&w, &d).await;
    assert_eq!(w.count(SESSION_DELETE).await, 1);
    d.stop().await;
}

/// Waits until the server has seen `n` session creates.
async fn sessions_created(w: &World, n: u64) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while w.count(SESSION_CREATE).await < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{n} session(s) created"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_file_goes_away_mid_upload_is_cancelled_once() {
    let w = World::new().await;
    let mut c = w.config_with(w.mirror_config());
    c.remote.parallel_chunks = 1;
    // Each chunk PUT takes 300 ms more: 12 chunks of 256 KiB take over 3 s.
    w.faults(json!({ "latency_ms": 300, "path_prefix": "/api/v1/uploads/" }))
        .await;
    w.write("gone.bin", &payload(8, 3 * MIB));
    let d = start(&w, c).await;
    sessions_created(&w, 1).await;
    // Deleted under the running upload: no later op for this path would cancel it.
    std::fs::remove_file(w.root.join("gone.bin")).unwrap();
    in_sync(&w, &d).await;
    let stats = w.stats().await;
    assert_eq!(w.count(SESSION_DELETE).await, 1, "{stats}");
    assert!(
        w.count(CHUNK_PUT).await < 12,
        "the upload stopped early: {stats}"
    );

    // Truncated and rewritten under the running upload: cancelled once, and the new
    // content mirrored.
    w.write("grow.bin", &payload(9, 3 * MIB));
    sessions_created(&w, 2).await;
    w.write("grow.bin", b"now a small file");
    in_sync(&w, &d).await;
    let stats = w.stats().await;
    assert_eq!(w.count(SESSION_DELETE).await, 2, "{stats}");
    d.stop().await;
}
