//! The pass: how the mirror turns what it sees on disk into remote calls. A full pass scans
//! the whole root and compares it with the whole store; a batch takes the paths the debounce
//! queue settled (plus the deletes waiting at the gate, and a retry's failed paths) and
//! builds their scope (new subtrees, vanished known subtrees, missing ancestors). Both then
//! go through the same four steps:
//!
//! 1. **plan**: the planner compares disk and store (hashing only what changed) → ops;
//! 2. **gate**: the mass-delete guard, the delete gate (`queue::gate`), and failed paths
//!    whose retry is not due hold ops back;
//! 3. **run**: the uploader executes the rest;
//! 4. **apply** (`outcomes`): the outcomes update the known entries, the failures and the pause state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::pause::{Pause, root_identity};
use super::{Engine, MirrorState, SkippedItem, unix_now};
use crate::plan::{self, DiskItem, Op, Plan};
use crate::queue::Settled;
use crate::relpath::Escaped;
use crate::store::{self, Entry, EntryKind};
use crate::upload::{MirrorTarget, OpResult};
use crate::watch::{self as local, IgnoreRules, Kind, LocalEntry, RelPath, ScanError, ScanItem};

/// A planned pass: the planner's ops, and the paths that changed kind (their delete frees
/// the name for the new item, so it does not wait out the grace period).
pub(super) struct Planned {
    plan: Plan,
    kind_changed: BTreeSet<String>,
}

impl Engine {
    /// Scans the whole root and plans everything against the whole store.
    pub(super) async fn full_pass(&mut self, stop: &CancellationToken) {
        self.gate
            .full_pass_starts(self.last_removal(), Instant::now());
        let Some(t) = self.target.clone() else { return };
        if !self.check_root().await {
            return;
        }
        // No op of this mirror runs between batches, so an intent still open here was left
        // by a create that failed ambiguously: settle it against the remote first.
        if let Err(e) = self.resolve_intents().await {
            tracing::warn!(mirror = %self.name, "settling operations left open: {e}");
        }
        self.set_state(MirrorState::Scanning, None);
        let (root, ignore) = (t.root.clone(), self.ignore.clone());
        let watches = self.dir_watches.clone();
        let scanning = std::time::Instant::now();
        // The watcher's start-up scan, when it is still current (`watching`).
        let scanned = match self.prescanned.take() {
            Some(found) => Ok(found),
            None => {
                tokio::task::spawn_blocking(move || scan_root(&root, &ignore, watches.as_ref()))
                    .await
            }
        };
        let Scanned {
            disk,
            skipped,
            unmirrorable,
        } = match scanned {
            Ok(Ok(found)) => found,
            Ok(Err(e @ ScanError::RootUnavailable { .. })) => {
                self.pause_for_root(format!(
                    "{e}; nothing is deleted remotely while the root is unavailable"
                ))
                .await;
                return;
            }
            Err(e) => {
                tracing::error!(mirror = %self.name, "scan task failed: {e}");
                return;
            }
        };
        tracing::debug!(mirror = %self.name, "full pass: scanned {} items in {} ms", disk.len(), scanning.elapsed().as_millis());
        // Below a directory the scan could not read, items are unknown, not gone.
        let unreadable: Vec<String> = skipped
            .iter()
            .filter(|(_, r)| matches!(r, local::SkipReason::Unreadable(_)))
            .map(|(p, _)| p.clone())
            .collect();
        for path in unmirrorable.keys() {
            tracing::warn!(mirror = %self.name, "cannot mirror {}: {NON_UTF8_REASON}", Escaped(path));
        }
        self.settle_failures_after_scan(&t, &disk, unmirrorable, &unreadable)
            .await;
        self.skipped.clear();
        for (path, reason) in skipped {
            tracing::warn!(mirror = %self.name, "skipped {}: {reason}", Escaped(&path));
            self.skipped.push(SkippedItem {
                path,
                reason: reason.to_string(),
            });
        }
        if disk.is_empty() && self.known.count() > 0 {
            let reason = format!(
                "root {} is empty but {} items were mirrored (unmounted disk?); nothing is deleted remotely",
                t.root.display(),
                self.known.count()
            );
            self.pause(Pause::Root {
                reason,
                lifts_when_back: false,
            })
            .await;
            return;
        }
        let Some(disk) = self.unless_unchanged(&t, disk).await else {
            self.pass_found_nothing();
            return self.full_pass_done(&t).await;
        };
        if !self.ensure_known().await {
            self.needs_full_pass = true;
            return;
        }
        self.fill_ctimes(&t, &disk).await;
        // What could not be looked at is unknown, not deleted: keep its known subtree out
        // of the comparison. (Shared, not copied, when nothing was skipped: a copy of
        // 100,000 entries is most of a no-change pass's memory peak.)
        let known = if self.skipped.is_empty() {
            Arc::clone(&self.known)
        } else {
            let mut known = (**self.known).clone();
            for item in &self.skipped {
                known.retain(|k, _| !plan::is_within(k, &item.path));
            }
            Arc::new(known)
        };
        self.plan_and_execute(known, disk, Vec::new(), false, stop)
            .await;
        if self.known.count() >= COMPACT_AFTER_GROWTH {
            // The pass over a big tree freed its listing, plan and results: give the
            // pages back rather than keep the pass's peak as the idle size.
            let trimming = std::time::Instant::now();
            let released = super::memory::release_free_memory();
            tracing::debug!(mirror = %self.name, released, "returned free memory in {} ms", trimming.elapsed().as_millis());
        }
        self.full_pass_done(&t).await;
    }

