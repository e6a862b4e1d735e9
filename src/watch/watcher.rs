//! The live watch on one mirror root: an event source ([`EventSource`]: on Linux our own
//! inotify backend ([`super::inotify`]), elsewhere `notify`'s recommended one, with renames
//! paired or reported unpaired) turned into
//! [`WatchEvent`]s on a bounded tokio channel. Owns the mapping from the backend's
//! event kinds to path hints, the backpressure rule (a full channel becomes one "rescan
//! needed", never a blocked notify thread and never a silent drop) and the watch-limit error.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use notify::event::{AccessKind, AccessMode, CreateKind, MetadataKind, ModifyKind, RemoveKind};
use notify::event::{EventKind, RenameMode};
use notify::{Event, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use super::dirwatch::{Added, Backend, DirWatches, NewDir, Outbox, Shared, Watched, spawn_adder};
use super::{IgnoreRules, RelPath, RelPathError};

/// inotify watches one directory at a time cheaply, so watches follow the scan; other
/// backends (FSEvents restarts its stream per watched path) watch the tree as a whole.
const PER_DIRECTORY: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// Default capacity of the event channel between the notify thread and the engine.
pub const DEFAULT_CHANNEL_CAPACITY: usize = 4096;

/// Where the watch-limit advice points; shared by the startup error and the runtime event.
const WATCH_LIMIT_FIX: &str = "raise it with `sysctl fs.inotify.max_user_watches=524288` and make \
     that permanent with a drop-in /etc/sysctl.d/90-scaidrive-inotify.conf containing \
     `fs.inotify.max_user_watches=524288`; until then this mirror is kept in sync by periodic \
     full scans";

/// A hint that something under the root may have changed. Hints, not facts: the planner
/// stats the path before acting. A `Changed` directory may hide children no event named
/// (a directory moved in from outside the root): the planner scans its subtree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    Changed(RelPath),
    Removed(RelPath),
    /// One end of a kernel rename (inotify's `IN_MOVED_FROM`/`IN_MOVED_TO`); `present` says
    /// which. On its own (a move out of or into the root) it means `Removed`/`Changed`; when
    /// both ends are inside the root, a `Renamed` follows. The queue tells these apart from
    /// writes so that a plain `mv` need not wait out the full quiet period.
    MoveEnd {
        path: RelPath,
        present: bool,
    },
    /// A move seen from both ends inside the root (a strong hint for a remote move).
    Renamed {
        from: RelPath,
        to: RelPath,
    },
    /// Events were or may have been lost; only a full scan restores the picture.
    Rescan {
        reason: RescanReason,
    },
    /// The backend reported a problem that is not about lost events.
    Error(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RescanReason {
    /// Our channel to the engine was full when an event arrived.
    ChannelFull,
    /// The kernel or backend dropped events (inotify queue overflow, FSEvents MustScanSubDirs).
    BackendOverflow,
    /// A path with a non-UTF-8 name changed; the scan reports it as skipped.
    NonUtf8Path(String),
    /// The root itself was removed or moved; the scan decides whether to pause the mirror.
    RootChanged,
    /// New directories could not be watched: the watch limit was reached at runtime. The
    /// engine should switch this mirror to periodic scanning.
    WatchLimit,
}

impl fmt::Display for RescanReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RescanReason::ChannelFull => f.write_str("watch event channel overflowed"),
            RescanReason::BackendOverflow => f.write_str("file watcher dropped events"),
            RescanReason::NonUtf8Path(p) => write!(f, "change to non-UTF-8 path {p}"),
            RescanReason::RootChanged => f.write_str("mirror root was moved or removed"),
            RescanReason::WatchLimit => write!(f, "inotify watch limit reached: {WATCH_LIMIT_FIX}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// Not enough inotify watches for this tree. The engine falls back to periodic scanning.
    #[error("cannot watch {root}: inotify watch limit reached; {WATCH_LIMIT_FIX}", root = root.display())]
    WatchLimit { root: PathBuf },
    #[error("cannot watch {root}: root is unavailable: {reason}", root = root.display())]
    RootUnavailable { root: PathBuf, reason: String },
    #[error("cannot watch {root}: {source}", root = root.display())]
    Backend {
        root: PathBuf,
        #[source]
        source: notify::Error,
    },
}

impl WatchError {
    fn from_notify(root: &Path, err: notify::Error) -> Self {
        let root = root.to_path_buf();
        match &err.kind {
            notify::ErrorKind::MaxFilesWatch => WatchError::WatchLimit { root },
            // ENOSPC from inotify_add_watch means the watch limit, not a full disk.
            notify::ErrorKind::Io(e) if e.raw_os_error() == Some(28) => {
                WatchError::WatchLimit { root }
            }
            notify::ErrorKind::PathNotFound => WatchError::RootUnavailable {
                root,
                reason: "no such directory".into(),
            },
            _ => WatchError::Backend { root, source: err },
        }
    }
}

/// When the backend last reported a removal (a delete, a move out, or lost events, which
/// during a `rm -rf` stand for removals), stamped on the backend's thread as the event
/// arrives. The engine reads no events while a pass runs, and a pass over a million entries
/// takes seconds; events read afterwards would say "removals are still coming in" too late.
#[derive(Debug)]
pub struct RemovalClock {
    base: Instant,
    /// Milliseconds after `base`, plus one; 0 = never.
    last: AtomicU64,
}

impl RemovalClock {
    pub fn new() -> Self {
        RemovalClock {
            base: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    /// Records a removal now.
    pub fn note(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last.fetch_max(ms + 1, Ordering::Relaxed);
    }

    /// When the last removal was recorded (to the millisecond).
    pub fn last(&self) -> Option<Instant> {
        match self.last.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.base + std::time::Duration::from_millis(ms - 1)),
        }
    }
}

impl Default for RemovalClock {
    fn default() -> Self {
        RemovalClock::new()
    }
}

/// Whether a mapped event says something was removed (or may have been: lost events).
fn is_removal(ev: &WatchEvent) -> bool {
    matches!(
        ev,
        WatchEvent::Removed(_)
            | WatchEvent::MoveEnd { present: false, .. }
            | WatchEvent::Rescan { .. }
    )
}

/// Where a watcher's events come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventSource {
    /// The platform's backend (inotify on Linux): kernel renames arrive paired.
    Native,
    /// The platform's backend, with every rename reported as an unpaired removal and
    /// creation, as FSEvents and kqueue report them: the mirror must still move, not
    /// re-upload (its offline matching by inode, size, mtime and hash pairs them).
    Unpaired,
}

/// The watch on one root: a watch per directory (see [`super::dirwatch`]). Dropping it
/// stops the watch.
pub struct Watcher {
    shared: Arc<Shared>,
    rx: mpsc::Receiver<WatchEvent>,
    removals: Arc<RemovalClock>,
    rescan_needed: Arc<AtomicBool>,
    watch_limit: Arc<AtomicBool>,
    rules: Arc<RwLock<Arc<IgnoreRules>>>,
    root: PathBuf,
}

impl fmt::Debug for Watcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watcher")
            .field("root", &self.root)
            .field("pending", &self.rx.len())
            .field("rescan_needed", &self.rescan_needed.load(Ordering::Relaxed))
            .finish()
    }
}

