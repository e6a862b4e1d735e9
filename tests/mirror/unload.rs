//! A big mirror drops its in-memory entries while idle (`unload_idle_secs`,
//! `unload_min_entries`; issue 20 item 4) and reads them back from the state database when
//! work comes. Here the threshold is lowered to this small tree: every kind of work that
//! follows an unload (local changes, someone else's change in the log) must come out as it
//! would with the entries loaded: a folder rename is one move, nothing is uploaded twice,
//! nothing is listed. An idle read of the change log must not load them.

use std::time::Duration;

use reqwest::Method;

use crate::drift::colleague;
use crate::world::{Daemon, World};

async fn unloaded(d: &Daemon, entries: usize) {
    let s = d
        .until("entries unloaded while in sync", |s| {
            !s.entries_loaded && s.in_sync() && s.entries == entries
        })
        .await;
    assert_eq!(s.failures, 0, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_mirror_unloads_its_entries_and_syncs_the_same_after() {
    let w = World::new().await;
    w.write("a/x.txt", b"x");
    w.write("a/sub/y.txt", b"y");
    w.write("top.txt", b"top");
    w.write("gone.txt", b"to be deleted");
    let mut m = w.mirror_config();
    m.unload_idle_secs = 1;
    // 4 files and 2 folders: at the threshold.
    m.unload_min_entries = 6;
    m.remote_poll_secs = 1;
    let d = w.start_with(m).await;
    d.settled().await;
    w.assert_mirrored().await;
    let ids = w.remote_ids().await;
    unloaded(&d, 6).await;

    // The change log is read every second while idle; with nothing in it the entries stay
    // unloaded (a status sample every 50 ms for 3 s).
    for _ in 0..60 {
        let s = d.handle.status();
        assert!(
            !s.entries_loaded,
            "an idle log read loaded the entries: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w.reset_stats().await;

    // Local changes while unloaded: a folder renamed, a file edited, one deleted, one added.
    std::fs::rename(w.root.join("a"), w.root.join("b")).unwrap();
    w.write("top.txt", b"top, edited");
    std::fs::remove_file(w.root.join("gone.txt")).unwrap();
    w.write("new.txt", b"new");
    // The batch reads the entries back (the unload waits out a second of idleness)...
    d.until("entries read back", |s| s.entries_loaded).await;
    // ...and once done and idle drops them again: b, b/sub, b/x.txt, b/sub/y.txt,
    // top.txt, new.txt.
    unloaded(&d, 6).await;
    let stats = w.stats().await["by_route"].clone();
    let n = |route: &str| stats[route].as_u64().unwrap_or(0);
    // The rename is one PATCH of the folder, the delete one DELETE, the new file one
    // upload and the edit one upload session (a new version of the same file): nothing
    // else is uploaded, nothing listed.
    assert_eq!(n("PATCH /api/v1/folders/{folder_id}"), 1, "{stats}");
    assert_eq!(n("DELETE /api/v1/files/{file_id}"), 1, "{stats}");
    assert_eq!(n("POST /api/v1/files"), 1, "{stats}");
    assert_eq!(n("POST /api/v1/uploads"), 1, "{stats}");
    assert_eq!(
        n("POST /api/v1/uploads/{session_id}/complete"),
        1,
        "{stats}"
    );
    assert_eq!(n("POST /api/v1/folders"), 0, "{stats}");
    assert_eq!(n("GET /api/v1/folders/{folder_id}/children"), 0, "{stats}");
    w.assert_mirrored().await;
    let after = w.remote_ids().await;
    for (was, now) in [
        ("a", "b"),
        ("a/x.txt", "b/x.txt"),
        ("a/sub/y.txt", "b/sub/y.txt"),
    ] {
        assert_eq!(
            after[now], ids[was],
            "{now} is {was} moved, not a new upload"
        );
    }
    assert_eq!(after["top.txt"], ids["top.txt"], "an edit is a new version");

    // Someone else's change, read from the log while unloaded: put right by id.
    let c = colleague(&w).await;
    w.reset_stats().await;
    c.send(
        &w,
        Method::DELETE,
        &format!("/files/{}", after["top.txt"]),
        None,
    )
    .await;
    d.until("the colleague's delete repaired", |s| {
        s.remote_repairs >= 1 && s.in_sync()
    })
    .await;
    assert_eq!(
        w.stats().await["by_route"]["PATCH /api/v1/files/{file_id}"],
        1
    );
    unloaded(&d, 6).await;
    let stats = w.stats().await["by_route"].clone();
    let n = |route: &str| stats[route].as_u64().unwrap_or(0);
    // Their DELETE, our restore (a PATCH): no upload.
    assert_eq!(n("DELETE /api/v1/files/{file_id}"), 1, "{stats}");
    assert_eq!(n("PATCH /api/v1/files/{file_id}"), 1, "{stats}");
    assert_eq!(n("POST /api/v1/files"), 0, "{stats}");
    assert_eq!(n("POST /api/v1/uploads"), 0, "{stats}");
    w.assert_mirrored().await;
    assert_eq!(w.remote_ids().await, after);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_of_a_big_quiet_mirror_compares_with_the_store_without_loading() {
    let w = World::new().await;
    w.write("a/x.txt", b"x");
    w.write("a/sub/y.txt", b"y");
    w.write("top.txt", b"top");
    w.write("more.txt", b"more");
    let mut m = w.mirror_config();
    // No unload while idle here: only the one at start is looked at.
    m.unload_idle_secs = 3600;
    m.unload_min_entries = 6;
    let d = w.start_with(m.clone()).await;
    let s = d.settled().await;
    // A first sync of a big tree runs without the map (`first_sync_in_slices`).
    assert!(!s.entries_loaded, "{s:?}");
    w.assert_mirrored().await;
    d.stop().await;

    // Restarted with nothing changed: the scan is compared with the store row by row and
    // the entries are never loaded; nothing is sent.
    w.reset_stats().await;
    let d = w.start_with(m.clone()).await;
    let s = d.until("in sync after the restart", |s| s.in_sync()).await;
    assert!(!s.entries_loaded, "{s:?}");
    assert_eq!((s.entries, s.failures), (6, 0), "{s:?}");
    let stats = w.stats().await["by_route"].clone();
    let n = |route: &str| stats[route].as_u64().unwrap_or(0);
    for route in [
        "POST /api/v1/files",
        "POST /api/v1/uploads",
        "POST /api/v1/folders",
        "PATCH /api/v1/files/{file_id}",
        "DELETE /api/v1/files/{file_id}",
        "GET /api/v1/folders/{folder_id}/children",
    ] {
        assert_eq!(n(route), 0, "{route}: {stats}");
    }
    d.stop().await;

    // Edited while stopped: the row-by-row comparison sees it, the pass loads the entries
    // and sends that one file as a new version, nothing else.
    w.write("top.txt", b"edited while the daemon was down");
    w.reset_stats().await;
    let d = w.start_with(m).await;
    let s = d
        .until("in sync after the restart", |s| {
            s.in_sync() && s.files_done >= 1
        })
        .await;
    assert!(s.entries_loaded, "{s:?}");
    let stats = w.stats().await["by_route"].clone();
    let n = |route: &str| stats[route].as_u64().unwrap_or(0);
    assert_eq!(n("POST /api/v1/uploads"), 1, "{stats}");
    assert_eq!(n("POST /api/v1/files"), 0, "{stats}");
    assert_eq!(n("POST /api/v1/folders"), 0, "{stats}");
    w.assert_mirrored().await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_first_sync_runs_slice_by_slice_without_the_map() {
    let w = World::new().await;
    // 5,000 files in 50 folders: 5,050 items, two slices of at most 4,096.
    for i in 0..5_000 {
        w.write(
            &format!("d{:02}/f{i:04}.txt", i % 50),
            format!("file {i}").as_bytes(),
        );
    }
    let mut m = w.mirror_config();
    m.unload_min_entries = 1_000;
    m.unload_idle_secs = 3600;
    let d = w.start_with(m.clone()).await;
    let s = d.settled().await;
    // Each created item went to the store only: the first sync built no map.
    assert!(!s.entries_loaded, "{s:?}");
    assert_eq!((s.entries, s.failures), (5_050, 0), "{s:?}");
    let stats = w.stats().await["by_route"].clone();
    let n = |route: &str| stats[route].as_u64().unwrap_or(0);
    // One create per item, no second try, no listing: the second slice found the
    // folders the first one made in the store.
    assert_eq!(n("POST /api/v1/files"), 5_000, "{stats}");
    assert_eq!(n("POST /api/v1/folders"), 50 + 2, "{stats}");
    assert_eq!(n("POST /api/v1/uploads"), 0, "{stats}");
    assert_eq!(n("GET /api/v1/folders/{folder_id}/children"), 0, "{stats}");
    w.assert_mirrored().await;
    d.stop().await;

    // The restart compares the disk with the store and sends nothing.
    w.reset_stats().await;
    let d = w.start_with(m).await;
    let s = d.until("in sync after the restart", |s| s.in_sync()).await;
    assert!(!s.entries_loaded, "{s:?}");
    let stats = w.stats().await["by_route"].clone();
    let n = |route: &str| stats[route].as_u64().unwrap_or(0);
    assert_eq!(
        n("POST /api/v1/files") + n("POST /api/v1/folders"),
        0,
        "{stats}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_does_not_keep_a_big_mirror_loaded() {
    use std::os::unix::ffi::OsStrExt;
    let w = World::new().await;
    w.write("a.txt", b"a");
    w.write("d/b.txt", b"b");
    // A name the API cannot take: a permanent failure until it is renamed.
    std::fs::write(
        w.root.join(std::ffi::OsStr::from_bytes(b"bad\xff.txt")),
        b"x",
    )
    .unwrap();
    let mut m = w.mirror_config();
    m.unload_idle_secs = 1;
    m.unload_min_entries = 3;
    let d = w.start_with(m.clone()).await;
    let s = d
        .until("unloaded with the failure standing", |s| {
            !s.entries_loaded && s.in_sync() && s.failures == 1 && s.entries == 3
        })
        .await;
    assert_eq!(s.entries, 3);
    d.stop().await;

    // The restart's rescan finds the failing name as it was: no need to read the entries.
    let d = w.start_with(m).await;
    let s = d.until("in sync after the restart", |s| s.in_sync()).await;
    assert!(!s.entries_loaded, "{s:?}");
    assert_eq!((s.entries, s.failures), (3, 1), "{s:?}");
    d.stop().await;
}
