//! Real-filesystem tests for `scaidrive::watch`: the full scan (symlinks, non-UTF-8 names,
//! unreadable directories, special files, a missing root) and the live watcher (create, modify,
//! rename, delete, new directories, ignore rules, channel overflow). Each failure prints what
//! was seen.

#[path = "../support/mod.rs"]
mod support;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::time::Duration;

use scaidrive::watch::{
    BeforeListing, IgnoreRules, Kind, PathStat, RelPath, RescanReason, ScanError, ScanItem,
    SkipReason, WatchEvent, Watcher, scan, scan_parallel, scan_subtree, stat_path,
    stat_path_detailed,
};
use support::write_file as write;

fn rp(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

fn rules() -> IgnoreRules {
    IgnoreRules::new(&["build/".to_string()]).unwrap()
}

fn entries(items: &[ScanItem]) -> Vec<(String, Kind)> {
    items
        .iter()
        .filter_map(|i| match i {
            ScanItem::Entry(e) => Some((e.path.as_str().to_owned(), e.kind)),
            ScanItem::Skipped { .. } => None,
        })
        .collect()
}

fn skipped(items: &[ScanItem]) -> Vec<(String, SkipReason)> {
    items
        .iter()
        .filter_map(|i| match i {
            ScanItem::Skipped { path, reason } => Some((path.clone(), reason.clone())),
            ScanItem::Entry(_) => None,
        })
        .collect()
}

/// Runs a scan on a thread with a time limit: a scan that opened a FIFO would hang forever,
/// and a hang must fail the test, not stall CI.
///
/// Every scan is also run as [`scan_parallel`] (the start-up compare's walk), which must find
/// exactly the same items, in whatever order.
fn scan_with_timeout(root: &Path, rules: &IgnoreRules) -> Result<Vec<ScanItem>, ScanError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (root, rules) = (root.to_path_buf(), rules.clone());
    std::thread::spawn(move || {
        let _ = tx.send((scan(&root, &rules), scan_parallel(&root, &rules, 3)));
    });
    let (seq, par) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("scan did not finish: it must never open special files");
    let sorted = |r: &Result<Vec<ScanItem>, ScanError>| {
        r.as_ref().ok().map(|items| {
            let mut items = items.clone();
            items.sort_by_key(|i| match i {
                ScanItem::Entry(e) => e.path.as_str().to_string(),
                ScanItem::Skipped { path, .. } => path.clone(),
            });
            items
        })
    };
    assert_eq!(sorted(&seq), sorted(&par), "the parallel scan differs");
    assert_eq!(seq.is_err(), par.is_err());
    seq
}

#[test]
fn scan_nested_tree_parents_first_with_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "a/b/c.txt", b"hello");
    write(root, "a/d.txt", b"");
    write(root, "a-b.txt", b"xy");
    write(root, "f.txt", b"12345678");
    write(root, "a/.c.txt.swp", b"swap");
    write(root, "build/out.o", b"obj");
    write(root, "src/build/out.o", b"obj");
    fs::create_dir(root.join("empty")).unwrap();

    let items = scan_with_timeout(root, &rules()).unwrap();
    assert_eq!(
        entries(&items),
        vec![
            ("a".into(), Kind::Dir),
            ("a/b".into(), Kind::Dir),
            ("a/b/c.txt".into(), Kind::File),
            ("a/d.txt".into(), Kind::File),
            ("a-b.txt".into(), Kind::File),
            ("empty".into(), Kind::Dir),
            ("f.txt".into(), Kind::File),
            ("src".into(), Kind::Dir),
        ],
        "all items: {items:#?}"
    );
    assert!(skipped(&items).is_empty(), "{items:#?}");

    let f = items
        .iter()
        .find_map(|i| match i {
            ScanItem::Entry(e) if e.path == rp("f.txt") => Some(e.clone()),
            _ => None,
        })
        .unwrap();
    let meta = fs::symlink_metadata(root.join("f.txt")).unwrap();
    assert_eq!(f.size, 8);
    assert_eq!(f.inode, meta.ino());
    assert_eq!(f.mtime_ns, meta.mtime() * 1_000_000_000 + meta.mtime_nsec());
    assert_eq!(stat_path(root, &rp("f.txt")).unwrap(), Some(f));

    // Output order is RelPath order, so the planner can rely on either.
    let paths: Vec<RelPath> = entries(&items).into_iter().map(|(p, _)| rp(&p)).collect();
    assert!(paths.windows(2).all(|w| w[0] < w[1]), "{paths:?}");
}