impl Watcher {
    /// Starts watching `root` and every directory below it (not ignored ones). Blocking
    /// (it walks the tree to add the watches): call it from `spawn_blocking`. Directories
    /// created later are watched as their events arrive.
    pub fn new(root: &Path, rules: IgnoreRules, capacity: usize) -> Result<Self, WatchError> {
        Self::with_source(root, rules, capacity, EventSource::Native)
    }

    /// [`Watcher::new`] with a chosen event source.
    pub fn with_source(
        root: &Path,
        rules: IgnoreRules,
        capacity: usize,
        source: EventSource,
    ) -> Result<Self, WatchError> {
        let w = Self::deferred(root, rules, capacity, source)?;
        if w.shared.per_dir {
            let rules = w.rules.read().unwrap_or_else(|e| e.into_inner()).clone();
            w.shared.watch_tree(&w.root, &rules, |_, _, _| {});
            if w.watch_limit.load(Ordering::Acquire) {
                return Err(WatchError::WatchLimit {
                    root: root.to_path_buf(),
                });
            }
        }
        Ok(w)
    }

    /// Starts a watch on `root` that covers only the root's own entries until the scan adds
    /// the directories below, each before listing it ([`Watcher::dir_watches`],
    /// [`super::scan_parallel_watching`]): the start-up walks the tree once, not twice.
    /// Directories created later are watched as their events arrive. Where the backend
    /// cannot watch one directory at a time (not inotify), the whole tree is watched here.
    pub fn deferred(
        root: &Path,
        rules: IgnoreRules,
        capacity: usize,
        source: EventSource,
    ) -> Result<Self, WatchError> {
        // Events carry the prefix we register; canonical means it matches what `scan` and
        // the planner derive, whatever alias the config used.
        let canon = root
            .canonicalize()
            .map_err(|e| WatchError::RootUnavailable {
                root: root.to_path_buf(),
                reason: e.to_string(),
            })?;
        if !canon.is_dir() {
            return Err(WatchError::RootUnavailable {
                root: root.to_path_buf(),
                reason: "not a directory".into(),
            });
        }
        let per_dir = PER_DIRECTORY;
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let rescan_needed = Arc::new(AtomicBool::new(false));
        let watch_limit = Arc::new(AtomicBool::new(false));
        let rules = Arc::new(RwLock::new(Arc::new(rules)));
        let removals = Arc::new(RemovalClock::new());
        let unpaired = source == EventSource::Unpaired;
        let (add_tx, add_rx) = std::sync::mpsc::channel();
        let watched = Arc::new(Watched::default());
        let mut bridge = Bridge {
            mapper: Mapper {
                root: canon.clone(),
                rules: rules.clone(),
                seen_non_utf8: HashSet::new(),
                recent_dir_moves: VecDeque::new(),
            },
            tx: tx.clone(),
            removals: removals.clone(),
            rescan_needed: rescan_needed.clone(),
            watch_limit: watch_limit.clone(),
            unpaired,
            adder: per_dir.then_some((add_tx, watched.clone())),
        };
        let handler = move |res: notify::Result<Event>| bridge.handle(res);
        let mut unwatched = Vec::new();
        let backend = if per_dir {
            Backend::per_directory(handler, backend_config())
                .map_err(|e| WatchError::from_notify(root, e))?
        } else {
            let mut backend = RecommendedWatcher::new(handler, backend_config())
                .map_err(|e| WatchError::from_notify(root, e))?;
            if let Err(e) = backend.watch(&canon, RecursiveMode::Recursive) {
                // A recursive watch fails as a whole on one folder it may not read;
                // anything else (the watch limit, the root gone) is the whole watcher's error.
                if !is_refused(&e) {
                    return Err(WatchError::from_notify(root, e));
                }
                watch_around(&mut backend, &canon, &mut unwatched)
                    .map_err(|e| WatchError::from_notify(root, e))?;
            }
            Backend::Notify(Mutex::new(backend))
        };
        let shared = Arc::new(Shared {
            backend,
            root: canon.clone(),
            unwatched: Mutex::new(unwatched),
            watch_limit: watch_limit.clone(),
            per_dir,
            watched,
        });
        if per_dir {
            let out = Outbox {
                tx,
                rescan_needed: rescan_needed.clone(),
                rules: rules.clone(),
                unpaired,
            };
            spawn_adder(&shared, add_rx, out).map_err(|e| WatchError::Backend {
                root: root.to_path_buf(),
                source: notify::Error::io(e),
            })?;
            match shared.add(&canon) {
                Added::Watched => {}
                Added::Gone => {
                    return Err(WatchError::RootUnavailable {
                        root: root.to_path_buf(),
                        reason: "no such directory".into(),
                    });
                }
                Added::Failed if watch_limit.load(Ordering::Acquire) => {
                    return Err(WatchError::WatchLimit {
                        root: root.to_path_buf(),
                    });
                }
                // Refused: listed in `unwatched`, the rest of the tree is still watched.
                Added::Failed => {}
            }
        }
        Ok(Watcher {
            shared,
            rx,
            removals,
            rescan_needed,
            watch_limit,
            rules,
            root: canon,
        })
    }

