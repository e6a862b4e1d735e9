//! Files and uploads: multipart streamed from disk (one request per small file),
//! resumable sessions (parallel chunks, resume from `missing_chunks`, expiry → new
//! session, checksum mismatch, dropped connections mid-body), 413/507 as permanent errors,
//! upload-or-adopt, content replacement as new versions, and the file calls.

use std::time::Duration;

use scaidrive::remote::{Destination, ErrorKind, NewUploadSession, Placed, ResumableUpload};
use serde_json::json;

use crate::harness::{Env, api_total, random_bytes, sha_hex};

const CHUNK_PUT: &str = "PUT /api/v1/uploads/{session_id}/chunks/{index}";
const SESSION_CREATE: &str = "POST /api/v1/uploads";
const MULTIPART: &str = "POST /api/v1/files";

/// A client that uses sessions from 256 KiB on, in 64 KiB chunks, 4 in flight.
fn session_client(env: &Env) -> scaidrive::remote::Client {
    env.client_with(|c| {
        c.upload.session_threshold = 256 * 1024;
        c.upload.chunk_size = 64 * 1024;
        c.upload.parallel_chunks = 4;
    })
}

#[tokio::test]
async fn small_files_cost_one_request_each() -> anyhow::Result<()> {
    let env = Env::start().await;
    let c = env.client();
    let folder = c.create_folder(&env.share, None, "docs").await?;
    env.reset_stats().await;
    let n = 20;
    for i in 0..n {
        let data = random_bytes(1000 + i * 37);
        let path = env.write(&format!("f{i}.bin"), &data);
        let dest = Destination::new(&env.share, Some(&folder.id), format!("f{i}.bin"));
        let f = c.upload_file(&dest, &path, Some(&sha_hex(&data))).await?;
        assert_eq!(
            (f.size, f.version, f.folder_id.as_deref()),
            (data.len() as u64, 1, Some(folder.id.as_str()))
        );
        assert_eq!(f.checksum_sha256.as_deref(), Some(sha_hex(&data).as_str()));
    }
    let stats = env.stats().await;
    let total = api_total(&stats);
    eprintln!(
        "small-file uploads: {n} files, {total} API requests ({:.2} per file)",
        total as f64 / n as f64
    );
    assert_eq!(total, n as u64, "one request per small file: {stats}");
    assert_eq!(env.count(MULTIPART).await, n as u64);
    Ok(())
}

#[tokio::test]
async fn file_calls_and_exact_names() -> anyhow::Result<()> {
    let env = Env::start().await;
    let c = env.client();
    let data = b"hello, scaidrive".to_vec();
    // The explicit `name` field keeps quotes and non-ASCII intact.
    let name = "quote\"d ünï (1).txt";
    let path = env.write("q.txt", &data);
    let f = c
        .upload_file(&Destination::new(&env.share, None, name), &path, None)
        .await?;
    assert_eq!(f.name, name);
    assert_eq!(c.file(&f.id).await?, f);
    let back = env.dir.path().join("download");
    assert_eq!(c.download_to(&f.id, &back).await?, data.len() as u64);
    assert_eq!(std::fs::read(&back)?, data);

    let dir = c.create_folder(&env.share, None, "dir").await?;
    let renamed = c.rename_file(&f.id, "plain.txt").await?;
    assert_eq!(renamed.path, "/plain.txt");
    let moved = c.move_file(&f.id, Some(&dir.id)).await?;
    assert_eq!(
        (moved.folder_id.as_deref(), moved.path.as_str()),
        (Some(dir.id.as_str()), "/dir/plain.txt")
    );
    let root_again = c.move_file(&f.id, None).await?;
    assert_eq!(root_again.folder_id, None);
    let versions = c.file_versions(&f.id).await?;
    assert_eq!(versions.total, 1);
    assert_eq!(
        versions.versions[0].checksum_sha256.as_deref(),
        Some(sha_hex(&data).as_str())
    );

    c.delete_file(&f.id, false).await?;
    assert!(c.file(&f.id).await.unwrap_err().is_gone());
    let again = c.delete_file(&f.id, false).await.unwrap_err();
    assert!(again.is_gone(), "deleting a trashed file is 410: {again}");
    c.delete_file(&f.id, true).await?;
    assert_eq!(
        c.file(&f.id)
            .await
            .unwrap_err()
            .status()
            .map(|s| s.as_u16()),
        Some(404)
    );
    Ok(())
}

