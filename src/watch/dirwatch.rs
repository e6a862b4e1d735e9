//! Watches added directory by directory (issue 20 item 3). A recursive inotify watch makes
//! the backend walk the whole tree, which the start-up scan walks again right after; here
//! the scan adds the watches itself, one non-recursive watch per directory, each just
//! before it lists that directory. Whatever changes in a directory after its watch is
//! reported; whatever changed before is in the listing; so no change falls between the two.
//!
//! Directories that appear later (created, or moved in or renamed, whose watches the backend
//! drops with the old name) are watched by the [`Adder`], a thread of its own (the backend's
//! thread delivers events and cannot wait on itself), the same way: watch, then list, and
//! hints for what the listing found, sent after the watch is in place.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use notify::{Event, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use super::{IgnoreRules, RelPath, WatchEvent};

/// Where the events come from.
pub(super) enum Backend {
    /// Our own inotify backend (Linux, one directory at a time): a watch is added on the
    /// calling thread, with no lock of ours around it and no wait on the reader thread.
    #[cfg(target_os = "linux")]
    Inotify(super::inotify::DirInotify),
    /// notify's recommended backend: elsewhere, and for a whole-tree (recursive) watch. It
    /// adds a watch through `&mut self`, hence the lock.
    Notify(Mutex<RecommendedWatcher>),
}

impl Backend {
    /// The backend for watches added one directory at a time: ours on Linux, notify's
    /// elsewhere.
    pub fn per_directory(
        handler: impl FnMut(notify::Result<Event>) + Send + 'static,
        config: notify::Config,
    ) -> notify::Result<Self> {
        #[cfg(target_os = "linux")]
        {
            let _ = config;
            super::inotify::DirInotify::new(handler).map(Backend::Inotify)
        }
        #[cfg(not(target_os = "linux"))]
        {
            RecommendedWatcher::new(handler, config).map(|w| Backend::Notify(Mutex::new(w)))
        }
    }

    /// Watches one directory's own entries.
    fn watch_dir(&self, abs: &Path) -> notify::Result<()> {
        match self {
            #[cfg(target_os = "linux")]
            Backend::Inotify(w) => w.watch_dir(abs),
            Backend::Notify(w) => w
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .watch(abs, RecursiveMode::NonRecursive),
        }
    }
}

/// What the watcher and its helpers share: the backend, the folders it refused, and the
/// watch-limit flag.
pub(super) struct Shared {
    pub backend: Backend,
    pub root: PathBuf,
    pub unwatched: Mutex<Vec<(PathBuf, String)>>,
    pub watch_limit: Arc<AtomicBool>,
    /// Whether watches are added one directory at a time; `false` where the backend
    /// watches the root recursively, and [`Shared::add`] has nothing to do.
    pub per_dir: bool,
    /// The directories watched, so that a later full pass adds only the missing ones: a
    /// round trip per directory on every rescan would slow the rescans that run during an
    /// `rm -rf` (behind the backend's flood of events) past what the delete gate allows.
    pub watched: Arc<Watched>,
}

/// The paths watched one by one. The backend drops a directory's watches (its subtree's
/// too) when the directory is deleted or moved away; [`Watched::forget`] follows it.
#[derive(Default)]
pub(super) struct Watched(Mutex<BTreeSet<PathBuf>>);

impl Watched {
    fn contains(&self, abs: &Path) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(abs)
    }

    fn insert(&self, abs: &Path) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(abs.to_path_buf());
    }

    /// Forgets `abs` and everything below it.
    pub fn forget(&self, abs: &Path) {
        let mut set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let below: Vec<PathBuf> = set
            .range(abs.to_path_buf()..)
            .take_while(|p| p.starts_with(abs))
            .cloned()
            .collect();
        for p in below {
            set.remove(&p);
        }
    }
}