    /// The scan's handle for adding watches directory by directory (a no-op where the
    /// backend watches the tree as a whole).
    pub fn dir_watches(&self) -> DirWatches {
        DirWatches::new(&self.shared)
    }

    /// The canonical root being watched.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folders that could not be watched, with why (empty when the whole tree is).
    /// Folders the scan adds are listed as it reaches them.
    pub fn unwatched(&self) -> Vec<(PathBuf, String)> {
        self.shared
            .unwatched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Next event. A pending "rescan needed" (set when the channel overflowed) is reported
    /// first, as `WatchEvent::Rescan { reason: ChannelFull }`. Cancel-safe.
    pub async fn recv(&mut self) -> Option<WatchEvent> {
        if let Some(ev) = self.take_overflow() {
            return Some(ev);
        }
        self.rx.recv().await
    }

    /// Non-waiting variant of [`Watcher::recv`].
    pub fn try_recv(&mut self) -> Option<WatchEvent> {
        self.take_overflow().or_else(|| self.rx.try_recv().ok())
    }

    /// When removals last arrived from the backend, whether or not their events have been
    /// read yet.
    pub fn removals(&self) -> Arc<RemovalClock> {
        self.removals.clone()
    }

    /// Whether an overflow happened that `recv` has not reported yet.
    pub fn rescan_needed(&self) -> bool {
        self.rescan_needed.load(Ordering::Acquire)
    }

    /// Sticky: the watch limit was hit after start, so directories created since may be
    /// unwatched. Also sent as `Rescan { reason: WatchLimit }`, but that event can be folded
    /// into a `ChannelFull` rescan; this flag cannot be lost. The engine then scans
    /// periodically for as long as this watcher lives.
    pub fn watch_limit_reached(&self) -> bool {
        self.watch_limit.load(Ordering::Acquire)
    }

    /// Swaps in new rules (after `.scaidriveignore` or the config changed). Events already
    /// queued were filtered with the old rules; the caller rescans anyway after a rule change.
    pub fn set_rules(&self, rules: IgnoreRules) {
        let mut guard = self.rules.write().unwrap_or_else(|e| e.into_inner());
        *guard = Arc::new(rules);
    }

    fn take_overflow(&self) -> Option<WatchEvent> {
        self.rescan_needed
            .swap(false, Ordering::AcqRel)
            .then_some(WatchEvent::Rescan {
                reason: RescanReason::ChannelFull,
            })
    }
}

/// The OS's reason, without notify's path list (the caller names the folder).
fn why(e: &notify::Error) -> String {
    match &e.kind {
        notify::ErrorKind::Io(io) => io.to_string(),
        _ => e.to_string(),
    }
}

/// Whether the backend refused one folder (permission), as opposed to failing as a whole.
fn is_refused(e: &notify::Error) -> bool {
    matches!(&e.kind, notify::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::PermissionDenied)
}

/// Watches `dir`'s tree around the folders the backend refuses: a folder whose recursive
/// watch fails is watched alone (its own entries) and its child folders are tried in
/// turn, down to the refused ones, which are listed in `unwatched`. Folders created later
/// directly in a folder watched alone are not watched until the watcher is built again
/// (the engine does that periodically while anything is unwatched). Symlinks are not
/// followed. Blocking.
/// Never follow symlinks: a link to /home would otherwise put watches (and events, and so
/// reads) outside the root.
fn backend_config() -> notify::Config {
    notify::Config::default().with_follow_symlinks(false)
}

fn watch_around(
    backend: &mut RecommendedWatcher,
    dir: &Path,
    unwatched: &mut Vec<(PathBuf, String)>,
) -> notify::Result<()> {
    match backend.watch(dir, RecursiveMode::Recursive) {
        Ok(()) => return Ok(()),
        Err(e) if !is_refused(&e) => return Err(e),
        // The watches it added before the refusal go with it.
        Err(_) => {
            let _ = backend.unwatch(dir);
        }
    }
    if let Err(e) = backend.watch(dir, RecursiveMode::NonRecursive) {
        if !is_refused(&e) {
            return Err(e);
        }
        unwatched.push((dir.to_path_buf(), why(&e)));
        return Ok(());
    }
    let children = match std::fs::read_dir(dir) {
        Ok(c) => c,
        Err(e) => {
            unwatched.push((dir.to_path_buf(), e.to_string()));
            return Ok(());
        }
    };
    for child in children.flatten() {
        // DirEntry::file_type does not follow a symlink.
        if child.file_type().is_ok_and(|t| t.is_dir()) {
            watch_around(backend, &child.path(), unwatched)?;
        }
    }
    Ok(())
}

/// Runs on the backend's own thread (never a tokio worker). Sending is only ever `try_send`.
/// Mapping happens here too, including an lstat for the events that do not say whether a
/// path is a directory: filtering ignored churn (editor swap files, build output) at the
/// source keeps it out of the bounded channel, so it cannot cause overflow rescans.
struct Bridge {
    mapper: Mapper,
    tx: mpsc::Sender<WatchEvent>,
    removals: Arc<RemovalClock>,
    rescan_needed: Arc<AtomicBool>,
    watch_limit: Arc<AtomicBool>,
    /// [`EventSource::Unpaired`]: renames go out as a removal and a creation.
    unpaired: bool,
    /// Watches one directory at a time: new directories go to the adder thread, and a
    /// directory's own move (`IN_MOVE_SELF`, which every per-directory watch reports on
    /// top of its parent's paired `IN_MOVED_FROM`) is dropped.
    adder: Option<(std::sync::mpsc::Sender<NewDir>, Arc<Watched>)>,
}

/// `IN_MOVE_SELF` of a directory below the root, as notify reports it: a rename's source
/// end without the kernel's cookie.
fn is_self_move(ev: &Event, root: &Path) -> bool {
    matches!(
        ev.kind,
        EventKind::Modify(ModifyKind::Name(RenameMode::From))
    ) && ev.attrs.tracker().is_none()
        && ev.paths.iter().all(|p| p != root)
}

/// A directory that appeared below the root: created, or the destination of a move.
fn new_dir(ev: &Event, root: &Path) -> Option<NewDir> {
    let created = match ev.kind {
        EventKind::Create(CreateKind::Folder) => true,
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => false,
        _ => return None,
    };
    let [abs] = ev.paths.as_slice() else {
        return None;
    };
    if abs == root || !abs.starts_with(root) {
        return None;
    }
    if !created && !std::fs::symlink_metadata(abs).is_ok_and(|m| m.is_dir()) {
        return None;
    }
    Some(NewDir {
        abs: abs.clone(),
        created,
    })
}

/// A rename as FSEvents and kqueue report it: two unrelated paths.
fn unpair(ev: WatchEvent) -> Vec<WatchEvent> {
    match ev {
        WatchEvent::Renamed { from, to } => {
            vec![WatchEvent::Removed(from), WatchEvent::Changed(to)]
        }
        WatchEvent::MoveEnd {
            path,
            present: false,
        } => vec![WatchEvent::Removed(path)],
        WatchEvent::MoveEnd {
            path,
            present: true,
        } => vec![WatchEvent::Changed(path)],
        other => vec![other],
    }
}

impl Bridge {
    fn handle(&mut self, res: notify::Result<Event>) {
        if let (Some((adder, watched)), Ok(ev)) = (&self.adder, &res) {
            // The backend drops the watches of a directory deleted or moved away; a
            // directory created at a path is a new one, whatever was watched there.
            if matches!(
                ev.kind,
                EventKind::Remove(_)
                    | EventKind::Modify(ModifyKind::Name(_))
                    | EventKind::Create(_)
            ) && let Some(gone) = ev.paths.first()
            {
                watched.forget(gone);
            }
            if is_self_move(ev, &self.mapper.root) {
                return;
            }
            // Before the overflow check below: a directory is watched even while a
            // rescan is owed (the rescan lists it, but only the watch sees what follows).
            if let Some(new) = new_dir(ev, &self.mapper.root) {
                let _ = adder.send(new);
            }
        }
        if let Err(e) = &res
            && matches!(e.kind, notify::ErrorKind::MaxFilesWatch)
        {
            self.watch_limit.store(true, Ordering::Release);
        }
        // Once a rescan is owed, every event until the engine picks it up is covered by that
        // rescan (it starts later), so sending them would only fill the channel again. Its
        // removals still count as removals coming in (unmapped: no lstat per event here).
        if self.rescan_needed.load(Ordering::Acquire) {
            if let Ok(ev) = &res
                && (ev.need_rescan()
                    || matches!(
                        ev.kind,
                        EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
                    ))
            {
                self.removals.note();
            }
            return;
        }
        let mut events = self.mapper.map(res);
        if self.unpaired {
            events = events.into_iter().flat_map(unpair).collect();
        }
        for ev in events {
            if is_removal(&ev) {
                self.removals.note();
            }
            match self.tx.try_send(ev) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.removals.note();
                    self.rescan_needed.store(true, Ordering::Release);
                    return;
                }
                // The Watcher (and its receiver) is being dropped.
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    }
}

/// Turns backend events into hints relative to the root. Separate from the channel so the
/// mapping is testable with synthetic events.
struct Mapper {
    root: PathBuf,
    rules: Arc<RwLock<Arc<IgnoreRules>>>,
    /// Non-UTF-8 paths already turned into a rescan: the scan reports them once; rescanning
    /// on every write to such a file would walk the whole tree again and again.
    seen_non_utf8: HashSet<PathBuf>,
    /// Recent directory moves inside the root (absolute from → to). notify's inotify backend
    /// re-points its watches only after it has delivered the whole batch that contained the
    /// move (ours at once, but only when the two ends are read back to back), so a file
    /// written into the directory right after the move can still be reported under the old
    /// name; such paths are rewritten to the new one.
    recent_dir_moves: VecDeque<(PathBuf, PathBuf)>,
}

/// How many directory moves are remembered for path rewriting.
const RECENT_DIR_MOVES: usize = 64;

/// How one absolute path from the backend relates to the mirror.
enum Place {
    Mirrored(RelPath),
    Ignored,
    Outside,
    Root,
    NonUtf8(PathBuf),
}

impl Mapper {
    fn map(&mut self, res: notify::Result<Event>) -> Vec<WatchEvent> {
        let mut event = match res {
            Ok(ev) => ev,
            Err(err) => {
                return vec![match err.kind {
                    notify::ErrorKind::MaxFilesWatch => WatchEvent::Rescan {
                        reason: RescanReason::WatchLimit,
                    },
                    _ => WatchEvent::Error(err.to_string()),
                }];
            }
        };
        if event.need_rescan() {
            return vec![WatchEvent::Rescan {
                reason: RescanReason::BackendOverflow,
            }];
        }
        let rules = self.rules.read().unwrap_or_else(|e| e.into_inner()).clone();
        if !self.recent_dir_moves.is_empty() {
            for p in &mut event.paths {
                if let Some(fixed) = self.rewrite_stale(p) {
                    *p = fixed;
                }
            }
        }

        if let EventKind::Modify(ModifyKind::Name(RenameMode::Both)) = event.kind
            && let [from, to] = event.paths.as_slice()
        {
            let is_dir = std::fs::symlink_metadata(to).is_ok_and(|m| m.is_dir());
            if is_dir && from.starts_with(&self.root) && to.starts_with(&self.root) {
                if self.recent_dir_moves.len() == RECENT_DIR_MOVES {
                    self.recent_dir_moves.pop_front();
                }
                self.recent_dir_moves.push_back((from.clone(), to.clone()));
            }
            let from = self.place(&rules, from, is_dir);
            let to = self.place(&rules, to, is_dir);
            return match (from, to) {
                (Place::Mirrored(from), Place::Mirrored(to)) => {
                    vec![WatchEvent::Renamed { from, to }]
                }
                (Place::NonUtf8(p), _) | (_, Place::NonUtf8(p)) => self.non_utf8(p),
                (Place::Root, _) | (_, Place::Root) => vec![WatchEvent::Rescan {
                    reason: RescanReason::RootChanged,
                }],
                // Atomic save through an ignored temp name, or a move in from outside.
                (_, Place::Mirrored(to)) => vec![WatchEvent::Changed(to)],
                // Moved out of the root or to an ignored name: gone as far as the mirror goes.
                (Place::Mirrored(from), _) => vec![WatchEvent::Removed(from)],
                _ => vec![],
            };
        }

        let Some(presence) = classify_kind(&event.kind) else {
            return vec![];
        };
        // Both ends of a kernel rename carry the kernel's cookie; a self-move does not.
        let move_end = matches!(
            event.kind,
            EventKind::Modify(ModifyKind::Name(RenameMode::From | RenameMode::To))
        ) && event.attrs.tracker().is_some();
        let dir_hint = match event.kind {
            EventKind::Create(CreateKind::Folder) | EventKind::Remove(RemoveKind::Folder) => {
                Some(true)
            }
            _ => None,
        };
        let mut out = Vec::new();
        for abs in &event.paths {
            let is_dir = dir_hint
                .unwrap_or_else(|| std::fs::symlink_metadata(abs).is_ok_and(|m| m.is_dir()));
            match self.place(&rules, abs, is_dir) {
                Place::Mirrored(rel) => {
                    let gone = match presence {
                        Presence::Present => false,
                        Presence::Gone => true,
                        Presence::Check => std::fs::symlink_metadata(abs).is_err(),
                    };
                    out.push(if move_end {
                        WatchEvent::MoveEnd {
                            path: rel,
                            present: !gone,
                        }
                    } else if gone {
                        WatchEvent::Removed(rel)
                    } else {
                        WatchEvent::Changed(rel)
                    });
                }
                Place::NonUtf8(p) => out.extend(self.non_utf8(p)),
                Place::Root => {
                    // Writes and attribute changes on the root are noise; the root itself
                    // disappearing or moving is what an unmount or `mv` looks like.
                    if matches!(
                        event.kind,
                        EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
                    ) {
                        out.push(WatchEvent::Rescan {
                            reason: RescanReason::RootChanged,
                        });
                    }
                }
                Place::Ignored | Place::Outside => {}
            }
        }
        out
    }