    async fn full_pass_done(&mut self, t: &MirrorTarget) {
        if self.paused.is_none() {
            let _ = self.deps.store.set_first_pass_done(t.mirror).await;
            self.status_tx.send_modify(|s| s.first_pass_done = true);
        }
    }

    /// The state a pass that sends nothing leaves the mirror in.
    fn pass_found_nothing(&mut self) {
        match &self.paused {
            Some(p) => self.set_state(p.state(), Some(p.reason())),
            None => self.set_state(MirrorState::Idle, None),
        }
    }

    /// Records the ctime of files whose entry has none (synced before the store kept it,
    /// or adopted after a crash) and that still match their size, mtime and inode: taken
    /// as they are, not hashed, so the first pass after an upgrade is no hashing storm.
    /// One transaction for all of them; from then on a write that hides behind the old
    /// size and mtime is caught by its ctime.
    async fn fill_ctimes(&mut self, t: &MirrorTarget, disk: &BTreeMap<String, DiskItem>) {
        let filled: Vec<store::Effect> = self
            .known
            .values()
            .filter(|k| k.kind == EntryKind::File && k.ctime_ns.is_none())
            .filter_map(|k| {
                let d = disk.get(&k.path)?;
                let same = d.kind == k.kind
                    && d.size == k.size
                    && d.mtime_ns == k.mtime_ns
                    && d.inode == k.inode;
                same.then(|| {
                    store::Effect::Upsert(Entry {
                        ctime_ns: Some(d.ctime_ns),
                        ..k.clone()
                    })
                })
            })
            .collect();
        if filled.is_empty() {
            return;
        }
        tracing::debug!(mirror = %self.name, "recording the ctime of {} files", filled.len());
        if let Err(e) = self.deps.store.apply(t.mirror, filled.clone()).await {
            tracing::warn!(mirror = %self.name, "recording ctimes: {e}");
            return;
        }
        let known = Arc::make_mut(&mut self.known);
        for e in &filled {
            store::apply_to_map(known, e);
        }
    }