#[tokio::test]
async fn upload_or_adopt_adopts_equal_content_and_versions_different_content() -> anyhow::Result<()>
{
    let env = Env::start().await;
    let c = env.client();
    let dest = Destination::new(&env.share, None, "report.pdf");
    let v1 = random_bytes(5000);
    let path = env.write("report.pdf", &v1);
    let created = c.upload_or_adopt(&dest, &path, None).await?;
    let Placed::Created(first) = created else {
        panic!("{created:?}")
    };

    // As after a lost response or a crash: the same bytes are already there.
    env.reset_stats().await;
    let adopted = c.upload_or_adopt(&dest, &path, Some(&sha_hex(&v1))).await?;
    assert_eq!(adopted, Placed::Adopted(first.clone()));
    let stats = env.stats().await;
    assert_eq!(
        api_total(&stats),
        2,
        "409, then one metadata GET (existing_id given): {stats}"
    );

    // Different bytes under the same name become version 2 of the same file.
    let v2 = random_bytes(7000);
    std::fs::write(&path, &v2)?;
    let replaced = c.upload_or_adopt(&dest, &path, None).await?;
    let Placed::Replaced(second) = replaced else {
        panic!("{replaced:?}")
    };
    assert_eq!(
        (second.id.as_str(), second.version, second.size),
        (first.id.as_str(), 2, 7000)
    );
    assert_eq!(
        second.checksum_sha256.as_deref(),
        Some(sha_hex(&v2).as_str())
    );
    let versions = c.file_versions(&first.id).await?;
    assert_eq!(versions.total, 2);
    assert_eq!(versions.versions[0].version_number, 2, "newest first");
    assert_eq!(
        versions.versions[1].checksum_sha256.as_deref(),
        Some(sha_hex(&v1).as_str()),
        "history kept"
    );

    // The same name held by a folder is a conflict we must not resolve.
    c.create_folder(&env.share, None, "taken").await?;
    let e = c
        .upload_or_adopt(&Destination::new(&env.share, None, "taken"), &path, None)
        .await
        .unwrap_err();
    assert!(e.is_name_conflict(), "{e}");
    // And the detail shape (no code, no existing_id) still finds the file by listing.
    env.settings(json!({ "error_shape": "detail" })).await;
    let adopted = c.upload_or_adopt(&dest, &path, None).await?;
    assert!(
        matches!(&adopted, Placed::Adopted(f) if f.id == first.id && f.version == 2),
        "{adopted:?}"
    );
    Ok(())
}

#[tokio::test]
async fn replace_content_makes_a_new_version_even_for_small_files() -> anyhow::Result<()> {
    let env = Env::start().await;
    let c = env.client();
    let path = env.write("a.txt", b"one");
    let f = c
        .upload_file(&Destination::new(&env.share, None, "a.txt"), &path, None)
        .await?;
    std::fs::write(&path, b"two, longer")?;
    let g = c.replace_content(&f, &path, None).await?;
    assert_eq!((g.id.as_str(), g.version, g.size), (f.id.as_str(), 2, 11));
    // An empty file is a valid new version too.
    std::fs::write(&path, b"")?;
    let h = c.replace_content(&g, &path, None).await?;
    assert_eq!((h.version, h.size), (3, 0));
    assert_eq!(h.checksum_sha256.as_deref(), Some(sha_hex(b"").as_str()));
    Ok(())
}