    /// The current name of a path reported under a directory that was just moved away, if
    /// that directory is still gone (a new directory under the old name is real).
    fn rewrite_stale(&self, abs: &Path) -> Option<PathBuf> {
        let mut cur = abs.to_path_buf();
        let mut changed = false;
        // Newest first; a few rounds follow a directory moved twice in a row.
        for _ in 0..4 {
            let hit = self.recent_dir_moves.iter().rev().find_map(|(from, to)| {
                let rest = cur.strip_prefix(from).ok()?;
                (!rest.as_os_str().is_empty() && std::fs::symlink_metadata(from).is_err())
                    .then(|| to.join(rest))
            });
            match hit {
                Some(next) => {
                    cur = next;
                    changed = true;
                }
                None => break,
            }
        }
        changed.then_some(cur)
    }

    fn place(&self, rules: &IgnoreRules, abs: &Path, is_dir: bool) -> Place {
        match RelPath::from_abs(&self.root, abs) {
            Ok(rel) if rel.is_root() => Place::Root,
            // The ignore file always passes: its change means "reload the rules".
            Ok(rel) if IgnoreRules::is_ignore_file(&rel) => Place::Mirrored(rel),
            Ok(rel) if rules.is_ignored(&rel, is_dir) => Place::Ignored,
            Ok(rel) => Place::Mirrored(rel),
            Err(RelPathError::NonUtf8(_)) => Place::NonUtf8(abs.to_path_buf()),
            Err(_) => Place::Outside,
        }
    }