    /// Plans and executes one batch of settled paths.
    pub(super) async fn batch(&mut self, settled: Vec<Settled>, stop: &CancellationToken) {
        let Some(t) = self.target.clone() else { return };
        if !self.ensure_known().await {
            // The settled paths are not lost: the full pass looks at everything.
            self.needs_full_pass = true;
            return;
        }
        if root_identity(&t.root).is_none() {
            self.pause_for_root(format!(
                "root {} vanished or is not a directory; nothing is deleted remotely",
                t.root.display()
            ))
            .await;
            return;
        }
        if !self.check_root().await {
            return;
        }
        let mut paths: BTreeSet<String> = BTreeSet::new();
        let mut renames = Vec::new();
        for s in settled {
            match s {
                Settled::Changed(p) | Settled::Removed(p) => {
                    paths.insert(p.as_str().to_string());
                }
                Settled::Renamed { from, to } => {
                    paths.insert(from.as_str().to_string());
                    paths.insert(to.as_str().to_string());
                    renames.push((from.as_str().to_string(), to.as_str().to_string()));
                }
                Settled::Rescan => {
                    self.needs_full_pass = true;
                    return;
                }
            }
        }
        // A changed path's failure is worth another try right away.
        for p in &paths {
            self.failures.forget(p);
        }
        let settled_paths: Vec<String> = paths.iter().cloned().collect();
        paths.extend(self.gate.paths().cloned());
        let (root, ignore) = (t.root.clone(), self.ignore.clone());
        let known_all = Arc::clone(&self.known);
        // Polled mounts (their changes raise no events) are scanned whole.
        let deep: BTreeSet<String> = self
            .polled_subtrees
            .iter()
            .map(|r| r.as_str().to_string())
            .filter(|p| paths.contains(p))
            .collect();
        let scope = tokio::task::spawn_blocking(move || {
            build_scope(&root, &ignore, &known_all, &paths, &deep)
        })
        .await;
        let Ok(Scope {
            known,
            disk,
            unmirrorable,
        }) = scope
        else {
            return;
        };
        if unmirrorable {
            // Moved in with a name that is not UTF-8 inside (no event names it).
            self.needs_full_pass = true;
        }
        // A settled path that is neither on disk (deleted, renamed away, now ignored) nor
        // known has nothing left to fail: its failure goes (a known one is still owed a
        // delete, and keeps its failure until that succeeds).
        let gone: Vec<String> = settled_paths
            .into_iter()
            .filter(|p| !disk.contains_key(p) && !self.known.contains_key(p))
            .filter(|p| !self.failures.is_unmirrorable(p))
            .collect();
        self.drop_failures(&t, gone).await;
        self.plan_and_execute(Arc::new(known), disk, renames, true, stop)
            .await;
    }

    /// Plans the failed paths whose retry is due (with the sources of failed moves).
    pub(super) async fn retry_due(&mut self, stop: &CancellationToken) {
        if self.paused.is_some() {
            return;
        }
        let paths = self.failures.take_due(unix_now());
        if paths.is_empty() {
            return;
        }
        let settled = paths
            .into_iter()
            .filter_map(|p| RelPath::new(&p).ok())
            .map(Settled::Changed)
            .collect();
        self.batch(settled, stop).await;
    }

    async fn plan_and_execute(
        &mut self,
        known: Arc<BTreeMap<String, Entry>>,
        disk: BTreeMap<String, DiskItem>,
        renames: Vec<(String, String)>,
        from_events: bool,
        stop: &CancellationToken,
    ) {
        let Some(t) = self.target.clone() else { return };
        let (mut disk, mut renames) = (disk, renames);
        let known = self.hide_gone_mounts(known, &mut disk, &mut renames).await;
        if known.is_empty() && renames.is_empty() && !from_events && self.unloads(disk.len()) {
            drop(known);
            return self.first_sync_in_slices(&t, disk, stop).await;
        }
        let Some(planned) = self.plan(&t, known, disk, renames).await else {
            return;
        };
        let Some(ops) = self.gate_ops(planned, from_events).await else {
            return;
        };
        if ops.is_empty() {
            // Nothing to send: idle even if a pass was asked for meanwhile (as before the
            // split; the loop runs that pass next).
            self.pass_found_nothing();
            return;
        }
        let known_before = self.known.len();
        self.run_in_chunks(&t, ops, false, stop).await;
        if self.known.len() >= known_before + COMPACT_AFTER_GROWTH {
            // Entries inserted one by one in path order leave the map's nodes about half
            // full (a first pass of a million files); rebuilt from sorted order they are
            // full, which is what the daemon keeps while idle.
            let compacting = std::time::Instant::now();
            store::compact_map(Arc::make_mut(&mut self.known));
            tracing::debug!(mirror = %self.name, "compacted {} known entries in {} ms", self.known.len(), compacting.elapsed().as_millis());
        }
    }

