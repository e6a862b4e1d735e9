//! The mirror's known entries in memory, and giving them up while idle (issue 20 item 4).
//!
//! The engine plans against a `BTreeMap<String, Entry>` of everything the store knows
//! about the mirror: about 350 bytes per entry, 353 MiB for a million (W9). A big mirror
//! spends nearly all its life idle, and its store holds the same entries on disk, so a
//! mirror holding at least `unload_min_entries` drops the map after `unload_idle_secs`
//! with nothing to do and reads it back from the store (1.2 s for 1,050,000 entries,
//! release build) when work comes: a batch of events, a full pass, a retry, a command,
//! a change-log page with rows. An idle poll of the change log does not load it.
//!
//! Every effect applied to the map is applied to the store first (the map is the store's
//! view, never ahead of it), so what is read back is what was dropped. A read of the map
//! while it is unloaded is a bug, not an empty mirror: [`Known`]'s deref panics rather
//! than let a pass plan against nothing (which would upload everything again).

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Engine;
use crate::plan::{self, DiskItem};
use crate::store::Entry;
use crate::upload::MirrorTarget;
use tokio_util::sync::CancellationToken;

type Map = Arc<BTreeMap<String, Entry>>;

/// The known entries, loaded or not. Derefs to the map; panics if read while unloaded.
pub(super) struct Known {
    map: Map,
    loaded: bool,
    /// How many entries were dropped (status shows it while unloaded).
    count: usize,
    /// Some work loaded or used the map since the loop last looked.
    touched: bool,
}

impl Default for Known {
    fn default() -> Self {
        Known {
            map: Arc::new(BTreeMap::new()),
            loaded: true,
            count: 0,
            touched: false,
        }
    }
}

impl Known {
    /// How many entries the mirror has, loaded or not.
    pub fn count(&self) -> usize {
        if self.loaded {
            self.map.len()
        } else {
            self.count
        }
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// Replaces the map with `map` (loaded from the store).
    pub fn set(&mut self, map: BTreeMap<String, Entry>) {
        self.map = Arc::new(map);
        self.loaded = true;
        self.touched = true;
    }

    /// Unloaded from the start: the store holds `count` entries.
    pub fn set_unloaded(&mut self, count: usize) {
        self.map = Arc::new(BTreeMap::new());
        self.loaded = false;
        self.count = count;
    }

    /// Drops the map; the store keeps every entry.
    fn unload(&mut self) {
        self.count = self.map.len();
        self.map = Arc::new(BTreeMap::new());
        self.loaded = false;
    }

    /// Entries recorded in the store while unloaded (a big first sync), for the count.
    pub fn note_added(&mut self, n: usize) {
        if !self.loaded {
            self.count += n;
        }
    }

    /// Whether work used the map since the last call.
    pub fn take_touched(&mut self) -> bool {
        std::mem::take(&mut self.touched)
    }
}

impl Deref for Known {
    type Target = Map;

    fn deref(&self) -> &Map {
        assert!(
            self.loaded,
            "the mirror's entries were read while unloaded (ensure_known was not called)"
        );
        &self.map
    }
}

impl DerefMut for Known {
    fn deref_mut(&mut self) -> &mut Map {
        assert!(
            self.loaded,
            "the mirror's entries were changed while unloaded (ensure_known was not called)"
        );
        self.touched = true;
        &mut self.map
    }
}

impl Engine {
    /// Reads the entries back from the store if they were unloaded. `false` if the store
    /// could not be read (logged): the caller does no work that needs them.
    pub(super) async fn ensure_known(&mut self) -> bool {
        self.known.touched = true;
        if self.known.loaded {
            return true;
        }
        let Some(t) = self.target.clone() else {
            return false;
        };
        let loading = Instant::now();
        match self.deps.store.entries_map(t.mirror).await {
            Ok(map) => {
                self.known.set(map);
                tracing::debug!(mirror = %self.name, "loaded {} entries back from the store in {} ms", self.known.len(), loading.elapsed().as_millis());
                true
            }
            Err(e) => {
                tracing::error!(mirror = %self.name, "cannot read the mirror's entries from the state database {}: {e}", self.deps.store.path().display());
                // Not a spin: the caller's work is retried by the loop's next turn.
                tokio::time::sleep(Duration::from_secs(1)).await;
                false
            }
        }
    }

