//! How the mirror notices changes (`[mirror] watch`): which event source runs, and which
//! parts of the root are polled because their changes raise no events (network and FUSE
//! filesystems, found by `statfs` on the root and the mount points below it). The
//! conductor starts a watcher through [`start`] and asks [`Mounts`] every root check
//! whether a mount appeared or went below the root, which rebuilds the watcher.
//!
//! Polling is the daemon's own stat scan (a full pass for a polled root, a scan of the
//! subtree for a polled mount), which compares size, mtime and ctime to the nanosecond
//! with what the store knows and hashes only what differs. `notify`'s polling watcher is
//! not used for it: it compares mtimes in whole seconds and only forwards, so a second
//! write within the second of the last poll is never reported.

use std::path::{Path, PathBuf};

use crate::config::WatchMode;
use crate::watch::RelPath;
use crate::watch::{self as local, BlindSpot, EventSource, IgnoreRules, WatchError, Watcher};

/// A watcher as started, with the parts of the root the conductor polls.
pub(super) struct Started {
    /// `None` when the whole root is polled (no events at all).
    pub watcher: Option<Result<Watcher, WatchError>>,
    pub polled: Vec<BlindSpot>,
    /// The mount points at or below the root when it started.
    pub mounts: Vec<PathBuf>,
}

/// Starts the watch for `mode`. Blocking: backends walk the tree.
pub(super) fn start(root: &Path, rules: IgnoreRules, mode: WatchMode) -> Started {
    let cap = local::DEFAULT_CHANNEL_CAPACITY;
    let canon = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let mountinfo = local::read_mountinfo();
    let mounts = mount_points(&mountinfo, &canon);
    let mut polled = Vec::new();
    let watcher = match mode {
        WatchMode::Events => Some(Watcher::new(root, rules, cap)),
        WatchMode::EventsUnpaired => Some(Watcher::with_source(
            root,
            rules,
            cap,
            EventSource::Unpaired,
        )),
        WatchMode::Poll => {
            polled.push(BlindSpot {
                rel: String::new(),
                fs: "watch = \"poll\"".into(),
            });
            None
        }
        WatchMode::Auto => {
            polled = local::blind_spots(&canon, &mountinfo, &local::statfs_type);
            if polled.iter().any(|b| b.rel.is_empty()) {
                None
            } else {
                Some(Watcher::new(root, rules, cap))
            }
        }
    };
    Started {
        watcher,
        polled,
        mounts,
    }
}

fn mount_points(mountinfo: &str, canon: &Path) -> Vec<PathBuf> {
    local::mounts_under(mountinfo, canon)
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}

/// The mount points at or below a root, to notice a mount or an unmount there.
#[derive(Default)]
pub(super) struct Mounts {
    last: Option<Vec<PathBuf>>,
}

impl Mounts {
    /// What the watcher was started with.
    pub fn seen(&mut self, mounts: Vec<PathBuf>) {
        self.last = Some(mounts);
    }

    /// True when the mount points below `root` differ from the last look (not on the
    /// first look).
    pub fn changed(&mut self, root: &Path) -> bool {
        let Ok(canon) = root.canonicalize() else {
            return false;
        };
        let now = mount_points(&local::read_mountinfo(), &canon);
        let changed = self.last.as_ref().is_some_and(|l| *l != now);
        self.last = Some(now);
        changed
    }
}

/// The polled mount points below the root, as hints for a subtree scan.
pub(super) fn polled_subtrees(polled: &[BlindSpot]) -> Vec<RelPath> {
    polled
        .iter()
        .filter(|b| !b.rel.is_empty())
        .filter_map(|b| RelPath::new(&b.rel).ok())
        .collect()
}
