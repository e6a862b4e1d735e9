//! File routes against the docs (`scaidrive-api.md` §9, §10.1, §10.3): multipart upload
//! and its errors, metadata, content and sync downloads with ranges, rename / move /
//! restore through PATCH, delete and trash, move, copy, versions and version restore,
//! concurrency on one folder, and persistence across a restart.

use futures_util::future::join_all;
use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::harness::{Harness, Resp};

pub const FILE_KEYS: &[&str] = &[
    "checksum_sha256",
    "created_at",
    "created_by",
    "folder_id",
    "id",
    "is_deleted",
    "mime_type",
    "modified_at",
    "modified_by",
    "name",
    "owner_id",
    "path",
    "share_id",
    "size",
    "tenant_id",
    "vectorized_at",
    "version",
];

pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

pub fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

/// Files left in the blob store's temp directory (refused uploads must leave none).
pub fn tmp_files(h: &Harness) -> usize {
    std::fs::read_dir(h.dir.path().join("data").join("tmp"))
        .expect("tmp dir")
        .count()
}

/// (change_type, old_path, new_path) of every change-log entry about `id`, oldest first.
pub async fn changes(h: &Harness, id: &str) -> Vec<(String, Option<String>, Option<String>)> {
    let id = id.to_string();
    let state = &h.server.running().state;
    state
        .db
        .call(move |c| {
            let mut st =
                c.prepare("SELECT change_type, old_path, new_path FROM changes WHERE resource_id = ?1 ORDER BY seq")?;
            let rows = st.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
        .expect("reading the change log")
}

async fn send_form(h: &Harness, form: Form) -> Resp {
    h.send(h.req(Method::POST, "/files").multipart(form)).await
}

fn file_part(data: Vec<u8>, filename: &str) -> Part {
    Part::bytes(data).file_name(filename.to_string())
}

/// Puts `data` as a new version of `file_id` through an upload session with replace_file_id.
pub async fn put_version(h: &Harness, file_id: &str, name: &str, data: &[u8]) -> Value {
    let s = h
        .post(
            "/uploads",
            json!({ "share_id": h.share, "file_name": name, "file_size": data.len(), "replace_file_id": file_id }),
        )
        .await
        .expect(201);
    let sid = s.json["session_id"]
        .as_str()
        .expect("session id")
        .to_string();
    if !data.is_empty() {
        h.send(
            h.req(Method::PUT, &format!("/uploads/{sid}/chunks/0"))
                .body(data.to_vec()),
        )
        .await
        .expect(200);
    }
    h.post(&format!("/uploads/{sid}/complete"), json!({}))
        .await
        .expect(200)
        .json
}

async fn content(h: &Harness, id: &str) -> Vec<u8> {
    h.get(&format!("/files/{id}/content"))
        .await
        .expect(200)
        .bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_returns_the_documented_file_object() {
    let h = Harness::start().await;
    let data = b"hello world".to_vec();
    let r = h.upload(None, "hello.txt", data.clone()).await.expect(201);
    let f = &r.json;
    assert_eq!(keys(f), FILE_KEYS);
    assert!(f["id"].as_str().unwrap().starts_with("fil_"));
    assert!(f["tenant_id"].as_str().unwrap().starts_with("tnt_"));
    assert_eq!(f["share_id"], json!(h.share));
    assert_eq!(f["folder_id"], Value::Null);
    assert_eq!(f["name"], "hello.txt");
    assert_eq!(f["path"], "/hello.txt");
    assert_eq!(f["mime_type"], "text/plain");
    assert_eq!(f["size"], 11);
    assert_eq!(f["checksum_sha256"], json!(sha(&data)));
    assert_eq!(f["version"], 1);
    assert_eq!(f["is_deleted"], false);
    assert_eq!(f["vectorized_at"], Value::Null);
    let user = f["owner_id"].as_str().unwrap();
    assert!(user.starts_with("usr_"));
    assert_eq!(f["created_by"], json!(user));
    assert_eq!(f["modified_by"], json!(user));
    for k in ["created_at", "modified_at"] {
        let t = f[k].as_str().unwrap();
        assert!(t.ends_with('Z') && t.len() == 20, "{k} = {t}");
    }

    let fld = h.mkdir(None, "Engineering").await;
    let spec = h
        .upload(Some(&fld), "spec.pdf", b"%PDF-1.7".to_vec())
        .await
        .expect(201);
    assert_eq!(spec.json["folder_id"], json!(fld));
    assert_eq!(spec.json["path"], "/Engineering/spec.pdf");
    assert_eq!(spec.json["mime_type"], "application/pdf");
    let got = h.get(&format!("/files/{}", spec.id())).await.expect(200);
    assert_eq!(got.json, spec.json);

    let log = changes(&h, &spec.id()).await;
    assert_eq!(
        log,
        vec![(
            "created".to_string(),
            None,
            Some("/Engineering/spec.pdf".to_string())
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_fields_may_come_in_any_order() {
    let h = Harness::start().await;
    // File first, share_id last, no name field: the part's filename names the file.
    let form = Form::new()
        .part("file", file_part(b"a,b\n".to_vec(), "from-part.csv"))
        .text("share_id", h.share.clone());
    let r = send_form(&h, form).await.expect(201);
    assert_eq!(r.json["name"], "from-part.csv");
    assert_eq!(r.json["mime_type"], "text/csv");

    // The name field overrides the part filename, wherever it comes.
    let fld = h.mkdir(None, "Sub").await;
    let form = Form::new()
        .part("file", file_part(b"{}".to_vec(), "ignored.bin"))
        .text("name", "override.json")
        .text("folder_id", fld.clone())
        .text("share_id", h.share.clone());
    let r = send_form(&h, form).await.expect(201);
    assert_eq!(r.json["name"], "override.json");
    assert_eq!(r.json["mime_type"], "application/json");
    assert_eq!(r.json["path"], "/Sub/override.json");
    assert_eq!(content(&h, &r.id()).await, b"{}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_errors_have_documented_statuses_and_codes() {
    let h = Harness::start().await;
    let r = send_form(
        &h,
        Form::new().part("file", file_part(b"x".to_vec(), "x.txt")),
    )
    .await
    .expect_err(422, "VALIDATION_ERROR");
    assert_eq!(
        r.json["error"]["details"][0]["loc"],
        json!(["body", "share_id"])
    );
    let r = send_form(
        &h,
        Form::new()
            .text("share_id", h.share.clone())
            .text("name", "x.txt"),
    )
    .await
    .expect_err(422, "VALIDATION_ERROR");
    assert_eq!(
        r.json["error"]["details"][0]["loc"],
        json!(["body", "file"])
    );
    h.post("/files", json!({ "share_id": h.share }))
        .await
        .expect_err(422, "VALIDATION_ERROR");

    for bad in ["a/b.txt", " lead.txt", "trail.txt ", "..", ""] {
        h.upload(None, bad, b"x".to_vec())
            .await
            .expect_err(400, "INVALID_PATH");
    }

    let form = Form::new()
        .text("share_id", "shr_unknown")
        .part("file", file_part(b"x".to_vec(), "x.txt"));
    send_form(&h, form).await.expect_err(404, "NOT_FOUND");
    h.upload(Some("fld_unknown"), "x.txt", b"x".to_vec())
        .await
        .expect_err(404, "NOT_FOUND");
    let gone = h.mkdir(None, "Gone").await;
    h.delete(&format!("/folders/{gone}")).await.expect(204);
    h.upload(Some(&gone), "x.txt", b"x".to_vec())
        .await
        .expect_err(410, "RESOURCE_DELETED");

    let (_, reader) = h.user_with_role("reader").await;
    let form = Form::new()
        .text("share_id", h.share.clone())
        .part("file", file_part(b"x".to_vec(), "x.txt"));
    let r = h
        .send(
            h.as_token(&reader)
                .req(Method::POST, "/files")
                .multipart(form),
        )
        .await;
    r.expect_err(403, "AUTHZ_PERMISSION_DENIED");

    let first = h.upload(None, "dup.txt", b"1".to_vec()).await.expect(201);
    let r = h
        .upload(None, "dup.txt", b"2".to_vec())
        .await
        .expect_err(409, "NAME_CONFLICT");
    assert_eq!(r.json["error"]["details"]["existing_id"], json!(first.id()));
    h.mkdir(None, "Docs").await;
    h.upload(None, "Docs", b"x".to_vec())
        .await
        .expect_err(409, "NAME_CONFLICT");
    // A trashed file does not hold on to its name.
    h.delete(&format!("/files/{}", first.id()))
        .await
        .expect(204);
    h.upload(None, "dup.txt", b"3".to_vec()).await.expect(201);

    assert_eq!(tmp_files(&h), 0, "refused uploads leave no temp files");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_byte_file_uploads_and_downloads() {
    let h = Harness::start().await;
    let r = h.upload(None, "empty.txt", Vec::new()).await.expect(201);
    assert_eq!(r.json["size"], 0);
    assert_eq!(r.json["checksum_sha256"], EMPTY_SHA256);
    let d = h
        .get(&format!("/files/{}/content", r.id()))
        .await
        .expect(200);
    assert_eq!(d.header("content-length").as_deref(), Some("0"));
    assert!(d.bytes.is_empty());
    let rb = h
        .req(Method::GET, &format!("/files/{}/content", r.id()))
        .header("range", "bytes=0-");
    let d = h.send(rb).await.expect_err(416, "RANGE_NOT_SATISFIABLE");
    assert_eq!(d.header("content-range").as_deref(), Some("bytes */0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_over_the_size_cap_get_413() {
    let h = Harness::start().await;
    h.admin(Method::PATCH, "/settings", json!({ "max_file_size": 1000 }))
        .await;
    h.upload(None, "exact.bin", vec![7; 1000]).await.expect(201);
    // Streamed past the cap (Content-Length alone does not tell).
    h.upload(None, "over.bin", vec![7; 1001])
        .await
        .expect_err(413, "PAYLOAD_TOO_LARGE");
    // Refused from Content-Length before reading.
    h.upload(None, "huge.bin", vec![7; 3 << 20])
        .await
        .expect_err(413, "PAYLOAD_TOO_LARGE");
    // Chunked body without Content-Length.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..4).map(|_| Ok(vec![1u8; 50_000])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let form = Form::new()
        .text("share_id", h.share.clone())
        .text("name", "streamed.bin")
        .part("file", Part::stream(body).file_name("streamed.bin"));
    send_form(&h, form)
        .await
        .expect_err(413, "PAYLOAD_TOO_LARGE");

    let list = h
        .get(&format!("/folders/root/children?share_id={}", h.share))
        .await
        .expect(200);
    assert_eq!(
        list.json["total"], 1,
        "only the file within the cap exists: {}",
        list.json
    );
    assert_eq!(tmp_files(&h), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_over_the_share_quota_get_507() {
    let h = Harness::start().await;
    h.admin(
        Method::PATCH,
        &format!("/shares/{}", h.share),
        json!({ "quota_bytes": 1000 }),
    )
    .await;
    h.upload(None, "a.bin", vec![1; 600]).await.expect(201);
    let r = h
        .upload(None, "b.bin", vec![2; 500])
        .await
        .expect_err(507, "QUOTA_EXCEEDED");
    assert_eq!(r.json["error"]["details"]["level"], "share");
    let c = h.upload(None, "c.bin", vec![3; 400]).await.expect(201);
    let r = h
        .post(
            &format!("/files/{}/copy", c.id()),
            json!({ "target_share_id": h.share, "name": "c2.bin" }),
        )
        .await;
    r.expect_err(507, "QUOTA_EXCEEDED");
    assert_eq!(tmp_files(&h), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_download_headers_and_ranges() {
    let h = Harness::start().await;
    let data: Vec<u8> = (0..100u8).collect();
    let id = h
        .upload(None, "report.pdf", data.clone())
        .await
        .expect(201)
        .id();
    let path = format!("/files/{id}/content");
    let d = h.get(&path).await.expect(200);
    assert_eq!(d.bytes, data);
    assert_eq!(d.header("content-length").as_deref(), Some("100"));
    assert_eq!(d.header("content-type").as_deref(), Some("application/pdf"));
    assert_eq!(
        d.header("content-disposition").as_deref(),
        Some("attachment; filename=\"report.pdf\"")
    );
    assert_eq!(d.header("accept-ranges").as_deref(), Some("bytes"));
    assert_eq!(d.header("content-range"), None);

    let ranged = |range: &'static str| h.send(h.req(Method::GET, &path).header("range", range));
    for (range, cr, lo, hi) in [
        ("bytes=0-9", "bytes 0-9/100", 0, 10),
        ("bytes=90-", "bytes 90-99/100", 90, 100),
        ("bytes=-5", "bytes 95-99/100", 95, 100),
        ("bytes=95-200", "bytes 95-99/100", 95, 100),
        ("bytes=50-50", "bytes 50-50/100", 50, 51),
    ] {
        let r = ranged(range).await.expect(206);
        assert_eq!(r.header("content-range").as_deref(), Some(cr), "{range}");
        assert_eq!(
            r.header("content-length"),
            Some((hi - lo).to_string()),
            "{range}"
        );
        assert_eq!(r.bytes, &data[lo..hi], "{range}");
    }
    for range in ["bytes=100-", "bytes=-0", "bytes=500-600"] {
        let r = ranged(range).await.expect_err(416, "RANGE_NOT_SATISFIABLE");
        assert_eq!(
            r.header("content-range").as_deref(),
            Some("bytes */100"),
            "{range}"
        );
    }
    let r = ranged("bytes=0-1,5-6").await.expect(200);
    assert_eq!(r.bytes, data, "multi-range gets the full body");
    assert_eq!(r.header("content-range"), None);

    assert_eq!(
        h.get(&format!("{path}?version=1")).await.expect(200).bytes,
        data
    );
    h.get(&format!("{path}?version=2"))
        .await
        .expect_err(404, "NOT_FOUND");
    h.get(&format!("{path}?version=abc"))
        .await
        .expect_err(422, "VALIDATION_ERROR");
    h.get("/files/fil_unknown/content")
        .await
        .expect_err(404, "NOT_FOUND");

    let q = h
        .upload(None, "say \"hi\" \\ now.txt", b"q".to_vec())
        .await
        .expect(201);
    let d = h
        .get(&format!("/files/{}/content", q.id()))
        .await
        .expect(200);
    assert_eq!(
        d.header("content-disposition").as_deref(),
        Some(r#"attachment; filename="say \"hi\" \\ now.txt""#)
    );
    let u = h
        .upload(None, "résumé 1.txt", b"u".to_vec())
        .await
        .expect(201);
    let d = h
        .get(&format!("/files/{}/content", u.id()))
        .await
        .expect(200);
    assert_eq!(
        d.header("content-disposition").as_deref(),
        Some("attachment; filename=\"r_sum_ 1.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9%201.txt")
    );
}

/// What a restore needs (issue 22): an old version by number, with a single byte range,
/// after the file was renamed and got newer versions; a trashed file's content (any
/// version) is 410 as the docs say for direct access, and readable again once restored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_versions_serve_ranges_and_trashed_content_is_gone() {
    let h = Harness::start().await;
    let v1: Vec<u8> = (0..200u8).collect();
    let id = h.upload(None, "old.bin", v1.clone()).await.expect(201).id();
    put_version(&h, &id, "old.bin", b"second version").await;
    h.patch(&format!("/files/{id}"), json!({ "name": "new.bin" }))
        .await
        .expect(200);
    let path = format!("/files/{id}/content?version=1");
    let r = h
        .send(h.req(Method::GET, &path).header("range", "bytes=150-"))
        .await
        .expect(206);
    assert_eq!(
        r.header("content-range").as_deref(),
        Some("bytes 150-199/200")
    );
    assert_eq!(r.bytes, &v1[150..]);
    assert_eq!(
        r.header("content-disposition").as_deref(),
        Some("attachment; filename=\"new.bin\"")
    );
    h.send(h.req(Method::GET, &path).header("range", "bytes=200-"))
        .await
        .expect_err(416, "RANGE_NOT_SATISFIABLE");
    assert_eq!(content(&h, &id).await, b"second version");

    h.delete(&format!("/files/{id}")).await.expect(204);
    h.get(&path).await.expect_err(410, "RESOURCE_DELETED");
    h.get(&format!("/files/{id}/content"))
        .await
        .expect_err(410, "RESOURCE_DELETED");
    h.patch(&format!("/files/{id}"), json!({ "restore": true }))
        .await
        .expect(200);
    assert_eq!(h.get(&path).await.expect(200).bytes, v1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_download_takes_ranges_as_query_or_header() {
    let h = Harness::start().await;
    let data: Vec<u8> = (0..100u8).rev().collect();
    let id = h
        .upload(None, "data.bin", data.clone())
        .await
        .expect(201)
        .id();
    let base = format!("/sync/download/{id}");
    let d = h.get(&base).await.expect(200);
    assert_eq!(d.bytes, data);
    assert_eq!(
        d.header("content-disposition").as_deref(),
        Some("attachment; filename=\"data.bin\"")
    );
    assert_eq!(d.header("accept-ranges").as_deref(), Some("bytes"));
    for (q, cr, lo, hi) in [
        ("range_start=10&range_end=19", "bytes 10-19/100", 10, 20),
        ("range_start=90", "bytes 90-99/100", 90, 100),
        ("range_end=4", "bytes 0-4/100", 0, 5),
        ("range_start=98&range_end=1000", "bytes 98-99/100", 98, 100),
    ] {
        let r = h.get(&format!("{base}?{q}")).await.expect(206);
        assert_eq!(r.header("content-range").as_deref(), Some(cr), "{q}");
        assert_eq!(r.bytes, &data[lo..hi], "{q}");
    }
    let r = h
        .get(&format!("{base}?range_start=100"))
        .await
        .expect_err(416, "RANGE_NOT_SATISFIABLE");
    assert_eq!(r.header("content-range").as_deref(), Some("bytes */100"));
    h.get(&format!("{base}?range_start=20&range_end=10"))
        .await
        .expect_err(422, "VALIDATION_ERROR");
    h.get(&format!("{base}?range_start=-1"))
        .await
        .expect_err(422, "VALIDATION_ERROR");
    let r = h
        .send(h.req(Method::GET, &base).header("range", "bytes=-3"))
        .await
        .expect(206);
    assert_eq!(r.bytes, &data[97..]);
    assert_eq!(
        h.get(&format!("{base}?version=1")).await.expect(200).bytes,
        data
    );
    h.get(&format!("{base}?version=9"))
        .await
        .expect_err(404, "NOT_FOUND");
    h.get("/sync/download/fil_unknown")
        .await
        .expect_err(404, "NOT_FOUND");
    h.delete(&format!("/files/{id}")).await.expect(204);
    h.get(&base).await.expect_err(410, "RESOURCE_DELETED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_trash_restore_and_permanent_delete() {
    let h = Harness::start().await;
    let id = h
        .upload(None, "t.txt", b"trash me".to_vec())
        .await
        .expect(201)
        .id();
    let (_, reader) = h.user_with_role("reader").await;
    h.as_token(&reader)
        .get(&format!("/files/{id}"))
        .await
        .expect(200);
    h.as_token(&reader)
        .delete(&format!("/files/{id}"))
        .await
        .expect_err(403, "AUTHZ_PERMISSION_DENIED");
    h.get("/files/fil_unknown")
        .await
        .expect_err(404, "NOT_FOUND");
    h.delete("/files/fil_unknown")
        .await
        .expect_err(404, "NOT_FOUND");
    let fld = h.mkdir(None, "NotAFile").await;
    h.get(&format!("/files/{fld}"))
        .await
        .expect_err(404, "NOT_FOUND");
    h.delete(&format!("/files/{id}?permanent=maybe"))
        .await
        .expect_err(422, "VALIDATION_ERROR");

    let r = h
        .delete(&format!("/files/{id}?permanent=false"))
        .await
        .expect(204);
    assert!(r.bytes.is_empty());
    h.get(&format!("/files/{id}"))
        .await
        .expect_err(410, "RESOURCE_DELETED");
    h.get(&format!("/files/{id}/content"))
        .await
        .expect_err(410, "RESOURCE_DELETED");
    h.get(&format!("/files/{id}/versions"))
        .await
        .expect_err(410, "RESOURCE_DELETED");
    h.delete(&format!("/files/{id}"))
        .await
        .expect_err(410, "RESOURCE_DELETED");
    h.patch(&format!("/files/{id}"), json!({ "name": "u.txt" }))
        .await
        .expect_err(410, "RESOURCE_DELETED");
    let trash = h
        .get(&format!(
            "/folders/root/children?share_id={}&include_deleted=true",
            h.share
        ))
        .await
        .expect(200);
    assert!(
        trash.json["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == json!(id) && i["is_deleted"] == true)
    );

    let r = h
        .patch(&format!("/files/{id}"), json!({ "restore": true }))
        .await
        .expect(200);
    assert_eq!(r.json["is_deleted"], false);
    assert_eq!(r.json["path"], "/t.txt");
    assert_eq!(content(&h, &id).await, b"trash me");

    h.delete(&format!("/files/{id}")).await.expect(204);
    h.delete(&format!("/files/{id}?permanent=true"))
        .await
        .expect(204);
    h.get(&format!("/files/{id}"))
        .await
        .expect_err(404, "NOT_FOUND");
    let kinds: Vec<String> = changes(&h, &id).await.into_iter().map(|c| c.0).collect();
    assert_eq!(
        kinds,
        ["created", "deleted", "created", "deleted", "deleted"]
    );

    let live = h
        .upload(None, "live.txt", b"x".to_vec())
        .await
        .expect(201)
        .id();
    h.delete(&format!("/files/{live}?permanent=true"))
        .await
        .expect(204);
    h.get(&format!("/files/{live}"))
        .await
        .expect_err(404, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_from_trash_respects_names_and_parents() {
    let h = Harness::start().await;
    let old = h
        .upload(None, "a.txt", b"old".to_vec())
        .await
        .expect(201)
        .id();
    h.delete(&format!("/files/{old}")).await.expect(204);
    h.upload(None, "a.txt", b"new".to_vec()).await.expect(201);
    h.patch(&format!("/files/{old}"), json!({ "restore": true }))
        .await
        .expect_err(409, "NAME_CONFLICT");
    h.get(&format!("/files/{old}"))
        .await
        .expect_err(410, "RESOURCE_DELETED");
    let r = h
        .patch(
            &format!("/files/{old}"),
            json!({ "restore": true, "name": "a (old).txt" }),
        )
        .await
        .expect(200);
    assert_eq!(r.json["name"], "a (old).txt");
    assert_eq!(r.json["is_deleted"], false);
    assert_eq!(content(&h, &old).await, b"old");

    let fld = h.mkdir(None, "F").await;
    let b = h
        .upload(Some(&fld), "b.txt", b"b".to_vec())
        .await
        .expect(201)
        .id();
    h.delete(&format!("/files/{b}")).await.expect(204);
    h.delete(&format!("/folders/{fld}")).await.expect(204);
    h.patch(&format!("/files/{b}"), json!({ "restore": true }))
        .await
        .expect_err(410, "RESOURCE_DELETED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_renames_and_moves() {
    let h = Harness::start().await;
    let a = h.mkdir(None, "A").await;
    let b = h.mkdir(None, "B").await;
    let id = h
        .upload(Some(&a), "draft.txt", b"d".to_vec())
        .await
        .expect(201)
        .id();
    let r = h
        .patch(&format!("/files/{id}"), json!({ "name": "final.txt" }))
        .await
        .expect(200);
    assert_eq!(keys(&r.json), FILE_KEYS);
    assert_eq!(r.json["name"], "final.txt");
    assert_eq!(r.json["path"], "/A/final.txt");
    assert_eq!(r.json["mime_type"], "text/plain");
    let log = changes(&h, &id).await;
    assert_eq!(log.len(), 2);
    assert_eq!(
        log[1],
        (
            "renamed".into(),
            Some("/A/draft.txt".into()),
            Some("/A/final.txt".into())
        )
    );

    h.patch(&format!("/files/{id}"), json!({ "name": "bad/name" }))
        .await
        .expect_err(400, "INVALID_PATH");
    h.patch(
        &format!("/files/{id}"),
        json!({ "name": "x.txt", "bogus": 1 }),
    )
    .await
    .expect_err(422, "VALIDATION_ERROR");
    h.patch(&format!("/files/{id}"), json!({ "restore": "yes" }))
        .await
        .expect_err(422, "VALIDATION_ERROR");
    h.upload(Some(&a), "other.txt", b"o".to_vec())
        .await
        .expect(201);
    h.patch(&format!("/files/{id}"), json!({ "name": "other.txt" }))
        .await
        .expect_err(409, "NAME_CONFLICT");
    let (_, reader) = h.user_with_role("reader").await;
    h.as_token(&reader)
        .patch(&format!("/files/{id}"), json!({ "name": "r.txt" }))
        .await
        .expect_err(403, "AUTHZ_PERMISSION_DENIED");

    let r = h
        .patch(&format!("/files/{id}"), json!({ "folder_id": b }))
        .await
        .expect(200);
    assert_eq!(r.json["folder_id"], json!(b));
    assert_eq!(r.json["path"], "/B/final.txt");
    let log = changes(&h, &id).await;
    assert_eq!(
        log[2],
        (
            "moved".into(),
            Some("/A/final.txt".into()),
            Some("/B/final.txt".into())
        )
    );
    let r = h
        .patch(&format!("/files/{id}"), json!({ "folder_id": null }))
        .await
        .expect(200);
    assert_eq!(r.json["folder_id"], Value::Null);
    assert_eq!(r.json["path"], "/final.txt");
    h.patch(
        &format!("/files/{id}"),
        json!({ "folder_id": "fld_unknown" }),
    )
    .await
    .expect_err(404, "NOT_FOUND");

    // A no-op PATCH changes nothing and logs nothing.
    h.patch(&format!("/files/{id}"), json!({}))
        .await
        .expect(200);
    assert_eq!(changes(&h, &id).await.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_within_and_across_shares() {
    let h = Harness::start().await;
    let t = h.mkdir(None, "T").await;
    let id = h
        .upload(None, "m.txt", b"move me".to_vec())
        .await
        .expect(201)
        .id();
    let r = h
        .post(
            &format!("/files/{id}/move"),
            json!({ "target_folder_id": t }),
        )
        .await
        .expect(200);
    assert_eq!(keys(&r.json), FILE_KEYS);
    assert_eq!(r.json["folder_id"], json!(t));
    assert_eq!(r.json["path"], "/T/m.txt");
    assert_eq!(
        changes(&h, &id).await.last().cloned(),
        Some((
            "moved".into(),
            Some("/m.txt".into()),
            Some("/T/m.txt".into())
        ))
    );

    let other = h
        .upload(None, "m.txt", b"second".to_vec())
        .await
        .expect(201)
        .id();
    h.post(
        &format!("/files/{other}/move"),
        json!({ "target_folder_id": t }),
    )
    .await
    .expect_err(409, "NAME_CONFLICT");
    h.post(&format!("/files/{other}/move"), json!({}))
        .await
        .expect_err(422, "VALIDATION_ERROR");
    h.post(
        &format!("/files/{other}/move"),
        json!({ "target_parent_id": t }),
    )
    .await
    .expect_err(422, "VALIDATION_ERROR");
    h.post(
        &format!("/files/{other}/move"),
        json!({ "target_folder_id": "fld_unknown" }),
    )
    .await
    .expect_err(404, "NOT_FOUND");
    let (_, reader) = h.user_with_role("reader").await;
    h.as_token(&reader)
        .post(
            &format!("/files/{other}/move"),
            json!({ "target_folder_id": t }),
        )
        .await
        .expect_err(403, "AUTHZ_PERMISSION_DENIED");

    let share2 = h
        .admin(Method::POST, "/shares", json!({ "name": "Other" }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = h
        .post(
            &format!("/files/{id}/move"),
            json!({ "target_share_id": share2 }),
        )
        .await
        .expect(200);
    assert_eq!(r.json["share_id"], json!(share2));
    assert_eq!(r.json["folder_id"], Value::Null);
    assert_eq!(r.json["path"], "/m.txt");
    assert_eq!(content(&h, &id).await, b"move me");

    h.delete(&format!("/files/{other}")).await.expect(204);
    h.post(
        &format!("/files/{other}/move"),
        json!({ "target_folder_id": t }),
    )
    .await
    .expect_err(410, "RESOURCE_DELETED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_creates_a_new_file_with_the_same_content() {
    let h = Harness::start().await;
    let data = b"copy this content".to_vec();
    let src = h.upload(None, "c.txt", data.clone()).await.expect(201);
    let sid = src.id();
    put_version(&h, &sid, "c.txt", b"copy this content, v2").await;
    let d = h.mkdir(None, "D").await;
    let r = h
        .post(
            &format!("/files/{sid}/copy"),
            json!({ "target_folder_id": d }),
        )
        .await
        .expect(201);
    assert_eq!(keys(&r.json), FILE_KEYS);
    let cid = r.id();
    assert_ne!(cid, sid);
    assert_eq!(r.json["version"], 1);
    assert_eq!(r.json["name"], "c.txt");
    assert_eq!(r.json["folder_id"], json!(d));
    assert_eq!(
        r.json["checksum_sha256"],
        json!(sha(b"copy this content, v2"))
    );
    assert_eq!(content(&h, &cid).await, b"copy this content, v2");
    assert_eq!(changes(&h, &cid).await.len(), 1);
    let v = h.get(&format!("/files/{cid}/versions")).await.expect(200);
    assert_eq!(v.json["total"], 1);

    let r = h
        .post(
            &format!("/files/{sid}/copy"),
            json!({ "target_share_id": h.share, "name": "c2.md" }),
        )
        .await
        .expect(201);
    assert_eq!(r.json["name"], "c2.md");
    assert_eq!(r.json["path"], "/c2.md");
    assert_eq!(r.json["folder_id"], Value::Null);

    h.post(
        &format!("/files/{sid}/copy"),
        json!({ "target_share_id": h.share }),
    )
    .await
    .expect_err(409, "NAME_CONFLICT");
    h.post(
        &format!("/files/{sid}/copy"),
        json!({ "target_share_id": h.share, "target_folder_id": d }),
    )
    .await
    .expect_err(422, "VALIDATION_ERROR");
    h.post(&format!("/files/{sid}/copy"), json!({ "name": "n.txt" }))
        .await
        .expect_err(422, "VALIDATION_ERROR");
    h.post(
        &format!("/files/{sid}/copy"),
        json!({ "target_share_id": h.share, "name": "a/b" }),
    )
    .await
    .expect_err(400, "INVALID_PATH");
    let (_, reader) = h.user_with_role("reader").await;
    h.as_token(&reader)
        .post(
            &format!("/files/{sid}/copy"),
            json!({ "target_folder_id": d, "name": "r.txt" }),
        )
        .await
        .expect_err(403, "AUTHZ_PERMISSION_DENIED");

    let share2 = h
        .admin(Method::POST, "/shares", json!({ "name": "Other" }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = h
        .post(
            &format!("/files/{sid}/copy"),
            json!({ "target_share_id": share2 }),
        )
        .await
        .expect(201);
    assert_eq!(r.json["share_id"], json!(share2));
    h.admin(
        Method::PATCH,
        &format!("/shares/{share2}"),
        json!({ "quota_bytes": 30 }),
    )
    .await;
    h.post(
        &format!("/files/{sid}/copy"),
        json!({ "target_share_id": share2, "name": "again.txt" }),
    )
    .await
    .expect_err(507, "QUOTA_EXCEEDED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_list_and_restore() {
    let h = Harness::start().await;
    let id = h
        .upload(None, "v.txt", b"one".to_vec())
        .await
        .expect(201)
        .id();
    let r = put_version(&h, &id, "v.txt", b"two!").await;
    assert_eq!(r["file"]["version"], 2);
    let v = h.get(&format!("/files/{id}/versions")).await.expect(200);
    assert_eq!(keys(&v.json), ["total", "versions"]);
    assert_eq!(v.json["total"], 2);
    let list = v.json["versions"].as_array().unwrap();
    assert_eq!(
        keys(&list[0]),
        [
            "checksum_sha256",
            "created_at",
            "created_by",
            "id",
            "size",
            "version_number"
        ]
    );
    assert_eq!(
        list.iter()
            .map(|x| x["version_number"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [2, 1]
    );
    assert_eq!(list[0]["checksum_sha256"], json!(sha(b"two!")));
    assert_eq!(list[0]["size"], 4);
    assert_eq!(list[1]["checksum_sha256"], json!(sha(b"one")));
    assert!(list[1]["id"].as_str().unwrap().starts_with("ver_"));

    let r = h
        .post(&format!("/files/{id}/versions/1/restore"), json!({}))
        .await
        .expect(200);
    let text = String::from_utf8(r.bytes.clone()).unwrap();
    assert!(
        text.starts_with(&format!("{{\"id\":\"{id}\",\"restored_from_version\":1")),
        "{text}"
    );
    assert_eq!(r.json["restored_from_version"], 1);
    assert_eq!(r.json["version"], 3);
    assert_eq!(r.json["size"], 3);
    assert_eq!(r.json["checksum_sha256"], json!(sha(b"one")));
    assert_eq!(content(&h, &id).await, b"one");
    assert_eq!(
        h.get(&format!("/files/{id}/content?version=2"))
            .await
            .expect(200)
            .bytes,
        b"two!"
    );
    let v = h.get(&format!("/files/{id}/versions")).await.expect(200);
    assert_eq!(v.json["total"], 3);
    assert_eq!(v.json["versions"][0]["version_number"], 3);
    let kinds: Vec<String> = changes(&h, &id).await.into_iter().map(|c| c.0).collect();
    assert_eq!(kinds, ["created", "updated", "updated"]);

    h.post(&format!("/files/{id}/versions/9/restore"), json!({}))
        .await
        .expect_err(404, "NOT_FOUND");
    let (_, reader) = h.user_with_role("reader").await;
    h.as_token(&reader)
        .post(&format!("/files/{id}/versions/2/restore"), json!({}))
        .await
        .expect_err(403, "AUTHZ_PERMISSION_DENIED");
    h.as_token(&reader)
        .get(&format!("/files/{id}/versions"))
        .await
        .expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_into_one_folder() {
    let h = Harness::start().await;
    let fld = h.mkdir(None, "Par").await;
    let names: Vec<String> = (0..40).map(|i| format!("f{i:02}.bin")).collect();
    let distinct = join_all(
        names
            .iter()
            .enumerate()
            .map(|(i, n)| h.upload(Some(&fld), n, vec![i as u8; 1000 + i])),
    )
    .await;
    for r in &distinct {
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.bytes));
    }
    let list = h
        .get(&format!("/folders/{fld}/children?share_id={}", h.share))
        .await
        .expect(200);
    assert_eq!(list.json["total"], 40);

    let same =
        join_all((0..10).map(|i| h.upload(Some(&fld), "same.txt", vec![b'a' + i as u8; 100])))
            .await;
    let created = same.iter().filter(|r| r.status == 201).count();
    let conflicts = same
        .iter()
        .filter(|r| r.status == 409 && r.code() == "NAME_CONFLICT")
        .count();
    assert_eq!(
        (created, conflicts),
        (1, 9),
        "{:?}",
        same.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(tmp_files(&h), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_survive_a_restart() {
    let mut h = Harness::start().await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let r = h.upload(None, "keep.bin", data.clone()).await.expect(201);
    let id = r.id();
    h.restart().await;
    let got = h.get(&format!("/files/{id}")).await.expect(200);
    assert_eq!(got.json, r.json);
    assert_eq!(content(&h, &id).await, data);
}
