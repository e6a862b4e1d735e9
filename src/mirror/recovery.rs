//! Start-up and crash recovery: registering the mirror, finding (or creating) the remote base
//! folder, loading what the store knows, adopting an existing remote tree when the store
//! knows nothing, and settling the intents a crash (or an unanswered create) left open in
//! the journal, by looking at the remote, never by guessing (DESIGN.md §3).
//!
//! A create or replace that is not (yet) on the remote is only concluded "not done" if no
//! request for it can still land: one left by an earlier run (killed while the server was
//! still working on it) or one that ended without an answer may be applied after this look.
//! Those stay open and are looked at again ([`OpenIntents`]) until they show up or the time
//! such a request can take has passed; otherwise an item created a moment later would be an
//! orphan no pass knows to move or delete.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::error::{Context, MirrorError};
use super::pass::{disk_item, entry_of};
use super::pause::Pause;
use super::{Engine, unix_now};
use crate::plan;
use crate::relpath::Escaped;
use crate::remote::{Children, ItemKind, RemoteFile};
use crate::store::journal::{IntentOp, MoveItem, SendFile};
use crate::store::{self, Effect, Entry, EntryKind, Intent};
use crate::upload::MirrorTarget;
use crate::watch::{self as local, IgnoreRules, Kind, LocalEntry, RelPath};

/// Added to the request timeout: how long after this run first looked a request an
/// earlier run (or an unanswered attempt) sent may still be applied by the server.
const LANDING_MARGIN: Duration = Duration::from_secs(5);

/// How often intents that may still land are looked at again.
pub(super) const HELD_RECHECK: Duration = Duration::from_secs(1);

/// The open intents this run is settling.
#[derive(Debug, Default)]
pub(super) struct OpenIntents {
    /// Open when this run started (left by an earlier run, maybe with a request still
    /// being applied by the server when this run looked).
    inherited: HashSet<i64>,
    /// Intents whose create or replace may still land, with when this run first found
    /// it missing. Counted as work to do: the mirror is not in sync while one is held.
    held: HashMap<i64, Instant>,
    /// The log position the creates open now are settled from (the follower's stored
    /// position, read before they were opened; it moves on meanwhile).
    pub(super) log_from: Option<crate::remote::Cursor>,
}

impl OpenIntents {
    /// How many are held (work still to do).
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Whether the intent's request may still be applied after this look.
    fn may_land(&self, intent: &Intent) -> bool {
        self.inherited.contains(&intent.id) || intent.uncertain
    }

    /// Whether to keep waiting for an intent whose item is not on the remote (yet).
    fn hold(&mut self, mirror: &str, intent: &Intent, now: Instant, window: Duration) -> bool {
        if !self.may_land(intent) {
            return false;
        }
        let (op, path) = (intent.op.name(), &intent.path);
        let since = *self.held.entry(intent.id).or_insert_with(|| {
            tracing::info!(mirror = %mirror, path = %Escaped(path), "the {op} of {} is not on the remote yet, but its request may still be applied: looking again for up to {} s", Escaped(path), window.as_secs());
            now
        });
        if now.saturating_duration_since(since) < window {
            return true;
        }
        tracing::info!(mirror = %mirror, path = %Escaped(path), "the {op} of {} is still not on the remote {} s after it was first looked for; settled as not done", Escaped(path), window.as_secs());
        false
    }

    /// An intent that could not be looked at stays open for the next settle, but once its
    /// landing window has passed it no longer holds the mirror out of sync (nor is it
    /// looked at every second): it is then no different from any create that failed.
    fn unhold_expired(&mut self, intent: i64, now: Instant, window: Duration) {
        if self
            .held
            .get(&intent)
            .is_some_and(|since| now.saturating_duration_since(*since) >= window)
        {
            self.held.remove(&intent);
        }
    }

    fn closed(&mut self, intent: i64) {
        self.held.remove(&intent);
        self.inherited.remove(&intent);
    }
}

/// What settling one intent concluded.
enum Verdict {
    /// Close it, recording these effects.
    Close(Vec<Effect>),
    /// Its request may still land: looked at again later.
    Wait,
    /// The remote could not be looked at: left open for the next settle.
    LookAgain,
}

