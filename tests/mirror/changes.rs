//! Live changes: edits, atomic saves, renames and moves, deletes, recreations.

use std::time::Duration;

use crate::world::World;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_become_new_versions_of_the_same_file() {
    let w = World::new().await;
    w.write("doc.txt", b"version one");
    let d = w.start().await;
    d.settled().await;
    let id = w.remote_id("doc.txt").await.unwrap();
    w.write("doc.txt", b"version two, longer");
    d.settled().await;
    w.assert_mirrored().await;
    assert_eq!(
        w.remote_id("doc.txt").await.unwrap(),
        id,
        "same remote file"
    );
    assert_eq!(w.versions("doc.txt").await.len(), 2);

    // A touch (same bytes, new mtime) costs no upload.
    w.reset_stats().await;
    let f = std::fs::File::options()
        .append(true)
        .open(w.root.join("doc.txt"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    d.settled().await;
    assert_eq!(
        w.count("POST /api/v1/uploads").await + w.count("POST /api/v1/files").await,
        0
    );
    assert_eq!(w.versions("doc.txt").await.len(), 2);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editor_atomic_save_replaces_content() {
    let w = World::new().await;
    w.write("report.txt", b"draft");
    let d = w.start().await;
    d.settled().await;
    // Write a temp file, then rename it over the original (vim, gedit, most editors).
    w.write("report.txt.tmp", b"final text");
    std::fs::rename(w.root.join("report.txt.tmp"), w.root.join("report.txt")).unwrap();
    d.settled().await;
    w.assert_mirrored().await;
    assert_eq!(
        w.versions("report.txt").await.len(),
        2,
        "a new version, not a new file"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renaming_a_directory_of_1000_files_is_one_call() {
    let w = World::new().await;
    for i in 0..1000 {
        w.write(&format!("big/f{i:04}"), format!("{i}").as_bytes());
    }
    let d = w.start().await;
    d.settled().await;
    w.reset_stats().await;
    std::fs::rename(w.root.join("big"), w.root.join("renamed")).unwrap();
    d.settled().await;
    let s = w.stats().await;
    assert_eq!(s["by_route"]["PATCH /api/v1/folders/{folder_id}"], 1, "{s}");
    assert_eq!(s["requests_total"], 1, "only the rename: {s}");
    w.assert_mirrored().await;

    // Moving it into another folder is one move call.
    std::fs::create_dir(w.root.join("parent")).unwrap();
    d.settled().await;
    w.reset_stats().await;
    std::fs::rename(w.root.join("renamed"), w.root.join("parent/renamed")).unwrap();
    d.settled().await;
    let s = w.stats().await;
    assert_eq!(
        s["by_route"]["POST /api/v1/folders/{folder_id}/move"], 1,
        "{s}"
    );
    assert_eq!(s["requests_total"], 1, "only the move: {s}");
    w.assert_mirrored().await;
    d.stop().await;
}

/// A plain `mv` is atomic, so it does not wait out the quiet period (DESIGN.md's debounce
/// exists for files still being written). With a 10-minute quiet period, a folder rename and a
/// file rename reach the remote while a write made at the same moment is still held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kernel_rename_skips_the_quiet_period_a_write_does_not() {
    let w = World::new().await;
    for i in 0..50 {
        w.write(&format!("dir/f{i:02}"), format!("{i}").as_bytes());
    }
    w.write("one.txt", b"one");
    let mut m = w.mirror_config();
    m.quiet_period_ms = 600_000;
    m.max_delay_secs = 600;
    let d = w.start_with(m).await;
    d.settled().await;
    let (dir_id, file_id) = (
        w.remote_id("dir").await.unwrap(),
        w.remote_id("one.txt").await.unwrap(),
    );
    w.reset_stats().await;
    std::fs::rename(w.root.join("dir"), w.root.join("renamed")).unwrap();
    std::fs::rename(w.root.join("one.txt"), w.root.join("uno.txt")).unwrap();
    w.write("held.txt", b"written with the renames");
    let waited = tokio::time::timeout(Duration::from_secs(60), async {
        while w.remote_id("renamed").await.is_none() || w.remote_id("uno.txt").await.is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "renames not mirrored: {}",
        w.stats().await["by_route"]
    );
    assert_eq!(
        w.remote_id("renamed").await.unwrap(),
        dir_id,
        "moved, not re-created"
    );
    assert_eq!(
        w.remote_id("uno.txt").await.unwrap(),
        file_id,
        "moved, not re-uploaded"
    );
    assert!(w.remote_id("renamed/f07").await.is_some());
    assert_eq!(
        w.remote_id("held.txt").await,
        None,
        "the write waits out its quiet period"
    );
    let s = w.stats().await;
    assert_eq!(
        w.count("POST /api/v1/uploads").await + w.count("POST /api/v1/files").await,
        0,
        "{s}"
    );
    assert!(!d.handle.status().in_sync(), "held.txt still pending");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_rename_and_move_keep_the_remote_file() {
    let w = World::new().await;
    w.write("a/one.txt", b"one");
    std::fs::create_dir_all(w.root.join("b")).unwrap();
    let d = w.start().await;
    d.settled().await;
    let id = w.remote_id("a/one.txt").await.unwrap();
    std::fs::rename(w.root.join("a/one.txt"), w.root.join("b/uno.txt")).unwrap();
    d.settled().await;
    w.assert_mirrored().await;
    assert_eq!(
        w.remote_id("b/uno.txt").await.unwrap(),
        id,
        "moved, not re-uploaded"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_go_to_the_trash_or_are_kept() {
    let w = World::new().await;
    w.write("gone.txt", b"bye");
    w.write("dir/inner.txt", b"inner");
    let d = w.start().await;
    d.settled().await;
    std::fs::remove_file(w.root.join("gone.txt")).unwrap();
    std::fs::remove_dir_all(w.root.join("dir")).unwrap();
    d.settled().await;
    w.assert_mirrored().await;
    let mut trashed = w.trashed().await;
    trashed.sort();
    assert_eq!(trashed, ["dir", "gone.txt"], "soft-deleted, restorable");
    d.stop().await;

    let mut keep = w.mirror_config();
    keep.delete = scaidrive::config::DeleteMode::Keep;
    w.write("kept.txt", b"stay");
    let d = w.start_with(keep).await;
    d.settled().await;
    std::fs::remove_file(w.root.join("kept.txt")).unwrap();
    d.settled().await;
    assert!(
        w.remote_id("kept.txt").await.is_some(),
        "keep mode leaves the remote file"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_then_recreate_is_a_new_version() {
    let w = World::new().await;
    w.write("x.txt", b"first");
    let d = w.start().await;
    d.settled().await;
    let id = w.remote_id("x.txt").await.unwrap();
    std::fs::remove_file(w.root.join("x.txt")).unwrap();
    w.write("x.txt", b"second life");
    d.settled().await;
    w.assert_mirrored().await;
    assert_eq!(w.remote_id("x.txt").await.unwrap(), id);
    assert_eq!(w.versions("x.txt").await.len(), 2);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_appended_to_while_uploading_ends_equal() {
    let w = World::new().await;
    let d = w.start().await;
    d.settled().await;
    let path = w.root.join("growing.log");
    let writer = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut f = std::fs::File::create(&path).unwrap();
        for i in 0..40 {
            f.write_all(&vec![b'a' + (i % 26) as u8; 64 * 1024])
                .unwrap();
            f.sync_all().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    });
    writer.await.unwrap();
    d.settled().await;
    w.assert_mirrored().await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_made_while_stopped_are_picked_up_and_renames_are_moves() {
    let w = World::new().await;
    for i in 0..20 {
        w.write(&format!("photos/p{i}.jpg"), format!("photo {i}").as_bytes());
    }
    w.write("edit.txt", b"before");
    w.write("delete.txt", b"doomed");
    let d = w.start().await;
    d.settled().await;
    d.stop().await;

    std::fs::rename(w.root.join("photos"), w.root.join("pictures")).unwrap();
    w.write("edit.txt", b"after the restart");
    std::fs::remove_file(w.root.join("delete.txt")).unwrap();
    w.write("new.txt", b"added offline");
    w.reset_stats().await;
    let d = w.start().await;
    d.settled().await;
    let s = w.stats().await;
    assert_eq!(
        s["by_route"]["PATCH /api/v1/folders/{folder_id}"], 1,
        "the offline rename is one rename: {s}"
    );
    assert_eq!(
        s["by_route"]["POST /api/v1/files"], 1,
        "only new.txt is uploaded as a new file: {s}"
    );
    w.assert_mirrored().await;
    d.stop().await;
}
