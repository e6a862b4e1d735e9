//! The backend against the real kernel: pairing, moved and deleted directories, errors,
//! a queue overflow, and the reader's end.

use super::*;
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Rig {
    w: DirInotify,
    rx: mpsc::Receiver<notify::Result<Event>>,
    root: PathBuf,
    /// Held by a test, it stops the reader inside its handler.
    pause: Arc<Mutex<()>>,
    /// Set by the handler once it has an event in hand.
    entered: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let (tx, rx) = mpsc::channel();
    let pause = Arc::new(Mutex::new(()));
    let entered = Arc::new(AtomicBool::new(false));
    let (p, e) = (pause.clone(), entered.clone());
    let w = DirInotify::new(move |res| {
        e.store(true, Ordering::Release);
        let _held = p.lock().unwrap();
        let _ = tx.send(res);
    })
    .unwrap();
    Rig {
        w,
        rx,
        root,
        pause,
        entered,
        _dir: dir,
    }
}

impl Rig {
    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn watch(&self, rels: &[&str]) {
        for rel in rels {
            self.w.watch_dir(&self.p(rel)).unwrap();
        }
    }

    /// Events up to and including the first `last` accepts; fails after 10 s, showing
    /// what came.
    fn until(&self, last: impl Fn(&Event) -> bool) -> Vec<Event> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Ok(ev)) => {
                    let done = last(&ev);
                    seen.push(ev);
                    if done {
                        return seen;
                    }
                }
                Ok(Err(e)) => panic!("backend error {e}; seen {seen:#?}"),
                Err(_) => panic!("timed out; seen {seen:#?}"),
            }
        }
    }

    /// Events up to a marker file created in the root (watched) now, the marker's own
    /// left out.
    fn until_marker(&self, name: &str) -> Vec<Event> {
        let marker = self.p(name);
        std::fs::write(&marker, b"").unwrap();
        let mut seen = self.until(|ev| {
            ev.kind == EventKind::Access(AccessKind::Close(AccessMode::Write))
                && ev.paths == [marker.clone()]
        });
        seen.retain(|ev| ev.paths != [marker.clone()]);
        seen
    }
}

fn name(mode: RenameMode) -> EventKind {
    EventKind::Modify(ModifyKind::Name(mode))
}

/// Kinds and paths, trackers apart (the kernel picks the cookies).
fn shape(evs: &[Event]) -> Vec<(EventKind, Vec<PathBuf>)> {
    evs.iter().map(|e| (e.kind, e.paths.clone())).collect()
}

#[test]
fn renames_within_and_across_watched_directories_are_paired() {
    let r = rig();
    std::fs::create_dir(r.p("a")).unwrap();
    std::fs::create_dir(r.p("b")).unwrap();
    std::fs::write(r.p("a/x"), b"x").unwrap();
    r.watch(&["a", "b"]);
    std::fs::rename(r.p("a/x"), r.p("a/y")).unwrap();
    std::fs::rename(r.p("a/y"), r.p("b/y")).unwrap();
    let is_both =
        |to: PathBuf| move |ev: &Event| ev.kind == name(RenameMode::Both) && ev.paths[1] == to;
    let mut seen = r.until(is_both(r.p("a/y")));
    seen.extend(r.until(is_both(r.p("b/y"))));
    assert_eq!(
        shape(&seen),
        vec![
            (name(RenameMode::From), vec![r.p("a/x")]),
            (name(RenameMode::To), vec![r.p("a/y")]),
            (name(RenameMode::Both), vec![r.p("a/x"), r.p("a/y")]),
            (name(RenameMode::From), vec![r.p("a/y")]),
            (name(RenameMode::To), vec![r.p("b/y")]),
            (name(RenameMode::Both), vec![r.p("a/y"), r.p("b/y")]),
        ]
    );
    let trackers: Vec<usize> = seen.iter().map(|e| e.tracker().unwrap()).collect();
    assert!(
        trackers[..3].iter().all(|t| *t == trackers[0]),
        "{trackers:?}"
    );
    assert!(
        trackers[3..].iter().all(|t| *t == trackers[3]),
        "{trackers:?}"
    );
    assert_ne!(trackers[0], trackers[3]);
}

