//! Our own inotify backend for the per-directory watches (Linux; issue 20 item 3). notify's
//! inotify watcher adds every watch through its event-loop thread (a channel message, a
//! wake-up and a reply: ~38 us per directory, serialised), which on a 5,000-folder restart
//! was most of the distance to 2 x `find`. Here a watch is one `inotify_add_watch` on the
//! calling thread, and one reader thread turns the kernel's events into the same
//! [`notify::Event`] values notify 8's inotify backend makes, so the
//! [`super::watcher`] bridge is fed exactly as before:
//!
//! - `IN_CREATE` / `IN_DELETE`: `Create` / `Remove` with `Folder` or `File` (`IN_ISDIR`);
//! - `IN_MOVED_FROM` / `IN_MOVED_TO`: `Modify(Name(From))` / `Modify(Name(To))` with the
//!   kernel's cookie as tracker, and, when a `To` meets the last `From`'s cookie, a
//!   `Modify(Name(Both))` with both paths;
//! - `IN_MOVE_SELF`: `Modify(Name(From))` without a tracker; `IN_DELETE_SELF`:
//!   `Remove(Folder)` (only directories are watched here);
//! - `IN_MODIFY`, `IN_CLOSE_WRITE`, `IN_ATTRIB`: `Modify(Data)`, `Access(Close(Write))`,
//!   `Modify(Metadata)`; `IN_Q_OVERFLOW`: an `Other` event with the `Rescan` flag;
//! - `ENOSPC` from `inotify_add_watch` is `MaxFilesWatch`, `ENOENT` is `PathNotFound`.
//!
//! Deliberate differences: no `IN_OPEN` (notify's `Access(Open)`, which the bridge drops:
//! every file the uploader opens and every directory the scan lists would wake this thread
//! for nothing), and `IN_ONLYDIR | IN_DONT_FOLLOW` (a directory replaced by a file or a
//! symlink between its listing and its watch is "gone", never a watch outside the root).
//!
//! Consistency: one lock covers the add and the table insert, and the reader looks paths
//! up under it, so an event of a watch just added always finds its path. A directory moved
//! keeps its watches in the kernel: when the `IN_MOVED_TO` follows its `IN_MOVED_FROM`, they
//! are re-pointed to the new name (its subtree's too), so what is written there right after
//! the move is reported under the new name; when it does not (moved out of the watched
//! tree), they are removed before the next event is looked at. Either way that happens
//! before the events go out, so the adder that reacts to the `IN_MOVED_TO` works on the
//! table as it now is. A deleted directory's watch is forgotten by its own descriptor
//! (`IN_DELETE_SELF`, `IN_IGNORED`), so a new directory already watched under the same name
//! keeps its watch.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use notify::event::{AccessKind, AccessMode, CreateKind, DataChange, EventKind, Flag};
use notify::event::{MetadataKind, ModifyKind, RemoveKind, RenameMode};
use notify::{Error, ErrorKind, Event, EventHandler};

const READY: mio::Token = mio::Token(0);
const WAKE: mio::Token = mio::Token(1);

/// The reader's buffer: room for a few thousand events per `read`.
const BUFFER_BYTES: usize = 64 * 1024;

fn watch_mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MODIFY
        | WatchMask::ATTRIB
        | WatchMask::CLOSE_WRITE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR
        | WatchMask::DONT_FOLLOW
}

/// Which path each watch stands for, both ways.
#[derive(Default)]
struct Table {
    by_wd: HashMap<i32, PathBuf>,
    by_path: BTreeMap<PathBuf, WatchDescriptor>,
}

