//! Full and single-path scans of a mirror root: what is on disk right now, as the planner's
//! ground truth. Owns the rules for what can be mirrored (regular files and directories with
//! UTF-8 names, reached without following a symlink) and the report of what is skipped.

use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{BeforeListing, DirWatches, IgnoreRules, RelPath};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    File,
    Dir,
}

/// One mirrorable item on disk. `size` is 0 for directories (their st_size is meaningless
/// across filesystems and would make every comparison flap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEntry {
    pub path: RelPath,
    pub kind: Kind,
    pub size: u64,
    pub mtime_ns: i64,
    pub inode: u64,
    /// The inode change time ([`ctime_ns`]).
    pub ctime_ns: i64,
    /// How many names the inode has: an edit through one hard link changes the others,
    /// and only the edited name gets an event.
    pub nlink: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// Symlinks are never followed: the target may lie outside the root.
    Symlink,
    /// The remote takes UTF-8 names only. A skipped directory's subtree is not walked.
    NonUtf8,
    /// A directory that could not be listed (the message says why).
    Unreadable(String),
    /// FIFO, socket or device node.
    Special,
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::Symlink => f.write_str("symbolic link (not followed)"),
            SkipReason::NonUtf8 => f.write_str("name is not valid UTF-8"),
            SkipReason::Unreadable(why) => write!(f, "unreadable: {why}"),
            SkipReason::Special => f.write_str("not a regular file or directory"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanItem {
    Entry(LocalEntry),
    /// Exists but is not mirrored. `path` is relative to the root, lossily decoded for
    /// display. What is behind a skipped path is *unknown*, not absent: the planner must not
    /// read a skipped directory's missing children as deletions.
    Skipped {
        path: String,
        reason: SkipReason,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The root is gone, not a directory, or unreadable (an unmounted disk looks like this).
    /// The engine pauses the mirror: this never means "everything was deleted".
    #[error("mirror root {root} is unavailable: {reason}")]
    RootUnavailable { root: PathBuf, reason: String },
}

/// Result of a single-path check, with the reason when the path exists but is not mirrorable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathStat {
    Present(LocalEntry),
    Missing,
    Skipped(SkipReason),
}

/// Walks the whole tree under `root`. Blocking: run it on `spawn_blocking`.
///
/// Items come parents first, in [`RelPath`] order. Ignored paths are left out (an ignored
/// directory is not descended). Problems with individual entries become `Skipped` items;
/// only a problem with the root itself is an error.
pub fn scan(root: &Path, rules: &IgnoreRules) -> Result<Vec<ScanItem>, ScanError> {
    scan_subtree(root, &RelPath::root(), rules)
}

/// Like [`scan`], with the root's children (each with its subtree) walked by up to `threads`
/// threads at once: a walk is mostly waiting on `readdir` and `lstat`, so a few threads
/// shorten the start-up compare of a large tree. The items come in no particular order
/// across top-level subtrees (each subtree is in [`RelPath`] order); callers that need one
/// order sort. Blocking.
pub fn scan_parallel(
    root: &Path,
    rules: &IgnoreRules,
    threads: usize,
) -> Result<Vec<ScanItem>, ScanError> {
    scan_parallel_watching(root, rules, threads, None::<&DirWatches>)
}

/// [`scan_parallel`] that also adds the watcher's watches as it goes (`watches`, usually
/// a [`DirWatches`]): each directory it lists (the root included) is watched just before
/// it is listed, so a change there is either in the listing or raises an event; the tree
/// is walked once for both.
pub fn scan_parallel_watching<H: BeforeListing + Sync + ?Sized>(
    root: &Path,
    rules: &IgnoreRules,
    threads: usize,
    watches: Option<&H>,
) -> Result<Vec<ScanItem>, ScanError> {
    check_root(root)?;
    if let Some(w) = watches {
        w.before_listing(&RelPath::root());
    }
    let children = list_dir(root).map_err(|e| ScanError::RootUnavailable {
        root: root.to_path_buf(),
        reason: format!("cannot list it: {e}"),
    })?;
    let mut out = Vec::new();
    let mut jobs = Vec::with_capacity(children.len());
    // Top-level directories become jobs; everything else at the top is classified from the
    // listing's own lstat (no second stat per file).
    for (name, meta) in children.into_iter().rev() {
        let path = match child_path(&RelPath::root(), &name) {
            Ok(path) => path,
            Err(item) => {
                out.push(item);
                continue;
            }
        };
        let is_dir = meta.file_type().is_dir();
        if rules.is_ignored(&path, is_dir) {
            continue;
        }
        if is_dir {
            jobs.push(path);
            continue;
        }
        match classify(&path, &meta) {
            Ok(entry) => out.push(ScanItem::Entry(entry)),
            Err(reason) => out.push(skipped(path.as_str(), reason)),
        }
    }
    let threads = threads.clamp(1, jobs.len().max(1));
    if threads == 1 {
        for job in &jobs {
            out.extend(walk(root, job, rules, watches)?);
        }
        return Ok(out);
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let parts = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(job) = jobs.get(i) else {
                            return Ok(mine);
                        };
                        mine.extend(walk(root, job, rules, watches)?);
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("scan thread panicked"))
            .collect::<Vec<Result<Vec<ScanItem>, ScanError>>>()
    });
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

