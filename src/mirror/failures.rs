//! The items that failed and wait for their retry. Owns the backoff (30 s doubling to an
//! hour), which planned ops are held back until their retry is due, and the sources of
//! failed moves (a retry of a move's destination must look at its source too, or the move
//! is planned as a create). The store keeps the durable record (`scaidrivectl failures`);
//! this is the engine's fast view of what is not yet due.
//!
//! A failure lives only as long as its item: a pass drops the failures of paths that are
//! no longer there (deleted, renamed, now ignored) from the store and from this view, or
//! `failures` would list them for ever while status counts none.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::Engine;
use crate::plan::{DiskItem, Op};
use crate::store;
use crate::upload::MirrorTarget;

/// Delay before a failed item is tried again: 30 s doubling to 1 h; permanent failures
/// wait an hour (or a change of the item, or `scaidrivectl retry`).
pub fn failure_backoff(attempts: u32) -> i64 {
    (30i64 << attempts.saturating_sub(1).min(7)).min(3600)
}

/// A failed path the engine holds back until its retry is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FailedItem {
    /// Unix time the next attempt is due.
    due: i64,
    /// Unix time of the failure.
    at: i64,
    permanent: bool,
}

impl FailedItem {
    fn of(f: &store::Failure) -> FailedItem {
        FailedItem {
            due: f.next_retry_at,
            at: f.last_failed_at,
            permanent: f.permanent,
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Failures {
    /// Paths whose failure is not yet due.
    items: HashMap<String, FailedItem>,
    /// Failed moves: destination path → source path.
    move_sources: HashMap<String, String>,
    /// Items no remote call can mirror as they are (a name that is not UTF-8), by their
    /// escaped name: failures as long as the scan finds them, never due for a retry
    /// (only a rename ends them, and the scan sees that).
    unmirrorable: BTreeSet<String>,
}

impl Failures {
    pub fn len(&self) -> usize {
        self.items.len() + self.unmirrorable.len()
    }

    /// How many will be retried on their own (transient).
    pub fn retrying(&self) -> usize {
        self.items.values().filter(|f| !f.permanent).count()
    }

    /// When the next transient failure is due (unix seconds).
    pub fn next_due(&self) -> Option<i64> {
        self.items
            .values()
            .filter(|f| !f.permanent)
            .map(|f| f.due)
            .min()
    }

    /// The failures a previous run recorded that are not due yet.
    pub fn load(&mut self, recorded: &[store::Failure], now: i64) {
        for f in recorded.iter().filter(|f| f.next_retry_at > now) {
            self.items.insert(f.path.clone(), FailedItem::of(f));
        }
    }

    /// A failure the store recorded.
    pub fn note(&mut self, f: &store::Failure) {
        self.items.insert(f.path.clone(), FailedItem::of(f));
    }

    /// A path the planner could not examine (unreadable while hashing): tried again after
    /// the first backoff step.
    pub fn note_unplannable(&mut self, path: &str, now: i64) {
        self.items.insert(
            path.to_string(),
            FailedItem {
                due: now + failure_backoff(1),
                at: now,
                permanent: false,
            },
        );
    }

    pub fn note_failed_move(&mut self, to: &str, from: &str) {
        self.move_sources.insert(to.to_string(), from.to_string());
    }

    pub fn forget(&mut self, path: &str) {
        self.items.remove(path);
        self.move_sources.remove(path);
    }

    /// What the last full scan found unmirrorable (replaces the previous set).
    pub fn set_unmirrorable(&mut self, paths: BTreeSet<String>) {
        for p in &paths {
            // Never due: a retry could not stat such a name by its escaped form.
            self.items.remove(p);
        }
        self.unmirrorable = paths;
    }

    pub fn is_unmirrorable(&self, path: &str) -> bool {
        self.unmirrorable.contains(path)
    }

    pub fn clear(&mut self) {
        self.items.clear();
    }

    /// The paths due for a retry at `now`, with the sources of failed moves among them.
    pub fn take_due(&mut self, now: i64) -> Vec<String> {
        let due: Vec<String> = self
            .items
            .iter()
            .filter(|(_, f)| f.due <= now)
            .map(|(p, _)| p.clone())
            .collect();
        let sources: Vec<String> = due
            .iter()
            .filter_map(|p| self.move_sources.remove(p))
            .collect();
        due.into_iter().chain(sources).collect()
    }

    /// Whether `op` waits for its path's retry. A file modified after it failed is worth
    /// another try now (its change may have been made while the daemon was stopped).
    pub fn holds_back(&mut self, op: &Op, now: i64) -> bool {
        let Some(f) = self.items.get(op.path()).filter(|f| f.due > now) else {
            return false;
        };
        let changed_since = match op {
            Op::Upload { item, .. } | Op::Replace { item, .. } => {
                item.mtime_ns / 1_000_000_000 >= f.at
            }
            _ => false,
        };
        if changed_since {
            self.items.remove(op.path());
        }
        !changed_since
    }
}

impl Engine {
    /// After a full scan: records the unmirrorable names it found (`unmirrorable`: escaped
    /// name → reason) as permanent failures, and drops every recorded failure whose item
    /// is gone: not on disk (deleted, renamed, now ignored), not known (a failed delete
    /// of a known item is still owed), and not below a directory the scan could not read
    /// (unknown there, not gone).
    pub(super) async fn settle_failures_after_scan(
        &mut self,
        t: &MirrorTarget,
        disk: &BTreeMap<String, DiskItem>,
        unmirrorable: BTreeMap<String, String>,
        unreadable: &[String],
    ) {
        let Ok(recorded) = self.deps.store.failures(t.mirror).await else {
            return;
        };
        // Still there without asking the entries: on disk, unmirrorable, or below a
        // folder the scan could not read. The entries are read only for the rest (a big
        // mirror with a permanent failure must not load them on every rescan).
        let seen = |path: &str| {
            disk.contains_key(path)
                || unmirrorable.contains_key(path)
                || unreadable.iter().any(|u| crate::plan::is_within(path, u))
        };
        if recorded.iter().any(|f| !seen(&f.path)) && !self.ensure_known().await {
            return;
        }
        let gone: Vec<String> = recorded
            .iter()
            .filter(|f| !seen(&f.path) && !self.known.contains_key(&f.path))
            .map(|f| f.path.clone())
            .collect();
        for (path, reason) in &unmirrorable {
            // Recorded once, not once per pass: its attempts would count hourly rescans.
            if recorded
                .iter()
                .any(|f| &f.path == path && &f.reason == reason)
            {
                continue;
            }
            let _ = self
                .deps
                .store
                .record_failure(t.mirror, path, reason, true, failure_backoff)
                .await;
        }
        self.failures
            .set_unmirrorable(unmirrorable.into_keys().collect());
        self.drop_failures(t, gone).await;
    }

    /// Forgets the failures of `paths` (items that are gone), in the store and here.
    pub(super) async fn drop_failures(&mut self, t: &MirrorTarget, paths: Vec<String>) {
        if paths.is_empty() {
            return;
        }
        for p in &paths {
            self.failures.forget(p);
        }
        match self.deps.store.clear_failures(t.mirror, paths).await {
            Ok(cleared) => {
                for p in cleared {
                    tracing::info!(mirror = %self.name, path = %crate::relpath::Escaped(&p), "the failed item is gone; its failure is dropped");
                }
            }
            Err(e) => {
                tracing::warn!(mirror = %self.name, "dropping failures of items that are gone: {e}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_an_hour() {
        let got: Vec<i64> = (0..10).map(failure_backoff).collect();
        assert_eq!(got, [30, 30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
    }

    #[test]
    fn due_paths_bring_their_move_sources() {
        let mut f = Failures::default();
        f.note_unplannable("b", 100);
        f.note_failed_move("b", "a");
        assert_eq!(f.next_due(), Some(130));
        assert!(f.take_due(129).is_empty());
        assert_eq!(f.take_due(130), ["b", "a"]);
        assert_eq!(f.take_due(130), ["b"], "the source is looked at once");
    }
}
