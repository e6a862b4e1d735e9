//! No bytes for content the remote already holds (issue 19, item 5), counted on the
//! devserver's request statistics: a copy of a mirrored file is one server-side copy (2
//! units, no upload request), a file reverted to an earlier content is one version restore,
//! a deleted file put back with the same content is one restore from the trash, and each
//! leaves the remote tree equal to the disk.

use sha2::{Digest, Sha256};

use crate::world::World;

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

const MULTIPART: &str = "POST /api/v1/files";
const SESSION_CREATE: &str = "POST /api/v1/uploads";
const COPY: &str = "POST /api/v1/files/{file_id}/copy";
const RESTORE: &str = "POST /api/v1/files/{file_id}/versions/{version}/restore";
const PATCH_FILE: &str = "PATCH /api/v1/files/{file_id}";
const MKDIR: &str = "POST /api/v1/folders";

async fn in_sync(w: &World, d: &crate::world::Daemon) {
    settled(d).await;
    w.assert_mirrored().await;
}

/// Settled, without looking at the remote (the tests' own calls would count).
async fn settled(d: &crate::world::Daemon) {
    let s = d.settled().await;
    assert!(s.in_sync() && s.failures == 0, "{s:?}");
}

/// Requests that send file content (multipart uploads and session creates).
async fn uploads(w: &World) -> u64 {
    w.count(MULTIPART).await + w.count(SESSION_CREATE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_a_mirrored_file_is_copied_server_side() {
    let w = World::new().await;
    let body = b"the same bytes in three places".repeat(100);
    w.write("a.txt", &body);
    let d = w.start().await;
    in_sync(&w, &d).await;
    w.reset_stats().await;

    w.write("copy of a.txt", &body);
    w.write("sub/a.txt", &body);
    settled(&d).await;
    let stats = w.stats().await;
    assert_eq!(uploads(&w).await, 0, "no content sent: {stats}");
    assert_eq!(w.count(COPY).await, 2, "{stats}");
    assert_eq!(w.count(MKDIR).await, 1, "{stats}");
    // Two copies and a folder: 3 writes of 2 units, nothing else.
    assert_eq!(stats["units_total"], 6, "{stats}");
    w.assert_mirrored().await;
    assert_ne!(w.remote_id("sub/a.txt").await, w.remote_id("a.txt").await);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revert_to_an_earlier_content_restores_that_version() {
    let w = World::new().await;
    let (one, two) = (b"first content".repeat(50), b"second content".repeat(50));
    w.write("doc.txt", &one);
    let d = w.start().await;
    in_sync(&w, &d).await;
    w.write("doc.txt", &two);
    in_sync(&w, &d).await;
    let id = w.remote_id("doc.txt").await;
    w.reset_stats().await;

    // An editor's undo, `git checkout`: the content of version 1 again.
    w.write("doc.txt", &one);
    settled(&d).await;
    let stats = w.stats().await;
    assert_eq!(uploads(&w).await, 0, "no content sent: {stats}");
    assert_eq!(w.count(RESTORE).await, 1, "{stats}");
    assert_eq!(stats["units_total"], 2, "{stats}");
    w.assert_mirrored().await;
    assert_eq!(w.remote_id("doc.txt").await, id, "the same file");
    let versions = w.versions("doc.txt").await;
    assert_eq!(versions.len(), 3, "{versions:?}");
    assert_eq!(
        versions[0]["checksum_sha256"],
        sha256_hex(&one),
        "{versions:?}"
    );

    // Reverted again to the second content: restored from version 2, not uploaded.
    w.write("doc.txt", &two);
    in_sync(&w, &d).await;
    assert_eq!(uploads(&w).await, 0);
    assert_eq!(w.count(RESTORE).await, 2);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_file_put_back_is_restored_from_the_trash() {
    let w = World::new().await;
    let (x, y) = (b"x in a folder".repeat(40), b"y at the top".repeat(40));
    w.write("d/x.txt", &x);
    w.write("y.txt", &y);
    let d = w.start().await;
    in_sync(&w, &d).await;
    let y_id = w.remote_id("y.txt").await;
    std::fs::remove_file(w.root.join("y.txt")).unwrap();
    in_sync(&w, &d).await;
    assert_eq!(w.trashed().await, vec!["y.txt".to_string()]);
    w.reset_stats().await;

    // Put back from a local backup.
    w.write("y.txt", &y);
    settled(&d).await;
    let stats = w.stats().await;
    assert_eq!(uploads(&w).await, 0, "no content sent: {stats}");
    assert_eq!(w.count(PATCH_FILE).await, 1, "{stats}");
    assert_eq!(stats["units_total"], 2, "{stats}");
    w.assert_mirrored().await;
    assert_eq!(w.remote_id("y.txt").await, y_id, "the trashed file itself");
    assert!(w.trashed().await.is_empty());

    // A whole folder deleted and put back: the folder anew, its file from the trash.
    let x_id = w.remote_id("d/x.txt").await;
    std::fs::remove_dir_all(w.root.join("d")).unwrap();
    in_sync(&w, &d).await;
    w.reset_stats().await;
    w.write("d/x.txt", &x);
    settled(&d).await;
    let stats = w.stats().await;
    assert_eq!(uploads(&w).await, 0, "no content sent: {stats}");
    assert_eq!(stats["units_total"], 4, "a mkdir and a restore: {stats}");
    w.assert_mirrored().await;
    assert_eq!(w.remote_id("d/x.txt").await, x_id);

    // Put back with other content: uploaded, the trashed file stays in the trash.
    std::fs::remove_file(w.root.join("y.txt")).unwrap();
    in_sync(&w, &d).await;
    w.reset_stats().await;
    w.write("y.txt", b"new content");
    in_sync(&w, &d).await;
    assert_eq!(w.count(MULTIPART).await, 1);
    assert_eq!(w.count(PATCH_FILE).await, 0);
    d.stop().await;
}

/// What a run killed right after its copy or version restore went through leaves: the
/// remote call applied, its intent open. The next start settles the intent from the remote
/// (adopting the copy, recording the restored version) and sends nothing again: no second
/// copy, no duplicate name, no extra version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_or_restore_cut_off_by_a_crash_is_settled_without_repeating_it() {
    use crate::world::TOKEN;
    let w = World::new().await;
    let (one, two) = (b"version one ".repeat(30), b"version two ".repeat(30));
    w.write("a.txt", &one);
    let d = w.start().await;
    in_sync(&w, &d).await;
    w.write("a.txt", &two);
    in_sync(&w, &d).await;
    d.stop().await;
    let a_id = w.remote_id("a.txt").await.unwrap();
    let base = w.remote_base_id().await.unwrap();

    // The killed run's calls: b.txt copied from a.txt, a.txt restored to version 1.
    let copy = w
        .http
        .post(format!("{}/api/v1/files/{a_id}/copy", w.url))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "target_folder_id": base, "name": "b.txt" }))
        .send()
        .await
        .unwrap();
    assert_eq!(copy.status(), 201);
    let restore = w
        .http
        .post(format!("{}/api/v1/files/{a_id}/versions/1/restore", w.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(restore.status(), 200);
    // ... and the local changes they were for.
    w.write("b.txt", &two);
    w.write("a.txt", &one);
    let (sha_one, sha_two) = (sha256_hex(&one), sha256_hex(&two));
    let file = |name: &str, sha: &str, replace: Option<&str>| {
        serde_json::json!({ "parent_id": base, "name": name, "sha256": sha, "size": 360,
                            "inode": 1, "mtime_ns": 0, "replace_file_id": replace })
    };
    {
        let store = scaidrive::store::Store::open(&w.state_dir().join("state.db")).unwrap();
        let m = store.mirrors().await.unwrap()[0].id;
        let mut copy = file("b.txt", &sha_two, None);
        copy["source_id"] = a_id.clone().into();
        store.begin(m, "copy", "b.txt", copy).await.unwrap();
        let mut restore = file("a.txt", &sha_one, Some(&a_id));
        restore["source_id"] = a_id.clone().into();
        restore["version"] = 1.into();
        store.begin(m, "restore", "a.txt", restore).await.unwrap();
        store.flush().await.unwrap();
    }
    w.reset_stats().await;
    let d = w.start().await;
    settled(&d).await;
    let stats = w.stats().await;
    assert_eq!(uploads(&w).await, 0, "{stats}");
    assert_eq!(w.count(COPY).await + w.count(RESTORE).await, 0, "{stats}");
    w.assert_mirrored().await;
    w.assert_unique_names().await;
    assert_eq!(w.versions("a.txt").await.len(), 3, "no extra version");
    d.stop().await;
}

/// Duplicates in one batch (a first pass over a tree with copies in it): each content is
/// sent once, every other file with it is copied from the first, however the uploads
/// overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_in_one_batch_are_sent_once() {
    let w = World::new().await;
    let same = b"vendored library, copied everywhere".repeat(300);
    for i in 0..8 {
        w.write(&format!("p{i}/lib.rs"), &same);
    }
    w.write("other.rs", b"something else");
    let d = w.start().await;
    settled(&d).await;
    let stats = w.stats().await;
    assert_eq!(w.count(MULTIPART).await, 2, "{stats}");
    assert_eq!(w.count(COPY).await, 7, "{stats}");
    w.assert_mirrored().await;
    d.stop().await;
}

/// Gives the remote file `id` new content as another client would (a session with
/// `replace_file_id`), behind the mirror's back.
async fn new_remote_version(w: &World, id: &str, name: &str, body: &[u8]) {
    use crate::world::TOKEN;
    let folder = w.api(&format!("/files/{id}")).await["folder_id"].clone();
    let s: serde_json::Value = w
        .http
        .post(format!("{}/api/v1/uploads", w.url))
        .bearer_auth(TOKEN)
        .json(
            &serde_json::json!({ "share_id": w.share, "folder_id": folder, "file_name": name,
                                   "file_size": body.len(), "replace_file_id": id }),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sid = s["session_id"].as_str().expect("a session").to_string();
    let put = w
        .http
        .put(format!("{}/api/v1/uploads/{sid}/chunks/0", w.url))
        .bearer_auth(TOKEN)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "chunk: {}", put.status());
    let done = w
        .http
        .post(format!("{}/api/v1/uploads/{sid}/complete", w.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(done.status().is_success(), "complete: {}", done.status());
}

/// The checks behind each way: a copy whose source another client changed meanwhile
/// answers with other content (recorded, then our content uploaded over it); a trashed
/// file that was purged answers 404 (the file is uploaded). The remote ends equal to the
/// disk either way, with no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_the_remote_no_longer_has_is_uploaded() {
    use crate::world::TOKEN;
    let w = World::new().await;
    let body = b"the content the store remembers".repeat(20);
    w.write("a.txt", &body);
    w.write("gone.txt", b"to be purged");
    let d = w.start().await;
    in_sync(&w, &d).await;
    let a = w.remote_id("a.txt").await.unwrap();
    new_remote_version(&w, &a, "a.txt", b"changed by someone else").await;
    std::fs::remove_file(w.root.join("gone.txt")).unwrap();
    settled(&d).await;
    let gone = w
        .api(&format!(
            "/folders/{}/children?share_id={}&include_deleted=true",
            w.remote_base_id().await.unwrap(),
            w.share
        ))
        .await["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "gone.txt")
        .map(|i| i["id"].as_str().unwrap().to_string())
        .expect("gone.txt in the trash");
    let purge = w
        .http
        .delete(format!("{}/api/v1/files/{gone}?permanent=true", w.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(purge.status().is_success(), "purge: {}", purge.status());
    w.reset_stats().await;

    w.write("b.txt", &body);
    w.write("gone.txt", b"to be purged");
    settled(&d).await;
    let stats = w.stats().await;
    assert_eq!(w.count(COPY).await, 1, "{stats}");
    assert_eq!(
        w.count(PATCH_FILE).await,
        1,
        "the restore, refused: {stats}"
    );
    assert_eq!(stats["by_status"]["404"], 1, "{stats}");
    // b.txt: our content as a new version of the copy; gone.txt: uploaded afresh.
    assert_eq!(w.count(SESSION_CREATE).await, 1, "{stats}");
    assert_eq!(w.count(MULTIPART).await, 1, "{stats}");
    // (a.txt stays as the other client left it: the mirror does not know of that edit.)
    let remote = w.remote_tree().await;
    assert_eq!(remote["b.txt"], Some(sha256_hex(&body)), "{remote:?}");
    assert_eq!(
        remote["gone.txt"],
        Some(sha256_hex(b"to be purged")),
        "{remote:?}"
    );
    w.assert_unique_names().await;
    d.stop().await;
}