#[tokio::test]
async fn large_files_go_through_a_session_in_parallel_chunks() -> anyhow::Result<()> {
    let env = Env::start().await;
    let c = session_client(&env);
    let data = random_bytes(1024 * 1024 + 12345);
    let path = env.write("big.bin", &data);
    env.reset_stats().await;
    let f = c
        .upload_file(&Destination::new(&env.share, None, "big.bin"), &path, None)
        .await?;
    assert_eq!(f.size, data.len() as u64);
    assert_eq!(f.checksum_sha256.as_deref(), Some(sha_hex(&data).as_str()));
    let chunks = data.len().div_ceil(64 * 1024) as u64;
    assert_eq!(env.count(CHUNK_PUT).await, chunks);
    assert_eq!(env.count(SESSION_CREATE).await, 1);
    assert_eq!(
        api_total(&env.stats().await),
        chunks + 2,
        "create + chunks + complete"
    );
    let back = env.dir.path().join("back.bin");
    c.download_to(&f.id, &back).await?;
    assert_eq!(std::fs::read(&back)?, data);
    Ok(())
}

#[tokio::test]
async fn a_session_resumes_from_missing_chunks() -> anyhow::Result<()> {
    let env = Env::start().await;
    let c = session_client(&env);
    let data = random_bytes(10 * 64 * 1024 + 1);
    let path = env.write("resume.bin", &data);
    // A previous run created the session and sent two chunks before it died.
    let s = c
        .create_upload_session(&NewUploadSession {
            share_id: env.share.clone(),
            file_name: "resume.bin".into(),
            file_size: data.len() as u64,
            chunk_size: Some(64 * 1024),
            checksum_sha256: Some(sha_hex(&data)),
            ..Default::default()
        })
        .await?;
    assert_eq!(s.total_chunks, 11);
    c.put_chunk(&s.session_id, 0, &path, 0, 64 * 1024).await?;
    c.put_chunk(&s.session_id, 10, &path, 10 * 64 * 1024, 1)
        .await?;
    let st = c.upload_status(&s.session_id).await?;
    assert_eq!(st.missing_chunks, (1..10).collect::<Vec<u64>>());

    env.reset_stats().await;
    let mut up = ResumableUpload::new(Destination::new(&env.share, None, "resume.bin"), &path);
    up.resume_session_id = Some(s.session_id.clone());
    let f = c.upload_resumable(&up).await?;
    assert_eq!(f.checksum_sha256.as_deref(), Some(sha_hex(&data).as_str()));
    assert_eq!(
        env.count(CHUNK_PUT).await,
        9,
        "only the missing chunks are sent"
    );
    assert_eq!(
        env.count(SESSION_CREATE).await,
        0,
        "the old session was reused"
    );
    // Completing a completed session again returns the same file.
    assert_eq!(c.complete_upload(&s.session_id).await?.file_id, f.id);
    Ok(())
}

#[tokio::test]
async fn an_expired_session_is_replaced_by_a_new_one() -> anyhow::Result<()> {
    let env = Env::start().await;
    let c = session_client(&env);
    let data = random_bytes(4 * 64 * 1024);
    let path = env.write("old.bin", &data);
    let s = c
        .create_upload_session(&NewUploadSession {
            share_id: env.share.clone(),
            file_name: "old.bin".into(),
            file_size: data.len() as u64,
            chunk_size: Some(64 * 1024),
            ..Default::default()
        })
        .await?;
    c.put_chunk(&s.session_id, 0, &path, 0, 64 * 1024).await?;
    env.advance_clock(25 * 3600).await; // documented: 24 h of inactivity
    let e = c.upload_status(&s.session_id).await.unwrap_err();
    assert!(e.is_gone(), "{e}");
    assert_eq!(e.code(), Some("UPLOAD_SESSION_EXPIRED"));

    let mut up = ResumableUpload::new(Destination::new(&env.share, None, "old.bin"), &path);
    up.resume_session_id = Some(s.session_id.clone());
    let f = c.upload_resumable(&up).await?;
    assert_eq!(f.checksum_sha256.as_deref(), Some(sha_hex(&data).as_str()));
    assert_eq!(
        env.count(SESSION_CREATE).await,
        2,
        "the expired one and its replacement"
    );
    Ok(())
}