impl Table {
    fn insert(&mut self, path: &Path, wd: WatchDescriptor) {
        let id = wd.get_watch_descriptor_id();
        // The kernel keeps one watch per inode: the same descriptor for a new path is a
        // directory moved before its old name's event was read. It now stands for the new
        // path, and removing the old name later must not remove it.
        if let Some(old) = self.by_wd.insert(id, path.to_path_buf())
            && old != path
            && self
                .by_path
                .get(&old)
                .is_some_and(|w| w.get_watch_descriptor_id() == id)
        {
            self.by_path.remove(&old);
        }
        // A different descriptor already at this path is a deleted directory's, whose
        // `IN_IGNORED` is still to come: it keeps its path until then (by_wd).
        self.by_path.insert(path.to_path_buf(), wd);
    }

    /// Forgets one watch the kernel has dropped (or is dropping) itself.
    fn forget_wd(&mut self, id: i32) {
        if let Some(path) = self.by_wd.remove(&id)
            && self
                .by_path
                .get(&path)
                .is_some_and(|w| w.get_watch_descriptor_id() == id)
        {
            self.by_path.remove(&path);
        }
    }

    /// Whether `path` or anything below it is watched.
    fn has_below(&self, path: &Path) -> bool {
        self.by_path
            .range(path.to_path_buf()..)
            .next()
            .is_some_and(|(p, _)| p.starts_with(path))
    }

    fn below(&self, path: &Path) -> Vec<PathBuf> {
        self.by_path
            .range(path.to_path_buf()..)
            .take_while(|(p, _)| p.starts_with(path))
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// The watches on `from` and below it now stand for the same names under `to` (a
    /// directory renamed within the watched tree; the kernel's watches follow the inodes).
    fn repoint(&mut self, from: &Path, to: &Path) {
        for p in self.below(from) {
            let Some(wd) = self.by_path.remove(&p) else {
                continue;
            };
            let Ok(rest) = p.strip_prefix(from) else {
                continue;
            };
            let new = if rest.as_os_str().is_empty() {
                to.to_path_buf()
            } else {
                to.join(rest)
            };
            let id = wd.get_watch_descriptor_id();
            if self.by_wd.get(&id) == Some(&p) {
                self.by_wd.insert(id, new.clone());
            }
            // Whatever was watched at the new name (an empty directory the rename replaced)
            // is gone; its descriptor keeps its path until its `IN_IGNORED`.
            self.by_path.insert(new, wd);
        }
    }

    /// Removes the watches on `path` and below it (a directory moved away).
    fn remove_below(&mut self, path: &Path, watches: &mut Watches) {
        for p in self.below(path) {
            let Some(wd) = self.by_path.remove(&p) else {
                continue;
            };
            let id = wd.get_watch_descriptor_id();
            if self.by_wd.get(&id) == Some(&p) {
                self.by_wd.remove(&id);
            }
            // EINVAL: the kernel dropped it already; either way it is gone.
            let _ = watches.remove(wd);
        }
    }
}

/// The state the adding threads and the reader share.
struct Shared {
    table: Mutex<Table>,
    /// The descriptor's handle for adding and removing watches (cloned per use: it is an
    /// `Arc` of the descriptor; the table's lock orders the calls).
    watches: Watches,
    stop: AtomicBool,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The backend: watches added on the caller's thread, events read on one thread of its
/// own. Dropping it wakes that thread, which ends (closing the inotify descriptor); the
/// drop waits for it, so the event handler is gone when the drop returns.
pub(super) struct DirInotify {
    shared: Arc<Shared>,
    waker: mio::Waker,
    reader: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for DirInotify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirInotify")
            .field("watches", &self.shared.table().by_wd.len())
            .finish()
    }
}

impl DirInotify {
    /// Starts the reader thread; events go to `handler`, on that thread.
    pub fn new<F: EventHandler>(handler: F) -> notify::Result<Self> {
        let inotify = Inotify::init().map_err(Error::io)?;
        let poll = mio::Poll::new().map_err(Error::io)?;
        let waker = mio::Waker::new(poll.registry(), WAKE).map_err(Error::io)?;
        let fd = inotify.as_raw_fd();
        poll.registry()
            .register(
                &mut mio::unix::SourceFd(&fd),
                READY,
                mio::Interest::READABLE,
            )
            .map_err(Error::io)?;
        let shared = Arc::new(Shared {
            table: Mutex::new(Table::default()),
            watches: inotify.watches(),
            stop: AtomicBool::new(false),
        });
        let reader = Reader {
            inotify,
            poll,
            shared: shared.clone(),
            handler: Box::new(handler),
            pairing: Pairing::default(),
            moved: None,
        };
        let reader = std::thread::Builder::new()
            .name("scaidrive-inotify".into())
            .spawn(move || reader.run())
            .map_err(Error::io)?;
        Ok(DirInotify {
            shared,
            waker,
            reader: Some(reader),
        })
    }