/// What one settle shares across intents: one listing per folder, however many intents
/// point into it.
struct Settling {
    target: Arc<MirrorTarget>,
    now: Instant,
    window: Duration,
    listings: HashMap<Option<String>, Children>,
    /// The change log after the stored position, when it settles the creates for less
    /// than listing their folders (see `logtree`).
    log: Option<super::logtree::LogTree>,
}

impl Engine {
    /// Registers the mirror, finds the base folder, loads the store, resolves intents.
    pub(super) async fn start(&mut self) -> Result<(), MirrorError> {
        let store = self.deps.store.clone();
        let root = self.cfg.path.display().to_string();
        let rec = store
            .ensure_mirror(&self.name, &root, &self.cfg.share_id, &self.cfg.remote_path)
            .await?;
        let (root, globs) = (self.cfg.path.clone(), self.cfg.exclude.clone());
        let rules = tokio::task::spawn_blocking(move || IgnoreRules::load(&root, &globs))
            .await
            .context("ignore rules")?
            .context("ignore rules")?;
        self.ignore = Arc::new(rules);
        if self.watcher_starting.is_none() {
            self.watcher_starting = Some(self.spawn_watcher());
        }
        // Whether the remote base folder may hold items this store does not know (it
        // existed before this start, or was recorded by an earlier run).
        let mut base_existed = true;
        let base = match rec.base_folder_id.clone() {
            Some(id) => Some(id).filter(|id| !id.is_empty()),
            None => {
                let (id, existed) = self.ensure_base_folder().await?;
                base_existed = existed;
                if !existed {
                    self.note_fresh_base();
                }
                store
                    .set_base_folder(rec.id, id.as_deref().unwrap_or(""))
                    .await?;
                id
            }
        };
        if let Some(reason) = &rec.paused_reason {
            self.paused = Some(if rec.paused_for_root {
                Pause::Root {
                    reason: reason.clone(),
                    lifts_when_back: rec.root_identity.is_some(),
                }
            } else {
                Pause::Saved {
                    reason: reason.clone(),
                }
            });
        }
        self.root_anchor = rec.root_identity;
        self.target = Some(Arc::new(MirrorTarget {
            mirror: rec.id,
            name: self.name.clone(),
            root: self.cfg.path.clone(),
            share_id: self.cfg.share_id.clone(),
            base_folder_id: base,
            delete_mode: self.cfg.delete,
            remote_extras: self.cfg.remote_extras,
        }));
        let loading = std::time::Instant::now();
        let count = store.entry_count(rec.id).await?;
        if self.unloads(count) {
            // A big mirror starts unloaded: a restart that finds the disk as the store
            // has it compares the two row by row and never builds the map (`known`).
            self.known.set_unloaded(count);
            tracing::debug!(mirror = %self.name, "{count} entries stay in the store until work needs them");
        } else {
            self.known.set(store.entries_map(rec.id).await?);
            tracing::debug!(mirror = %self.name, "loaded {} entries from the store in {} ms", self.known.len(), loading.elapsed().as_millis());
        }
        self.failures
            .load(&store.failures(rec.id).await?, unix_now());
        // No op of this run has begun yet: every open intent is an earlier run's.
        self.intents.inherited = store
            .intents(rec.id)
            .await?
            .into_iter()
            .map(|i| i.id)
            .collect();
        self.resolve_intents().await?;
        if self.known.count() == 0 && base_existed {
            self.adopt_remote().await?;
        }
        Ok(())
    }

    /// Walks `remote_path` from the share root, creating missing folders. Also says
    /// whether the base folder already existed (a new one is known to be empty).
    async fn ensure_base_folder(&mut self) -> Result<(Option<String>, bool), MirrorError> {
        let client = self.deps.client.clone();
        let mut parent: Option<String> = None;
        let mut existed = true;
        for seg in self.cfg.remote_path.split('/').filter(|s| !s.is_empty()) {
            let f = client
                .create_folder_or_adopt(&self.cfg.share_id, parent.as_deref(), seg)
                .await
                .context(format!("remote base folder {:?}", self.cfg.remote_path))?;
            existed = !matches!(f, crate::remote::Placed::Created(_));
            parent = Some(f.into_inner().id);
        }
        Ok((parent, existed))
    }