    fn non_utf8(&mut self, abs: PathBuf) -> Vec<WatchEvent> {
        const MAX_REMEMBERED: usize = 1024;
        if self.seen_non_utf8.contains(&abs) {
            return vec![];
        }
        if self.seen_non_utf8.len() >= MAX_REMEMBERED {
            self.seen_non_utf8.clear();
        }
        let shown = abs
            .strip_prefix(&self.root)
            .unwrap_or(&abs)
            .to_string_lossy()
            .into_owned();
        self.seen_non_utf8.insert(abs);
        vec![WatchEvent::Rescan {
            reason: RescanReason::NonUtf8Path(shown),
        }]
    }
}

#[derive(Clone, Copy)]
enum Presence {
    Present,
    Gone,
    /// The backend does not say which side of a rename this is (FSEvents): stat decides.
    Check,
}

/// Which event kinds are worth a look, and whether they say the path now exists.
/// Opens and reads are dropped: the uploader reading a file must not re-queue it.
fn classify_kind(kind: &EventKind) -> Option<Presence> {
    match kind {
        EventKind::Create(_) => Some(Presence::Present),
        EventKind::Remove(_) => Some(Presence::Gone),
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) => Some(Presence::Gone),
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => Some(Presence::Present),
        EventKind::Modify(ModifyKind::Name(_)) => Some(Presence::Check),
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => None,
        EventKind::Modify(_) => Some(Presence::Present),
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(Presence::Present),
        EventKind::Access(_) => None,
        EventKind::Any => Some(Presence::Check),
        EventKind::Other => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{DataChange, Flag};

    fn rp(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    fn mapper(root: &Path) -> Mapper {
        Mapper {
            root: root.to_path_buf(),
            rules: Arc::new(RwLock::new(Arc::new(
                IgnoreRules::new(&["skip/".to_string()]).unwrap(),
            ))),
            seen_non_utf8: HashSet::new(),
            recent_dir_moves: VecDeque::new(),
        }
    }

    fn ev(kind: EventKind, paths: &[&Path]) -> notify::Result<Event> {
        let mut e = Event::new(kind);
        for p in paths {
            e = e.add_path(p.to_path_buf());
        }
        Ok(e)
    }

    #[test]
    fn maps_backend_events_to_hints() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("skip")).unwrap();
        std::fs::write(root.join("exists.txt"), b"x").unwrap();
        let r = |s: &str| root.join(s);
        let (a, b, swp, out) = (
            r("a.txt"),
            r("b.txt"),
            r(".a.txt.swp"),
            Path::new("/elsewhere/x"),
        );
        let name = |m| EventKind::Modify(ModifyKind::Name(m));

        let cases: Vec<(&str, notify::Result<Event>, Vec<WatchEvent>)> = vec![
            (
                "create",
                ev(EventKind::Create(CreateKind::File), &[&a]),
                vec![WatchEvent::Changed(rp("a.txt"))],
            ),
            (
                "write",
                ev(EventKind::Modify(ModifyKind::Data(DataChange::Any)), &[&a]),
                vec![WatchEvent::Changed(rp("a.txt"))],
            ),
            (
                "close-write",
                ev(
                    EventKind::Access(AccessKind::Close(AccessMode::Write)),
                    &[&a],
                ),
                vec![WatchEvent::Changed(rp("a.txt"))],
            ),
            (
                "open is not a change",
                ev(EventKind::Access(AccessKind::Open(AccessMode::Any)), &[&a]),
                vec![],
            ),
            (
                "remove",
                ev(EventKind::Remove(RemoveKind::File), &[&a]),
                vec![WatchEvent::Removed(rp("a.txt"))],
            ),
            (
                "paired rename",
                ev(name(RenameMode::Both), &[&a, &b]),
                vec![WatchEvent::Renamed {
                    from: rp("a.txt"),
                    to: rp("b.txt"),
                }],
            ),
            (
                "rename from (single)",
                ev(name(RenameMode::From), &[&a]),
                vec![WatchEvent::Removed(rp("a.txt"))],
            ),
            (
                "rename to (single)",
                ev(name(RenameMode::To), &[&b]),
                vec![WatchEvent::Changed(rp("b.txt"))],
            ),
            (
                "rename, unknown side, path exists",
                ev(name(RenameMode::Any), &[&r("exists.txt")]),
                vec![WatchEvent::Changed(rp("exists.txt"))],
            ),
            (
                "rename, unknown side, path gone",
                ev(name(RenameMode::Any), &[&a]),
                vec![WatchEvent::Removed(rp("a.txt"))],
            ),
            (
                "atomic save from ignored temp",
                ev(name(RenameMode::Both), &[&swp, &a]),
                vec![WatchEvent::Changed(rp("a.txt"))],
            ),
            (
                "rename to ignored name",
                ev(name(RenameMode::Both), &[&a, &swp]),
                vec![WatchEvent::Removed(rp("a.txt"))],
            ),
            (
                "move out of root",
                ev(name(RenameMode::Both), &[&a, out]),
                vec![WatchEvent::Removed(rp("a.txt"))],
            ),
            (
                "move into root",
                ev(name(RenameMode::Both), &[out, &b]),
                vec![WatchEvent::Changed(rp("b.txt"))],
            ),
            (
                "ignored temp file",
                ev(EventKind::Create(CreateKind::File), &[&swp]),
                vec![],
            ),
            (
                "inside ignored dir",
                ev(EventKind::Create(CreateKind::File), &[&r("skip/x")]),
                vec![],
            ),
            (
                "outside root",
                ev(EventKind::Create(CreateKind::File), &[out]),
                vec![],
            ),
            (
                "ignore file always passes",
                ev(
                    EventKind::Create(CreateKind::File),
                    &[&r(".scaidriveignore")],
                ),
                vec![WatchEvent::Changed(rp(".scaidriveignore"))],
            ),
            (
                "root removed",
                ev(EventKind::Remove(RemoveKind::Folder), &[root]),
                vec![WatchEvent::Rescan {
                    reason: RescanReason::RootChanged,
                }],
            ),
            (
                "root attrib",
                ev(
                    EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
                    &[root],
                ),
                vec![],
            ),
            (
                "backend overflow flag",
                Ok(Event::new(EventKind::Other).set_flag(Flag::Rescan)),
                vec![WatchEvent::Rescan {
                    reason: RescanReason::BackendOverflow,
                }],
            ),
            (
                "watch limit at runtime",
                Err(notify::Error::new(notify::ErrorKind::MaxFilesWatch)),
                vec![WatchEvent::Rescan {
                    reason: RescanReason::WatchLimit,
                }],
            ),
            (
                "other backend error",
                Err(notify::Error::generic("boom")),
                vec![WatchEvent::Error("boom".into())],
            ),
        ];
        for (what, input, want) in cases {
            let mut m = mapper(root);
            assert_eq!(m.map(input), want, "{what}");
        }
    }