#[test]
fn a_directory_renamed_inside_the_tree_keeps_its_watches_under_the_new_name() {
    let r = rig();
    std::fs::create_dir_all(r.p("d/sub")).unwrap();
    r.watch(&["", "d", "d/sub"]);
    std::fs::rename(r.p("d"), r.p("e")).unwrap();
    std::fs::write(r.p("e/sub/f"), b"f").unwrap();
    let seen = r.until_marker("marker");
    assert_eq!(
        shape(&seen),
        vec![
            (name(RenameMode::From), vec![r.p("d")]),
            (name(RenameMode::To), vec![r.p("e")]),
            (name(RenameMode::Both), vec![r.p("d"), r.p("e")]),
            // IN_MOVE_SELF of the moved directory's own watch, under its new name.
            (name(RenameMode::From), vec![r.p("e")]),
            (EventKind::Create(CreateKind::File), vec![r.p("e/sub/f")]),
            (
                EventKind::Modify(ModifyKind::Data(DataChange::Any)),
                vec![r.p("e/sub/f")]
            ),
            (
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                vec![r.p("e/sub/f")]
            ),
        ]
    );
    assert_eq!(r.w.watched(), vec![r.root.clone(), r.p("e"), r.p("e/sub")]);
}

#[test]
fn a_directory_moved_out_of_the_tree_loses_its_watches() {
    let r = rig();
    let away = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(r.p("d/sub")).unwrap();
    r.watch(&["", "d", "d/sub"]);
    std::fs::rename(r.p("d"), away.path().join("d")).unwrap();
    let seen = r.until_marker("marker1");
    assert_eq!(shape(&seen), vec![(name(RenameMode::From), vec![r.p("d")])]);
    assert_eq!(r.w.watched(), vec![r.root.clone()]);
    // Writes there are nobody's business now, under whatever name.
    std::fs::write(away.path().join("d/sub/f"), b"f").unwrap();
    let seen = r.until_marker("marker2");
    assert_eq!(shape(&seen), vec![]);
}

#[test]
fn a_deleted_directory_loses_its_watch_and_a_new_one_under_its_name_keeps_its_own() {
    let r = rig();
    std::fs::create_dir(r.p("d")).unwrap();
    r.watch(&["", "d"]);
    std::fs::remove_dir(r.p("d")).unwrap();
    let seen = r.until_marker("marker1");
    let removed = (EventKind::Remove(RemoveKind::Folder), vec![r.p("d")]);
    // The parent's IN_DELETE and the directory's own IN_DELETE_SELF, in either order.
    assert_eq!(shape(&seen), vec![removed.clone(), removed]);
    assert_eq!(r.w.watched(), vec![r.root.clone()]);

    // Recreated and watched again.
    std::fs::create_dir(r.p("d")).unwrap();
    r.watch(&["d"]);
    std::fs::write(r.p("d/f"), b"f").unwrap();
    let seen = r.until_marker("marker2");
    assert!(
        shape(&seen).contains(&(EventKind::Create(CreateKind::File), vec![r.p("d/f")])),
        "{seen:#?}"
    );

    // Deleted, recreated and watched again while the reader is held in its handler
    // (so before it has read the deletion): the add goes straight to the kernel, and the
    // old watch's late IN_DELETE / IN_DELETE_SELF / IN_IGNORED must not take the new
    // watch along.
    std::fs::remove_file(r.p("d/f")).unwrap();
    let _ = r.until_marker("marker3");
    let held = r.pause.lock().unwrap();
    r.entered.store(false, Ordering::Release);
    std::fs::write(r.p("marker4"), b"").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !r.entered.load(Ordering::Acquire) {
        assert!(
            Instant::now() < deadline,
            "the reader never took the marker"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    std::fs::remove_dir(r.p("d")).unwrap();
    std::fs::create_dir(r.p("d")).unwrap();
    r.watch(&["d"]);
    drop(held);
    let seen = r.until_marker("marker5");
    assert_eq!(
        shape(&seen)
            .into_iter()
            .filter(|(_, p)| p == &[r.p("d")])
            .collect::<Vec<_>>(),
        vec![
            (EventKind::Remove(RemoveKind::Folder), vec![r.p("d")]),
            (EventKind::Remove(RemoveKind::Folder), vec![r.p("d")]),
            (EventKind::Create(CreateKind::Folder), vec![r.p("d")]),
        ],
        "{seen:#?}"
    );
    assert_eq!(r.w.watched(), vec![r.root.clone(), r.p("d")]);
    std::fs::write(r.p("d/g"), b"g").unwrap();
    let seen = r.until_marker("marker6");
    assert!(
        shape(&seen).contains(&(EventKind::Create(CreateKind::File), vec![r.p("d/g")])),
        "{seen:#?}"
    );
}

#[test]
fn watch_errors_say_what_notify_says() {
    let r = rig();
    let gone = r.w.watch_dir(&r.p("missing")).unwrap_err();
    assert!(matches!(gone.kind, ErrorKind::PathNotFound), "{gone:?}");
    assert_eq!(gone.paths, vec![r.p("missing")]);
    std::fs::write(r.p("file"), b"").unwrap();
    let file = r.w.watch_dir(&r.p("file")).unwrap_err();
    assert!(
        matches!(&file.kind, ErrorKind::Io(e) if e.kind() == std::io::ErrorKind::NotADirectory),
        "{file:?}"
    );
    std::os::unix::fs::symlink(&r.root, r.p("link")).unwrap();
    let link = r.w.watch_dir(&r.p("link")).unwrap_err();
    assert!(
        matches!(&link.kind, ErrorKind::Io(e) if e.kind() == std::io::ErrorKind::NotADirectory),
        "{link:?}"
    );
    assert!(r.w.watched().is_empty());
}

#[test]
fn raw_masks_become_notifys_events() {
    let p = Path::new("/r/x");
    let one = |kind| vec![(kind, vec![p.to_path_buf()])];
    let cases = [
        (EventMask::CREATE, one(EventKind::Create(CreateKind::File))),
        (
            EventMask::CREATE | EventMask::ISDIR,
            one(EventKind::Create(CreateKind::Folder)),
        ),
        (EventMask::DELETE, one(EventKind::Remove(RemoveKind::File))),
        (
            EventMask::DELETE | EventMask::ISDIR,
            one(EventKind::Remove(RemoveKind::Folder)),
        ),
        (
            EventMask::DELETE_SELF,
            one(EventKind::Remove(RemoveKind::Folder)),
        ),
        (EventMask::MOVE_SELF, one(name(RenameMode::From))),
        (
            EventMask::MODIFY,
            one(EventKind::Modify(ModifyKind::Data(DataChange::Any))),
        ),
        (
            EventMask::CLOSE_WRITE,
            one(EventKind::Access(AccessKind::Close(AccessMode::Write))),
        ),
        (
            EventMask::ATTRIB,
            one(EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any))),
        ),
        (EventMask::IGNORED, vec![]),
    ];
    for (mask, want) in cases {
        let got = translate(mask, 0, p, &mut Pairing::default());
        assert_eq!(shape(&got), want, "{mask:?}");
        assert!(got.iter().all(|e| e.tracker().is_none()), "{mask:?}");
    }
    // A `To` whose cookie is not the last `From`'s is not paired.
    let mut pairing = Pairing::default();
    translate(EventMask::MOVED_FROM, 1, Path::new("/r/a"), &mut pairing);
    let got = translate(EventMask::MOVED_TO, 2, Path::new("/r/b"), &mut pairing);
    assert_eq!(
        shape(&got),
        vec![(name(RenameMode::To), vec![PathBuf::from("/r/b")])]
    );
    assert_eq!(got[0].tracker(), Some(2));
    assert!(overflow().need_rescan());
}

