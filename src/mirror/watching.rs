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
use std::time::Duration;

use super::error::Context;
use super::{Engine, MirrorError, fallback_scan_interval};
use crate::relpath::Escaped;

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
    /// The full scan made right after the watcher started, which added its watches
    /// (`None` when not asked for).
    pub scanned: Option<Result<super::pass::Scanned, local::ScanError>>,
}

/// Starts the watch for `mode`: on the root alone, the full pass adds the rest. Blocking.
pub(super) fn start(root: &Path, rules: IgnoreRules, mode: WatchMode) -> Started {
    let cap = local::DEFAULT_CHANNEL_CAPACITY;
    let canon = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let mountinfo = local::read_mountinfo();
    let mounts = mount_points(&mountinfo, &canon);
    let mut polled = Vec::new();
    // Deferred: the first full pass adds the watches below the root as it lists each
    // directory (one walk of the tree for both).
    let watcher = match mode {
        WatchMode::Events => Some(Watcher::deferred(root, rules, cap, EventSource::Native)),
        WatchMode::EventsUnpaired => {
            Some(Watcher::deferred(root, rules, cap, EventSource::Unpaired))
        }
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
                Some(Watcher::deferred(root, rules, cap, EventSource::Native))
            }
        }
    };
    Started {
        watcher,
        polled,
        mounts,
        scanned: None,
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

impl Engine {
    /// Sets up the watcher on a blocking thread, then scans the whole root there, adding
    /// the watches directory by directory as the scan lists them: the full pass that
    /// follows takes that scan (`prescanned`), so a start walks the tree once, and the
    /// walk overlaps with loading the store.
    pub(super) fn spawn_watcher(&self) -> tokio::task::JoinHandle<(Started, Duration)> {
        let (root, ignore, mode) = (self.root(), self.ignore.clone(), self.cfg.watch);
        tokio::task::spawn_blocking(move || {
            let starting = std::time::Instant::now();
            let mut w = start(&root, (*ignore).clone(), mode);
            let watches = match &w.watcher {
                Some(Ok(w)) => Some(w.dir_watches()),
                _ => None,
            };
            w.scanned = Some(super::pass::scan_root(&root, &ignore, watches.as_ref()));
            (w, starting.elapsed())
        })
    }

    /// Starts the file watcher (or takes the one `start` set going). When it cannot run
    /// (watch limit reached, a directory it cannot watch, the root unavailable) the mirror
    /// is kept in sync by periodic full scans instead (`poll_every`), after one error line
    /// that says why.
    pub(super) async fn start_watcher(
        &mut self,
        poll_every: &mut Option<Duration>,
    ) -> Result<Option<Watcher>, MirrorError> {
        let pending = match self.watcher_starting.take() {
            Some(pending) => pending,
            None => self.spawn_watcher(),
        };
        let (mut started, took) = pending.await.context("watcher task")?;
        self.dir_watches = None;
        self.prescanned = started.scanned.take();
        tracing::debug!(mirror = %self.name, "watcher started and root scanned in {} ms", took.as_millis());
        self.note_polled(&started);
        self.mounts.seen(started.mounts);
        let Some(started) = started.watcher else {
            // Polled whole: a full pass every poll interval, no events.
            *poll_every = Some(Duration::from_secs(self.cfg.poll_interval_secs.max(1)));
            return Ok(None);
        };
        match started {
            Ok(w) => {
                self.dir_watches = Some(w.dir_watches());
                self.removals = Some(w.removals());
                self.note_unwatched(&w);
                Ok(Some(w))
            }
            Err(e) => {
                let every = fallback_scan_interval(&self.cfg);
                match &e {
                    WatchError::RootUnavailable { .. } => {
                        tracing::warn!(mirror = %self.name, "{}; the next scan decides whether to pause", Escaped(&e.to_string()))
                    }
                    _ => {
                        tracing::error!(mirror = %self.name, "{}; keeping this mirror in sync by a full scan every {} s instead", Escaped(&e.to_string()), every.as_secs())
                    }
                }
                *poll_every = Some(every);
                Ok(None)
            }
        }
    }

    /// After a full pass, which added the watches as it listed the tree: shows the folders
    /// it could not watch, and when the watch limit stopped it, says so once and keeps the
    /// mirror in sync by periodic full scans (`poll_every`; returns `true` when it set it).
    pub(super) fn watched_pass_done(
        &mut self,
        watcher: Option<&Watcher>,
        poll_every: &mut Option<Duration>,
    ) -> bool {
        let Some(w) = watcher else { return false };
        self.note_unwatched(w);
        if poll_every.is_some() || !w.watch_limit_reached() {
            return false;
        }
        let every = fallback_scan_interval(&self.cfg);
        let e = WatchError::WatchLimit {
            root: self.cfg.path.clone(),
        };
        tracing::error!(mirror = %self.name, "{}; keeping this mirror in sync by a full scan every {} s instead", Escaped(&e.to_string()), every.as_secs());
        *poll_every = Some(every);
        true
    }

    /// Shows the parts of the root that are polled, and says so in the log when that changes.
    pub(super) fn note_polled(&mut self, started: &Started) {
        let now: Vec<String> = started.polled.iter().map(|b| b.describe()).collect();
        if now != self.polled && !now.is_empty() {
            let shown: Vec<String> = now.iter().map(|d| Escaped(d).to_string()).collect();
            tracing::info!(mirror = %self.name, "polling every {} s: {}", self.cfg.poll_interval_secs, shown.join(", "));
        }
        self.status_tx.send_modify(|s| s.polled = now.clone());
        self.polled = now;
        self.polled_subtrees = polled_subtrees(&started.polled);
    }

    /// Shows the folders a watcher could not watch; the loop rebuilds it while any are left.
    pub(super) fn note_unwatched(&mut self, w: &Watcher) {
        let shown = |p: &std::path::Path| Escaped(&p.display().to_string()).to_string();
        let now: Vec<String> = w
            .unwatched()
            .iter()
            .map(|(p, why)| {
                let rel = p.strip_prefix(w.root()).unwrap_or(p);
                format!("{}: {why}", shown(rel))
            })
            .collect();
        if now != self.unwatched && !now.is_empty() {
            let list: Vec<String> = w
                .unwatched()
                .iter()
                .map(|(p, why)| format!("{} ({why})", shown(p)))
                .collect();
            tracing::warn!(mirror = %self.name, "cannot watch {}; watching the rest of the tree, trying again every {} s", list.join(", "), fallback_scan_interval(&self.cfg).as_secs());
        } else if now.is_empty() && !self.unwatched.is_empty() {
            tracing::info!(mirror = %self.name, "every folder is watched again");
        }
        self.status_tx.send_modify(|s| s.unwatched = now.clone());
        self.unwatched = now;
    }
}
