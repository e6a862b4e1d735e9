//! Kernel limits that are machine-wide settings: the inotify event queue and the inotify
//! watch limit. This is its own test binary because cargo runs test binaries one after
//! another, so nothing else of this suite runs while a sysctl is lowered; every setting is
//! restored by a guard when the test ends or fails, and lowered only for as long as the
//! inotify instance under test is being set up (the kernel applies both at that time).
//!
//! Needs root to write /proc/sys/fs/inotify/*; otherwise each test prints a SKIPPED line.

#[path = "../support/mod.rs"]
mod support;
#[allow(dead_code)]
#[path = "../mirror/world.rs"]
mod world;

use std::path::{Path, PathBuf};
use std::time::Duration;

use scaidrive::watch::{IgnoreRules, RescanReason, WatchEvent, Watcher};
use support::Proc;
use world::World;

/// The two tests change machine-wide settings: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const MAX_QUEUED: &str = "/proc/sys/fs/inotify/max_queued_events";
const MAX_WATCHES: &str = "/proc/sys/fs/inotify/max_user_watches";

/// Sets a sysctl and puts the old value back when dropped.
struct Sysctl {
    path: PathBuf,
    old: Option<String>,
}

impl Sysctl {
    /// `None` (after a SKIPPED line) when it cannot be written.
    fn set(test: &str, path: &str, value: u64) -> Option<Sysctl> {
        let old = match std::fs::read_to_string(path) {
            Ok(v) => v.trim().to_string(),
            Err(e) => {
                println!("SKIPPED {test}: cannot read {path}: {e}");
                return None;
            }
        };
        if let Err(e) = std::fs::write(path, value.to_string()) {
            println!("SKIPPED {test}: cannot write {path} (needs root; CI runs as root): {e}");
            return None;
        }
        Some(Sysctl {
            path: path.into(),
            old: Some(old),
        })
    }

    fn restore(&mut self) {
        if let Some(old) = self.old.take() {
            std::fs::write(&self.path, &old)
                .unwrap_or_else(|e| panic!("restoring {}: {e}", self.path.display()));
        }
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        self.restore();
    }
}

/// inotify watches currently held by processes of uid 0 (the limit is per user).
fn watches_in_use() -> u64 {
    let mut n = 0;
    for p in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let status = std::fs::read_to_string(p.path().join("status")).unwrap_or_default();
        if !status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        {
            continue;
        }
        for fd in std::fs::read_dir(p.path().join("fdinfo"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let info = std::fs::read_to_string(fd.path()).unwrap_or_default();
            n += info
                .lines()
                .filter(|l| l.starts_with("inotify wd:"))
                .count() as u64;
        }
    }
    n
}

fn spawn_daemon(w: &World, log: &Path) -> Proc {
    let mut c = w.config_file();
    c.mirrors[0].extra = "rescan_interval_secs = 2".into();
    support::spawn_daemon(&c.write(), std::fs::File::create(log).unwrap())
}

async fn eventually(what: &str, secs: u64, f: impl AsyncFnMut() -> bool) {
    support::eventually(
        what,
        Duration::from_secs(secs),
        Duration::from_millis(100),
        f,
    )
    .await;
}

/// Creates, renames and deletes files as fast as it can.
fn flood(root: &Path, round: usize, files: usize) {
    let dir = root.join(format!("flood{round}"));
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..files {
        std::fs::write(dir.join(format!("f{i:05}")), format!("{round}/{i}")).unwrap();
    }
    for i in (0..files).step_by(2) {
        std::fs::rename(
            dir.join(format!("f{i:05}")),
            dir.join(format!("renamed{i:05}")),
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inotify_queue_overflow_is_reported_and_rescanned() {
    const TEST: &str = "inotify_queue_overflow_is_reported_and_rescanned";
    let _serial = SERIAL.lock().await;
    // The watcher itself: with a 64-event kernel queue, a flood overflows it and the
    // watcher says so (a rescan for lost events).
    let dir = tempfile::tempdir().unwrap();
    let Some(mut limit) = Sysctl::set(TEST, MAX_QUEUED, 64) else {
        return;
    };
    let mut watcher =
        Watcher::new(dir.path(), IgnoreRules::new(&[]).unwrap(), 1 << 20).expect("watcher starts");
    limit.restore();
    let mut overflowed = false;
    for round in 0..20 {
        flood(dir.path(), round, 2000);
        // Drain what arrived; an overflow shows up as a backend rescan.
        tokio::time::sleep(Duration::from_millis(100)).await;
        while let Some(ev) = watcher.try_recv() {
            if let WatchEvent::Rescan {
                reason: RescanReason::BackendOverflow,
            } = ev
            {
                overflowed = true;
            }
        }
        if overflowed {
            break;
        }
    }
    assert!(overflowed, "the kernel queue overflow was reported");
    drop(watcher);

    // The daemon: the same flood ends with the remote equal to the disk.
    let w = World::new().await;
    w.write("seed.txt", b"seed");
    let Some(mut limit) = Sysctl::set(TEST, MAX_QUEUED, 64) else {
        return;
    };
    let d = w.start().await;
    assert!(d.settled().await.in_sync());
    limit.restore();
    for round in 0..2 {
        flood(&w.root, round, 1500);
    }
    // The queue overflow costs a full pass; the end state is what counts.
    let local = w.local_tree().len();
    eventually("the flood to be mirrored", 120, async || {
        let s = d.handle.status();
        s.in_sync() && s.entries == local
    })
    .await;
    w.assert_mirrored().await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_limit_exhaustion_falls_back_to_periodic_scans() {
    const TEST: &str = "watch_limit_exhaustion_falls_back_to_periodic_scans";
    let _serial = SERIAL.lock().await;
    let w = World::new().await;
    for d in 0..40 {
        w.write(&format!("d{d:02}/f.txt"), format!("{d}").as_bytes());
    }
    let log = w.dir.path().join("daemon.log");
    // Room for fewer watches than the tree has directories (41), whatever else runs.
    let Some(mut limit) = Sysctl::set(TEST, MAX_WATCHES, watches_in_use() + 10) else {
        return;
    };
    let _daemon = spawn_daemon(&w, &log);
    eventually("the watcher to give up", 30, async || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("full scan every")
    })
    .await;
    limit.restore();
    let logged = std::fs::read_to_string(&log).unwrap();
    let line = logged
        .lines()
        .find(|l| l.contains("full scan every"))
        .unwrap();
    assert!(
        line.contains("watch limit") && line.contains("fs.inotify.max_user_watches"),
        "one line with the cause and the fix: {line}"
    );
    eventually("the first pass", 60, async || {
        w.remote_tree().await == w.local_tree()
    })
    .await;
    // Changes keep arriving through the periodic scans (every 2 s here).
    w.write("d05/later.txt", b"later");
    w.write("new-dir/inside.txt", b"inside");
    std::fs::remove_file(w.root.join("d07/f.txt")).unwrap();
    eventually("later changes", 30, async || {
        w.remote_tree().await == w.local_tree()
    })
    .await;
    w.assert_mirrored().await;
}