    /// Watches the directory `path` (its own entries, not its subdirectories'). A direct
    /// `inotify_add_watch` on this thread.
    pub fn watch_dir(&self, path: &Path) -> notify::Result<()> {
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir().map_err(Error::io)?.join(path)
        };
        let mut table = self.shared.table();
        let added = self.shared.watches.clone().add(&path, watch_mask());
        match added {
            Ok(wd) => {
                table.insert(&path, wd);
                Ok(())
            }
            // The watch limit, not a full disk.
            Err(e) if e.raw_os_error() == Some(28) => {
                Err(Error::new(ErrorKind::MaxFilesWatch).add_path(path))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::new(ErrorKind::PathNotFound).add_path(path))
            }
            Err(e) => Err(Error::io(e).add_path(path)),
        }
    }

    /// The paths watched now, sorted (for tests).
    #[cfg(test)]
    fn watched(&self) -> Vec<PathBuf> {
        self.shared.table().by_path.keys().cloned().collect()
    }
}

impl Drop for DirInotify {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        if let Some(reader) = self.reader.take()
            && reader.thread().id() != std::thread::current().id()
        {
            let _ = reader.join();
        }
    }
}

/// The last `IN_MOVED_FROM`, waiting for its `IN_MOVED_TO`.
#[derive(Default)]
struct Pairing {
    from: Option<(u32, PathBuf)>,
}

/// The [`notify::Event`]s one raw event stands for, given the path of its watch joined
/// with the event's name (the watched directory's own events have no name).
fn translate(mask: EventMask, cookie: u32, path: &Path, pairing: &mut Pairing) -> Vec<Event> {
    let dir = mask.contains(EventMask::ISDIR);
    let mut out = Vec::new();
    let one = |kind: EventKind| Event::new(kind).add_path(path.to_path_buf());
    if mask.contains(EventMask::MOVED_FROM) {
        pairing.from = Some((cookie, path.to_path_buf()));
        out.push(
            one(EventKind::Modify(ModifyKind::Name(RenameMode::From))).set_tracker(cookie as usize),
        );
    } else if mask.contains(EventMask::MOVED_TO) {
        out.push(
            one(EventKind::Modify(ModifyKind::Name(RenameMode::To))).set_tracker(cookie as usize),
        );
        if pairing.from.as_ref().is_some_and(|(c, _)| *c == cookie)
            && let Some((_, from)) = pairing.from.take()
        {
            out.push(
                Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::Both)))
                    .set_tracker(cookie as usize)
                    .add_path(from)
                    .add_path(path.to_path_buf()),
            );
        }
    }
    if mask.contains(EventMask::MOVE_SELF) {
        out.push(one(EventKind::Modify(ModifyKind::Name(RenameMode::From))));
    }
    if mask.contains(EventMask::CREATE) {
        out.push(one(EventKind::Create(if dir {
            CreateKind::Folder
        } else {
            CreateKind::File
        })));
    }
    if mask.contains(EventMask::DELETE) {
        out.push(one(EventKind::Remove(if dir {
            RemoveKind::Folder
        } else {
            RemoveKind::File
        })));
    }
    if mask.contains(EventMask::DELETE_SELF) {
        out.push(one(EventKind::Remove(RemoveKind::Folder)));
    }
    if mask.contains(EventMask::MODIFY) {
        out.push(one(EventKind::Modify(ModifyKind::Data(DataChange::Any))));
    }
    if mask.contains(EventMask::CLOSE_WRITE) {
        out.push(one(EventKind::Access(AccessKind::Close(AccessMode::Write))));
    }
    if mask.contains(EventMask::ATTRIB) {
        out.push(one(EventKind::Modify(ModifyKind::Metadata(
            MetadataKind::Any,
        ))));
    }
    out
}