    /// A full pass over an unloaded mirror: the disk compared with the store row by row
    /// in path order, with no map of the entries. `None`: the disk is as the store has it
    /// and the pass has nothing to do (the entries stay unloaded: a restart or an hourly
    /// rescan of a big, quiet tree never builds the map). `Some(disk)`: the pass goes on
    /// the full way, loaded. Only the plain case is taken this way: nothing skipped,
    /// no delete waiting or allowed, no open intent, no unmounted mount point.
    pub(super) async fn unless_unchanged(
        &mut self,
        t: &MirrorTarget,
        disk: BTreeMap<String, DiskItem>,
    ) -> Option<BTreeMap<String, DiskItem>> {
        if self.known.loaded
            || !self.skipped.is_empty()
            || !self.gate.is_empty()
            || self.allow_deletes
            || self.intents.held() > 0
        {
            return Some(disk);
        }
        // As the plan would: a mount point that went is the full way's to handle.
        self.look_at_mounts().await;
        if self.mount_memory.any_gone() || self.known.loaded {
            return Some(disk);
        }
        let comparing = std::time::Instant::now();
        let (n, disk) = (disk.len(), Arc::new(disk));
        let theirs = Arc::clone(&disk);
        let same = self
            .deps
            .store
            .visit_entries(t.mirror, move |rows| {
                plan::unchanged_in_order(rows, &theirs)
            })
            .await;
        // The store's thread dropped its handle with the closure.
        let disk = Arc::try_unwrap(disk).unwrap_or_else(|shared| (*shared).clone());
        match same {
            Ok(true) => {
                tracing::debug!(mirror = %self.name, "full pass: the disk is as the store has it ({n} items compared row by row in {} ms)", comparing.elapsed().as_millis());
                // The listing was most of the pass's memory: give its pages back.
                drop(disk);
                super::memory::release_free_memory();
                None
            }
            Ok(false) => Some(disk),
            Err(e) => {
                tracing::warn!(mirror = %self.name, "comparing the disk with the state database {}: {e}; loading the entries instead", self.deps.store.path().display());
                Some(disk)
            }
        }
    }

    /// The first sync of a big tree (nothing known, `unload_min_entries` items or more on
    /// disk), planned and run [`SLICE_ITEMS`] items at a time in path order and without
    /// the map: every item is new, so a slice's plan is the whole plan's part for it
    /// (folders before what is in them, nothing moved or deleted); the results go to the
    /// store only, and each slice is dropped once planned, so the pass never holds a
    /// million ops, nor the disk listing and a million entries at once.
    pub(super) async fn first_sync_in_slices(
        &mut self,
        t: &Arc<MirrorTarget>,
        disk: BTreeMap<String, DiskItem>,
        stop: &CancellationToken,
    ) {
        if self.known.loaded {
            // (Entries hidden from this pass, below a skipped folder or a gone mount,
            // stay in the store and in the count.)
            let n = self.known.count();
            self.known.set_unloaded(n);
        }
        tracing::debug!(mirror = %self.name, "first sync of {} items, {SLICE_ITEMS} at a time, without the map of entries", disk.len());
        let mut rest = disk;
        while !rest.is_empty() {
            let slice = take_first(&mut rest, SLICE_ITEMS);
            let Some(planned) = self
                .plan(t, Arc::new(BTreeMap::new()), slice, Vec::new())
                .await
            else {
                return;
            };
            let Some(ops) = self.gate_ops(planned, false).await else {
                return;
            };
            let more = !rest.is_empty();
            if ops.is_empty() {
                // (A slice with ops shows its end through its last chunk.)
                if !more {
                    self.show_settled();
                }
            } else {
                self.run_in_chunks(t, ops, more, stop).await;
            }
            if stop.is_cancelled() || self.paused.is_some() {
                break;
            }
        }
        // Counted as the ops landed; now exactly.
        if !self.known.loaded
            && let Ok(n) = self.deps.store.entry_count(t.mirror).await
        {
            self.known.count = n;
        }
    }

