//! The calls the daemon uses to place content without its bytes (issue 19, item 5), as the
//! devserver answers them: a file trashed with its folder is restored (`PATCH` with
//! `restore`, `folder_id` and `name`) into a folder created anew, keeping its id, content
//! and versions; a copy takes a new name and lands in the share root by `target_share_id`;
//! each answers with the file object whose checksum the daemon checks, for 2 units.

use serde_json::json;

use crate::harness::Harness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_trashed_with_its_folder_is_restored_into_a_new_folder() {
    let h = Harness::start_with(|c| c.settings.rate_limit = 1000).await;
    let old = h.mkdir(None, "d").await;
    let id = h
        .upload(Some(&old), "x.txt", b"x content".to_vec())
        .await
        .expect(201)
        .id();
    h.delete(&format!("/folders/{old}")).await.expect(204);
    let new = h.mkdir(None, "d").await;
    assert_ne!(new, old);
    let r = h
        .patch(
            &format!("/files/{id}"),
            json!({ "restore": true, "folder_id": new, "name": "x.txt" }),
        )
        .await
        .expect(200);
    assert_eq!(r.json["id"], id.as_str());
    assert_eq!(r.json["folder_id"], new.as_str());
    assert_eq!(r.json["is_deleted"], false);
    assert_eq!(r.json["path"], "/d/x.txt");
    assert_eq!(
        r.json["checksum_sha256"],
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"x content"))
    );
    assert_eq!(
        r.header("x-ratelimit-remaining").as_deref(),
        Some("987"),
        "upload 5, two folder creates, a delete and the restore: 2 each"
    );
    // The old folder stays in the trash; the name there is not taken by the restore.
    h.get(&format!("/folders/{old}"))
        .await
        .expect_err(410, "RESOURCE_DELETED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_takes_a_new_name_and_lands_in_the_share_root() {
    let h = Harness::start().await;
    let f = h.mkdir(None, "f").await;
    let src = h
        .upload(Some(&f), "a.txt", b"same".to_vec())
        .await
        .expect(201)
        .id();
    let r = h
        .post(
            &format!("/files/{src}/copy"),
            json!({ "target_share_id": h.share, "name": "b.txt" }),
        )
        .await
        .expect(201);
    assert_ne!(r.json["id"], src.as_str());
    assert_eq!(r.json["name"], "b.txt");
    assert_eq!(r.json["folder_id"], serde_json::Value::Null);
    assert_eq!(r.json["version"], 1);
    // The same again: the name is taken.
    h.post(
        &format!("/files/{src}/copy"),
        json!({ "target_share_id": h.share, "name": "b.txt" }),
    )
    .await
    .expect_err(409, "NAME_CONFLICT");
}
