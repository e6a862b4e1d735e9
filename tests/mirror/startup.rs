//! Writes during start-up (issue 20 item 3). The watcher starts on the root alone and the
//! start-up scan (overlapping the store load, taken by the first full pass) adds the
//! watches directory by directory as it lists them, so a restart walks the tree once. Nothing written while that happens may be missed: a file in a
//! folder the scan has already listed can only be seen through that folder's watch, a
//! folder created during the scan only through its parent's watch and the scan of the new
//! folder that follows. (`tests/watch`'s `a_scan_that_adds_the_watches_misses_no_change_made_during_it`
//! places the writes at exact points of the walk; here the real daemon restarts while a
//! writer runs.)

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use scaidrive::mirror::MirrorState;

use crate::world::{World, converge};

const DIRS: usize = 60;
const FILES: usize = 20;

async fn uploads(w: &World) -> u64 {
    w.count("POST /api/v1/uploads").await + w.count("POST /api/v1/files").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_written_during_the_start_up_scan_are_all_mirrored_once() {
    let w = World::new().await;
    for d in 0..DIRS {
        for f in 0..FILES {
            w.write(
                &format!("d{d:02}/f{f:02}.txt"),
                format!("{d} {f}").as_bytes(),
            );
        }
    }
    let d = w.start().await;
    converge(&w, &d).await;
    d.stop().await;
    w.reset_stats().await;

    // The writer starts before the daemon and writes until the first pass is over: new
    // files round-robin over the folders (ahead of the scan, behind it, in the one being
    // listed), and now and then a new folder, filled at once, with a folder inside it.
    let root = w.root.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let during_start = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let starting = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, during_start, starting) = (stop.clone(), during_start.clone(), starting.clone());
        std::thread::spawn(move || {
            let (mut files, mut folders) = (BTreeSet::new(), BTreeSet::new());
            let mut i = 0usize;
            while !stop.load(Ordering::Acquire) && i < 20_000 {
                let rel = if i % 10 == 9 {
                    let top = format!("new{i:05}");
                    std::fs::create_dir_all(root.join(&top).join("inner")).unwrap();
                    folders.insert(top.clone());
                    folders.insert(format!("{top}/inner"));
                    // Distinct contents throughout: a copy of known content would be a
                    // server-side copy, not an upload.
                    let a = format!("{top}/a.txt");
                    std::fs::write(root.join(&a), a.as_bytes()).unwrap();
                    files.insert(a);
                    format!("{top}/inner/b.txt")
                } else {
                    format!("d{:02}/w{i:05}.txt", (i * 7) % DIRS)
                };
                std::fs::write(root.join(&rel), rel.as_bytes()).unwrap();
                files.insert(rel);
                if starting.load(Ordering::Acquire) {
                    during_start.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            (files, folders)
        })
    };
    starting.store(true, Ordering::Release);
    let d = w.start().await;
    // Watch the state: the writer keeps going until the first pass has run.
    let mut seen_scanning = false;
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let s = d.handle.status();
        let now_scanning = matches!(s.state, MirrorState::Scanning);
        seen_scanning |= now_scanning;
        if seen_scanning && !now_scanning {
            starting.store(false, Ordering::Release);
            break;
        }
        assert!(std::time::Instant::now() < until, "no first pass: {s:?}");
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    stop.store(true, Ordering::Release);
    let (files, folders) = writer.join().unwrap();
    let during = during_start.load(Ordering::Relaxed);
    assert!(
        during > 0,
        "no write landed during the scan ({} written)",
        files.len()
    );
    converge(&w, &d).await;
    w.assert_mirrored().await;
    w.assert_unique_names().await;

    // Exactly the old tree plus what was written: nothing missed, nothing doubled.
    let remote = w.remote_tree().await;
    let mut want: BTreeSet<String> = BTreeSet::new();
    for dd in 0..DIRS {
        want.insert(format!("d{dd:02}"));
        for f in 0..FILES {
            want.insert(format!("d{dd:02}/f{f:02}.txt"));
        }
    }
    want.extend(files.iter().cloned());
    want.extend(folders.iter().cloned());
    let got: BTreeSet<String> = remote.keys().cloned().collect();
    assert_eq!(got, want, "remote = old tree + written files and folders");
    // Each written file went up once; no old file went up again.
    assert_eq!(
        uploads(&w).await,
        files.len() as u64,
        "{} files written, {during} during the start",
        files.len()
    );
    assert_eq!(
        w.count("POST /api/v1/folders").await,
        folders.len() as u64,
        "one create per new folder"
    );
    println!(
        "{} files and {} folders written, {during} between the daemon's start and the end of its first pass",
        files.len(),
        folders.len()
    );
    d.stop().await;
}
