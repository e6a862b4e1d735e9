//! Uploads at the documented unit floor (issue 19): a multipart answered 413 goes on at
//! once as a session and the size is remembered; a multipart that breaks off twice goes on
//! as a session; the session's chunk size is chosen per file (largest for an unmeasured
//! link, bounded by the time one chunk takes at the measured throughput); a session that
//! cannot be used any more is cancelled. Counted on the devserver's request statistics,
//! which are deterministic.

use std::time::Duration;

use scaidrive::remote::{Destination, NewUploadSession, ResumableUpload, UploadConfig};
use serde_json::json;

use crate::harness::{Env, random_bytes, sha_hex, with_status};

const CHUNK_PUT: &str = "PUT /api/v1/uploads/{session_id}/chunks/{index}";
const SESSION_CREATE: &str = "POST /api/v1/uploads";
const SESSION_DELETE: &str = "DELETE /api/v1/uploads/{session_id}";
const MULTIPART: &str = "POST /api/v1/files";
const MIB: usize = 1024 * 1024;

#[tokio::test]
async fn a_413_from_multipart_goes_on_as_a_session_and_is_remembered() -> anyhow::Result<()> {
    let env = Env::start().await;
    // A request cap below the file: the seed's "413 … Use Resumable Uploads".
    env.settings(json!({ "max_request_size": 8 * MIB })).await;
    let c = env.client();
    let data = random_bytes(12 * MIB);
    let path = env.write("big.bin", &data);
    env.reset_stats().await;
    let f = c
        .upload_file(
            &Destination::new(&env.share, None, "big.bin"),
            &path,
            Some(&sha_hex(&data)),
        )
        .await?;
    assert_eq!(f.checksum_sha256.as_deref(), Some(sha_hex(&data).as_str()));
    let stats = env.stats().await;
    assert_eq!(env.count(MULTIPART).await, 1, "{stats}");
    assert_eq!(with_status(&stats, 413), 1, "{stats}");
    assert_eq!(env.count(SESSION_CREATE).await, 1, "{stats}");
    assert!(c.uses_session(12 * MIB as u64));

    // A second file that large goes straight to a session; a smaller one still by
    // multipart.
    let path2 = env.write("big2.bin", &random_bytes(12 * MIB + 1));
    c.upload_file(
        &Destination::new(&env.share, None, "big2.bin"),
        &path2,
        None,
    )
    .await?;
    let small = env.write("small.bin", &random_bytes(MIB));
    c.upload_file(
        &Destination::new(&env.share, None, "small.bin"),
        &small,
        None,
    )
    .await?;
    let stats = env.stats().await;
    assert_eq!(env.count(MULTIPART).await, 2, "{stats}");
    assert_eq!(with_status(&stats, 413), 1, "no second 413: {stats}");
    assert_eq!(env.count(SESSION_CREATE).await, 2, "{stats}");
    Ok(())
}

#[tokio::test]
async fn only_a_413_from_a_session_is_final() -> anyhow::Result<()> {
    let env = Env::start().await;
    env.settings(json!({ "max_file_size": 100_000, "max_request_size": 8 * MIB }))
        .await;
    let c = env.client();
    let path = env.write("over.bin", &random_bytes(150_000));
    env.reset_stats().await;
    let e = c
        .upload_file(&Destination::new(&env.share, None, "over.bin"), &path, None)
        .await
        .unwrap_err();
    assert!(e.is_payload_too_large(), "{e}");
    assert_eq!(
        e.path(),
        Some("/api/v1/uploads"),
        "the session's 413 is the answer: {e}"
    );
    assert!(!e.is_transient());
    assert_eq!(env.count(MULTIPART).await, 1);
    assert_eq!(env.count(SESSION_CREATE).await, 1);
    Ok(())
}

#[tokio::test]
async fn a_multipart_that_breaks_off_twice_goes_on_as_a_session() -> anyhow::Result<()> {
    let env = Env::start().await;
    let c = env.client();
    let data = random_bytes(6 * MIB);
    let path = env.write("flaky.bin", &data);
    let drops = |n: u64| json!({ "drop_next": n, "drop_after_bytes": 100_000, "path_prefix": "/api/v1/files" });
    // One broken transfer: multipart is simply tried again.
    env.faults(drops(1)).await;
    c.upload_file(&Destination::new(&env.share, None, "once.bin"), &path, None)
        .await?;
    assert_eq!(env.count(SESSION_CREATE).await, 0);
    // Two: the file goes on as a session of at least two chunks, which resumes.
    env.reset_stats().await;
    env.faults(drops(2)).await;
    let f = c
        .upload_file(
            &Destination::new(&env.share, None, "flaky.bin"),
            &path,
            None,
        )
        .await?;
    assert_eq!(f.checksum_sha256.as_deref(), Some(sha_hex(&data).as_str()));
    let stats = env.stats().await;
    // Dropped requests never reach the statistics: no third multipart was sent.
    assert_eq!(env.count(MULTIPART).await, 0, "{stats}");
    assert_eq!(env.count(SESSION_CREATE).await, 1, "{stats}");
    assert_eq!(
        env.count(CHUNK_PUT).await,
        2,
        "6 MiB in 4 MiB chunks: {stats}"
    );
    // A file within one default chunk gains nothing from a session: sent again.
    let small = env.write("small.bin", &random_bytes(MIB));
    env.reset_stats().await;
    env.faults(drops(2)).await;
    c.upload_file(
        &Destination::new(&env.share, None, "small.bin"),
        &small,
        None,
    )
    .await?;
    assert_eq!(env.count(MULTIPART).await, 1, "the third attempt");
    assert_eq!(env.count(SESSION_CREATE).await, 0);
    Ok(())
}