    /// Rebuilds the store from the remote when it knows nothing of this mirror but the
    /// remote base folder may hold content (the state database was deleted or lost, or a
    /// new mirror points at a folder that was mirrored before): every remote item whose
    /// local counterpart has the same path and kind is recorded as known, so nothing is
    /// uploaded or created again. A file counts as the same when size and SHA-256 match;
    /// a file that differs is recorded with the remote's fingerprint, so the planner
    /// uploads the local bytes as a new version of that remote file. Remote items with no
    /// local counterpart are left alone (never deleted on a guess). One children listing
    /// per matching folder and one metadata GET per file of matching size.
    async fn adopt_remote(&mut self) -> Result<(), MirrorError> {
        let Some(t) = self.target.clone() else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        if let Some((same, differing)) = self.adopt_from_log(&t).await? {
            tracing::info!(
                mirror = %self.name,
                "no saved state for this mirror: adopted {same} remote items that match the disk and {differing} files to update, from the change log, in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        let (mut same, mut differing) = (0usize, 0usize);
        let mut stack: Vec<(Option<String>, String)> =
            vec![(t.base_folder_id.clone(), String::new())];
        while let Some((folder, prefix)) = stack.pop() {
            let list = match self
                .deps
                .client
                .children(&t.share_id, folder.as_deref())
                .await
            {
                Ok(l) => l,
                Err(e) => {
                    // Not fatal: the planner's create-or-adopt calls cannot duplicate.
                    tracing::warn!(mirror = %self.name, "cannot adopt the remote folder {:?}: {e}", if prefix.is_empty() { "/" } else { &prefix });
                    continue;
                }
            };
            let items: Vec<(String, crate::remote::ChildItem)> = list
                .items
                .into_iter()
                .filter(|i| i.is_deleted != Some(true))
                .map(|i| (plan::join(&prefix, &i.name), i))
                .collect();
            let (root, ignore) = (t.root.clone(), self.ignore.clone());
            let looked = tokio::task::spawn_blocking(move || local_matches(&root, &ignore, items))
                .await
                .context("adopting the remote tree")?;
            let mut effects = Vec::new();
            for (path, item, local) in looked {
                let d = disk_item(&path, &local);
                if item.kind == ItemKind::Folder {
                    effects.push(Effect::Upsert(entry_of(&d, &item.id, None, None)));
                    stack.push((Some(item.id.clone()), path));
                    same += 1;
                    continue;
                }
                let Some((entry, matches)) = self.adopt_file(&t, &d, &item, None).await else {
                    continue;
                };
                if matches {
                    same += 1;
                } else {
                    differing += 1;
                }
                effects.push(Effect::Upsert(entry));
            }
            if effects.is_empty() {
                continue;
            }
            self.deps.store.apply(t.mirror, effects.clone()).await?;
            for e in &effects {
                store::apply_to_map(Arc::make_mut(&mut self.known), e);
            }
        }
        if same + differing > 0 {
            tracing::info!(
                mirror = %self.name,
                "no saved state for this mirror: adopted {same} remote items that match the disk and {differing} files to update, in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }

    /// The entry for a remote file with a local counterpart: the local fingerprint if the
    /// content matches, else the remote's (which no local file has: the planner hashes the
    /// local file and uploads it as a new version of this remote file). Says whether the
    /// content matched.
    ///
    /// `logged`: the remote content as the change log told it (SHA-256, version), which
    /// saves the metadata GET.
    pub(super) async fn adopt_file(
        &self,
        t: &MirrorTarget,
        d: &plan::DiskItem,
        item: &crate::remote::ChildItem,
        logged: Option<(String, Option<i64>)>,
    ) -> Option<(Entry, bool)> {
        let (mut remote_sha, mut version) = (None, None);
        if let (Some((sha, v)), true) = (&logged, item.size == Some(d.size)) {
            let local_sha = hash_off_thread(t.root.join(&d.path)).await;
            if local_sha.as_deref() == Some(sha.as_str()) {
                return Some((entry_of(d, &item.id, Some(sha.clone()), *v), true));
            }
            remote_sha = Some(sha.clone());
            version = *v;
        } else if let Some((sha, v)) = logged {
            remote_sha = Some(sha);
            version = v;
        } else if item.size == Some(d.size) {
            match self.deps.client.file(&item.id).await {
                Ok(f) => {
                    let local_sha = hash_off_thread(t.root.join(&d.path)).await;
                    let matches = f.checksum_sha256.is_some() && f.checksum_sha256 == local_sha;
                    if matches {
                        let version = Some(f.version as i64);
                        return Some((entry_of(d, &item.id, f.checksum_sha256, version), true));
                    }
                    remote_sha = f.checksum_sha256;
                    version = Some(f.version as i64);
                }
                Err(e) => {
                    tracing::warn!(mirror = %self.name, "cannot adopt {}: {}", Escaped(&d.path), Escaped(&e.to_string()));
                    return None;
                }
            }
        }
        let remote = Entry {
            path: d.path.clone(),
            kind: EntryKind::File,
            remote_id: item.id.clone(),
            size: item.size.unwrap_or(0),
            mtime_ns: -1,
            inode: 0,
            sha256: remote_sha,
            remote_version: version,
            ctime_ns: None,
        };
        Some((remote, false))
    }

    /// Settles every intent left open by looking at the remote: a create whose item exists
    /// with our content is adopted without sending the bytes again; anything else is left
    /// to the planner, whose create-or-adopt calls cannot duplicate. Returns how many
    /// intents recorded something (the next pass must see it).
    pub(super) async fn resolve_intents(&mut self) -> Result<usize, MirrorError> {
        let Some(target) = self.target.clone() else {
            return Ok(0);
        };
        let intents = self.deps.store.intents(target.mirror).await?;
        if !intents.is_empty() && !self.ensure_known().await {
            return Ok(0);
        }
        let fresh = intents
            .iter()
            .filter(|i| !self.intents.held.contains_key(&i.id))
            .count();
        if fresh > 0 {
            tracing::info!(mirror = %self.name, "settling {fresh} operations left open (by a crash or a failed create)");
        }
        let open: BTreeSet<i64> = intents.iter().map(|i| i.id).collect();
        self.intents.held.retain(|id, _| open.contains(id));
        // Creates opened after the follower's stored position are settled from the log
        // read after it, when that costs no more than listing their folders and
        // fetching their files.
        let mut creates: Vec<(&Option<String>, i64, bool)> = Vec::new();
        for i in &intents {
            match &i.op {
                IntentOp::Mkdir(d) => creates.push((&d.parent_id, i.opened_at, false)),
                IntentOp::Upload(f) => creates.push((&f.parent_id, i.opened_at, true)),
                IntentOp::Copy(k) | IntentOp::Untrash(k) => {
                    creates.push((&k.file.parent_id, i.opened_at, true))
                }
                _ => {}
            }
        }
        if creates.is_empty() {
            self.intents.log_from = None;
        }
        let log = match creates.iter().map(|c| c.1).min() {
            Some(first) if first > 0 => {
                let folders: HashSet<&Option<String>> = creates.iter().map(|c| c.0).collect();
                let files = creates.iter().filter(|c| c.2).count() as u64;
                let budget = 2 * folders.len() as u64 + files;
                self.log_since_cursor(&target, first, budget).await
            }
            _ => None,
        };
        let mut s = Settling {
            target,
            now: Instant::now(),
            window: self.deps.client.request_timeout() + LANDING_MARGIN,
            listings: HashMap::new(),
            log,
        };
        let mut recorded = 0;
        for intent in intents {
            tracing::debug!(mirror = %self.name, op = intent.op.name(), path = %Escaped(&intent.path), detail = ?intent.op, "resolving an open intent");
            let verdict = match &intent.op {
                IntentOp::Mkdir(d) => {
                    let fp = (d.inode, d.mtime_ns);
                    self.settle_create(&mut s, &intent, &d.parent_id, &d.name, fp, None)
                        .await
                }
                IntentOp::Upload(f) => {
                    let fp = (f.inode, f.mtime_ns);
                    self.settle_create(&mut s, &intent, &f.parent_id, &f.name, fp, Some(f))
                        .await
                }
                IntentOp::Replace(f) => self.settle_replace(&s, &intent, f).await,
                // Placed from content the remote holds: settled as the upload it stands
                // for (the item at the name, with the content sent, is ours).
                IntentOp::Copy(k) | IntentOp::Untrash(k) => {
                    let f = &k.file;
                    let fp = (f.inode, f.mtime_ns);
                    self.settle_create(&mut s, &intent, &f.parent_id, &f.name, fp, Some(f))
                        .await
                }
                IntentOp::Restore(k) => self.settle_replace(&s, &intent, &k.file).await,
                IntentOp::Move(m) => Verdict::Close(self.settle_move(&s, &intent, m).await),
                // Deletes are planned again from the disk; repeating one is harmless (a
                // delete of a deleted item is accepted as done).
                IntentOp::Delete(_) => Verdict::Close(vec![]),
                IntentOp::Unreadable { op, why } => {
                    tracing::warn!(mirror = %self.name, path = %Escaped(&intent.path), "closing an open {op} this release cannot read ({why}); the pass plans the path from the disk");
                    Verdict::Close(vec![])
                }
            };
            match verdict {
                Verdict::Close(effects) => {
                    recorded += usize::from(!effects.is_empty());
                    self.commit_intent(&s.target, intent.id, effects).await?;
                }
                Verdict::Wait => {}
                Verdict::LookAgain => self.intents.unhold_expired(intent.id, s.now, s.window),
            }
        }
        Ok(recorded)
    }

    /// Not on the remote (yet): wait if a request for it may still land, else close it.
    fn hold_or_close(&mut self, s: &Settling, intent: &Intent) -> Verdict {
        if self.intents.hold(&self.name, intent, s.now, s.window) {
            Verdict::Wait
        } else {
            Verdict::Close(vec![])
        }
    }

    /// A `mkdir` or `upload`: is the item in its parent folder, and is it ours?
    async fn settle_create(
        &mut self,
        s: &mut Settling,
        intent: &Intent,
        parent: &Option<String>,
        name: &str,
        fingerprint: (u64, i64),
        sent: Option<&SendFile>,
    ) -> Verdict {
        let kind = created_kind(sent);
        let mut logged = None;
        if let Some(log) = &s.log
            && let Some(abs) = self.parent_abs(log, parent)
        {
            match log.created_in(&abs, name, sent.is_none()) {
                Some(found) => logged = Some(found),
                None => return self.hold_or_close(s, intent),
            }
        }
        let id = match &logged {
            Some((id, ..)) => id.clone(),
            None => match self.listed(s, intent, parent, name, kind).await {
                Ok(id) => id,
                Err(v) => return v,
            },
        };
        self.settle_found(s, intent, id, logged, fingerprint, sent)
            .await
    }

    /// The id of the item called `name` in `parent` by listing it (once per folder).
    async fn listed(
        &mut self,
        s: &mut Settling,
        intent: &Intent,
        parent: &Option<String>,
        name: &str,
        kind: ItemKind,
    ) -> Result<String, Verdict> {
        if !s.listings.contains_key(parent) {
            match self
                .deps
                .client
                .children(&s.target.share_id, parent.as_deref())
                .await
            {
                Ok(children) => {
                    s.listings.insert(parent.clone(), children);
                }
                // The folder was deleted: nothing can be created in it any more, and what
                // was is deleted with it.
                Err(e) if e.is_absent() => {
                    tracing::debug!(mirror = %self.name, path = %Escaped(&intent.path), "settled: its folder is gone ({e})");
                    return Err(Verdict::Close(vec![]));
                }
                Err(e) => {
                    // Left open for the next settle; the pass's create-or-adopt calls
                    // cannot duplicate meanwhile.
                    tracing::warn!(mirror = %self.name, path = %Escaped(&intent.path), "cannot look up an operation left open: {e}");
                    return Err(Verdict::LookAgain);
                }
            }
        }
        match s.listings[parent].find(name, kind).map(|i| i.id.clone()) {
            Some(id) => Ok(id),
            None => Err(self.hold_or_close(s, intent)),
        }
    }

    /// The created item `id` found (with what the log said of it): is it ours?
    async fn settle_found(
        &mut self,
        s: &Settling,
        intent: &Intent,
        id: String,
        logged: Option<super::logtree::Logged>,
        fingerprint: (u64, i64),
        sent: Option<&SendFile>,
    ) -> Verdict {
        let kind = created_kind(sent);
        match self.known.get(&intent.path) {
            // Recorded since (the pass created or adopted it): nothing to do.
            Some(k) if k.remote_id == id => return Verdict::Close(vec![]),
            Some(k) => {
                tracing::warn!(mirror = %self.name, path = %Escaped(&intent.path), "an earlier attempt created {} remotely as {id}, but {} is mirrored as {} now; {id} is left as it is", Escaped(&intent.path), Escaped(&intent.path), k.remote_id);
                return Verdict::Close(vec![]);
            }
            None => {}
        }
        let remote = match (sent, logged) {
            (None, _) => None,
            // The rows carry the content: no metadata GET.
            (Some(_), Some((_, Some(sha), version, size))) => Some(RemoteFile {
                id: id.clone(),
                size: size.unwrap_or(0),
                checksum_sha256: Some(sha),
                version: version.unwrap_or(1).max(1) as u64,
                ..RemoteFile::default()
            }),
            (Some(_), _) => match self.deps.client.file(&id).await {
                Ok(f) => Some(f),
                // Listed a moment ago, deleted since: nothing to record.
                Err(e) if e.is_absent() => return Verdict::Close(vec![]),
                Err(e) => {
                    // Closing it now would forget what was created.
                    tracing::warn!(mirror = %self.name, path = %Escaped(&intent.path), "cannot look up an operation left open: {e}");
                    return Verdict::LookAgain;
                }
            },
        };
        let sha = sent.map(|f| f.sha256.as_str());
        if let Some(local) = stat_local(&s.target, &intent.path)
            && (local.kind == Kind::Dir) == (kind == ItemKind::Folder)
        {
            let item = disk_item(&intent.path, &local);
            match (&remote, sha) {
                (None, _) => {
                    return Verdict::Close(vec![Effect::Upsert(entry_of(&item, &id, None, None))]);
                }
                (Some(f), Some(sha))
                    if f.checksum_sha256.as_deref() == Some(sha)
                        && hash_off_thread(s.target.root.join(&intent.path))
                            .await
                            .as_deref()
                            == Some(sha) =>
                {
                    let e = entry_of(&item, &f.id, Some(sha.to_string()), Some(f.version as i64));
                    return Verdict::Close(vec![Effect::Upsert(e)]);
                }
                _ => {}
            }
        }
        // Created remotely, but the local item is not that any more (gone, moved, edited,
        // replaced by the other kind) and the run never recorded it: record what was
        // created, with the fingerprint the intent kept, so the pass moves, replaces or
        // deletes it like any known item instead of leaving an orphan.
        let sent = remote.as_ref().zip(sha);
        Verdict::Close(
            created_entry(&intent.path, &id, fingerprint, sent)
                .map(Effect::Upsert)
                .into_iter()
                .collect(),
        )
    }

    /// A `replace`: did the new version go up, and is it still this path's file?
    async fn settle_replace(&mut self, s: &Settling, intent: &Intent, sent: &SendFile) -> Verdict {
        let id = sent.replace_file_id.as_deref().unwrap_or_default();
        let sha = sent.sha256.as_str();
        let f = match self.deps.client.file(id).await {
            Ok(f) => f,
            // Gone remotely: the pass uploads the file again.
            Err(e) if e.is_absent() => return Verdict::Close(vec![]),
            Err(e) => {
                tracing::warn!(mirror = %self.name, path = %Escaped(&intent.path), "cannot look up an operation left open: {e}");
                return Verdict::LookAgain;
            }
        };
        if f.checksum_sha256.as_deref() != Some(sha) {
            return self.hold_or_close(s, intent);
        }
        let known = self.known.get(&intent.path);
        let same_item = known.is_some_and(|k| k.remote_id == f.id);
        if !same_item || known.and_then(|k| k.remote_version) == Some(f.version as i64) {
            // Not this path's file any more, or recorded since.
            return Verdict::Close(vec![]);
        }
        if let Some(local) = stat_local(&s.target, &intent.path)
            && hash_off_thread(s.target.root.join(&intent.path))
                .await
                .as_deref()
                == Some(sha)
        {
            let item = disk_item(&intent.path, &local);
            let e = entry_of(&item, &f.id, Some(sha.to_string()), Some(f.version as i64));
            return Verdict::Close(vec![Effect::Upsert(e)]);
        }
        // The new version went up, but the file changed (or went) since: record what the
        // remote holds now, so the pass sends the file again (or deletes it) instead of
        // believing the old version.
        let fp = (sent.inode, sent.mtime_ns);
        Verdict::Close(
            created_entry(&intent.path, &f.id, fp, Some((&f, sha)))
                .map(Effect::Upsert)
                .into_iter()
                .collect(),
        )
    }

    /// A `move`: where the item is now says whether the move (a rename, then a move to the
    /// new folder) went through. The planner may not pair the paths again (the file may
    /// have been replaced by an editor's save since), and an entry left at the old path
    /// would later delete the item.
    async fn settle_move(&self, s: &Settling, intent: &Intent, m: &MoveItem) -> Vec<Effect> {
        let (from, id) = (m.from.clone(), m.remote_id.as_str());
        let Some(e) = self.known.get(&from).filter(|e| e.remote_id == id) else {
            return vec![];
        };
        let client = &self.deps.client;
        let now_at = if e.kind == EntryKind::Dir {
            client.folder(id).await.map(|f| (f.name, f.parent_id))
        } else {
            client.file(id).await.map(|f| (f.name, f.folder_id))
        };
        let Ok((name, parent_id)) = now_at else {
            return vec![];
        };
        let to = intent.path.clone();
        let (to_parent, to_name) = (plan::parent(&to), plan::name_of(&to));
        let to_parent_id = if to_parent.is_empty() {
            Some(s.target.base_folder_id.clone())
        } else {
            self.known.get(to_parent).map(|p| Some(p.remote_id.clone()))
        };
        let root = |p: &Option<String>| p.clone().filter(|s| !s.is_empty() && s != "root");
        if name == to_name && to_parent_id.is_some_and(|p| root(&p) == root(&parent_id)) {
            vec![Effect::MoveTree { from, to }]
        } else if name == to_name && name != plan::name_of(&from) {
            // Renamed, not yet moved.
            let renamed = plan::join(plan::parent(&from), to_name);
            vec![Effect::MoveTree { from, to: renamed }]
        } else {
            vec![]
        }
    }

    /// Closes an intent with its effects, in the store and in the known map.
    async fn commit_intent(
        &mut self,
        t: &MirrorTarget,
        intent: i64,
        effects: Vec<Effect>,
    ) -> Result<(), MirrorError> {
        // One remote item, one entry (defect 36): an item recorded since at another path
        // (the pass created or adopted it there after a folder above it moved) is not
        // recorded a second time; two entries for one id would later move it with one and
        // trash it with the other.
        let effects: Vec<Effect> = effects
            .into_iter()
            .filter(|e| match e {
                Effect::Upsert(new) => match self.known.values().find(|k| {
                    k.remote_id == new.remote_id && k.path != new.path
                }) {
                    Some(k) => {
                        tracing::debug!(mirror = %self.name, path = %Escaped(&new.path), "settled: {} is recorded at {} already", new.remote_id, Escaped(&k.path));
                        false
                    }
                    None => true,
                },
                _ => true,
            })
            .collect();
        for e in &effects {
            store::apply_to_map(Arc::make_mut(&mut self.known), e);
        }
        self.intents.closed(intent);
        self.deps.store.commit(t.mirror, intent, effects).await?;
        Ok(())
    }
}

/// The remote children whose local counterpart exists, is not ignored and is of the same
/// kind (run on a blocking thread: it stats every one).
pub(super) fn local_matches(
    root: &std::path::Path,
    ignore: &IgnoreRules,
    items: Vec<(String, crate::remote::ChildItem)>,
) -> Vec<(String, crate::remote::ChildItem, LocalEntry)> {
    items
        .into_iter()
        .filter_map(|(path, item)| {
            let rel = RelPath::new(path.clone()).ok()?;
            let local = local::stat_path(root, &rel).ok().flatten()?;
            let is_dir = local.kind == Kind::Dir;
            if ignore.is_ignored(&rel, is_dir) {
                return None;
            }
            let kind_matches = match item.kind {
                ItemKind::Folder => is_dir,
                ItemKind::File => local.kind == Kind::File,
                ItemKind::Other => false,
            };
            kind_matches.then_some((path, item, local))
        })
        .collect()
}

fn stat_local(t: &MirrorTarget, path: &str) -> Option<LocalEntry> {
    let rel = RelPath::new(path.to_string()).ok()?;
    local::stat_path(&t.root, &rel).ok().flatten()
}

/// The SHA-256 of a local file, hashed off the async workers; `None` if unreadable.
async fn hash_off_thread(abs: PathBuf) -> Option<String> {
    tokio::task::spawn_blocking(move || plan::hash_file(&abs))
        .await
        .ok()
        .and_then(Result::ok)
}

/// The entry for an item a crashed run created remotely (`mkdir`, `upload`) or gave a new
/// version (`replace`), with the local fingerprint (inode, mtime) the intent recorded;
/// `sent` is the file as the remote has it and the SHA-256 the run sent (`None` for a
/// folder). `None` if a file's remote content is not the one the run sent (then it is not
/// ours to track).
fn created_entry(
    path: &str,
    id: &str,
    (inode, mtime_ns): (u64, i64),
    sent: Option<(&RemoteFile, &str)>,
) -> Option<Entry> {
    let mut e = Entry {
        path: path.to_string(),
        kind: EntryKind::Dir,
        remote_id: id.to_string(),
        size: 0,
        mtime_ns,
        inode,
        sha256: None,
        remote_version: None,
        // Not stat'ed here: filled by the next full pass where the file still matches.
        ctime_ns: None,
    };
    if let Some((f, sha)) = sent {
        if f.checksum_sha256.as_deref() != Some(sha) {
            return None;
        }
        e.kind = EntryKind::File;
        e.size = f.size;
        e.sha256 = Some(sha.to_string());
        e.remote_version = Some(f.version as i64);
    }
    Some(e)
}

/// What a create intent made: a file when it sent content, else a folder.
fn created_kind(sent: Option<&SendFile>) -> ItemKind {
    if sent.is_some() {
        ItemKind::File
    } else {
        ItemKind::Folder
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::journal::DeleteItem;

    fn intent(id: i64, uncertain: bool) -> Intent {
        Intent {
            id,
            mirror_id: 1,
            path: "a".into(),
            op: IntentOp::Delete(DeleteItem {
                remote_id: "x".into(),
            }),
            uncertain,
            opened_at: 0,
        }
    }

    #[test]
    fn only_requests_that_may_still_land_are_held_for_their_window() {
        let window = Duration::from_secs(10);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut open = OpenIntents::default();
        open.inherited.insert(1);
        // Answered by this run (not inherited, not uncertain): settled as not done now.
        assert!(!open.hold("m", &intent(2, false), at(0), window));
        // Inherited, or ended without an answer: held from the first look ...
        assert!(open.hold("m", &intent(1, false), at(0), window));
        assert!(open.hold("m", &intent(3, true), at(5), window));
        assert_eq!(open.held(), 2);
        // ... until its window has passed since then.
        assert!(open.hold("m", &intent(1, false), at(9), window));
        assert!(!open.hold("m", &intent(1, false), at(10), window));
        assert!(open.hold("m", &intent(3, true), at(14), window));
        // One that cannot be looked at stops counting once its window is over.
        open.unhold_expired(3, at(14), window);
        assert_eq!(open.held(), 2);
        open.unhold_expired(3, at(15), window);
        assert_eq!(open.held(), 1);
        open.closed(1);
        assert_eq!(open.held(), 0);
        assert!(!open.hold("m", &intent(1, false), at(20), window), "closed");
    }

    #[test]
    fn a_created_file_is_ours_only_with_the_content_sent() {
        let remote = |sha: &str| RemoteFile {
            id: "fil_1".into(),
            tenant_id: None,
            share_id: "s".into(),
            folder_id: None,
            name: "a".into(),
            path: "/a".into(),
            mime_type: None,
            size: 5,
            checksum_sha256: Some(sha.into()),
            version: 3,
            owner_id: None,
            created_by: None,
            created_at: None,
            modified_by: None,
            modified_at: None,
            is_deleted: false,
        };
        let folder = created_entry("d", "fld_1", (7, 8), None).unwrap();
        assert_eq!(
            (folder.kind, folder.inode, folder.mtime_ns),
            (EntryKind::Dir, 7, 8)
        );
        let file = created_entry("a", "fil_1", (7, 8), Some((&remote("ab"), "ab"))).unwrap();
        assert_eq!(
            (
                file.kind,
                file.size,
                file.sha256.as_deref(),
                file.remote_version
            ),
            (EntryKind::File, 5, Some("ab"), Some(3))
        );
        assert_eq!(
            created_entry("a", "fil_1", (7, 8), Some((&remote("cd"), "ab"))),
            None,
            "another content is not ours to track"
        );
    }
}
