//! A local folder delete with `remote_extras = "keep"` (issue 18): a colleague added a
//! file to the mirrored folder remotely; deleting the folder locally trashes what the
//! mirror holds in it and leaves the folder holding their file. The daemon knows their
//! items from the change log (0 listings) or, with the log off, lists the folder once and
//! asks who created what the store does not know (a killed run's upload is ours).
//! With `"trash"` the folder goes to the trash in one call, as before.

use std::collections::BTreeMap;

use scaidrive::config::RemoteExtras;
use serde_json::Value;

use crate::drift::colleague;
use crate::world::World;

fn seed(w: &World) {
    w.write("d/a.txt", b"a in d");
    w.write("d/b.txt", b"b in d");
    w.write("keep.txt", b"stays");
}

/// Requests per route since the last reset.
async fn routes(w: &World) -> (BTreeMap<String, u64>, u64, Value) {
    let stats = w.stats().await;
    let by: BTreeMap<String, u64> = serde_json::from_value(stats["by_route"].clone()).unwrap();
    let units = stats["units_total"].as_u64().unwrap();
    (by, units, stats)
}

const DELETE_FILE: &str = "DELETE /api/v1/files/{file_id}";
const DELETE_FOLDER: &str = "DELETE /api/v1/folders/{folder_id}";
const LIST: &str = "GET /api/v1/folders/{folder_id}/children";
const CHANGES: &str = "GET /api/v1/sync/changes";
const CURSOR: &str = "POST /api/v1/sync/cursor";