#[tokio::test]
async fn chunk_size_is_chosen_per_file_from_the_measured_throughput() -> anyhow::Result<()> {
    let env = Env::start().await;
    let cfg = |c: &mut scaidrive::remote::ClientConfig| {
        c.upload.session_threshold = 16 * MIB as u64;
        c.upload.max_chunk_time = Duration::from_secs(2);
    };
    let data = random_bytes(40 * MIB);
    let path = env.write("forty.bin", &data);

    // Nothing measured yet: the largest chunk, no larger than the file needs.
    let fresh = env.client_with(cfg);
    assert_eq!(fresh.measured_throughput(), None);
    assert_eq!(fresh.session_chunk_size(40 * MIB as u64), 64 * MIB as u64);
    assert_eq!(fresh.session_chunk_size(5 * MIB as u64), 8 * MIB as u64);
    env.reset_stats().await;
    fresh
        .upload_file(&Destination::new(&env.share, None, "a.bin"), &path, None)
        .await?;
    assert_eq!(env.count(CHUNK_PUT).await, 1, "one 40 MiB chunk");

    // A slow link: every request takes 600 ms more, so a 4 MiB upload measures about
    // 4 MiB per 0.6-1 s, and one chunk may take 2 s: 8 MiB chunks, five for 40 MiB.
    let slow = env.client_with(cfg);
    env.faults(json!({ "latency_ms": 600 })).await;
    let probe = env.write("probe.bin", &random_bytes(4 * MIB));
    slow.upload_file(
        &Destination::new(&env.share, None, "probe.bin"),
        &probe,
        None,
    )
    .await?;
    let bps = slow
        .measured_throughput()
        .expect("the multipart was measured");
    assert!(
        bps > (4 * MIB) as f64 && bps <= (4 * MIB) as f64 / 0.6,
        "measured {bps} B/s"
    );
    let chunk = slow.session_chunk_size(40 * MIB as u64);
    assert_eq!(chunk, 8 * MIB as u64, "measured {bps} B/s");
    env.reset_stats().await;
    let f = slow
        .upload_file(&Destination::new(&env.share, None, "b.bin"), &path, None)
        .await?;
    assert_eq!(f.checksum_sha256.as_deref(), Some(sha_hex(&data).as_str()));
    assert_eq!(env.count(CHUNK_PUT).await, 5, "40 MiB in 8 MiB chunks");
    env.faults(json!({})).await;

    // A pinned chunk size wins.
    let pinned = env.client_with(|c| {
        cfg(c);
        c.upload.chunk_size = 16 * MIB as u64;
    });
    env.reset_stats().await;
    pinned
        .upload_file(&Destination::new(&env.share, None, "c.bin"), &path, None)
        .await?;
    assert_eq!(env.count(CHUNK_PUT).await, 3, "40 MiB in 16 MiB chunks");
    assert_eq!(
        UploadConfig::default().chunk_size,
        0,
        "chosen per file by default"
    );
    Ok(())
}

#[tokio::test]
async fn a_session_planned_for_another_size_is_cancelled() -> anyhow::Result<()> {
    let env = Env::start().await;
    let c = env.client_with(|c| c.upload.chunk_size = 64 * 1024);
    let old = c
        .create_upload_session(&NewUploadSession {
            share_id: env.share.clone(),
            file_name: "grown.bin".into(),
            file_size: 1000,
            chunk_size: Some(64 * 1024),
            ..Default::default()
        })
        .await?;
    let data = random_bytes(200_000);
    let path = env.write("grown.bin", &data);
    let mut up = ResumableUpload::new(Destination::new(&env.share, None, "grown.bin"), &path);
    up.resume_session_id = Some(old.session_id.clone());
    env.reset_stats().await;
    let f = c.upload_resumable(&up).await?;
    assert_eq!(f.checksum_sha256.as_deref(), Some(sha_hex(&data).as_str()));
    assert_eq!(env.count(SESSION_DELETE).await, 1);
    assert_eq!(env.count(SESSION_CREATE).await, 1, "a new session instead");
    // Best effort: cancelling a session that is gone is only logged.
    c.abandon_session(&old.session_id).await;
    Ok(())
}
