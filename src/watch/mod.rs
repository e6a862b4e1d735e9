//! The input side of a mirror: what is under the local root and what just changed there.
//! Owns the ignore rules ([`IgnoreRules`], plus the state-directory overlap check), the
//! full/single-path scan ([`scan`], [`stat_path`]), and the live watch ([`Watcher`]) that feeds hints into the debounce queue. Nothing here
//! follows a symlink or reads outside the root, and nothing here decides what to upload:
//! events are hints, the planner trusts only what it stats.

mod dirwatch;
mod fs;
#[cfg(target_os = "linux")]
mod inotify;
mod rules;
mod scan;
mod watcher;

/// Re-exported from the [`crate::relpath`] leaf, where the stages below the watcher find it.
pub use crate::relpath::{RelPath, RelPathError};
pub use dirwatch::{BeforeListing, DirWatches};
pub use fs::{BlindSpot, blind_spots, event_blind_kind, mounts_under, read_mountinfo, statfs_type};
pub use rules::{
    BUILTIN_PATTERNS, ForbiddenRoot, IGNORE_FILE_NAME, IgnoreError, IgnoreRules, forbidden_root,
};
pub use scan::{
    Kind, LocalEntry, PathStat, ScanError, ScanItem, SkipReason, ctime_ns, mtime_ns,
    non_utf8_names, scan, scan_parallel, scan_parallel_watching, scan_subtree, stat_path,
    stat_path_detailed,
};
pub use watcher::{
    DEFAULT_CHANNEL_CAPACITY, EventSource, RemovalClock, RescanReason, WatchError, WatchEvent,
    Watcher,
};