/// What adding one directory's watch came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Added {
    Watched,
    /// Gone before it could be watched: nothing to watch, nothing to list.
    Gone,
    /// Refused (recorded in `unwatched`) or the watch limit (the flag is set).
    Failed,
}

impl Shared {
    /// Adds the non-recursive watch on `abs`. Blocking (one `inotify_add_watch` with our
    /// backend; a round trip to notify's thread with notify's). Once the watch limit is
    /// reached nothing more is tried.
    pub fn add(&self, abs: &Path) -> Added {
        if !self.per_dir {
            return Added::Watched;
        }
        if self.watch_limit.load(Ordering::Acquire) {
            return Added::Failed;
        }
        let res = self.backend.watch_dir(abs);
        let Err(e) = res else {
            self.watched.insert(abs);
            return Added::Watched;
        };
        match &e.kind {
            notify::ErrorKind::MaxFilesWatch => {}
            notify::ErrorKind::Io(io) if io.raw_os_error() == Some(28) => {}
            notify::ErrorKind::PathNotFound => return Added::Gone,
            notify::ErrorKind::Io(io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return Added::Gone;
            }
            _ => {
                let why = match &e.kind {
                    notify::ErrorKind::Io(io) => io.to_string(),
                    _ => e.to_string(),
                };
                let mut list = self.unwatched.lock().unwrap_or_else(|e| e.into_inner());
                if !list.iter().any(|(p, _)| p == abs) {
                    list.push((abs.to_path_buf(), why));
                }
                return Added::Failed;
            }
        }
        // ENOSPC from inotify_add_watch is the watch limit, not a full disk.
        self.watch_limit.store(true, Ordering::Release);
        Added::Failed
    }

    /// [`Shared::add`] unless `abs` is watched already (a later full pass over a watched
    /// tree costs a lookup per directory, not a round trip).
    pub fn add_if_missing(&self, abs: &Path) -> Added {
        if self.per_dir && self.watched.contains(abs) {
            return Added::Watched;
        }
        self.add(abs)
    }

    /// Watches `top` and every directory below it (not ignored, not through a symlink),
    /// each before it is listed, calling `found` for every entry listed (with whether it
    /// is a directory). Blocking.
    pub fn watch_tree(
        &self,
        top: &Path,
        rules: &IgnoreRules,
        mut found: impl FnMut(&Path, &RelPath, bool),
    ) -> Added {
        let first = self.add(top);
        if first == Added::Gone {
            return first;
        }
        let mut stack = vec![top.to_path_buf()];
        while let Some(dir) = stack.pop() {
            if dir != top && self.add(&dir) == Added::Gone {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for ent in entries.flatten() {
                let abs = ent.path();
                // DirEntry::file_type does not follow a symlink.
                let is_dir = ent.file_type().is_ok_and(|t| t.is_dir());
                let Ok(rel) = RelPath::from_abs(&self.root, &abs) else {
                    continue;
                };
                if !IgnoreRules::is_ignore_file(&rel) && rules.is_ignored(&rel, is_dir) {
                    continue;
                }
                found(&abs, &rel, is_dir);
                if is_dir {
                    stack.push(abs);
                }
            }
        }
        first
    }
}

/// What the scan calls just before it lists a directory (the root included).
pub trait BeforeListing {
    fn before_listing(&self, dir: &RelPath);
}

impl BeforeListing for DirWatches {
    fn before_listing(&self, dir: &RelPath) {
        self.add(dir);
    }
}

/// The scan's handle on a watcher: adds a directory's watch before the scan lists it. Does
/// nothing once the watcher is gone. Cheap to clone.
#[derive(Clone)]
pub struct DirWatches {
    shared: Weak<Shared>,
}

impl std::fmt::Debug for DirWatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirWatches")
            .field("live", &(self.shared.strong_count() > 0))
            .finish()
    }
}

impl DirWatches {
    pub(super) fn new(shared: &Arc<Shared>) -> Self {
        DirWatches {
            shared: Arc::downgrade(shared),
        }
    }

