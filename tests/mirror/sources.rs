//! The mirror's handling of local changes against each event source (issue 20): inotify,
//! polling (`watch = "poll"`: no events at all, the tree is stat'ed every second here, so
//! a rename is only two scan differences), and inotify with every rename reported as an
//! unpaired removal and creation, as macOS's FSEvents and kqueue report them
//! (`watch = "events-unpaired"`). With each: the remote converges, a renamed
//! file or folder is one remote move with no upload, and no delete goes out for an item
//! that was only moved.

use scaidrive::config::WatchMode;
use scaidrive::daemon::RunOptions;

use crate::world::{World, converge};

async fn uploads(w: &World) -> u64 {
    w.count("POST /api/v1/uploads").await + w.count("POST /api/v1/files").await
}

async fn deletes(w: &World) -> u64 {
    w.count("DELETE /api/v1/files/{file_id}").await
        + w.count("DELETE /api/v1/folders/{folder_id}").await
}

async fn changes_converge_with(mode: WatchMode) {
    let w = World::new().await;
    let outside = w.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    w.write("docs/a.txt", b"alpha");
    w.write("docs/b.txt", b"bravo");
    w.write("keep/k.txt", b"kilo");
    for i in 0..30 {
        w.write(&format!("bulk/f{i:02}.txt"), format!("bulk {i}").as_bytes());
    }
    let mut m = w.mirror_config();
    m.watch = mode;
    m.poll_interval_secs = 1;
    let d = w
        .start_config(w.config_with(m), RunOptions::default())
        .await;
    converge(&w, &d).await;
    let status = d.handle.status();
    assert_eq!(
        !status.polled.is_empty(),
        mode == WatchMode::Poll,
        "{mode:?}: {:?}",
        status.polled
    );

    // Create and edit.
    w.write("new.txt", b"new file");
    w.write("docs/a.txt", b"alpha, second version");
    converge(&w, &d).await;
    assert_eq!(w.versions("docs/a.txt").await.len(), 2, "{mode:?}");

    // An editor's atomic save: a new version of the same file.
    let b = w.remote_id("docs/b.txt").await.unwrap();
    w.write("docs/b.txt.tmp", b"bravo, saved atomically");
    std::fs::rename(w.root.join("docs/b.txt.tmp"), w.root.join("docs/b.txt")).unwrap();
    converge(&w, &d).await;
    assert_eq!(w.remote_id("docs/b.txt").await.as_deref(), Some(b.as_str()));
    assert_eq!(w.versions("docs/b.txt").await.len(), 2, "{mode:?}");

    // A file renamed and moved: one move, no upload, no delete.
    let id = w.remote_id("new.txt").await.unwrap();
    w.reset_stats().await;
    std::fs::rename(w.root.join("new.txt"), w.root.join("docs/renamed.txt")).unwrap();
    converge(&w, &d).await;
    assert_eq!(
        w.remote_id("docs/renamed.txt").await.as_deref(),
        Some(id.as_str()),
        "{mode:?}: the same remote file"
    );
    assert_eq!((uploads(&w).await, deletes(&w).await), (0, 0), "{mode:?}");

    // A folder renamed: one move, no upload, no delete.
    let id = w.remote_id("docs").await.unwrap();
    w.reset_stats().await;
    std::fs::rename(w.root.join("docs"), w.root.join("papers")).unwrap();
    converge(&w, &d).await;
    assert_eq!(
        w.remote_id("papers").await.as_deref(),
        Some(id.as_str()),
        "{mode:?}: the same remote folder"
    );
    assert_eq!((uploads(&w).await, deletes(&w).await), (0, 0), "{mode:?}");
    assert_eq!(
        w.count("PATCH /api/v1/folders/{folder_id}").await,
        1,
        "{mode:?}: one call"
    );

    // Moved out of the root (a delete remotely), then another folder moved in.
    std::fs::rename(w.root.join("keep"), outside.join("keep")).unwrap();
    converge(&w, &d).await;
    assert!(w.remote_id("keep").await.is_none(), "{mode:?}");
    std::fs::create_dir(outside.join("incoming")).unwrap();
    std::fs::write(outside.join("incoming/i.txt"), b"moved in").unwrap();
    std::fs::rename(outside.join("incoming"), w.root.join("incoming")).unwrap();
    converge(&w, &d).await;

    // A delete, and a folder of 30 files deleted: one call for the folder.
    w.reset_stats().await;
    std::fs::remove_file(w.root.join("papers/b.txt")).unwrap();
    std::fs::remove_dir_all(w.root.join("bulk")).unwrap();
    converge(&w, &d).await;
    assert_eq!(deletes(&w).await, 2, "{mode:?}: the file and the folder");
    w.assert_mirrored().await;
    w.assert_unique_names().await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_converge_with_inotify() {
    changes_converge_with(WatchMode::Events).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_converge_with_polling() {
    changes_converge_with(WatchMode::Poll).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_converge_with_unpaired_renames() {
    changes_converge_with(WatchMode::EventsUnpaired).await;
}