/// The reader is held inside the handler while more events than the kernel queues
/// (`fs.inotify.max_queued_events`) are made: the overflow reaches the handler as
/// notify's rescan flag.
#[test]
fn a_queue_overflow_becomes_a_rescan() {
    let limit: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let (tx, rx) = mpsc::channel();
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let entered = Arc::new(AtomicBool::new(false));
    let e = entered.clone();
    let w = DirInotify::new(move |res: notify::Result<Event>| {
        if !e.swap(true, Ordering::AcqRel) {
            let _ = gate_rx.recv();
        }
        let _ = tx.send(res);
    })
    .unwrap();
    w.watch_dir(&root).unwrap();
    std::fs::write(root.join("first"), b"").unwrap();
    // Only once the reader is held does the kernel's queue fill.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !entered.load(Ordering::Acquire) {
        assert!(
            Instant::now() < deadline,
            "the reader never took the first event"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // Each file is an IN_CREATE and an IN_CLOSE_WRITE; distinct names are not merged.
    for i in 0..limit / 2 + 100 {
        std::fs::File::create(root.join(format!("f{i}"))).unwrap();
    }
    gate_tx.send(()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Ok(ev)) if ev.need_rescan() => break,
            Ok(_) => {}
            Err(_) => panic!("no rescan after {} files", limit / 2 + 100),
        }
    }
}

/// Dropping the backend ends its reader (the handler, which holds the sender, is gone
/// when the drop returns), with or without watches left to wake it.
#[test]
fn dropping_the_backend_ends_its_reader() {
    for watched in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::channel::<()>();
        let w = DirInotify::new(move |_res: notify::Result<Event>| {
            let _ = &tx;
        })
        .unwrap();
        if watched {
            w.watch_dir(dir.path()).unwrap();
        }
        drop(w);
        assert_eq!(
            rx.try_recv(),
            Err(mpsc::TryRecvError::Disconnected),
            "watched: {watched}"
        );
    }
}