#[test]
fn scan_skips_symlinks_and_never_reads_their_targets() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    write(&outside, "secret.txt", b"do not read");
    write(&root, "real.txt", b"ok");
    symlink(&outside, root.join("dirlink")).unwrap();
    symlink(outside.join("secret.txt"), root.join("filelink")).unwrap();
    symlink(root.join("nowhere"), root.join("dangling")).unwrap();
    // A FIFO behind a link: opening it would block, so finishing at all proves no open.
    let fifo = outside.join("pipe");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    symlink(&fifo, root.join("pipelink")).unwrap();

    let items = scan_with_timeout(&root, &rules()).unwrap();
    assert_eq!(entries(&items), vec![("real.txt".into(), Kind::File)]);
    assert_eq!(
        skipped(&items),
        vec![
            ("dangling".into(), SkipReason::Symlink),
            ("dirlink".into(), SkipReason::Symlink),
            ("filelink".into(), SkipReason::Symlink),
            ("pipelink".into(), SkipReason::Symlink),
        ]
    );

    // Single-path checks refuse to pass through a symlinked directory as well.
    assert_eq!(
        stat_path_detailed(&root, &rp("dirlink/secret.txt")).unwrap(),
        PathStat::Skipped(SkipReason::Symlink)
    );
    assert_eq!(stat_path(&root, &rp("dirlink/secret.txt")).unwrap(), None);
    assert_eq!(
        stat_path_detailed(&root, &rp("filelink")).unwrap(),
        PathStat::Skipped(SkipReason::Symlink)
    );
    // A subtree scan started at a link reports the link and goes no further.
    assert_eq!(
        skipped(&scan_subtree(&root, &rp("dirlink"), &rules()).unwrap()),
        vec![("dirlink".into(), SkipReason::Symlink)]
    );
}

#[test]
fn scan_reports_non_utf8_names() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "sub/good.txt", b"ok");
    let bad_file = root.join("sub").join(OsStr::from_bytes(b"caf\xe9.txt"));
    fs::write(&bad_file, b"latin-1 name").unwrap();
    let bad_dir = root.join(OsStr::from_bytes(b"dir\xff"));
    fs::create_dir(&bad_dir).unwrap();
    fs::write(bad_dir.join("inner.txt"), b"unreachable remotely").unwrap();

    let items = scan_with_timeout(root, &rules()).unwrap();
    assert_eq!(
        entries(&items),
        vec![
            ("sub".into(), Kind::Dir),
            ("sub/good.txt".into(), Kind::File)
        ],
        "{items:#?}"
    );
    assert_eq!(
        skipped(&items),
        vec![
            ("dir\u{FFFD}".into(), SkipReason::NonUtf8),
            ("sub/caf\u{FFFD}.txt".into(), SkipReason::NonUtf8),
        ]
    );
}

#[test]
fn scan_unreadable_directory_is_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "locked/inside.txt", b"x");
    write(root, "open/visible.txt", b"y");
    let locked = root.join("locked");
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
    // Root (or CAP_DAC_OVERRIDE) reads through mode 000; ask the kernel instead of guessing.
    let privileged = fs::read_dir(&locked).is_ok();

    let result = scan_with_timeout(root, &rules());
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
    let items = result.unwrap();

    if privileged {
        // Privileged: the directory is readable, so it is an ordinary part of the tree.
        assert_eq!(
            entries(&items),
            vec![
                ("locked".into(), Kind::Dir),
                ("locked/inside.txt".into(), Kind::File),
                ("open".into(), Kind::Dir),
                ("open/visible.txt".into(), Kind::File),
            ],
            "{items:#?}"
        );
        assert!(skipped(&items).is_empty(), "{items:#?}");
    } else {
        assert_eq!(
            entries(&items),
            vec![
                ("open".into(), Kind::Dir),
                ("open/visible.txt".into(), Kind::File)
            ],
            "{items:#?}"
        );
        let sk = skipped(&items);
        assert!(
            matches!(&sk[..], [(p, SkipReason::Unreadable(_))] if p == "locked"),
            "{sk:?}"
        );
    }
}