#[tokio::test]
async fn a_session_expiring_mid_upload_starts_over() -> anyhow::Result<()> {
    let env = Env::start().await;
    let c = env.client_with(|c| {
        c.upload.session_threshold = 256 * 1024;
        c.upload.chunk_size = 64 * 1024;
        c.upload.parallel_chunks = 1;
    });
    let data = random_bytes(24 * 64 * 1024);
    let path = env.write("slow.bin", &data);
    env.faults(json!({ "latency_ms": 40, "path_prefix": "/api/v1/uploads" }))
        .await;
    let upload = tokio::spawn({
        let c = c.clone();
        let dest = Destination::new(&env.share, None, "slow.bin");
        async move { c.upload_file(&dest, &path, None).await }
    });
    // Once some chunks are in, jump past the session's expiry.
    while env.count(CHUNK_PUT).await < 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.advance_clock(25 * 3600).await;
    let f = upload.await??;
    assert_eq!(f.checksum_sha256.as_deref(), Some(sha_hex(&data).as_str()));
    assert_eq!(
        env.count(SESSION_CREATE).await,
        2,
        "one new session after the 410"
    );
    assert!(crate::harness::with_status(&env.stats().await, 410) >= 1);
    Ok(())
}

#[tokio::test]
async fn a_checksum_mismatch_is_a_permanent_error() -> anyhow::Result<()> {
    let env = Env::start().await;
    let c = session_client(&env);
    let data = random_bytes(300 * 1024);
    let path = env.write("x.bin", &data);
    let mut up = ResumableUpload::new(Destination::new(&env.share, None, "x.bin"), &path);
    up.sha256 = Some(sha_hex(b"something else"));
    let e = c.upload_resumable(&up).await.unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(422), "{e}");
    assert_eq!(e.code(), Some("CHECKSUM_MISMATCH"));
    assert!(!e.is_transient());
    assert!(e.to_string().starts_with("POST /api/v1/uploads/"), "{e}");
    assert!(
        c.children(&env.share, None).await?.items.is_empty(),
        "no file was created"
    );
    Ok(())
}

#[tokio::test]
async fn dropped_connections_mid_body_are_retried_from_a_reopened_file() -> anyhow::Result<()> {
    let env = Env::start().await;
    // Multipart: the first attempt is cut after 50 kB of the body.
    let c = env.client();
    let data = random_bytes(200 * 1024);
    let path = env.write("m.bin", &data);
    env.faults(
        json!({ "drop_next": 1, "drop_after_bytes": 50_000, "path_prefix": "/api/v1/files" }),
    )
    .await;
    let f = c
        .upload_file(
            &Destination::new(&env.share, None, "m.bin"),
            &path,
            Some(&sha_hex(&data)),
        )
        .await?;
    assert_eq!(f.version, 1, "exactly one file, no duplicate");
    assert_eq!(
        env.count(MULTIPART).await,
        1,
        "the dropped attempt never completed"
    );

    // Session: one chunk PUT is cut mid-body.
    let s = session_client(&env);
    let data = random_bytes(640 * 1024);
    let path = env.write("s.bin", &data);
    env.reset_stats().await;
    env.faults(
        json!({ "drop_next": 1, "drop_after_bytes": 20_000, "path_prefix": "/api/v1/uploads/" }),
    )
    .await;
    let f = s
        .upload_file(&Destination::new(&env.share, None, "s.bin"), &path, None)
        .await?;
    assert_eq!(f.checksum_sha256.as_deref(), Some(sha_hex(&data).as_str()));
    Ok(())
}

