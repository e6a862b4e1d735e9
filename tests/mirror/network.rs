//! Network and FUSE filesystems below a mirror root (issue 20): their changes made
//! elsewhere raise no inotify event here, so the daemon finds them by `statfs` and polls
//! them. A real FUSE mount (bindfs of a folder outside the root) plays the NAS: a file
//! written to the folder itself is a change "made by another machine" as far as the
//! mount point goes. Needs root, /dev/fuse and bindfs (CI installs it); otherwise a
//! SKIPPED line says why.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use scaidrive::config::WatchMode;
use scaidrive::daemon::RunOptions;

use crate::support::is_root;
use crate::world::{World, converge};

/// A bindfs mount, unmounted on drop.
struct Bind(PathBuf);

impl Bind {
    fn mount(far: &Path, at: &Path) -> Bind {
        Bind::try_mount(far, at).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_mount(far: &Path, at: &Path) -> Result<Bind, String> {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("bindfs").arg(far).arg(at).output().unwrap();
        if !out.status.success() {
            return Err(format!(
                "bindfs {} {}: {}",
                far.display(),
                at.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Bind(at.to_path_buf()))
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn skip_reason() -> Option<&'static str> {
    if !is_root() {
        return Some("needs root to mount");
    }
    if !Path::new("/dev/fuse").exists() {
        return Some("no /dev/fuse");
    }
    if Command::new("bindfs").arg("--version").output().is_err() {
        return Some("bindfs is not installed (apt-get install bindfs)");
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fuse_mount_below_the_root_is_found_and_polled() {
    if let Some(why) = skip_reason() {
        println!("SKIPPED a_fuse_mount_below_the_root_is_found_and_polled: {why}");
        return;
    }
    let w = World::new().await;
    let far = w.dir.path().join("far");
    std::fs::create_dir(&far).unwrap();
    std::fs::write(far.join("a.txt"), b"on the share from the start").unwrap();
    w.write("local.txt", b"local");
    // A container may have /dev/fuse and still refuse FUSE mounts: that is the machine's
    // limit, said as such (the first mount decides; a later one must work).
    let _nas = match Bind::try_mount(&far, &w.root.join("nas")) {
        Ok(b) => b,
        Err(e) => {
            println!(
                "SKIPPED a_fuse_mount_below_the_root_is_found_and_polled: cannot mount FUSE here: {e}"
            );
            return;
        }
    };

    // Events alone: a write on the far side is never seen while the mirror says in sync.
    let mut m = w.mirror_config();
    m.watch = WatchMode::Events;
    m.poll_interval_secs = 1;
    let d = w
        .start_config(w.config_with(m.clone()), RunOptions::default())
        .await;
    converge(&w, &d).await;
    assert!(d.handle.status().polled.is_empty());
    std::fs::write(far.join("b.txt"), b"written by another machine").unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = d.settled().await;
    assert!(s.in_sync(), "{s:?}");
    assert!(
        w.remote_id("nas/b.txt").await.is_none(),
        "inotify saw a change on the far side of a FUSE mount"
    );
    d.stop().await;

    // auto: the mount is found by statfs and polled; the next far-side write is mirrored.
    m.watch = WatchMode::Auto;
    let d = w
        .start_config(w.config_with(m.clone()), RunOptions::default())
        .await;
    converge(&w, &d).await;
    let polled = d.handle.status().polled;
    assert_eq!(
        polled,
        ["nas (fuse: changes made by other machines raise no events)"]
    );
    std::fs::write(far.join("c.txt"), b"written by another machine, polled").unwrap();
    std::fs::remove_file(far.join("a.txt")).unwrap();
    converge(&w, &d).await;
    assert!(w.remote_id("nas/c.txt").await.is_some());
    assert!(w.remote_id("nas/a.txt").await.is_none());

    // A second mount appearing while the daemon runs is found within a root check.
    let far2 = w.dir.path().join("far2");
    std::fs::create_dir(&far2).unwrap();
    let _nas2 = Bind::mount(&far2, &w.root.join("nas2"));
    let s = d
        .until("the new mount to be polled", |s| s.polled.len() == 2)
        .await;
    assert!(s.polled[1].starts_with("nas2 (fuse"), "{:?}", s.polled);
    std::fs::write(far2.join("d.txt"), b"on the second share").unwrap();
    converge(&w, &d).await;
    assert!(w.remote_id("nas2/d.txt").await.is_some());
    w.assert_mirrored().await;
    d.stop().await;
}

/// Unmounts `at` now (the mount's drop only unmounts lazily, at the end of the test).
fn unmount(at: &Path) {
    let st = Command::new("umount").arg(at).status().unwrap();
    assert!(st.success(), "umount {}", at.display());
}

async fn rescan(d: &crate::world::Daemon) {
    d.handle.ask(scaidrive::mirror::MirrorCmd::Rescan).await;
}

/// Waits until `rel` is on the remote (`converge` does not apply: while a mount is gone
/// the remote keeps what the local root no longer shows).
async fn until_remote(w: &World, d: &crate::world::Daemon, rel: &str) {
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while w.remote_id(rel).await.is_none() {
        assert!(
            std::time::Instant::now() < until,
            "{rel} never reached the remote: {:?}",
            d.handle.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An unmounted NAS leaves an empty directory (or, after an automounter, none): what was
/// mirrored from it is unknown, not deleted, with the daemon running, after a restart, in
/// every watch mode, until it is mounted again or the operator says it is gone for good.
/// Few enough items that the mass-delete guard does not step in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmounted_mount_below_the_root_deletes_nothing_remotely() {
    if let Some(why) = skip_reason() {
        println!("SKIPPED an_unmounted_mount_below_the_root_deletes_nothing_remotely: {why}");
        return;
    }
    let w = World::new().await;
    let far = w.dir.path().join("far");
    std::fs::create_dir_all(far.join("sub")).unwrap();
    std::fs::write(far.join("a.txt"), b"on the share").unwrap();
    std::fs::write(far.join("sub/b.txt"), b"deeper on the share").unwrap();
    for i in 0..20 {
        w.write(&format!("local{i}.txt"), b"local");
    }
    let nas_at = w.root.join("nas");
    let nas = match Bind::try_mount(&far, &nas_at) {
        Ok(b) => b,
        Err(e) => {
            println!(
                "SKIPPED an_unmounted_mount_below_the_root_deletes_nothing_remotely: cannot mount FUSE here: {e}"
            );
            return;
        }
    };
    let mut m = w.mirror_config();
    m.poll_interval_secs = 1;
    let d = w
        .start_config(w.config_with(m.clone()), RunOptions::default())
        .await;
    converge(&w, &d).await;
    let on_nas = ["nas", "nas/a.txt", "nas/sub", "nas/sub/b.txt"];
    for p in on_nas {
        assert!(w.remote_id(p).await.is_some(), "{p} mirrored");
    }

    // Unmounted while the daemon runs (auto: the mount change starts a full pass at once).
    unmount(&nas_at);
    let s = d
        .until("the unmount to show", |s| !s.unmounted.is_empty())
        .await;
    assert_eq!(s.unmounted, ["nas (was fuse)"]);
    // A file written into the bare mount point is hidden by the mount when it is back: it
    // is not uploaded. The rest of the root is still mirrored (written after it, so once
    // that is remote the batch that saw the first is done).
    std::fs::write(nas_at.join("underneath.txt"), b"shadowed").unwrap();
    w.write("after.txt", b"the rest is still mirrored");
    until_remote(&w, &d, "after.txt").await;
    rescan(&d).await;
    d.settled().await;
    for p in on_nas {
        assert!(w.remote_id(p).await.is_some(), "{p} kept while unmounted");
    }
    assert!(w.remote_id("nas/underneath.txt").await.is_none());
    d.stop().await;

    // A restart while it is unmounted, with events only: the start-up pass deletes nothing
    // and uploads nothing from the bare mount point.
    m.watch = WatchMode::Events;
    let d = w
        .start_config(w.config_with(m.clone()), RunOptions::default())
        .await;
    let s = d.settled().await;
    assert_eq!(s.unmounted, ["nas (was fuse)"], "{s:?}");
    assert!(w.remote_id("nas/underneath.txt").await.is_none());
    for p in on_nas {
        assert!(w.remote_id(p).await.is_some(), "{p} kept after a restart");
    }
    d.stop().await;
    std::fs::remove_file(nas_at.join("underneath.txt")).unwrap();

    // The mount point removed too (as an automounter does): still nothing deleted, and
    // status still says why.
    std::fs::remove_dir(&nas_at).unwrap();
    let d = w
        .start_config(w.config_with(m.clone()), RunOptions::default())
        .await;
    let s = d.settled().await;
    assert_eq!(s.unmounted, ["nas (was fuse)"], "{s:?}");
    for p in on_nas {
        assert!(w.remote_id(p).await.is_some(), "{p} kept after a restart");
    }
    assert!(w.trashed().await.is_empty(), "{:?}", w.trashed().await);
    d.stop().await;

    // Mounted again: mirrored as before, with the change made on the share meanwhile.
    drop(nas);
    std::fs::write(far.join("c.txt"), b"added while unmounted").unwrap();
    let nas = Bind::mount(&far, &nas_at);
    m.watch = WatchMode::Auto;
    let d = w
        .start_config(w.config_with(m.clone()), RunOptions::default())
        .await;
    converge(&w, &d).await;
    assert!(d.handle.status().unmounted.is_empty());
    assert!(w.remote_id("nas/c.txt").await.is_some());
    w.assert_mirrored().await;

    // Gone for good: the operator says so, and the folder is mirrored as it is.
    unmount(&nas_at);
    drop(nas);
    d.until("the unmount to show", |s| !s.unmounted.is_empty())
        .await;
    assert!(w.remote_id("nas/a.txt").await.is_some());
    d.handle
        .ask(|reply| scaidrive::mirror::MirrorCmd::Resume {
            allow_deletes: true,
            reply,
        })
        .await;
    converge(&w, &d).await;
    assert!(d.handle.status().unmounted.is_empty());
    assert!(w.remote_id("nas/a.txt").await.is_none());
    assert!(w.remote_id("nas").await.is_some(), "the empty mount point");
    w.assert_mirrored().await;
    d.stop().await;
}

/// With `remote_extras = "trash"`, what a colleague adds below a mount point that is not
/// mounted is left alone (the local side is unknown there), while an item they add
/// elsewhere is trashed as a strict mirror should.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_mirror_leaves_others_items_below_an_unmounted_mount_alone() {
    const NAME: &str = "a_strict_mirror_leaves_others_items_below_an_unmounted_mount_alone";
    if let Some(why) = skip_reason() {
        println!("SKIPPED {NAME}: {why}");
        return;
    }
    let w = World::new().await;
    let far = w.dir.path().join("far");
    std::fs::create_dir(&far).unwrap();
    std::fs::write(far.join("a.txt"), b"on the share").unwrap();
    w.write("local.txt", b"local");
    let nas_at = w.root.join("nas");
    let _nas = match Bind::try_mount(&far, &nas_at) {
        Ok(b) => b,
        Err(e) => {
            println!("SKIPPED {NAME}: cannot mount FUSE here: {e}");
            return;
        }
    };
    let mut m = w.mirror_config();
    m.remote_extras = scaidrive::config::RemoteExtras::Trash;
    m.remote_poll_secs = 1;
    let d = w
        .start_config(w.config_with(m.clone()), RunOptions::default())
        .await;
    converge(&w, &d).await;
    unmount(&nas_at);
    d.until("the unmount to show", |s| !s.unmounted.is_empty())
        .await;

    let c = crate::drift::colleague(&w).await;
    let nas_id = w.remote_id("nas").await.unwrap();
    let base_id = w.remote_base_id().await.unwrap();
    c.upload(&w, &nas_id, "theirs.txt", b"added on the share")
        .await;
    c.upload(&w, &base_id, "stray.txt", b"added at the root")
        .await;
    // The stray one is trashed by the same or a later read of the log than theirs.txt.
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while w.remote_id("stray.txt").await.is_some() {
        assert!(
            std::time::Instant::now() < until,
            "stray.txt never trashed: {:?}",
            d.handle.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(w.remote_id("nas/theirs.txt").await.is_some());
    assert!(w.remote_id("nas/a.txt").await.is_some());
    d.stop().await;
}