fn joined(dir: &Path, name: Option<&OsStr>) -> PathBuf {
    match name {
        Some(name) => dir.join(name),
        None => dir.to_path_buf(),
    }
}

fn overflow() -> Event {
    Event::new(EventKind::Other).set_flag(Flag::Rescan)
}

struct Reader {
    inotify: Inotify,
    poll: mio::Poll,
    shared: Arc<Shared>,
    handler: Box<dyn EventHandler>,
    pairing: Pairing,
    /// A watched directory's `IN_MOVED_FROM` (cookie, old name): the next event decides
    /// whether its watches follow it or go.
    moved: Option<(u32, PathBuf)>,
}

impl Reader {
    fn run(mut self) {
        let mut ready = mio::Events::with_capacity(4);
        let mut buf = vec![0u8; BUFFER_BYTES];
        loop {
            if let Err(e) = self.poll.poll(&mut ready, None) {
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                self.handler.handle_event(Err(Error::io(e)));
                return;
            }
            if self.shared.stop.load(Ordering::Acquire) {
                return;
            }
            if ready.iter().any(|r| r.token() == READY) {
                self.drain(&mut buf);
            }
        }
    }

    /// Reads until the descriptor is empty (the registration is edge-triggered).
    fn drain(&mut self, buf: &mut [u8]) {
        loop {
            let mut out = Vec::new();
            match self.inotify.read_events(buf) {
                Ok(events) => {
                    for ev in events {
                        self.one(
                            ev.wd.get_watch_descriptor_id(),
                            ev.mask,
                            ev.cookie,
                            ev.name,
                            &mut out,
                        );
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    self.handler.handle_event(Err(Error::io(e)));
                    return;
                }
            }
            for ev in out {
                self.handler.handle_event(ev);
            }
            if self.shared.stop.load(Ordering::Acquire) {
                return;
            }
        }
    }

    /// One raw event: its path looked up (and the table kept true) under the lock, its
    /// notify events appended to `out`.
    fn one(
        &mut self,
        wd: i32,
        mask: EventMask,
        cookie: u32,
        name: Option<&OsStr>,
        out: &mut Vec<notify::Result<Event>>,
    ) {
        if mask.contains(EventMask::Q_OVERFLOW) {
            out.push(Ok(overflow()));
        }
        let mut table = self.shared.table();
        if let Some((moved_cookie, from)) = self.moved.take() {
            let to = if mask.contains(EventMask::MOVED_TO) && cookie == moved_cookie {
                table.by_wd.get(&wd).map(|dir| joined(dir, name))
            } else {
                None
            };
            match to {
                Some(to) => table.repoint(&from, &to),
                None => table.remove_below(&from, &mut self.shared.watches.clone()),
            }
        }
        let Some(dir) = table.by_wd.get(&wd) else {
            // The queue's overflow marker (wd -1), or a watch removed before its last events.
            return;
        };
        let path = joined(dir, name);
        if mask.contains(EventMask::MOVED_FROM) && table.has_below(&path) {
            self.moved = Some((cookie, path.clone()));
        }
        if mask.intersects(EventMask::DELETE_SELF | EventMask::IGNORED) {
            table.forget_wd(wd);
        }
        drop(table);
        out.extend(
            translate(mask, cookie, &path, &mut self.pairing)
                .into_iter()
                .map(Ok),
        );
    }
}

#[cfg(test)]
mod tests;
