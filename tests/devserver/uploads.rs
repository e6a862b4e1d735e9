//! Resumable upload sessions against the docs (`scaidrive-api.md` §10.2 and its suggested
//! contract): create and its validation, chunk PUTs (ranges of indexes and lengths,
//! idempotent re-PUT, chunk checksums), status, complete (missing chunks, checksum, name
//! and quota checks at finalize, idempotent re-complete), abort, expiry on the server
//! clock, ownership, `replace_file_id`, empty and multi-GiB files, and restarts.

use std::path::PathBuf;

use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::files::{EMPTY_SHA256, FILE_KEYS, changes, keys, sha, tmp_files};
use crate::harness::{Harness, Resp};

const STATUS_KEYS: &[&str] = &[
    "bytes_received",
    "chunk_size",
    "expires_at",
    "file_id",
    "file_name",
    "file_size",
    "missing_chunks",
    "received_chunks",
    "session_id",
    "status",
    "total_chunks",
];

async fn put_chunk(h: &Harness, sid: &str, idx: &str, data: Vec<u8>) -> Resp {
    h.send(
        h.req(Method::PUT, &format!("/uploads/{sid}/chunks/{idx}"))
            .body(data),
    )
    .await
}

/// Creates a session and returns its id.
async fn session(h: &Harness, body: Value) -> String {
    h.post("/uploads", body).await.expect(201).json["session_id"]
        .as_str()
        .expect("session_id")
        .to_string()
}

fn session_dir(h: &Harness, sid: &str) -> PathBuf {
    h.dir.path().join("data").join("sessions").join(sid)
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 253) as u8).collect()
}

