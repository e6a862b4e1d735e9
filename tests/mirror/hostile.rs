//! Hostile local conditions (issue 17): failures of items that are gone, names that try
//! to speak to the terminal or the log, names that are not UTF-8, edits that hide from
//! size and mtime, hard links. Each test fails without its fix.

use std::time::Duration;

use scaidrive::mirror::{MirrorCmd, MirrorState};

use crate::support::eventually;
use crate::world::{Daemon, World};

/// The paths `scaidrivectl failures` would list (the store's record).
async fn failed_paths(d: &Daemon) -> Vec<String> {
    d.handle
        .ask(MirrorCmd::Failures)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|f| f.path)
        .collect()
}

/// Issue 17 item 6: a failed item that was renamed to a valid name or deleted leaves no
/// failure behind, neither in the event batch that saw it go, nor after a rescan, a
/// retry or a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_of_renamed_or_deleted_items_are_dropped() {
    let w = World::new().await;
    w.write("good.txt", b"fine");
    // The remote rejects a trailing space: permanent failures.
    w.write("renamed later ", b"the remote rejects this name");
    w.write("deleted later ", b"so does it this one");
    w.write("ignored later ", b"and this one");
    let d = w.start().await;
    let s = d.settled().await;
    assert_eq!(s.failures, 3, "{s:?}");
    assert_eq!(failed_paths(&d).await.len(), 3);

    std::fs::rename(w.root.join("renamed later "), w.root.join("renamed.txt")).unwrap();
    std::fs::remove_file(w.root.join("deleted later ")).unwrap();
    eventually(
        "the failures of the renamed and the deleted item to go",
        Duration::from_secs(30),
        Duration::from_millis(100),
        async || failed_paths(&d).await == ["ignored later "],
    )
    .await;
    d.until("one failure counted", |s| s.in_sync() && s.failures == 1)
        .await;
    assert!(w.remote_id("renamed.txt").await.is_some());
    d.stop().await;

    // Made an ignored name while the daemon is down: the start-up pass drops it.
    std::fs::rename(
        w.root.join("ignored later "),
        w.root.join("ignored later.skipme"),
    )
    .unwrap();
    let d = w.start().await;
    let s = d.settled().await;
    assert_eq!(s.failures, 0, "{s:?}");
    assert!(
        failed_paths(&d).await.is_empty(),
        "{:?}",
        failed_paths(&d).await
    );
    d.handle.ask(MirrorCmd::Retry).await;
    let s = d.settled().await;
    assert_eq!((s.state, s.failures), (MirrorState::Idle, 0), "{s:?}");
    assert!(failed_paths(&d).await.is_empty());
    w.assert_mirrored().await;
    d.stop().await;
}