    /// The known folders that `ops` create into, read from the store (an unloaded
    /// mirror's first sync: those made by the slices before).
    pub(super) async fn parents_from_store(
        &self,
        t: &MirrorTarget,
        ops: &[crate::upload::Op],
    ) -> BTreeMap<String, Entry> {
        let paths: std::collections::BTreeSet<String> = ops
            .iter()
            .map(|o| crate::relpath::parent(o.path()))
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        match self
            .deps
            .store
            .entries_at(t.mirror, paths.into_iter().collect())
            .await
        {
            Ok(found) => found,
            Err(e) => {
                // The ops whose folder is not found wait (`Blocked`) for the next pass.
                tracing::error!(mirror = %self.name, "cannot read folders from the state database {}: {e}", self.deps.store.path().display());
                BTreeMap::new()
            }
        }
    }

    /// Whether a mirror of `count` entries is one that unloads them while idle.
    pub(super) fn unloads(&self, count: usize) -> bool {
        self.cfg.unload_idle_secs > 0 && count >= self.cfg.unload_min_entries.max(1)
    }

    /// When the idle map should be dropped (`None`: not now). `last_use` is when work last
    /// used it; `quiet` says nothing is queued. (A failure waiting for its retry does not keep them: the retry reads them back.)
    pub(super) fn unload_due(&self, last_use: Instant, quiet: bool) -> Option<Instant> {
        let secs = self.cfg.unload_idle_secs;
        (quiet
            && self.known.loaded
            && self.target.is_some()
            && self.unloads(self.known.map.len())
            && self.intents.held() == 0
            && self.gate.is_empty())
        .then(|| last_use + Duration::from_secs(secs))
    }

    /// Drops the map and gives its memory back.
    pub(super) fn unload_known(&mut self) {
        let n = self.known.map.len();
        self.known.unload();
        let trimmed = super::memory::release_free_memory();
        tracing::debug!(mirror = %self.name, "idle: {n} entries unloaded (kept in the store; memory returned: {trimmed})");
        self.status_tx.send_modify(|s| s.entries_loaded = false);
    }
}

/// Items a big first sync plans at a time (one chunk of ops).
const SLICE_ITEMS: usize = super::pass::CHUNK_OPS;

/// The first `n` items of `rest` (in path order), taken out of it.
fn take_first(rest: &mut BTreeMap<String, DiskItem>, n: usize) -> BTreeMap<String, DiskItem> {
    match rest.keys().nth(n).cloned() {
        Some(first_after) => {
            let after = rest.split_off(&first_after);
            std::mem::replace(rest, after)
        }
        None => std::mem::take(rest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EntryKind;

    fn entry(path: &str) -> Entry {
        crate::store::test_entry(path, EntryKind::File)
    }

    #[test]
    fn an_unloaded_map_counts_what_it_dropped_and_loads_back() {
        let mut k = Known::default();
        k.set(
            [("a", entry("a")), ("b", entry("b"))]
                .map(|(p, e)| (p.to_string(), e))
                .into(),
        );
        assert!(k.take_touched());
        assert!(!k.take_touched());
        assert_eq!(k.count(), 2);
        k.unload();
        assert!(!k.is_loaded());
        assert_eq!(k.count(), 2);
        k.set([("a".to_string(), entry("a"))].into());
        assert_eq!((k.count(), k.len()), (1, 1));
    }

    #[test]
    #[should_panic(expected = "read while unloaded")]
    fn reading_an_unloaded_map_is_a_bug_not_an_empty_mirror() {
        let mut k = Known::default();
        k.set([("a".to_string(), entry("a"))].into());
        k.unload();
        let _ = k.get("a");
    }
}