fn parse_time(s: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(s.as_str().expect("timestamp string"), &Rfc3339)
        .expect("ISO-8601 timestamp")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_session_response_and_validation() {
    let h = Harness::start().await;
    let r = h
        .post(
            "/uploads",
            json!({ "share_id": h.share, "file_name": "big.bin", "file_size": 10 << 20 }),
        )
        .await
        .expect(201);
    assert_eq!(
        keys(&r.json),
        [
            "chunk_size",
            "expires_at",
            "session_id",
            "status",
            "total_chunks"
        ]
    );
    assert!(r.json["session_id"].as_str().unwrap().starts_with("ups_"));
    assert_eq!(r.json["chunk_size"], 4_194_304);
    assert_eq!(r.json["total_chunks"], 3);
    assert_eq!(r.json["status"], "active");
    let ttl = (parse_time(&r.json["expires_at"]) - OffsetDateTime::now_utc()).whole_seconds();
    assert!(
        (24 * 3600 - 60..=24 * 3600).contains(&ttl),
        "expires in {ttl} s"
    );

    let create = |name: &str, size: u64, chunk: Value| {
        h.post("/uploads", json!({ "share_id": h.share, "file_name": name, "file_size": size, "chunk_size": chunk }))
    };
    let r = create("a.bin", 150_000, json!(65_536)).await.expect(201);
    assert_eq!(
        (
            r.json["chunk_size"].as_u64(),
            r.json["total_chunks"].as_u64()
        ),
        (Some(65_536), Some(3))
    );
    let r = create("b.bin", 131_072, json!(65_536)).await.expect(201);
    assert_eq!(r.json["total_chunks"], 2);
    let r = create("c.bin", 1 << 31, json!(1u64 << 30))
        .await
        .expect(201);
    assert_eq!(
        (
            r.json["chunk_size"].as_u64(),
            r.json["total_chunks"].as_u64()
        ),
        (Some(268_435_456), Some(8))
    );
    let r = create("d.bin", 0, Value::Null).await.expect(201);
    assert_eq!(
        (
            r.json["chunk_size"].as_u64(),
            r.json["total_chunks"].as_u64()
        ),
        (Some(4_194_304), Some(0))
    );
    for bad in [
        json!(100_000),
        json!(32_768),
        json!(0),
        json!(-65_536),
        json!("65536"),
    ] {
        create("e.bin", 10, bad.clone())
            .await
            .expect_err(422, "VALIDATION_ERROR");
    }

    let base = json!({ "share_id": h.share, "file_name": "f.bin", "file_size": 10 });
    for (k, v) in [
        ("file_size", json!(-1)),
        ("checksum_sha256", json!("xyz")),
        ("bogus", json!(1)),
        ("file_size", Value::Null),
    ] {
        let mut b = base.clone();
        b[k] = v;
        h.post("/uploads", b)
            .await
            .expect_err(422, "VALIDATION_ERROR");
    }
    h.post(
        "/uploads",
        json!({ "share_id": h.share, "file_name": "f.bin" }),
    )
    .await
    .expect_err(422, "VALIDATION_ERROR");
    h.post(
        "/uploads",
        json!({ "share_id": h.share, "file_name": "a/b", "file_size": 1 }),
    )
    .await
    .expect_err(400, "INVALID_PATH");
    h.post(
        "/uploads",
        json!({ "share_id": "shr_nope", "file_name": "x", "file_size": 1 }),
    )
    .await
    .expect_err(404, "NOT_FOUND");
    h.post(
        "/uploads",
        json!({ "share_id": h.share, "file_name": "x", "file_size": 1, "folder_id": "fld_nope" }),
    )
    .await
    .expect_err(404, "NOT_FOUND");
    let (_, reader) = h.user_with_role("reader").await;
    h.as_token(&reader)
        .post(
            "/uploads",
            json!({ "share_id": h.share, "file_name": "x", "file_size": 1 }),
        )
        .await
        .expect_err(403, "AUTHZ_PERMISSION_DENIED");
    h.upload(None, "taken.txt", b"t".to_vec()).await.expect(201);
    h.post(
        "/uploads",
        json!({ "share_id": h.share, "file_name": "taken.txt", "file_size": 1 }),
    )
    .await
    .expect_err(409, "NAME_CONFLICT");

    h.admin(Method::PATCH, "/settings", json!({ "max_file_size": 1000 }))
        .await;
    h.post(
        "/uploads",
        json!({ "share_id": h.share, "file_name": "cap.bin", "file_size": 1001 }),
    )
    .await
    .expect_err(413, "PAYLOAD_TOO_LARGE");
    h.post(
        "/uploads",
        json!({ "share_id": h.share, "file_name": "cap.bin", "file_size": 1000 }),
    )
    .await
    .expect(201);
    h.admin(
        Method::PATCH,
        &format!("/shares/{}", h.share),
        json!({ "quota_bytes": 500 }),
    )
    .await;
    h.post(
        "/uploads",
        json!({ "share_id": h.share, "file_name": "q.bin", "file_size": 500 }),
    )
    .await
    .expect_err(507, "QUOTA_EXCEEDED");
    h.post(
        "/uploads",
        json!({ "share_id": h.share, "file_name": "q.bin", "file_size": 499 }),
    )
    .await
    .expect(201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_end_to_end() {
    let h = Harness::start().await;
    let fld = h.mkdir(None, "In").await;
    let data = pattern(150_000);
    let sid = session(
        &h,
        json!({ "share_id": h.share, "folder_id": fld, "file_name": "data.csv", "file_size": data.len(),
                "chunk_size": 65_536, "checksum_sha256": sha(&data).to_uppercase() }),
    )
    .await;
    let st = h.get(&format!("/uploads/{sid}")).await.expect(200);
    assert_eq!(keys(&st.json), STATUS_KEYS);
    assert_eq!(st.json["status"], "active");
    assert_eq!(st.json["file_name"], "data.csv");
    assert_eq!(st.json["file_size"], 150_000);
    assert_eq!(st.json["chunk_size"], 65_536);
    assert_eq!(st.json["total_chunks"], 3);
    assert_eq!(st.json["received_chunks"], json!([]));
    assert_eq!(st.json["missing_chunks"], json!([0, 1, 2]));
    assert_eq!(st.json["bytes_received"], 0);
    assert_eq!(st.json["file_id"], Value::Null);

    let chunk = |i: usize| data[i * 65_536..((i + 1) * 65_536).min(data.len())].to_vec();
    let r = put_chunk(&h, &sid, "2", chunk(2)).await.expect(200);
    assert_eq!(
        keys(&r.json),
        ["chunk_index", "received_chunks", "session_id", "size"]
    );
    assert_eq!(r.json["session_id"], json!(sid));
    assert_eq!(r.json["chunk_index"], 2);
    assert_eq!(r.json["size"], 150_000 - 2 * 65_536);
    assert_eq!(r.json["received_chunks"], 1);

    put_chunk(&h, &sid, "0", vec![0; 1000])
        .await
        .expect_err(400, "INVALID_CHUNK");
    put_chunk(&h, &sid, "2", chunk(1))
        .await
        .expect_err(400, "INVALID_CHUNK");
    put_chunk(&h, &sid, "3", chunk(2))
        .await
        .expect_err(400, "INVALID_CHUNK");
    put_chunk(&h, &sid, "x", chunk(0))
        .await
        .expect_err(400, "INVALID_CHUNK");
    put_chunk(&h, &sid, "-1", chunk(0))
        .await
        .expect_err(400, "INVALID_CHUNK");

    let with_sha = |idx: &str, body: Vec<u8>, digest: String| {
        h.send(
            h.req(Method::PUT, &format!("/uploads/{sid}/chunks/{idx}"))
                .header("X-Chunk-SHA256", digest)
                .body(body),
        )
    };
    with_sha("0", chunk(0), sha(&chunk(1)))
        .await
        .expect_err(422, "CHECKSUM_MISMATCH");
    with_sha("0", chunk(0), "zz".into())
        .await
        .expect_err(422, "VALIDATION_ERROR");
    let st = h.get(&format!("/uploads/{sid}")).await.expect(200);
    assert_eq!(
        st.json["missing_chunks"],
        json!([0, 1]),
        "a refused chunk is not stored"
    );
    with_sha("0", chunk(0), sha(&chunk(0))).await.expect(200);

    let r = h
        .post(&format!("/uploads/{sid}/complete"), json!({}))
        .await
        .expect_err(409, "UPLOAD_INCOMPLETE");
    assert_eq!(r.json["error"]["details"]["missing_chunks"], json!([1]));

    assert_eq!(
        put_chunk(&h, &sid, "1", chunk(1)).await.expect(200).json["received_chunks"],
        3
    );
    assert_eq!(
        put_chunk(&h, &sid, "1", chunk(1)).await.expect(200).json["received_chunks"],
        3,
        "re-PUT is idempotent"
    );
    let st = h.get(&format!("/uploads/{sid}")).await.expect(200);
    assert_eq!(st.json["received_chunks"], json!([0, 1, 2]));
    assert_eq!(st.json["missing_chunks"], json!([]));
    assert_eq!(st.json["bytes_received"], 150_000);

    let done = h
        .post(&format!("/uploads/{sid}/complete"), json!({}))
        .await
        .expect(200);
    assert_eq!(keys(&done.json), ["file", "file_id"]);
    let file = &done.json["file"];
    assert_eq!(keys(file), FILE_KEYS);
    let fid = done.json["file_id"].as_str().unwrap().to_string();
    assert_eq!(file["id"], json!(fid));
    assert_eq!(file["path"], "/In/data.csv");
    assert_eq!(file["mime_type"], "text/csv");
    assert_eq!(file["size"], 150_000);
    assert_eq!(file["version"], 1);
    assert_eq!(file["checksum_sha256"], json!(sha(&data)));
    assert_eq!(
        h.get(&format!("/files/{fid}/content"))
            .await
            .expect(200)
            .bytes,
        data
    );
    assert_eq!(changes(&h, &fid).await.len(), 1);
    assert!(
        !session_dir(&h, &sid).exists(),
        "chunk files are deleted on completion"
    );

    let st = h.get(&format!("/uploads/{sid}")).await.expect(200);
    assert_eq!(st.json["status"], "completed");
    assert_eq!(st.json["file_id"], json!(fid));
    let again = h
        .post(&format!("/uploads/{sid}/complete"), json!({}))
        .await
        .expect(200);
    assert_eq!(again.json["file_id"], json!(fid));
    put_chunk(&h, &sid, "0", chunk(0))
        .await
        .expect_err(409, "UPLOAD_SESSION_COMPLETED");
    assert_eq!(
        changes(&h, &fid).await.len(),
        1,
        "re-complete creates nothing"
    );
    assert_eq!(tmp_files(&h), 0);
    let stats = h.stats().await;
    assert_eq!(
        stats["by_route"]["PUT /api/v1/uploads/{session_id}/chunks/{index}"], 12,
        "{stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksum_mismatch_at_complete_keeps_the_session() {
    let h = Harness::start().await;
    let data = pattern(70_000);
    let sid = session(
        &h,
        json!({ "share_id": h.share, "file_name": "x.bin", "file_size": 70_000, "chunk_size": 65_536,
                "checksum_sha256": sha(b"something else"), "mime_type": "application/x-test" }),
    )
    .await;
    put_chunk(&h, &sid, "0", data[..65_536].to_vec())
        .await
        .expect(200);
    put_chunk(&h, &sid, "1", data[65_536..].to_vec())
        .await
        .expect(200);
    let r = h
        .post(&format!("/uploads/{sid}/complete"), json!({}))
        .await
        .expect_err(422, "CHECKSUM_MISMATCH");
    assert_eq!(r.json["error"]["details"]["actual"], json!(sha(&data)));
    let st = h.get(&format!("/uploads/{sid}")).await.expect(200);
    assert_eq!(st.json["status"], "active");
    assert_eq!(st.json["received_chunks"], json!([0, 1]));
    let kept: Vec<_> = std::fs::read_dir(session_dir(&h, &sid))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        kept,
        ["data"],
        "the session's file is kept (chunks in place)"
    );
    assert_eq!(
        std::fs::read(session_dir(&h, &sid).join("data")).unwrap(),
        data,
        "holding both chunks"
    );
    let list = h
        .get(&format!("/folders/root/children?share_id={}", h.share))
        .await
        .expect(200);
    assert_eq!(list.json["total"], 0);
    assert_eq!(tmp_files(&h), 0);

    h.delete(&format!("/uploads/{sid}")).await.expect(204);
    assert!(!session_dir(&h, &sid).exists());
    h.get(&format!("/uploads/{sid}"))
        .await
        .expect_err(404, "NOT_FOUND");
    h.delete(&format!("/uploads/{sid}"))
        .await
        .expect_err(404, "NOT_FOUND");

    // The mime_type given at create is the file's type.
    let sid = session(
        &h,
        json!({ "share_id": h.share, "file_name": "y.bin", "file_size": 3, "mime_type": "application/x-test",
                "checksum_sha256": sha(b"abc") }),
    )
    .await;
    put_chunk(&h, &sid, "0", b"abc".to_vec()).await.expect(200);
    let r = h
        .post(&format!("/uploads/{sid}/complete"), json!({}))
        .await
        .expect(200);
    assert_eq!(r.json["file"]["mime_type"], "application/x-test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalize_checks_names_and_quota_again() {
    let h = Harness::start().await;
    let sid = session(
        &h,
        json!({ "share_id": h.share, "file_name": "late.txt", "file_size": 10 }),
    )
    .await;
    h.upload(None, "late.txt", vec![1; 10]).await.expect(201);
    put_chunk(&h, &sid, "0", vec![2; 10]).await.expect(200);
    h.post(&format!("/uploads/{sid}/complete"), json!({}))
        .await
        .expect_err(409, "NAME_CONFLICT");
    assert_eq!(
        h.get(&format!("/uploads/{sid}")).await.expect(200).json["status"],
        "active"
    );

    h.admin(
        Method::PATCH,
        &format!("/shares/{}", h.share),
        json!({ "quota_bytes": 100 }),
    )
    .await;
    let sid = session(
        &h,
        json!({ "share_id": h.share, "file_name": "q.bin", "file_size": 80 }),
    )
    .await;
    put_chunk(&h, &sid, "0", vec![3; 80]).await.expect(200);
    h.upload(None, "fill.bin", vec![4; 20]).await.expect(201);
    h.post(&format!("/uploads/{sid}/complete"), json!({}))
        .await
        .expect_err(507, "QUOTA_EXCEEDED");
    assert_eq!(tmp_files(&h), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expire_after_inactivity_on_the_server_clock() {
    let h = Harness::start().await;
    let data = pattern(70_000);
    let sid = session(&h, json!({ "share_id": h.share, "file_name": "e.bin", "file_size": 70_000, "chunk_size": 65_536 })).await;
    put_chunk(&h, &sid, "0", data[..65_536].to_vec())
        .await
        .expect(200);
    let before =
        parse_time(&h.get(&format!("/uploads/{sid}")).await.expect(200).json["expires_at"]);
    h.admin(
        Method::POST,
        "/clock",
        json!({ "advance_secs": 24 * 3600 - 100 }),
    )
    .await;
    // Activity keeps the session alive and pushes expires_at out.
    put_chunk(&h, &sid, "1", data[65_536..].to_vec())
        .await
        .expect(200);
    h.admin(Method::POST, "/clock", json!({ "advance_secs": 200 }))
        .await;
    let st = h.get(&format!("/uploads/{sid}")).await.expect(200);
    assert!(
        parse_time(&st.json["expires_at"]) - before >= time::Duration::seconds(24 * 3600 - 100)
    );
    assert!(session_dir(&h, &sid).exists());

    h.admin(Method::POST, "/clock", json!({ "advance_secs": 24 * 3600 }))
        .await;
    h.get(&format!("/uploads/{sid}"))
        .await
        .expect_err(410, "UPLOAD_SESSION_EXPIRED");
    assert!(
        !session_dir(&h, &sid).exists(),
        "expired chunks are removed"
    );
    put_chunk(&h, &sid, "0", data[..65_536].to_vec())
        .await
        .expect_err(410, "UPLOAD_SESSION_EXPIRED");
    h.post(&format!("/uploads/{sid}/complete"), json!({}))
        .await
        .expect_err(410, "UPLOAD_SESSION_EXPIRED");
    h.delete(&format!("/uploads/{sid}"))
        .await
        .expect_err(410, "UPLOAD_SESSION_EXPIRED");
    assert!(!session_dir(&h, &sid).exists());

    // Sessions nobody touches again are swept when a new session is created.
    h.admin(
        Method::PATCH,
        "/settings",
        json!({ "session_ttl_secs": 60 }),
    )
    .await;
    let idle = session(
        &h,
        json!({ "share_id": h.share, "file_name": "idle.bin", "file_size": 5 }),
    )
    .await;
    put_chunk(&h, &idle, "0", b"idle!".to_vec())
        .await
        .expect(200);
    h.admin(Method::POST, "/clock", json!({ "advance_secs": 61 }))
        .await;
    session(
        &h,
        json!({ "share_id": h.share, "file_name": "new.bin", "file_size": 5 }),
    )
    .await;
    assert!(!session_dir(&h, &idle).exists());
    h.get(&format!("/uploads/{idle}"))
        .await
        .expect_err(410, "UPLOAD_SESSION_EXPIRED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_belong_to_their_creator() {
    let h = Harness::start().await;
    let sid = session(
        &h,
        json!({ "share_id": h.share, "file_name": "mine.bin", "file_size": 4 }),
    )
    .await;
    let (_, other) = h.user_with_role("contributor").await;
    let o = h.as_token(&other);
    o.get(&format!("/uploads/{sid}"))
        .await
        .expect_err(404, "NOT_FOUND");
    let r = h
        .send(
            o.req(Method::PUT, &format!("/uploads/{sid}/chunks/0"))
                .body(b"abcd".to_vec()),
        )
        .await;
    r.expect_err(404, "NOT_FOUND");
    o.post(&format!("/uploads/{sid}/complete"), json!({}))
        .await
        .expect_err(404, "NOT_FOUND");
    o.delete(&format!("/uploads/{sid}"))
        .await
        .expect_err(404, "NOT_FOUND");
    h.get(&format!("/uploads/{sid}")).await.expect(200);
    h.get("/uploads/ups_unknown")
        .await
        .expect_err(404, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_file_id_adds_a_version() {
    let h = Harness::start().await;
    let fld = h.mkdir(None, "F").await;
    let v1 = b"version one".to_vec();
    let id = h
        .upload(Some(&fld), "doc.txt", v1.clone())
        .await
        .expect(201)
        .id();
    let v2 = b"version two, longer".to_vec();
    let sid = session(
        &h,
        json!({ "share_id": h.share, "file_name": "doc.txt", "file_size": v2.len(), "replace_file_id": id,
                "checksum_sha256": sha(&v2) }),
    )
    .await;
    put_chunk(&h, &sid, "0", v2.clone()).await.expect(200);
    let r = h
        .post(&format!("/uploads/{sid}/complete"), json!({}))
        .await
        .expect(200);
    assert_eq!(r.json["file_id"], json!(id));
    assert_eq!(r.json["file"]["version"], 2);
    assert_eq!(r.json["file"]["path"], "/F/doc.txt");
    assert_eq!(r.json["file"]["size"], v2.len());
    assert_eq!(
        h.get(&format!("/files/{id}/content"))
            .await
            .expect(200)
            .bytes,
        v2
    );
    assert_eq!(
        h.get(&format!("/files/{id}/content?version=1"))
            .await
            .expect(200)
            .bytes,
        v1
    );
    assert_eq!(
        h.get(&format!("/files/{id}/versions"))
            .await
            .expect(200)
            .json["total"],
        2
    );
    let kinds: Vec<String> = changes(&h, &id).await.into_iter().map(|c| c.0).collect();
    assert_eq!(kinds, ["created", "updated"]);

    let replace = |fid: String, share: String, size: usize| json!({ "share_id": share, "file_name": "doc.txt", "file_size": size, "replace_file_id": fid });
    h.post(
        "/uploads",
        replace("fil_unknown".into(), h.share.clone(), 1),
    )
    .await
    .expect_err(404, "NOT_FOUND");
    let share2 = h
        .admin(Method::POST, "/shares", json!({ "name": "Other" }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    h.post("/uploads", replace(id.clone(), share2, 1))
        .await
        .expect_err(404, "NOT_FOUND");
    let (_, reader) = h.user_with_role("reader").await;
    h.as_token(&reader)
        .post("/uploads", replace(id.clone(), h.share.clone(), 1))
        .await
        .expect_err(403, "AUTHZ_PERMISSION_DENIED");

    // Only the growth of a replaced file counts against the quota.
    // Only current sizes count: v1 is history now.
    let used = v2.len();
    h.admin(
        Method::PATCH,
        &format!("/shares/{}", h.share),
        json!({ "quota_bytes": used + 5 }),
    )
    .await;
    h.post(
        "/uploads",
        replace(id.clone(), h.share.clone(), v2.len() + 5),
    )
    .await
    .expect(201);
    h.post(
        "/uploads",
        replace(id.clone(), h.share.clone(), v2.len() + 6),
    )
    .await
    .expect_err(507, "QUOTA_EXCEEDED");
    h.post(
        "/uploads",
        json!({ "share_id": h.share, "file_name": "new.txt", "file_size": v2.len() + 5 }),
    )
    .await
    .expect_err(507, "QUOTA_EXCEEDED");

    // A session whose target went to the trash meanwhile cannot complete.
    let sid = session(&h, replace(id.clone(), h.share.clone(), 3)).await;
    put_chunk(&h, &sid, "0", b"abc".to_vec()).await.expect(200);
    h.delete(&format!("/files/{id}")).await.expect(204);
    h.post(&format!("/uploads/{sid}/complete"), json!({}))
        .await
        .expect_err(410, "RESOURCE_DELETED");
    h.post("/uploads", replace(id.clone(), h.share.clone(), 1))
        .await
        .expect_err(410, "RESOURCE_DELETED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_file_through_a_session() {
    let h = Harness::start().await;
    let r = h
        .post(
            "/uploads",
            json!({ "share_id": h.share, "file_name": "empty.txt", "file_size": 0 }),
        )
        .await
        .expect(201);
    assert_eq!(r.json["total_chunks"], 0);
    let sid = r.json["session_id"].as_str().unwrap().to_string();
    put_chunk(&h, &sid, "0", Vec::new())
        .await
        .expect_err(400, "INVALID_CHUNK");
    let st = h.get(&format!("/uploads/{sid}")).await.expect(200);
    assert_eq!(st.json["missing_chunks"], json!([]));
    let done = h
        .post(&format!("/uploads/{sid}/complete"), json!({}))
        .await
        .expect(200);
    assert_eq!(done.json["file"]["size"], 0);
    assert_eq!(done.json["file"]["checksum_sha256"], EMPTY_SHA256);
    let fid = done.json["file_id"].as_str().unwrap();
    assert!(
        h.get(&format!("/files/{fid}/content"))
            .await
            .expect(200)
            .bytes
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_chunks_survive_a_restart() {
    let mut h = Harness::start().await;
    let data = pattern(100_000);
    let sid = session(&h, json!({ "share_id": h.share, "file_name": "r.bin", "file_size": 100_000, "chunk_size": 65_536 })).await;
    put_chunk(&h, &sid, "0", data[..65_536].to_vec())
        .await
        .expect(200);
    h.restart().await;
    assert_eq!(
        h.get(&format!("/uploads/{sid}")).await.expect(200).json["missing_chunks"],
        json!([1])
    );
    put_chunk(&h, &sid, "1", data[65_536..].to_vec())
        .await
        .expect(200);
    let done = h
        .post(&format!("/uploads/{sid}/complete"), json!({}))
        .await
        .expect(200);
    let fid = done.json["file_id"].as_str().unwrap().to_string();
    h.restart().await;
    assert_eq!(
        h.get(&format!("/files/{fid}/content"))
            .await
            .expect(200)
            .bytes,
        data
    );
}

/// A reader over `len` bytes of `path` from `offset`, as a streaming request body.
async fn file_body(path: &std::path::Path, offset: u64, len: u64) -> reqwest::Body {
    let mut f = tokio::fs::File::open(path).await.expect("open sparse file");
    f.seek(std::io::SeekFrom::Start(offset))
        .await
        .expect("seek");
    reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
        f.take(len),
        1 << 20,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_gib_sparse_file_via_session_and_multipart() {
    const SIZE: u64 = 2_300_000_000;
    const CHUNK: u64 = 256 << 20;
    let h = Harness::start().await;
    let path = h.dir.path().join("sparse.bin");
    std::fs::File::create(&path)
        .and_then(|f| f.set_len(SIZE))
        .expect("sparse file");
    let expected = {
        let zeros = vec![0u8; 1 << 20];
        let mut hasher = Sha256::new();
        let mut left = SIZE;
        while left > 0 {
            let n = left.min(zeros.len() as u64);
            hasher.update(&zeros[..n as usize]);
            left -= n;
        }
        hex::encode(hasher.finalize())
    };

    let r = h
        .post(
            "/uploads",
            json!({ "share_id": h.share, "file_name": "sparse-session.bin", "file_size": SIZE, "chunk_size": CHUNK,
                    "checksum_sha256": expected }),
        )
        .await
        .expect(201);
    let total = r.json["total_chunks"].as_u64().unwrap();
    assert_eq!(total, SIZE.div_ceil(CHUNK));
    let sid = r.json["session_id"].as_str().unwrap().to_string();
    for i in 0..total {
        let len = CHUNK.min(SIZE - i * CHUNK);
        let body = file_body(&path, i * CHUNK, len).await;
        let r = h
            .send(
                h.req(Method::PUT, &format!("/uploads/{sid}/chunks/{i}"))
                    .body(body),
            )
            .await
            .expect(200);
        assert_eq!(r.json["size"], len);
    }
    let done = h
        .post(&format!("/uploads/{sid}/complete"), json!({}))
        .await
        .expect(200);
    assert_eq!(done.json["file"]["size"], SIZE);
    assert_eq!(done.json["file"]["checksum_sha256"], json!(expected));
    let fid = done.json["file_id"].as_str().unwrap().to_string();

    let form = Form::new()
        .text("share_id", h.share.clone())
        .text("name", "sparse-multipart.bin")
        .part(
            "file",
            Part::stream(file_body(&path, 0, SIZE).await).file_name("sparse-multipart.bin"),
        );
    let up = h
        .send(h.req(Method::POST, "/files").multipart(form))
        .await
        .expect(201);
    assert_eq!(up.json["size"], SIZE);
    assert_eq!(up.json["checksum_sha256"], json!(expected));

    // Stream one download through a hasher, and spot-check the tail of the other by range.
    let resp = h
        .req(Method::GET, &format!("/files/{fid}/content"))
        .send()
        .await
        .expect("download");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.content_length(), Some(SIZE));
    let mut stream = resp.bytes_stream();
    let (mut hasher, mut n) = (Sha256::new(), 0u64);
    while let Some(b) = futures_util::StreamExt::next(&mut stream).await {
        let b = b.expect("download chunk");
        n += b.len() as u64;
        hasher.update(&b);
    }
    assert_eq!((n, hex::encode(hasher.finalize())), (SIZE, expected));
    let tail = h
        .send(
            h.req(Method::GET, &format!("/files/{}/content", up.id()))
                .header("range", "bytes=-16"),
        )
        .await;
    let tail = tail.expect(206);
    assert_eq!(
        tail.header("content-range"),
        Some(format!("bytes {}-{}/{SIZE}", SIZE - 16, SIZE - 1))
    );
    assert_eq!(tail.bytes, vec![0u8; 16]);
    assert_eq!(tmp_files(&h), 0);
    // The blob store keeps holes: two 2.3 GB zero files cost (almost) no disk.
    let used = disk_usage(&h.dir.path().join("data"));
    assert!(used < 64 << 20, "data dir allocates {used} bytes");
}

/// Bytes allocated on disk under `dir` (st_blocks × 512).
fn disk_usage(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let e = e.expect("dir entry");
        let m = e.metadata().expect("metadata");
        total += if m.is_dir() {
            disk_usage(&e.path())
        } else {
            m.blocks() * 512
        };
    }
    total
}

#[tokio::test]
async fn blobs_with_holes_and_data_round_trip_exactly() {
    let h = Harness::start().await;
    // Data, a long zero run, data again, a zero tail; odd sizes so nothing is block-aligned.
    let mut content = vec![0u8; 5_000_123];
    for (i, b) in content[..70_001].iter_mut().enumerate() {
        *b = (i % 251) as u8 + 1;
    }
    content[3_000_000] = 7;
    content[3_004_097] = 9;
    let expected = hex::encode(Sha256::digest(&content));
    let form = Form::new()
        .text("share_id", h.share.clone())
        .part("file", Part::bytes(content.clone()).file_name("holes.bin"));
    let up = h
        .send(h.req(Method::POST, "/files").multipart(form))
        .await
        .expect(201);
    assert_eq!(up.json["checksum_sha256"], json!(expected));
    let got = h
        .send(h.req(Method::GET, &format!("/files/{}/content", up.id())))
        .await
        .expect(200);
    assert_eq!(got.bytes.len(), content.len());
    assert!(got.bytes == content, "downloaded bytes differ");
}

/// A chunk body that sends `good` bytes and then breaks off (the client's connection dies).
async fn put_broken_chunk(h: &Harness, sid: &str, idx: &str, good: Vec<u8>) {
    let parts: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(good),
        Err(std::io::Error::other("the client died mid-body")),
    ];
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(parts));
    let r = h
        .req(Method::PUT, &format!("/uploads/{sid}/chunks/{idx}"))
        .body(body)
        .send()
        .await;
    assert!(r.is_err(), "the request breaks off: {r:?}");
}

/// Chunks are written straight into the session's file. A first PUT that breaks off
/// leaves garbage in its range, and the PUT that follows must replace all of it, zero
/// blocks (kept as holes) included; a re-PUT of a chunk the session holds that breaks off
/// must leave that chunk as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_puts_that_break_off_corrupt_nothing() {
    let h = Harness::start().await;
    // Bodies are written in 1 MiB pieces: 2 MiB chunks let a broken body write some.
    const CHUNK: usize = 2 << 20;
    // Chunk 0: zeros (holes) then data; chunk 1: data; chunk 2 (short): zeros.
    let mut data = vec![0u8; CHUNK / 2];
    data.extend(pattern(CHUNK / 2 + CHUNK));
    data.extend(vec![0u8; CHUNK * 3 / 4]);
    let size = data.len();
    let sid = session(
        &h,
        json!({ "share_id": h.share, "file_name": "b.bin", "file_size": size, "chunk_size": CHUNK,
                "checksum_sha256": sha(&data) }),
    )
    .await;
    // First attempts of chunks 0 and 2 break off after writing non-zero bytes.
    put_broken_chunk(&h, &sid, "0", vec![0xAA; CHUNK * 3 / 4]).await;
    put_broken_chunk(&h, &sid, "2", vec![0x55; CHUNK * 5 / 8]).await;
    let st = h.get(&format!("/uploads/{sid}")).await.expect(200);
    assert_eq!(
        st.json["missing_chunks"],
        json!([0, 1, 2]),
        "nothing recorded"
    );
    for (i, range) in [(0, 0..CHUNK), (1, CHUNK..2 * CHUNK), (2, 2 * CHUNK..size)] {
        put_chunk(&h, &sid, &i.to_string(), data[range].to_vec())
            .await
            .expect(200);
    }
    // A re-PUT of chunk 1 that breaks off: the session still holds chunk 1 as it was.
    put_broken_chunk(&h, &sid, "1", vec![0xCC; CHUNK * 3 / 4]).await;
    let st = h.get(&format!("/uploads/{sid}")).await.expect(200);
    assert_eq!(st.json["missing_chunks"], json!([]));
    let (file, content) = complete_and_read(&h, &sid).await;
    assert_eq!(file["checksum_sha256"], json!(sha(&data)));
    assert_eq!(content, data);
    assert!(
        !session_dir(&h, &sid).exists(),
        "the session's file is now the blob"
    );
}

/// Many PUTs of one chunk at the same time, with different bytes: they are applied one
/// after the other, so the chunk holds exactly one body, never a mix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_of_one_chunk_never_mix() {
    let h = Harness::start().await;
    const CHUNK: usize = 1 << 20;
    let sid = session(
        &h,
        json!({ "share_id": h.share, "file_name": "c.bin", "file_size": CHUNK, "chunk_size": CHUNK }),
    )
    .await;
    let bodies: Vec<Vec<u8>> = (1..=6u8).map(|b| vec![b; CHUNK]).collect();
    let puts = bodies.iter().map(|b| put_chunk(&h, &sid, "0", b.clone()));
    for r in futures_util::future::join_all(puts).await {
        r.expect(200);
    }
    let (_, got) = complete_and_read(&h, &sid).await;
    assert!(bodies.contains(&got), "one whole body, not a mix");
}

/// Completes a session; returns the file's JSON and its content as downloaded.
async fn complete_and_read(h: &Harness, sid: &str) -> (Value, Vec<u8>) {
    let done = h
        .post(&format!("/uploads/{sid}/complete"), json!({}))
        .await
        .expect(200);
    let fid = done.json["file_id"].as_str().unwrap();
    let content = h
        .get(&format!("/files/{fid}/content"))
        .await
        .expect(200)
        .bytes;
    (done.json["file"].clone(), content)
}