/// The names behind a [`SkipReason::NonUtf8`] item, which shows them lossily: each name
/// in its directory that is not UTF-8 and reads as `lossy`, escaped without loss
/// ([`crate::relpath::escape_os`], `\xFF` per invalid byte), as a path from the root.
/// Several names can share one lossy reading; each is its own item. Blocking.
pub fn non_utf8_names(root: &Path, lossy: &str) -> Vec<String> {
    let (dir, name) = (
        crate::relpath::parent(lossy),
        crate::relpath::name_of(lossy),
    );
    let Ok(dir) = RelPath::new(dir) else {
        return Vec::new();
    };
    let Ok(entries) = list_dir(&dir.to_path(root)) else {
        return Vec::new();
    };
    let shown_dir = crate::relpath::Escaped(dir.as_str()).to_string();
    entries
        .into_iter()
        .filter(|(n, _)| n.to_str().is_none() && n.to_string_lossy() == name)
        .map(|(n, _)| crate::relpath::join(&shown_dir, &crate::relpath::escape_os(&n)))
        .collect()
}

/// The path of `name` under `dir`, or the item that reports why it has none.
fn child_path(dir: &RelPath, name: &std::ffi::OsStr) -> Result<RelPath, ScanItem> {
    let Some(name_str) = name.to_str() else {
        let lossy = name.to_string_lossy();
        let shown = if dir.is_root() {
            lossy.into_owned()
        } else {
            format!("{}/{}", dir.as_str(), lossy)
        };
        return Err(skipped(&shown, SkipReason::NonUtf8));
    };
    // readdir never yields `.`, `..` or a name with `/`; anything else that fails validation
    // (a NUL cannot occur either) has no remote spelling.
    dir.join(name_str).map_err(|_| {
        skipped(
            &format!("{}/{}", dir.as_str(), name_str),
            SkipReason::Special,
        )
    })
}

/// Like [`scan`] but for the subtree at `start` (the entry for `start` itself comes first),
/// e.g. after a directory is moved into the root, where no event names its children.
/// A missing `start` gives an empty list. Blocking.
pub fn scan_subtree(
    root: &Path,
    start: &RelPath,
    rules: &IgnoreRules,
) -> Result<Vec<ScanItem>, ScanError> {
    walk(root, start, rules, None::<&DirWatches>)
}