    /// Watches the directory at `rel` (its own entries). Call it before listing the
    /// directory: a change after this is an event, one before is in the listing. Blocking.
    pub fn add(&self, rel: &RelPath) {
        if let Some(shared) = self.shared.upgrade() {
            shared.add_if_missing(&rel.to_path(&shared.root));
        }
    }
}

/// A directory that appeared after its parent was listed.
#[derive(Debug)]
pub(super) struct NewDir {
    pub abs: PathBuf,
    /// Created here (its entries, if any, were written after its creation and need hints);
    /// `false`: moved in or renamed (its contents are known or scanned with the move).
    pub created: bool,
}

/// Where the adder sends what it found: the watcher's own channel, with the same
/// overflow rule as the backend's events (a full channel becomes one owed rescan).
pub(super) struct Outbox {
    pub tx: mpsc::Sender<WatchEvent>,
    pub rescan_needed: Arc<AtomicBool>,
    pub rules: Arc<RwLock<Arc<IgnoreRules>>>,
    /// Renames reported unpaired: a moved directory's hint is a plain change.
    pub unpaired: bool,
}

impl Outbox {
    fn send(&self, ev: WatchEvent) {
        if self.rescan_needed.load(Ordering::Acquire) {
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(ev) {
            self.rescan_needed.store(true, Ordering::Release);
        }
    }
}

/// The thread that watches new directories. It holds the watcher weakly, so that dropping
/// the watcher stops the backend, whose event handler holds the sender: the thread ends
/// when the last sender goes.
pub(super) fn spawn_adder(
    shared: &Arc<Shared>,
    rx: std::sync::mpsc::Receiver<NewDir>,
    out: Outbox,
) -> std::io::Result<()> {
    let weak = Arc::downgrade(shared);
    std::thread::Builder::new()
        .name("scaidrive-watch-add".into())
        .spawn(move || {
            while let Ok(new) = rx.recv() {
                let Some(shared) = weak.upgrade() else { return };
                add_new_dir(&shared, &new, &out);
            }
        })
        .map(|_| ())
}

fn add_new_dir(shared: &Shared, new: &NewDir, out: &Outbox) {
    let rules = out.rules.read().unwrap_or_else(|e| e.into_inner()).clone();
    let Ok(top) = RelPath::from_abs(&shared.root, &new.abs) else {
        return;
    };
    if top.is_root() || rules.is_ignored(&top, true) {
        return;
    }
    let limit_before = shared.watch_limit.load(Ordering::Acquire);
    let mut hints = Vec::new();
    let added = shared.watch_tree(&new.abs, &rules, |_, rel, _| {
        if new.created {
            hints.push(rel.clone());
        }
    });
    if !limit_before && shared.watch_limit.load(Ordering::Acquire) {
        out.send(WatchEvent::Rescan {
            reason: super::RescanReason::WatchLimit,
        });
    }
    if added == Added::Gone {
        return;
    }
    // Sent only now that the watches are in place: whatever the planner then stats was
    // either listed here or will raise an event.
    out.send(if new.created || out.unpaired {
        WatchEvent::Changed(top)
    } else {
        WatchEvent::MoveEnd {
            path: top,
            present: true,
        }
    });
    for rel in hints {
        out.send(WatchEvent::Changed(rel));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgetting_a_directory_forgets_its_subtree_only() {
        let w = Watched::default();
        for p in ["/r", "/r/a", "/r/a/b", "/r/a/b/c", "/r/ab", "/r/c"] {
            w.insert(Path::new(p));
        }
        w.forget(Path::new("/r/a"));
        for (p, kept) in [
            ("/r", true),
            ("/r/a", false),
            ("/r/a/b", false),
            ("/r/a/b/c", false),
            ("/r/ab", true),
            ("/r/c", true),
        ] {
            assert_eq!(w.contains(Path::new(p)), kept, "{p}");
        }
    }
}