#[test]
fn scan_reports_special_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "plain.txt", b"x");
    let status = std::process::Command::new("mkfifo")
        .arg(root.join("fifo"))
        .status()
        .unwrap();
    assert!(status.success());
    let _listener = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();

    let items = scan_with_timeout(root, &rules()).unwrap();
    assert_eq!(entries(&items), vec![("plain.txt".into(), Kind::File)]);
    assert_eq!(
        skipped(&items),
        vec![
            ("fifo".into(), SkipReason::Special),
            ("sock".into(), SkipReason::Special),
        ]
    );
    assert_eq!(
        stat_path_detailed(root, &rp("fifo")).unwrap(),
        PathStat::Skipped(SkipReason::Special)
    );
}

#[test]
fn unavailable_root_is_an_error_never_an_empty_tree() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("unmounted");
    let file = dir.path().join("file");
    fs::write(&file, b"x").unwrap();
    for root in [&missing, &file] {
        assert!(matches!(
            scan_parallel(root, &rules(), 2),
            Err(ScanError::RootUnavailable { .. })
        ));
        match scan(root, &rules()) {
            Err(ScanError::RootUnavailable { root: r, reason }) => {
                assert_eq!(&r, root);
                assert!(!reason.is_empty());
                let msg = ScanError::RootUnavailable {
                    root: r.clone(),
                    reason,
                }
                .to_string();
                assert!(msg.contains(&root.display().to_string()), "{msg}");
            }
            other => panic!(
                "{}: expected RootUnavailable, got {other:?}",
                root.display()
            ),
        }
    }
}

#[test]
fn stat_path_cases() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "d/f.txt", b"abc");
    let cases: &[(&str, Option<Kind>)] = &[
        ("d", Some(Kind::Dir)),
        ("d/f.txt", Some(Kind::File)),
        ("d/missing", None),
        ("missing/deeper", None),
        ("d/f.txt/below-a-file", None),
    ];
    for &(p, want) in cases {
        let got = stat_path(root, &rp(p)).unwrap().map(|e| e.kind);
        assert_eq!(got, want, "{p}");
    }
    let sub = scan_subtree(root, &rp("d"), &rules()).unwrap();
    assert_eq!(
        entries(&sub),
        vec![("d".into(), Kind::Dir), ("d/f.txt".into(), Kind::File)]
    );
    assert!(
        scan_subtree(root, &rp("nope"), &rules())
            .unwrap()
            .is_empty()
    );
}

// ---------------------------------------------------------------------------------------
// Watcher

const WAIT: Duration = Duration::from_secs(5);

async fn start(root: &Path, capacity: usize) -> Watcher {
    let root = root.to_path_buf();
    tokio::task::spawn_blocking(move || Watcher::new(&root, rules(), capacity))
        .await
        .unwrap()
        .unwrap()
}

/// Receives until `want` matches an event or the deadline passes; returns everything seen.
async fn wait_for(
    w: &mut Watcher,
    what: &str,
    want: impl Fn(&WatchEvent) -> bool,
) -> Vec<WatchEvent> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, w.recv()).await {
            Ok(Some(ev)) => {
                let hit = want(&ev);
                seen.push(ev);
                if hit {
                    return seen;
                }
            }
            Ok(None) => panic!("watcher channel closed while waiting for {what}; seen {seen:#?}"),
            Err(_) => panic!("no {what} within {WAIT:?}; seen {seen:#?}"),
        }
    }
}