/// Deletes `rel` locally and waits until the mirror holds only `keep.txt`.
async fn delete_local(w: &World, d: &crate::world::Daemon, rel: &str) {
    std::fs::remove_dir_all(w.root.join(rel)).unwrap();
    d.until(&format!("{rel} deleted"), |s| s.in_sync() && s.entries == 1)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_delete_keeps_others_items_known_from_the_log() {
    let w = World::new().await;
    seed(&w);
    w.write("d/sub/c.txt", b"c in d/sub");
    w.write("e/f.txt", b"only ours");
    let mut m = w.mirror_config();
    m.remote_poll_secs = 3600;
    let d = w.start_with(m).await;
    d.settled().await;
    let ids = w.remote_ids().await;
    let c = colleague(&w).await;
    let theirs = c.upload(&w, &ids["d"], "theirs.txt", b"theirs").await;
    w.reset_stats().await;

    std::fs::remove_dir_all(w.root.join("e")).unwrap();
    delete_local(&w, &d, "d").await;
    let (by, units, stats) = routes(&w).await;
    let n = |r: &str| by.get(r).copied().unwrap_or(0);
    // From the log: no listing. Ours in d trashed (two files, the subfolder in one
    // call); e holds nothing of theirs: one call for the folder.
    assert_eq!(n(LIST), 0, "{stats}");
    assert_eq!(n(DELETE_FILE), 2, "{stats}");
    assert_eq!(n(DELETE_FOLDER), 2, "{stats}");
    assert!(
        n(CHANGES) >= 1,
        "the log is read before the delete: {stats}"
    );
    assert_eq!(
        units,
        2 * 4 + 2 * (n(CHANGES) + n(CURSOR)),
        "four deletes and the log reads, nothing else: {stats}"
    );
    // Their file is live, in the folder, which is live; ours are in the trash.
    let f = w.api_live(&format!("/files/{theirs}")).await;
    assert!(f.is_some(), "their file is still live");
    assert_eq!(
        w.remote_id("d/theirs.txt").await.as_deref(),
        Some(theirs.as_str())
    );
    for p in ["d/a.txt", "d/b.txt", "d/sub", "e"] {
        assert_eq!(w.remote_id(p).await, None, "{p} is trashed");
    }
    let mut remote = w.remote_tree().await;
    assert!(remote.remove("d/theirs.txt").is_some());
    assert!(remote.remove("d").is_some());
    assert_eq!(remote, w.local_tree());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_delete_lists_once_when_the_log_is_off() {
    let w = World::new().await;
    seed(&w);
    // The change log is not followed (remote_poll_secs = 0, the World's default).
    let d = w.start().await;
    d.settled().await;
    let ids = w.remote_ids().await;
    let c = colleague(&w).await;
    let theirs = c.upload(&w, &ids["d"], "theirs.txt", b"theirs").await;
    w.reset_stats().await;

    delete_local(&w, &d, "d").await;
    let (by, units, stats) = routes(&w).await;
    // One listing of d (2 units), who created the file it does not know (the daemon's
    // user once, the file's metadata: 1 unit each), two file deletes (2 each); the folder
    // stays.
    assert_eq!(by.get(LIST), Some(&1), "{stats}");
    assert_eq!(by.get("GET /api/v1/users/me"), Some(&1), "{stats}");
    assert_eq!(by.get("GET /api/v1/files/{file_id}"), Some(&1), "{stats}");
    assert_eq!(by.get(DELETE_FILE), Some(&2), "{stats}");
    assert_eq!(by.get(DELETE_FOLDER), None, "{stats}");
    assert_eq!(stats["requests_total"].as_u64(), Some(5), "{stats}");
    assert_eq!(units, 8, "{stats}");
    assert!(w.api_live(&format!("/files/{theirs}")).await.is_some());
    let mut remote = w.remote_tree().await;
    assert!(remote.remove("d/theirs.txt").is_some());
    assert!(remote.remove("d").is_some());
    assert_eq!(remote, w.local_tree());
    // Nothing of ours is left to retry: no further request.
    w.reset_stats().await;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(w.stats().await["requests_total"].as_u64(), Some(0));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mirror_trashes_the_folder_in_one_call() {
    let w = World::new().await;
    seed(&w);
    let mut m = w.mirror_config();
    m.remote_extras = RemoteExtras::Trash;
    let d = w.start_with(m).await;
    d.settled().await;
    let ids = w.remote_ids().await;
    let c = colleague(&w).await;
    let theirs = c.upload(&w, &ids["d"], "theirs.txt", b"theirs").await;
    w.reset_stats().await;

    delete_local(&w, &d, "d").await;
    let (by, units, stats) = routes(&w).await;
    assert_eq!(by.get(DELETE_FOLDER), Some(&1), "{stats}");
    assert_eq!(stats["requests_total"].as_u64(), Some(1), "{stats}");
    assert_eq!(units, 2, "{stats}");
    // Soft delete: their file went to the trash with the folder, not away for good.
    assert_eq!(w.api_live(&format!("/files/{theirs}")).await, None);
    assert_eq!(w.remote_tree().await, w.local_tree());
    d.stop().await;
}

/// The colleague renames our folder `d/sub` and puts a file of theirs in it; returns the
/// file's id. Counters are reset afterwards.
async fn rename_sub_and_add_theirs(w: &World, ids: &BTreeMap<String, String>) -> String {
    let c = colleague(w).await;
    c.send(
        w,
        reqwest::Method::PATCH,
        &format!("/folders/{}", ids["d/sub"]),
        Some(serde_json::json!({ "name": "renamed-by-them" })),
    )
    .await;
    let theirs = c.upload(w, &ids["d/sub"], "theirs.txt", b"theirs").await;
    w.reset_stats().await;
    theirs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subfolder_they_renamed_and_added_to_is_kept_with_theirs() {
    let w = World::new().await;
    seed(&w);
    w.write("d/sub/c.txt", b"c in d/sub");
    // The change log is not followed (the World's default): the folder is listed, and the
    // colleague's rename of `d/sub` is not put back before the delete.
    let d = w.start().await;
    d.settled().await;
    let ids = w.remote_ids().await;
    let theirs = rename_sub_and_add_theirs(&w, &ids).await;

    delete_local(&w, &d, "d").await;
    // Their file was in our folder under the name they gave it: that folder, and d, stay
    // (with their file live in them); what is ours alone goes to the trash.
    let f = w.api_live(&format!("/files/{theirs}")).await;
    assert!(f.is_some(), "their file is still live");
    assert!(
        w.api_live(&format!("/folders/{}", ids["d/sub"]))
            .await
            .is_some(),
        "the folder holding their file is kept"
    );
    let (by, _, stats) = routes(&w).await;
    let n = |r: &str| by.get(r).copied().unwrap_or(0);
    // d/a.txt, d/b.txt and d/sub/c.txt trashed one by one; no folder trashed.
    assert_eq!(n(DELETE_FILE), 3, "{stats}");
    assert_eq!(n(DELETE_FOLDER), 0, "{stats}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_log_a_renamed_subfolder_of_ours_is_found_by_listing() {
    let w = World::new().await;
    seed(&w);
    w.write("d/sub/c.txt", b"c in d/sub");
    let mut m = w.mirror_config();
    m.remote_poll_secs = 3600;
    let d = w.start_with(m).await;
    d.settled().await;
    let ids = w.remote_ids().await;
    let theirs = rename_sub_and_add_theirs(&w, &ids).await;

    delete_local(&w, &d, "d").await;
    // The log names their file d/renamed-by-them/theirs.txt, in a folder the mirror does
    // not hold at that path: the folder is listed (by ids) instead of trusting the path.
    let (by, _, stats) = routes(&w).await;
    let n = |r: &str| by.get(r).copied().unwrap_or(0);
    assert!(n(LIST) >= 1, "{stats}");
    assert_eq!(n(DELETE_FILE), 3, "{stats}");
    assert_eq!(n(DELETE_FOLDER), 0, "{stats}");
    assert!(w.api_live(&format!("/files/{theirs}")).await.is_some());
    assert!(
        w.api_live(&format!("/folders/{}", ids["d/sub"]))
            .await
            .is_some(),
        "the folder holding their file is kept"
    );
    d.stop().await;
}