/// [`scan_subtree`], adding each directory's watch before listing it when `watches` is set.
fn walk<H: BeforeListing + ?Sized>(
    root: &Path,
    start: &RelPath,
    rules: &IgnoreRules,
    watches: Option<&H>,
) -> Result<Vec<ScanItem>, ScanError> {
    let watch = |dir: &RelPath| {
        if let Some(w) = watches {
            w.before_listing(dir);
        }
    };
    check_root(root)?;
    let mut out = Vec::new();
    let mut top_entry = None;
    let top = if start.is_root() {
        RelPath::root()
    } else {
        match stat_path_detailed(root, start) {
            Ok(PathStat::Present(e)) => {
                if rules.is_ignored(start, e.kind == Kind::Dir) {
                    return Ok(out);
                }
                if e.kind != Kind::Dir {
                    out.push(ScanItem::Entry(e));
                    return Ok(out);
                }
                top_entry = Some(e);
                start.clone()
            }
            Ok(PathStat::Missing) => return Ok(out),
            Ok(PathStat::Skipped(reason)) => {
                out.push(skipped(start.as_str(), reason));
                return Ok(out);
            }
            Err(e) => {
                out.push(skipped(
                    start.as_str(),
                    SkipReason::Unreadable(e.to_string()),
                ));
                return Ok(out);
            }
        }
    };

    // Each directory is watched just before it is listed: a change after the watch
    // raises an event, one before it is in the listing.
    let watch_and_list = |dir: &RelPath| {
        watch(dir);
        list_dir(&dir.to_path(root))
    };
    let children = match watch_and_list(&top) {
        Ok(c) => {
            out.extend(top_entry.map(ScanItem::Entry));
            c
        }
        Err(e) if top.is_root() => {
            return Err(ScanError::RootUnavailable {
                root: root.to_path_buf(),
                reason: format!("cannot list it: {e}"),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => {
            out.push(skipped(top.as_str(), SkipReason::Unreadable(e.to_string())));
            return Ok(out);
        }
    };

    // Explicit stack of directory frames (no recursion: trees can be deep). Each frame holds
    // its remaining children in reverse name order; a directory's frame is pushed as soon as
    // the directory is emitted, so its subtree follows it directly (pre-order, which is
    // exactly `RelPath` order).
    let mut stack = vec![(top, children)];
    while let Some((dir, remaining)) = stack.last_mut() {
        let Some((name, meta)) = remaining.pop() else {
            stack.pop();
            continue;
        };
        let path = match child_path(dir, &name) {
            Ok(path) => path,
            Err(item) => {
                out.push(item);
                continue;
            }
        };
        if rules.is_ignored(&path, meta.file_type().is_dir()) {
            continue;
        }
        match classify(&path, &meta) {
            Ok(entry) if entry.kind == Kind::Dir => match watch_and_list(&path) {
                Ok(children) => {
                    out.push(ScanItem::Entry(entry));
                    stack.push((path, children));
                }
                // Removed since its parent was listed: the watcher reports that.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                // Reported instead of listed as an (apparently empty) directory, so that
                // nobody mistakes its unseen children for deleted ones.
                Err(e) => out.push(skipped(
                    path.as_str(),
                    SkipReason::Unreadable(e.to_string()),
                )),
            },
            Ok(entry) => out.push(ScanItem::Entry(entry)),
            Err(reason) => out.push(skipped(path.as_str(), reason)),
        }
    }
    Ok(out)
}

fn skipped(path: &str, reason: SkipReason) -> ScanItem {
    ScanItem::Skipped {
        path: path.to_owned(),
        reason,
    }
}

/// Lists a directory's entries with their lstat metadata, sorted by name. Entries that vanish
/// between readdir and lstat are left out.
fn list_dir(abs: &Path) -> io::Result<Vec<(std::ffi::OsString, Metadata)>> {
    let mut out = Vec::new();
    for ent in fs::read_dir(abs)? {
        let ent = ent?;
        // DirEntry::metadata is an lstat on Unix: a symlink is described, not followed.
        match ent.metadata() {
            Ok(m) => out.push((ent.file_name(), m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    // Reverse order: callers pop from the end.
    out.sort_by(|a, b| b.0.cmp(&a.0));
    Ok(out)
}

fn classify(path: &RelPath, meta: &Metadata) -> Result<LocalEntry, SkipReason> {
    let ft = meta.file_type();
    let kind = if ft.is_symlink() {
        return Err(SkipReason::Symlink);
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else {
        // FIFO, socket, block or character device: opening one could block or have side
        // effects, and none has remote meaning.
        return Err(SkipReason::Special);
    };
    Ok(LocalEntry {
        path: path.clone(),
        kind,
        size: if kind == Kind::File { meta.len() } else { 0 },
        mtime_ns: mtime_ns(meta),
        inode: meta.ino(),
        ctime_ns: ctime_ns(meta),
        nlink: meta.nlink(),
    })
}

/// A file's modification time in nanoseconds since 1970, the one way every stage reads it
/// (the scan's fingerprint and the uploader's re-stat must agree, or a file is "changed
/// while sent" for ever). Times outside what an i64 of nanoseconds holds (before 1677,
/// after 2262) are clamped to its ends.
pub fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec())
}

/// A file's inode change time in nanoseconds, clamped as [`mtime_ns`]. No program can set
/// it: every write moves it, so it gives away an edit that kept the size and put the old
/// mtime back.
pub fn ctime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.ctime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.ctime_nsec())
}

fn check_root(root: &Path) -> Result<(), ScanError> {
    let unavailable = |reason: String| ScanError::RootUnavailable {
        root: root.to_path_buf(),
        reason,
    };
    // The configured root may itself be a symlink (e.g. ~/Documents → /data/docs): that
    // one link is the user's choice and is followed; nothing below it is.
    match fs::metadata(root) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(unavailable("not a directory".into())),
        Err(e) => Err(unavailable(e.to_string())),
    }
}

/// lstat of one path under `root`, refusing to pass through a symlinked ancestor (which could
/// point outside the root). Blocking.
pub fn stat_path_detailed(root: &Path, path: &RelPath) -> io::Result<PathStat> {
    if path.is_root() {
        return match fs::metadata(root) {
            Ok(m) if m.is_dir() => {
                Ok(PathStat::Present(classify(path, &m).map_err(|_| {
                    io::Error::other("root is not a directory")
                })?))
            }
            Ok(_) => Err(io::Error::other("root is not a directory")),
            Err(e) => Err(e),
        };
    }
    let mut abs = root.to_path_buf();
    let comps: Vec<&str> = path.components().collect();
    for (i, comp) in comps.iter().enumerate() {
        abs.push(comp);
        let meta = match fs::symlink_metadata(&abs) {
            Ok(m) => m,
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.kind() == io::ErrorKind::NotADirectory =>
            {
                return Ok(PathStat::Missing);
            }
            Err(e) => return Err(e),
        };
        let last = i + 1 == comps.len();
        if !last {
            if meta.file_type().is_symlink() {
                return Ok(PathStat::Skipped(SkipReason::Symlink));
            }
            if !meta.is_dir() {
                return Ok(PathStat::Missing);
            }
            continue;
        }
        return Ok(match classify(path, &meta) {
            Ok(e) => PathStat::Present(e),
            Err(reason) => PathStat::Skipped(reason),
        });
    }
    unreachable!("a non-root RelPath has at least one component")
}

/// lstat of one mirrorable path: `None` if it is missing or not mirrorable (symlink, special
/// file, or reached through a symlinked directory). Blocking.
pub fn stat_path(root: &Path, path: &RelPath) -> io::Result<Option<LocalEntry>> {
    Ok(match stat_path_detailed(root, path)? {
        PathStat::Present(e) => Some(e),
        PathStat::Missing | PathStat::Skipped(_) => None,
    })
}
