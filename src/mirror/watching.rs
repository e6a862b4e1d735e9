//! How the mirror notices changes (`[mirror] watch`): which event source runs, and which
//! parts of the root are polled because their changes raise no events (network and FUSE
//! filesystems, found by `statfs` on the root and the mount points below it). The
//! conductor starts a watcher through [`start`] and asks [`Mounts`] every root check
//! whether a mount appeared or went below the root, which rebuilds the watcher.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::WatchMode;
use crate::watch::{self as local, BlindSpot, EventSource, IgnoreRules, WatchError, Watcher};

/// A watcher as started, with the parts of the root it polls.
pub(super) struct Started {
    pub watcher: Result<Watcher, WatchError>,
    pub polled: Vec<BlindSpot>,
    /// Polling watchers on blind spots that could not start (path: why); events still
    /// cover those parts for this machine's own writes, and the periodic rescan the rest.
    pub poll_errors: Vec<String>,
    /// The mount points at or below the root when it started.
    pub mounts: Vec<PathBuf>,
}

/// Starts the watch for `mode`. Blocking: backends walk the tree.
pub(super) fn start(root: &Path, rules: IgnoreRules, mode: WatchMode, every: Duration) -> Started {
    let cap = local::DEFAULT_CHANNEL_CAPACITY;
    let canon = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let mountinfo = local::read_mountinfo();
    let mounts = mount_points(&mountinfo, &canon);
    let mut polled = Vec::new();
    let mut poll_errors = Vec::new();
    let watcher = match mode {
        WatchMode::Events => Watcher::new(root, rules, cap),
        WatchMode::EventsUnpaired => Watcher::with_source(root, rules, cap, EventSource::Unpaired),
        WatchMode::Poll => {
            polled.push(BlindSpot {
                rel: String::new(),
                fs: "watch = \"poll\"".into(),
            });
            Watcher::with_source(root, rules, cap, EventSource::Poll(every))
        }
        WatchMode::Auto => {
            polled = local::blind_spots(&canon, &mountinfo, &local::statfs_type);
            if polled.iter().any(|b| b.rel.is_empty()) {
                Watcher::with_source(root, rules, cap, EventSource::Poll(every))
            } else {
                let mut w = Watcher::new(root, rules, cap);
                if let Ok(w) = &mut w {
                    for spot in &polled {
                        if let Err(e) = w.poll_also(&canon.join(&spot.rel), every) {
                            poll_errors.push(format!("{}: {e}", spot.rel));
                        }
                    }
                }
                w
            }
        }
    };
    Started {
        watcher,
        polled,
        poll_errors,
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