#[tokio::test]
async fn size_cap_and_quota_are_permanent_with_clear_messages() -> anyhow::Result<()> {
    let env = Env::start().await;
    let c = env.client();
    let path = env.write("big.bin", &random_bytes(4000));
    env.settings(json!({ "max_file_size": 1000 })).await;
    let e = c
        .upload_file(&Destination::new(&env.share, None, "big.bin"), &path, None)
        .await
        .unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(413), "{e}");
    assert_eq!(e.code(), Some("PAYLOAD_TOO_LARGE"));
    assert!(!e.is_transient());
    assert!(
        e.to_string().contains(
            "HTTP 413 PAYLOAD_TOO_LARGE (file is larger than the server's per-file size limit)"
        ),
        "{e}"
    );
    assert_eq!(env.count(MULTIPART).await, 1, "not retried");
    // Through a session the cap applies at create.
    let s = env.client_with(|c| c.upload.session_threshold = 1);
    let e = s
        .upload_file(&Destination::new(&env.share, None, "big.bin"), &path, None)
        .await
        .unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(413), "{e}");

    env.settings(json!({ "max_file_size": 1_000_000 })).await;
    env.admin(
        reqwest::Method::PATCH,
        &format!("/shares/{}", env.share),
        json!({ "quota_bytes": 1000 }),
    )
    .await;
    let e = c
        .upload_file(&Destination::new(&env.share, None, "big.bin"), &path, None)
        .await
        .unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(507), "{e}");
    assert_eq!(e.code(), Some("QUOTA_EXCEEDED"));
    assert_eq!(e.kind(), ErrorKind::Http);
    assert!(!e.is_transient());
    assert!(
        e.to_string()
            .contains("HTTP 507 QUOTA_EXCEEDED (storage quota exceeded)"),
        "{e}"
    );
    // The detail shape carries no code; the status alone still says it.
    env.settings(json!({ "error_shape": "detail" })).await;
    let e = c
        .upload_file(&Destination::new(&env.share, None, "big.bin"), &path, None)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("HTTP 507 (storage quota exceeded)"),
        "{e}"
    );
    Ok(())
}

#[tokio::test]
async fn unreadable_local_files_fail_before_any_request() -> anyhow::Result<()> {
    let env = Env::start().await;
    let c = env.client();
    env.reset_stats().await;
    let missing = env.dir.path().join("nope.bin");
    let e = c
        .upload_file(
            &Destination::new(&env.share, None, "nope.bin"),
            &missing,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LocalIo, "{e}");
    assert!(e.is_local());
    let e = c
        .upload_file(&Destination::new(&env.share, None, "a/b"), &missing, None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidName, "{e}");
    assert_eq!(api_total(&env.stats().await), 0);
    Ok(())
}

#[tokio::test]
async fn a_flaky_server_with_lost_responses_still_yields_one_file() -> anyhow::Result<()> {
    let env = Env::start().await;
    let c = env.client_with(|c| {
        c.upload.session_threshold = 256 * 1024;
        c.upload.chunk_size = 64 * 1024;
        c.retry.max_attempts = 8;
    });
    let data = random_bytes(12 * 64 * 1024 + 7);
    let path = env.write("flaky.bin", &data);
    // Some requests fail before they apply, some after (the response is lost): chunk PUTs
    // are idempotent and completing twice returns the same file.
    env.faults(
        json!({ "fail_rate": 0.15, "fail_after_rate": 0.1, "path_prefix": "/api/v1/uploads" }),
    )
    .await;
    let f = c
        .upload_file(
            &Destination::new(&env.share, None, "flaky.bin"),
            &path,
            None,
        )
        .await?;
    env.faults(json!({})).await;
    assert_eq!(f.checksum_sha256.as_deref(), Some(sha_hex(&data).as_str()));
    let listing = c.children(&env.share, None).await?;
    assert_eq!(listing.total, 1, "exactly one file: {listing:?}");
    assert_eq!(c.file(&f.id).await?.version, 1);
    Ok(())
}
