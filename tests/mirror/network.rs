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