/// Writes `dir/probe-N` files until the watcher reports one of them: proves that `dir` is
/// watched, without assuming how soon after its creation or move the backend gets there.
async fn probe_until_seen(w: &mut Watcher, root: &Path, dir: &str) -> Vec<WatchEvent> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    for i in 0.. {
        let probe = rp(&format!("{dir}/probe-{i}"));
        fs::write(probe.to_path(root), b"p").unwrap();
        let round = tokio::time::Instant::now() + Duration::from_millis(200);
        while let Ok(Some(ev)) = tokio::time::timeout_at(round.min(deadline), w.recv()).await {
            let hit = matches!(&ev, WatchEvent::Changed(p)
                if p.parent() == Some(rp(dir)) && p.name().starts_with("probe-"));
            seen.push(ev);
            if hit {
                return seen;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{dir} never reported a probe within {WAIT:?}; seen {seen:#?}"
        );
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_reports_create_modify_rename_delete_as_relpaths() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    write(&root, "existing/old.txt", b"1");
    let mut w = start(&root, 1024).await;

    fs::write(root.join("new.txt"), b"hello").unwrap();
    wait_for(&mut w, "create of new.txt", |e| {
        *e == WatchEvent::Changed(rp("new.txt"))
    })
    .await;

    {
        use std::io::Write;
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(root.join("existing/old.txt"))
            .unwrap();
        f.write_all(b"more").unwrap();
    }
    wait_for(&mut w, "modify of existing/old.txt", |e| {
        *e == WatchEvent::Changed(rp("existing/old.txt"))
    })
    .await;

    fs::rename(root.join("new.txt"), root.join("renamed.txt")).unwrap();
    let seen = wait_for(&mut w, "file rename", |e| {
        *e == WatchEvent::Renamed {
            from: rp("new.txt"),
            to: rp("renamed.txt"),
        }
    })
    .await;
    // Both ends come as move ends (not as a removal and a write), so the queue can settle
    // the move without the full quiet period.
    for (path, present) in [("new.txt", false), ("renamed.txt", true)] {
        let want = WatchEvent::MoveEnd {
            path: rp(path),
            present,
        };
        assert!(seen.contains(&want), "no {want:?} in {seen:#?}");
    }
    assert!(
        !seen.iter().any(
            |e| matches!(e, WatchEvent::Removed(p) | WatchEvent::Changed(p)
            if p.as_str() == "new.txt" || p.as_str() == "renamed.txt")
        ),
        "a rename end reported as a plain change: {seen:#?}"
    );

    fs::rename(root.join("existing"), root.join("moved")).unwrap();
    wait_for(&mut w, "directory rename", |e| {
        *e == WatchEvent::Renamed {
            from: rp("existing"),
            to: rp("moved"),
        }
    })
    .await;
    // The watch follows the renamed directory and reports its new name (never the old one).
    let seen = probe_until_seen(&mut w, &root, "moved").await;
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, WatchEvent::Changed(p) if p.is_within(&rp("existing")))),
        "events under the old name: {seen:#?}"
    );

    fs::remove_file(root.join("renamed.txt")).unwrap();
    wait_for(&mut w, "delete", |e| {
        *e == WatchEvent::Removed(rp("renamed.txt"))
    })
    .await;

    // Only relative paths inside the root, never the root itself.
    fs::write(root.join("sentinel"), b"").unwrap();
    let seen = wait_for(&mut w, "sentinel", |e| {
        *e == WatchEvent::Changed(rp("sentinel"))
    })
    .await;
    for ev in &seen {
        if let WatchEvent::Changed(p)
        | WatchEvent::Removed(p)
        | WatchEvent::MoveEnd { path: p, .. } = ev
        {
            assert!(!p.is_root(), "{ev:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_covers_new_directories_and_skips_ignored_paths() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let mut w = start(&root, 1024).await;

    // `mkdir -p` plus an immediate write: the backend adds the watch for a new directory
    // only after reporting it, so these may or may not produce their own events...
    fs::create_dir_all(root.join("fresh/nested")).unwrap();
    fs::write(root.join("fresh/nested/early.txt"), b"data").unwrap();
    wait_for(&mut w, "mkdir fresh", |e| {
        *e == WatchEvent::Changed(rp("fresh"))
    })
    .await;
    // ... which is why a settled directory is scanned as a subtree: that finds them.
    let sub = scan_subtree(&root, &rp("fresh"), &rules()).unwrap();
    assert_eq!(
        entries(&sub),
        vec![
            ("fresh".into(), Kind::Dir),
            ("fresh/nested".into(), Kind::Dir),
            ("fresh/nested/early.txt".into(), Kind::File),
        ]
    );
    // And once the backend has caught up, the new directories are watched.
    probe_until_seen(&mut w, &root, "fresh/nested").await;

    // Editor-style save: write an ignored temp file, rename it over the target.
    fs::write(root.join("doc.txt.swp"), b"v2").unwrap();
    fs::create_dir(root.join("build")).unwrap();
    fs::write(root.join("build/out.o"), b"obj").unwrap();
    fs::rename(root.join("doc.txt.swp"), root.join("doc.txt")).unwrap();
    let seen = wait_for(&mut w, "atomic save of doc.txt", |e| {
        *e == WatchEvent::Changed(rp("doc.txt"))
    })
    .await;
    fs::write(root.join("sentinel"), b"").unwrap();
    let more = wait_for(&mut w, "sentinel", |e| {
        *e == WatchEvent::Changed(rp("sentinel"))
    })
    .await;
    for ev in seen.iter().chain(&more) {
        let touches_ignored =
            |p: &RelPath| p.as_str().ends_with(".swp") || p.as_str().starts_with("build");
        match ev {
            WatchEvent::Changed(p)
            | WatchEvent::Removed(p)
            | WatchEvent::MoveEnd { path: p, .. } => {
                assert!(!touches_ignored(p), "ignored path leaked: {ev:?}")
            }
            WatchEvent::Renamed { from, to } => {
                assert!(!touches_ignored(from) && !touches_ignored(to), "{ev:?}")
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_channel_sets_rescan_instead_of_blocking_or_dropping() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let mut w = start(&root, 1).await;

    // Nobody receives while 50 files appear: the one-slot channel must overflow.
    for i in 0..50 {
        fs::write(root.join(format!("f{i}")), b"x").unwrap();
    }
    let deadline = std::time::Instant::now() + WAIT;
    while !w.rescan_needed() {
        assert!(
            std::time::Instant::now() < deadline,
            "rescan flag never set; watcher: {w:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the backend hand over the rest of the burst (dropped while the rescan is owed):
    // an event of these writes still on its way after `recv` would rightly owe a new one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        w.recv().await,
        Some(WatchEvent::Rescan {
            reason: RescanReason::ChannelFull
        })
    );
    assert!(!w.rescan_needed(), "the flag is consumed by recv");

    // The engine now rescans; what is still buffered is covered by that scan. Drain it so
    // the one-slot channel has room again.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while w.try_recv().is_some() {}

    // After the rescan was handed out, the watcher keeps working.
    fs::write(root.join("later.txt"), b"y").unwrap();
    wait_for(&mut w, "an event after the overflow", |e| {
        *e == WatchEvent::Changed(rp("later.txt"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_root_asks_for_a_rescan() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap().join("mirror");
    fs::create_dir(&root).unwrap();
    let mut w = start(&root, 64).await;
    fs::rename(&root, dir.path().join("elsewhere")).unwrap();
    wait_for(&mut w, "rescan after the root moved", |e| {
        *e == WatchEvent::Rescan {
            reason: RescanReason::RootChanged,
        }
    })
    .await;
    assert!(matches!(
        scan(&root, &rules()),
        Err(ScanError::RootUnavailable { .. })
    ));
}

/// The scan's hook that adds each directory's watch before listing it, and at one point of
/// the walk (just before it lists `trigger`) runs `writes`: the changes a user makes while
/// the daemon starts.
struct WritesDuringScan<F: Fn() + Sync> {
    watches: scaidrive::watch::DirWatches,
    trigger: RelPath,
    writes: F,
    listed: std::sync::Mutex<Vec<String>>,
}

impl<F: Fn() + Sync> BeforeListing for WritesDuringScan<F> {
    fn before_listing(&self, dir: &RelPath) {
        self.watches.add(dir);
        self.listed.lock().unwrap().push(dir.as_str().to_string());
        if *dir == self.trigger {
            (self.writes)();
        }
    }
}

/// Start-up without a window (issue 20 item 3): the watcher starts on the root alone and
/// the scan adds the watches as it lists each directory. Files written while the scan runs
/// (into directories it has listed, the one it is about to list, and ones it has not
/// reached) and a directory created and filled during the scan are all either in the
/// scan's listing or reported by the watcher; the ones behind the scan can only come from
/// the watcher, so the test fails if a directory is watched after it is listed, or a new
/// directory's early files are not reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_that_adds_the_watches_misses_no_change_made_during_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    for d in 0..20 {
        for f in 0..3 {
            write(&root, &format!("d{d:02}/f{f}.txt"), b"old");
        }
    }
    write(&root, "d15/sub/s.txt", b"old");
    let r = root.clone();
    let mut w = tokio::task::spawn_blocking(move || {
        Watcher::deferred(&r, rules(), 1024, scaidrive::watch::EventSource::Native)
    })
    .await
    .unwrap()
    .unwrap();
    let writes = {
        let root = root.clone();
        move || {
            // Behind the scan: only an event can report these.
            fs::write(root.join("d02/late.txt"), b"late").unwrap();
            fs::write(root.join("d01/f1.txt"), b"edited after its listing").unwrap();
            // The directory about to be listed: watched already, not yet listed.
            fs::write(root.join("d10/during.txt"), b"during").unwrap();
            // Ahead of the scan: its listing finds them.
            fs::write(root.join("d15/early.txt"), b"early").unwrap();
            fs::write(root.join("d15/sub/early.txt"), b"early").unwrap();
            // A new directory in the (already listed) root, filled at once: its files
            // land before anything can have watched it.
            fs::create_dir_all(root.join("fresh/deep")).unwrap();
            fs::write(root.join("fresh/a.txt"), b"a").unwrap();
            fs::write(root.join("fresh/deep/b.txt"), b"b").unwrap();
        }
    };
    let hook = std::sync::Arc::new(WritesDuringScan {
        watches: w.dir_watches(),
        trigger: rp("d10"),
        writes,
        listed: Default::default(),
    });
    let (r, h) = (root.clone(), hook.clone());
    // One thread: the top-level folders are listed in name order, so d02 is behind the
    // scan when d10 is reached and d15 is ahead of it.
    let items = tokio::task::spawn_blocking(move || {
        scaidrive::watch::scan_parallel_watching(&r, &rules(), 1, Some(&*h))
    })
    .await
    .unwrap()
    .unwrap();
    let listed = hook.listed.lock().unwrap().clone();
    assert_eq!(listed.first().map(String::as_str), Some(""), "root first");
    assert!(listed.contains(&"d15/sub".to_string()), "{listed:?}");
    let scanned: std::collections::BTreeSet<String> =
        entries(&items).into_iter().map(|(p, _)| p).collect();
    for p in ["d10/during.txt", "d15/early.txt", "d15/sub/early.txt"] {
        assert!(scanned.contains(p), "the scan lists {p}");
    }
    for p in ["d02/late.txt", "fresh/a.txt", "fresh/deep/b.txt"] {
        assert!(!scanned.contains(p), "{p} was written behind the scan");
    }

    // After the scan, every directory (the new ones too) is watched: later writes are
    // reported as well.
    let after = ["d00/after.txt", "d19/after.txt", "d15/sub/after.txt"];
    for p in after {
        fs::write(root.join(p), b"after").unwrap();
    }
    let mut need: std::collections::BTreeSet<String> = [
        "d02/late.txt",
        "d01/f1.txt",
        "d10/during.txt",
        "fresh",
        "fresh/deep",
        "fresh/a.txt",
        "fresh/deep/b.txt",
    ]
    .into_iter()
    .chain(after)
    .map(String::from)
    .collect();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !need.is_empty() {
        match tokio::time::timeout_at(deadline, w.recv()).await {
            Ok(Some(ev)) => {
                if let WatchEvent::Changed(p) | WatchEvent::MoveEnd { path: p, .. } = &ev {
                    need.remove(p.as_str());
                }
                assert!(
                    !matches!(ev, WatchEvent::Rescan { .. } | WatchEvent::Error(_)),
                    "{ev:?}"
                );
                seen.push(ev);
            }
            Ok(None) => panic!("watcher closed; seen {seen:#?}"),
            Err(_) => panic!("never reported {need:?}; seen {seen:#?}"),
        }
    }
    // And the new directories are watched for what comes next.
    probe_until_seen(&mut w, &root, "fresh/deep").await;
    assert!(w.unwatched().is_empty(), "{:?}", w.unwatched());
}
