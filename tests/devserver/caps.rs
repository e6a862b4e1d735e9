//! The two size caps (`scaidrive-api.md` §6, §10.1, §10.2, and the seed's "413
//! PAYLOAD_TOO_LARGE — File is over the tenant's per-file size limit. Use Resumable
//! Uploads for large files."): a multipart upload is one request and is held to the
//! per-request cap (`max_request_size`, "default 5 GB per request; reverse proxies may cut
//! lower") as well as the per-file cap; an upload session is held to the per-file cap
//! alone (`max_file_size`, judged from `file_size` at create). Both answer the documented
//! 413 `PAYLOAD_TOO_LARGE`, in either error body shape.

use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::harness::{Harness, Resp};

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 13 % 251) as u8).collect()
}

/// A multipart upload whose body has no Content-Length (streamed in 50,000-byte pieces),
/// so only counting the body as it arrives can refuse it.
async fn upload_streamed(h: &Harness, name: &str, data: Vec<u8>) -> Resp {
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(50_000).map(|c| Ok(c.to_vec())).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(pieces));
    let form = Form::new()
        .text("share_id", h.share.clone())
        .text("name", name.to_string())
        .part("file", Part::stream(body).file_name(name.to_string()));
    h.send(h.req(Method::POST, "/files").multipart(form)).await
}

/// Uploads `data` through a session in 64 KiB chunks; returns the completed file.
async fn upload_session(h: &Harness, name: &str, data: &[u8]) -> serde_json::Value {
    let chunk = 64 * 1024;
    let r = h
        .post(
            "/uploads",
            json!({ "share_id": h.share, "file_name": name, "file_size": data.len(),
                    "chunk_size": chunk, "checksum_sha256": hex::encode(Sha256::digest(data)) }),
        )
        .await
        .expect(201);
    let sid = r.json["session_id"].as_str().unwrap().to_string();
    assert_eq!(
        r.json["total_chunks"].as_u64(),
        Some(data.len().div_ceil(chunk) as u64)
    );
    for (i, c) in data.chunks(chunk).enumerate() {
        h.send(
            h.req(Method::PUT, &format!("/uploads/{sid}/chunks/{i}"))
                .body(c.to_vec()),
        )
        .await
        .expect(200);
    }
    let done = h.post(&format!("/uploads/{sid}/complete"), json!({})).await;
    assert!(
        (200..300).contains(&done.status),
        "complete: {} {}",
        done.status,
        String::from_utf8_lossy(&done.bytes)
    );
    done.json["file"].clone()
}

async fn names_at_root(h: &Harness) -> Vec<String> {
    let list = h
        .get(&format!("/folders/root/children?share_id={}", h.share))
        .await
        .expect(200);
    let mut names: Vec<String> = list.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_is_held_to_the_request_cap_and_sessions_are_not() {
    let h = Harness::start().await;
    let s = h
        .admin(
            Method::PATCH,
            "/settings",
            json!({ "max_request_size": 100_000 }),
        )
        .await;
    assert_eq!(s["max_request_size"], 100_000);
    assert_eq!(
        s["max_file_size"], 5_000_000_000u64,
        "the per-file cap is apart"
    );

    h.upload(None, "fits.bin", pattern(90_000))
        .await
        .expect(201);
    // Refused from Content-Length, before the body is read.
    let r = h
        .upload(None, "over.bin", pattern(150_000))
        .await
        .expect_err(413, "PAYLOAD_TOO_LARGE");
    assert_eq!(r.json["error"]["details"]["max_request_size"], 100_000);
    // The whole request counts, not only the file part: 99,900 content bytes plus the
    // form's boundaries and fields are over 100,000.
    h.upload(None, "edge.bin", pattern(99_900))
        .await
        .expect_err(413, "PAYLOAD_TOO_LARGE");
    // A body without Content-Length is counted as it arrives.
    upload_streamed(&h, "streamed.bin", pattern(150_000))
        .await
        .expect_err(413, "PAYLOAD_TOO_LARGE");

    // The same content through a session is accepted: the cap is per request, and each
    // chunk PUT is its own request.
    let data = pattern(150_000);
    let f = upload_session(&h, "over.bin", &data).await;
    assert_eq!(f["size"], 150_000);
    assert_eq!(
        f["checksum_sha256"].as_str(),
        Some(hex::encode(Sha256::digest(&data)).as_str())
    );
    assert_eq!(names_at_root(&h).await, ["fits.bin", "over.bin"]);

    // The detail shape carries the same status.
    h.admin(
        Method::PATCH,
        "/settings",
        json!({ "error_shape": "detail" }),
    )
    .await;
    let r = h.upload(None, "again.bin", pattern(150_000)).await;
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.bytes));
    assert!(r.json["detail"].is_string(), "{}", r.json);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_held_to_the_file_cap_and_so_is_multipart() {
    let h = Harness::start().await;
    h.admin(
        Method::PATCH,
        "/settings",
        json!({ "max_file_size": 200_000, "max_request_size": 100_000 }),
    )
    .await;
    // Over the file cap: refused at session create, from file_size.
    let r = h
        .post(
            "/uploads",
            json!({ "share_id": h.share, "file_name": "huge.bin", "file_size": 200_001 }),
        )
        .await
        .expect_err(413, "PAYLOAD_TOO_LARGE");
    assert_eq!(r.json["error"]["details"]["max_file_size"], 200_000);
    // At the file cap and over the request cap: multipart is refused, a session takes it.
    let r = h
        .upload(None, "at-cap.bin", pattern(150_000))
        .await
        .expect_err(413, "PAYLOAD_TOO_LARGE");
    assert_eq!(r.json["error"]["details"]["max_request_size"], 100_000);
    let f = upload_session(&h, "at-cap.bin", &pattern(200_000)).await;
    assert_eq!(f["size"], 200_000);

    // With a request cap above the file cap, multipart still meets the file cap.
    h.admin(
        Method::PATCH,
        "/settings",
        json!({ "max_request_size": 10_000_000 }),
    )
    .await;
    let r = h
        .upload(None, "huge.bin", pattern(200_001))
        .await
        .expect_err(413, "PAYLOAD_TOO_LARGE");
    assert_eq!(r.json["error"]["details"]["max_file_size"], 200_000);
    upload_streamed(&h, "huge.bin", pattern(250_000))
        .await
        .expect_err(413, "PAYLOAD_TOO_LARGE");
    h.upload(None, "small.bin", pattern(150_000))
        .await
        .expect(201);
    assert_eq!(names_at_root(&h).await, ["at-cap.bin", "small.bin"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_cap_comes_from_the_server_config() {
    let h = Harness::start_with(|c| c.settings.max_request_size = 100_000).await;
    h.upload(None, "over.bin", pattern(150_000))
        .await
        .expect_err(413, "PAYLOAD_TOO_LARGE");
    h.upload(None, "fits.bin", pattern(50_000))
        .await
        .expect(201);
}