    /// Steps 3 and 4 in chunks of [`CHUNK_OPS`] ops, in plan order: each chunk runs to its
    /// end and its outcomes are applied before the next starts, so a pass holds one
    /// chunk's results at a time (a first pass of a million files held a million results
    /// and their effects until the end). The ops not yet run are kept reversed and taken
    /// from the end, so each chunk is freed as it goes and the list's buffer shrinks.
    /// Parents still come first: a chunk's folders exist (in `known`) before the next
    /// chunk's ops are sent; a move or delete still runs alone.
    /// `more_after`: another slice of the same pass follows (a big first sync), so the
    /// last chunk does not show the mirror settled.
    pub(super) async fn run_in_chunks(
        &mut self,
        t: &Arc<MirrorTarget>,
        ops: Vec<Op>,
        more_after: bool,
        stop: &CancellationToken,
    ) {
        let mut later = ops;
        later.reverse();
        let (files, bytes) = later.iter().fold((0u64, 0u64), |(f, b), op| match op {
            Op::Upload { item, .. } | Op::Replace { item, .. } => (f + 1, b + item.size),
            _ => (f, b),
        });
        let (mut files_later, mut bytes_later) = (files, bytes);
        let paused_before = self.paused.is_some();
        loop {
            let chunk: Vec<Op> = later
                .drain(later.len().saturating_sub(CHUNK_OPS)..)
                .rev()
                .collect();
            if later.len() < later.capacity() / 2 {
                later.shrink_to_fit();
            }
            for op in &chunk {
                if let Op::Upload { item, .. } | Op::Replace { item, .. } = op {
                    files_later -= 1;
                    bytes_later -= item.size;
                }
            }
            // What later chunks will send, shown with the running chunk's in progress.
            self.counters
                .files_later
                .store(files_later, std::sync::atomic::Ordering::Relaxed);
            self.counters
                .bytes_later
                .store(bytes_later, std::sync::atomic::Ordering::Relaxed);
            let queued = chunk.len() + later.len();
            let results = self.run_ops(t, chunk, queued, stop).await;
            let last = later.is_empty() || stop.is_cancelled();
            self.apply(t, results, last && !more_after).await;
            // A pause (credentials, quota) stops the pass: the rest is planned again once
            // it lifts.
            if last || (!paused_before && self.paused.is_some()) {
                break;
            }
        }
        self.counters
            .files_later
            .store(0, std::sync::atomic::Ordering::Relaxed);
        self.counters
            .bytes_later
            .store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// Step 1: the planner, on a blocking thread (it hashes what changed). Paths it could
    /// not examine are recorded as failures.
    pub(super) async fn plan(
        &mut self,
        t: &MirrorTarget,
        known: Arc<BTreeMap<String, Entry>>,
        disk: BTreeMap<String, DiskItem>,
        renames: Vec<(String, String)>,
    ) -> Option<Planned> {
        let root = t.root.clone();
        let planning = std::time::Instant::now();
        let planned = tokio::task::spawn_blocking(move || {
            let plan = plan::plan(&known, &disk, &renames, &mut |rel| {
                plan::hash_file(&root.join(rel))
            });
            let kind_changed = plan
                .ops
                .iter()
                .filter_map(|op| match op {
                    Op::Delete { path, kind, .. }
                        if disk.get(path).is_some_and(|d| d.kind != *kind) =>
                    {
                        Some(path.clone())
                    }
                    _ => None,
                })
                .collect();
            Planned { plan, kind_changed }
        })
        .await
        .ok()?;
        tracing::debug!(mirror = %self.name, "planned {} ops in {} ms", planned.plan.ops.len(), planning.elapsed().as_millis());
        for (path, reason) in &planned.plan.failures {
            let _ = self
                .deps
                .store
                .record_failure(
                    t.mirror,
                    path,
                    reason,
                    false,
                    super::failures::failure_backoff,
                )
                .await;
            self.failures.note_unplannable(path, unix_now());
        }
        Some(planned)
    }

    /// Step 2: what may run now. `None` if the mass-delete guard paused the mirror.
    pub(super) async fn gate_ops(
        &mut self,
        planned: Planned,
        from_events: bool,
    ) -> Option<Vec<Op>> {
        let Planned { plan, kind_changed } = planned;
        // Mass-delete guard: count AND share of what is mirrored.
        let known_count = self.known.count();
        let limit_pct = (known_count * usize::from(self.cfg.mass_delete_percent)) / 100;
        if !self.allow_deletes
            && plan.deleted_entries > self.cfg.mass_delete_count
            && plan.deleted_entries > limit_pct
        {
            let reason = format!(
                "this pass would delete {} of {} mirrored items (over {} and {}%); run `scaidrivectl resume --allow-deletes {}` if that is intended",
                plan.deleted_entries,
                known_count,
                self.cfg.mass_delete_count,
                self.cfg.mass_delete_percent,
                self.name
            );
            self.pause(Pause::MassDelete { reason }).await;
            return None;
        }
        // Told to go ahead (`resume --allow-deletes`): this pass deletes what it sees gone.
        let allowed = std::mem::take(&mut self.allow_deletes);
        let (now, now_unix) = (Instant::now(), unix_now());
        let pass = self.gate.begin_pass(
            plan.deleted_entries,
            allowed,
            from_events,
            self.last_removal(),
            now,
        );
        let mut ops = Vec::with_capacity(plan.ops.len());
        for op in plan.ops {
            if let Op::Delete { path, .. } = &op
                && !kind_changed.contains(path)
                && !self.gate.admit(pass, path, now)
            {
                continue;
            }
            if self.failures.holds_back(&op, now_unix) {
                continue;
            }
            ops.push(op);
        }
        // A path that is no longer a waiting delete (it came back or moved) is settled.
        let deleting: BTreeSet<String> = ops
            .iter()
            .filter_map(|o| match o {
                Op::Delete { path, .. } => Some(path.clone()),
                _ => None,
            })
            .collect();
        if !self.gate.is_empty() {
            self.ensure_known().await;
        }
        let known = &self.known;
        // (Unloaded only if the store could not be read: the waiting deletes are dropped
        // and the next full pass finds them again.)
        self.gate
            .settle(|p| known.is_loaded() && known.contains_key(p), &deleting);
        Some(ops)
    }

    /// Step 3: the uploader runs the ops.
    async fn run_ops(
        &mut self,
        t: &Arc<MirrorTarget>,
        ops: Vec<Op>,
        queued: usize,
        stop: &CancellationToken,
    ) -> Vec<OpResult> {
        self.set_state(MirrorState::Syncing, None);
        self.status_tx.send_modify(|s| s.queue_depth = queued);
        // A folder delete that must leave others' items in place learns them first.
        let keeps = t.remote_extras == crate::config::RemoteExtras::Keep
            && t.delete_mode == crate::config::DeleteMode::Trash
            && ops
                .iter()
                .any(|o| matches!(o, Op::Delete { kind, .. } if *kind == store::EntryKind::Dir));
        let others = if keeps { self.others_now().await } else { None };
        let structural = ops
            .iter()
            .any(|o| matches!(o, Op::Move { .. } | Op::Delete { .. }));
        if structural {
            self.ensure_known().await;
        }
        let parents;
        let known: &BTreeMap<String, Entry> = if self.known.is_loaded() {
            &self.known
        } else {
            // A big first sync runs without the map: the folders its creates go into
            // are read from the store (those made by earlier chunks).
            parents = self.parents_from_store(t, &ops).await;
            &parents
        };
        self.deps
            .uploader
            .run_batch_knowing(t, &self.counters, known, others.as_ref(), ops, stop)
            .await
    }
}

/// Ops per chunk of a pass (see `run_in_chunks`): large enough that the pause between
/// chunks (the last op of one must end before the next chunk starts) is rare, small enough
/// that a chunk's results are a few MiB.
pub const CHUNK_OPS: usize = 4096;

/// How many entries a pass must add before the known map is rebuilt compactly: a
/// rebuild costs a copy of the map's entries for a moment, worth it only for a big pass.
const COMPACT_AFTER_GROWTH: usize = 16_384;

/// Why a name that is not UTF-8 is a failure (not a skip): the file exists and is not on
/// the remote, so the mirror is not in sync until it is renamed.
const NON_UTF8_REASON: &str = "the name is not valid UTF-8 (shown with \\xNN for its invalid bytes) and the ScaiDrive API takes UTF-8 names only; rename it";

/// What a full scan found: the disk view, what was skipped (symlinks, special files,
/// unreadable directories), and the unmirrorable names (escaped path → reason).
pub(super) struct Scanned {
    disk: BTreeMap<String, DiskItem>,
    skipped: Vec<(String, local::SkipReason)>,
    unmirrorable: BTreeMap<String, String>,
}

/// The whole root, scanned on a few threads, adding the watcher's watches as it goes.
pub(super) fn scan_root(
    root: &std::path::Path,
    ignore: &IgnoreRules,
    watches: Option<&local::DirWatches>,
) -> Result<Scanned, ScanError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let items = local::scan_parallel_watching(root, ignore, threads, watches)?;
    let mut found = Scanned {
        disk: BTreeMap::new(),
        skipped: Vec::new(),
        unmirrorable: BTreeMap::new(),
    };
    for item in items {
        match item {
            ScanItem::Entry(e) => {
                // The scan's path string becomes the item's (one copy for the key, not
                // two: this map holds the whole tree while the pass plans).
                let mut d = disk_item("", &e);
                d.path = String::from(e.path);
                found.disk.insert(d.path.clone(), d);
            }
            ScanItem::Skipped {
                path,
                reason: local::SkipReason::NonUtf8,
            } => {
                // The scan shows such a name lossily; its failure needs the exact name.
                for name in local::non_utf8_names(root, &path) {
                    found.unmirrorable.insert(name, NON_UTF8_REASON.to_string());
                }
            }
            ScanItem::Skipped { path, reason } => found.skipped.push((path, reason)),
        }
    }
    found.skipped.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

pub(super) fn disk_item(path: &str, e: &LocalEntry) -> DiskItem {
    DiskItem {
        path: path.to_string(),
        kind: if e.kind == Kind::Dir {
            EntryKind::Dir
        } else {
            EntryKind::File
        },
        size: e.size,
        mtime_ns: e.mtime_ns,
        inode: e.inode,
        ctime_ns: e.ctime_ns,
    }
}

pub(super) fn entry_of(
    d: &DiskItem,
    remote_id: &str,
    sha: Option<String>,
    version: Option<i64>,
) -> Entry {
    Entry {
        path: d.path.clone(),
        kind: d.kind,
        remote_id: remote_id.to_string(),
        size: d.size,
        mtime_ns: d.mtime_ns,
        inode: d.inode,
        sha256: sha,
        remote_version: version,
        ctime_ns: Some(d.ctime_ns),
    }
}

/// A batch's share of the tree: the known and disk views of its paths.
#[derive(Default)]
struct Scope {
    known: BTreeMap<String, Entry>,
    disk: BTreeMap<String, DiskItem>,
    /// A new directory holds a name that is not UTF-8: a full pass records its failure.
    unmirrorable: bool,
}

/// The known and disk views for a batch of paths: each path, its not-yet-known
/// ancestors, the subtree of a new directory, and the known subtree of a path that
/// vanished or changed kind. A directory in `deep` (a polled mount) is compared whole:
/// its known subtree against a scan of its disk subtree.
fn build_scope(
    root: &std::path::Path,
    ignore: &IgnoreRules,
    known_all: &BTreeMap<String, Entry>,
    paths: &BTreeSet<String>,
    deep: &BTreeSet<String>,
) -> Scope {
    let mut scope = Scope::default();
    let (mut known, mut disk) = (BTreeMap::new(), BTreeMap::new());
    // Inodes of files in scope with more than one name (hard links).
    let mut linked = std::collections::HashSet::new();
    let add_known_tree = |known: &mut BTreeMap<String, Entry>, p: &str| {
        for (k, e) in known_all.range(p.to_string()..) {
            if !k.starts_with(p) {
                break;
            }
            if plan::is_within(k, p) {
                known.insert(k.clone(), e.clone());
            }
        }
    };
    for p in paths {
        let Ok(rel) = RelPath::new(p) else { continue };
        if ignore.is_ignored(&rel, false) {
            continue;
        }
        let local = local::stat_path(root, &rel).ok().flatten();
        let k = known_all.get(p);
        match (&local, k) {
            (None, Some(_)) => add_known_tree(&mut known, p),
            (Some(l), Some(e)) if (l.kind == Kind::Dir) != (e.kind == EntryKind::Dir) => {
                add_known_tree(&mut known, p)
            }
            (_, Some(e)) => {
                known.insert(p.clone(), e.clone());
            }
            _ => {}
        }
        let Some(l) = local else { continue };
        if l.kind == Kind::Dir && ignore.is_ignored(&rel, true) {
            continue;
        }
        if l.kind == Kind::File && l.nlink > 1 {
            linked.insert(l.inode);
        }
        disk.insert(p.clone(), disk_item(p, &l));
        // Ancestors the remote does not have yet come first.
        let mut anc = plan::parent(p).to_string();
        while !anc.is_empty() && !known_all.contains_key(&anc) {
            if let Ok(r) = RelPath::new(&anc)
                && let Ok(Some(a)) = local::stat_path(root, &r)
            {
                disk.insert(anc.clone(), disk_item(&anc, &a));
            }
            anc = plan::parent(&anc).to_string();
        }
        let is_deep = l.kind == Kind::Dir && deep.contains(p);
        if is_deep {
            add_known_tree(&mut known, p);
        }
        if l.kind == Kind::Dir
            && (is_deep || !known_all.get(p).is_some_and(|e| e.kind == EntryKind::Dir))
        {
            // A new directory: everything inside is new too (no events come for the
            // contents of a directory moved in from outside the root).
            if let Ok(items) = local::scan(&root.join(p), ignore) {
                for item in items {
                    if let ScanItem::Skipped {
                        reason: local::SkipReason::NonUtf8,
                        ..
                    } = item
                    {
                        scope.unmirrorable = true;
                    }
                    if let ScanItem::Entry(e) = item {
                        let full = format!("{p}/{}", e.path.as_str());
                        if let Ok(r) = RelPath::new(&full)
                            && !ignore.is_ignored(&r, e.kind == Kind::Dir)
                        {
                            disk.insert(full.clone(), disk_item(&full, &e));
                        }
                    }
                }
            }
        }
        for (k, e) in known_all.range(p.clone()..) {
            if !k.starts_with(p.as_str()) {
                break;
            }
            // Known entries under a path in scope whose disk side is also in scope.
            if plan::is_within(k, p) && disk.contains_key(k) {
                known.insert(k.clone(), e.clone());
            }
        }
    }
    if !linked.is_empty() {
        add_other_links(root, known_all, &linked, &mut known, &mut disk);
    }
    scope.known = known;
    scope.disk = disk;
    scope
}

/// Brings the other known names of hard-linked inodes into a batch's scope: an edit
/// through one name changes the content of all of them, but the kernel reports only the
/// name it was written through, and the others' remote copies would stay stale until the
/// next full pass. One walk over the known entries, only for a batch that touched a file
/// with several links.
fn add_other_links(
    root: &std::path::Path,
    known_all: &BTreeMap<String, Entry>,
    linked: &std::collections::HashSet<u64>,
    known: &mut BTreeMap<String, Entry>,
    disk: &mut BTreeMap<String, DiskItem>,
) {
    for (p, e) in known_all {
        if e.kind != EntryKind::File || !linked.contains(&e.inode) || disk.contains_key(p) {
            continue;
        }
        let Ok(rel) = RelPath::new(p) else { continue };
        // Still the same inode (not replaced or unlinked meanwhile): checked as changed.
        if let Ok(Some(l)) = local::stat_path(root, &rel)
            && l.kind == Kind::File
            && l.inode == e.inode
        {
            known.insert(p.clone(), e.clone());
            disk.insert(p.clone(), disk_item(p, &l));
        }
    }
}