    #[test]
    fn late_events_under_a_moved_directory_get_the_new_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("new/sub")).unwrap();
        let name = |m| EventKind::Modify(ModifyKind::Name(m));
        let mut m = mapper(root);
        assert_eq!(
            m.map(ev(
                name(RenameMode::Both),
                &[&root.join("old"), &root.join("new")]
            )),
            vec![WatchEvent::Renamed {
                from: rp("old"),
                to: rp("new")
            }]
        );
        // Reported by the backend under the stale name.
        assert_eq!(
            m.map(ev(
                EventKind::Create(CreateKind::File),
                &[&root.join("old/sub/f.txt")]
            )),
            vec![WatchEvent::Changed(rp("new/sub/f.txt"))]
        );
        // Once something real exists under the old name again, its events are its own.
        std::fs::create_dir(root.join("old")).unwrap();
        assert_eq!(
            m.map(ev(
                EventKind::Create(CreateKind::File),
                &[&root.join("old/g.txt")]
            )),
            vec![WatchEvent::Changed(rp("old/g.txt"))]
        );
    }

    #[test]
    fn the_unpaired_source_reports_renames_as_two_paths() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("new")).unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let mut bridge = Bridge {
            mapper: mapper(root),
            tx,
            removals: Arc::new(RemovalClock::new()),
            rescan_needed: Arc::new(AtomicBool::new(false)),
            watch_limit: Arc::new(AtomicBool::new(false)),
            unpaired: true,
            adder: None,
        };
        let both = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        bridge.handle(ev(both, &[&root.join("old"), &root.join("new")]));
        let mut from = ev(
            EventKind::Modify(ModifyKind::Name(RenameMode::From)),
            &[&root.join("a.txt")],
        )
        .unwrap();
        from.attrs.set_tracker(7);
        bridge.handle(Ok(from));
        let mut got = Vec::new();
        while let Ok(e) = rx.try_recv() {
            got.push(e);
        }
        assert_eq!(
            got,
            [
                WatchEvent::Removed(rp("old")),
                WatchEvent::Changed(rp("new")),
                WatchEvent::Removed(rp("a.txt")),
            ]
        );
        assert!(bridge.removals.last().is_some(), "removals still stamped");
    }

    #[test]
    fn per_directory_watches_drop_self_moves_and_hand_new_directories_on() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("moved")).unwrap();
        std::fs::write(root.join("file.txt"), b"x").unwrap();
        let from = EventKind::Modify(ModifyKind::Name(RenameMode::From));
        let to = EventKind::Modify(ModifyKind::Name(RenameMode::To));
        let self_move = ev(from, &[&root.join("sub")]).unwrap();
        assert!(is_self_move(&self_move, root), "IN_MOVE_SELF of a folder");
        let mut paired = ev(from, &[&root.join("sub")]).unwrap();
        paired.attrs.set_tracker(3);
        assert!(!is_self_move(&paired, root), "a paired end is kept");
        let root_moved = ev(from, &[root]).unwrap();
        assert!(
            !is_self_move(&root_moved, root),
            "the root's own move is kept"
        );

        let new = |kind, p: &Path| new_dir(&ev(kind, &[p]).unwrap(), root);
        let created = new(EventKind::Create(CreateKind::Folder), &root.join("fresh"));
        assert!(matches!(created, Some(NewDir { created: true, .. })));
        let moved = new(to, &root.join("moved"));
        assert!(matches!(&moved, Some(NewDir { created: false, abs }) if abs.ends_with("moved")));
        assert!(new(to, &root.join("file.txt")).is_none(), "a file");
        assert!(new(EventKind::Create(CreateKind::File), &root.join("f")).is_none());
        assert!(new(EventKind::Create(CreateKind::Folder), root).is_none());
        let outside = Path::new("/elsewhere/d");
        assert!(new(EventKind::Create(CreateKind::Folder), outside).is_none());
    }

    #[test]
    fn bridge_never_blocks_and_turns_overflow_into_flags() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (tx, mut rx) = mpsc::channel(1);
        let mut bridge = Bridge {
            mapper: mapper(root),
            tx,
            removals: Arc::new(RemovalClock::new()),
            rescan_needed: Arc::new(AtomicBool::new(false)),
            watch_limit: Arc::new(AtomicBool::new(false)),
            unpaired: false,
            adder: None,
        };
        let create = |name: &str| ev(EventKind::Create(CreateKind::File), &[&root.join(name)]);
        bridge.handle(create("a"));
        assert!(!bridge.rescan_needed.load(Ordering::Acquire));
        bridge.handle(create("b")); // channel full: flag, no wait
        assert!(bridge.rescan_needed.load(Ordering::Acquire));
        bridge.handle(create("c")); // covered by the owed rescan
        bridge.handle(Err(notify::Error::new(notify::ErrorKind::MaxFilesWatch)));
        assert!(
            bridge.watch_limit.load(Ordering::Acquire),
            "limit must stick"
        );
        assert_eq!(rx.try_recv().ok(), Some(WatchEvent::Changed(rp("a"))));
        assert!(rx.try_recv().is_err(), "b and c are left to the rescan");
        drop(rx);
        bridge.rescan_needed.store(false, Ordering::Release);
        bridge.handle(create("d")); // receiver gone: no panic, nothing to do
    }

    #[test]
    fn removals_are_stamped_when_they_arrive_not_when_they_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (tx, mut rx) = mpsc::channel(4);
        let removals = Arc::new(RemovalClock::new());
        let mut bridge = Bridge {
            mapper: mapper(root),
            tx,
            removals: removals.clone(),
            rescan_needed: Arc::new(AtomicBool::new(false)),
            watch_limit: Arc::new(AtomicBool::new(false)),
            unpaired: false,
            adder: None,
        };
        let at = |kind: EventKind, name: &str| ev(kind, &[&root.join(name)]);
        bridge.handle(at(EventKind::Create(CreateKind::File), "a"));
        bridge.handle(at(EventKind::Modify(ModifyKind::Any), "a"));
        assert_eq!(removals.last(), None, "writes are not removals");
        let before = Instant::now();
        bridge.handle(at(EventKind::Remove(RemoveKind::File), "gone"));
        let first = removals
            .last()
            .expect("a removal is stamped before it is read");
        assert!(first + std::time::Duration::from_millis(1) >= before);
        assert_eq!(rx.try_recv().ok(), Some(WatchEvent::Changed(rp("a"))));

        // While a rescan is owed nothing is sent, yet removals are still stamped.
        bridge.rescan_needed.store(true, Ordering::Release);
        std::thread::sleep(std::time::Duration::from_millis(20));
        bridge.handle(at(EventKind::Create(CreateKind::File), "b"));
        assert_eq!(removals.last(), Some(first), "a create is not a removal");
        bridge.handle(at(EventKind::Remove(RemoveKind::Any), "c"));
        let second = removals.last().unwrap();
        assert!(
            second >= first + std::time::Duration::from_millis(19),
            "{first:?} {second:?}"
        );
    }

    #[test]
    fn non_utf8_path_asks_for_one_rescan() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let root = Path::new("/mirror");
        let bad = root.join(OsStr::from_bytes(b"caf\xe9.txt"));
        let mut m = mapper(root);
        let got = m.map(ev(EventKind::Create(CreateKind::File), &[&bad]));
        assert!(
            matches!(&got[..], [WatchEvent::Rescan { reason: RescanReason::NonUtf8Path(p) }] if p.starts_with("caf")),
            "{got:?}"
        );
        let again = m.map(ev(
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            &[&bad],
        ));
        assert_eq!(
            again,
            vec![],
            "a second write to the same name must not rescan again"
        );
    }

    #[test]
    fn watch_limit_error_is_distinct_and_says_how_to_fix() {
        let root = Path::new("/data/photos");
        let cases = [
            notify::Error::new(notify::ErrorKind::MaxFilesWatch).add_path(root.into()),
            notify::Error::io(std::io::Error::from_raw_os_error(28)),
        ];
        for err in cases {
            let e = WatchError::from_notify(root, err);
            assert!(matches!(e, WatchError::WatchLimit { .. }), "{e:?}");
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "one line: {msg}");
            assert!(msg.contains("/data/photos"), "{msg}");
            assert!(
                msg.contains("sysctl fs.inotify.max_user_watches=524288"),
                "{msg}"
            );
            assert!(
                msg.contains("/etc/sysctl.d/90-scaidrive-inotify.conf"),
                "{msg}"
            );
        }
        let other = WatchError::from_notify(root, notify::Error::generic("x"));
        assert!(matches!(other, WatchError::Backend { .. }));
        assert!(!RescanReason::WatchLimit.to_string().contains('\n'));
    }

    #[tokio::test]
    async fn missing_root_is_root_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone");
        let err = Watcher::new(&missing, IgnoreRules::new(&[]).unwrap(), 8).unwrap_err();
        assert!(matches!(err, WatchError::RootUnavailable { .. }), "{err}");
        assert!(err.to_string().contains("gone"));
    }
}
