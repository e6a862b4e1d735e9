//! The uploader: executes the planner's ops against ScaiDrive with bounded concurrency,
//! parent folders first, and the crash rule of DESIGN.md §3.
//!
//! [`Uploader`] is a cloneable handle over the client, the store and one semaphore that
//! bounds transfers across all mirrors (the daemon-wide upload budget). A batch runs its
//! ops in plan order; an op starts once its parent folder is on the remote (a `mkdir` in
//! flight holds back only its own children), and moves and deletes run alone, so every op
//! sees the folder ids it needs. Each op journals an intent before a remote call that
//! creates something and commits the result together with the intent's removal; an op
//! that fails is reported with its reason and whether retrying can help, and never stops
//! the others.
//!
//! DESIGN.md describes the uploader as a message-driven actor. Here it is a handle over a
//! shared semaphore instead: ordering lives in the batch, concurrency in the semaphore,
//! and the store actor serializes state, which gives the same guarantees with less
//! plumbing.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

mod known;
mod op;
mod tree;

pub use op::{DiskItem, Op};

use crate::config::{DeleteMode, RemoteExtras};
use crate::relpath::{is_within, join, name_of, parent};
use crate::remote::{Client, Destination, ErrorKind, Placed, ResumableUpload};
use crate::store::journal::{CreateFolder, DeleteItem, IntentOp, MoveItem, SendFile};
use crate::store::{Effect, Entry, EntryKind, MirrorId, Store, UploadSessionRecord};

/// The remote side of one mirror.
#[derive(Clone, Debug)]
pub struct MirrorTarget {
    pub mirror: MirrorId,
    pub name: String,
    pub root: PathBuf,
    pub share_id: String,
    /// Remote folder the mirror root maps to (`None` = share root).
    pub base_folder_id: Option<String>,
    pub delete_mode: DeleteMode,
    /// Items others added under the mirror's folder: a local folder delete leaves them
    /// (and the folders holding them) in place with `keep`.
    pub remote_extras: RemoteExtras,
}

/// Items others added remotely under the mirror's folder, as the change-log follower
/// knows them: remote id → (mirror-relative path, is a folder).
pub type RemoteOthers = BTreeMap<String, (String, bool)>;

/// Live counters of one mirror's transfers, read by `status`.
#[derive(Debug, Default)]
pub struct Counters {
    pub files_done: AtomicU64,
    pub bytes_done: AtomicU64,
    pub in_flight: AtomicU64,
    pub requests_failed: AtomicU64,
    /// Files placed from content the remote already held (copy, version or trash
    /// restore), no bytes sent; also counted in `files_done`.
    pub files_known: AtomicU64,
    /// Bytes and files the running batch still has to upload (for progress and ETA).
    pub bytes_remaining: AtomicU64,
    pub files_remaining: AtomicU64,
    /// The same for the pass's chunks after the running batch (the mirror runs a large
    /// pass in chunks and sets these; progress adds them to the batch's own).
    pub bytes_later: AtomicU64,
    pub files_later: AtomicU64,
}

/// How one op ended.
#[derive(Debug)]
pub enum Outcome {
    /// Applied; these effects were committed to the store.
    Done(Vec<Effect>),
    /// The local item changed since it was planned (or while it uploaded); what was
    /// committed is in the effects, and the path must be planned again.
    Changed(Vec<Effect>),
    /// Failed; `permanent` if retrying the same thing cannot help.
    Failed { reason: String, permanent: bool },
    /// Not attempted: it needs a folder that an op before it failed to create or move
    /// (that op carries the failure). It was planned against the remote as that op would
    /// have left it, so it is planned again once that op succeeds, not retried as is.
    Blocked(String),
    /// The credentials were refused and could not be renewed: the mirror must stop.
    CredentialsNeeded(String),
    /// The share (or another quota level) is full (507): not this item's fault; the
    /// mirror pauses until space is freed.
    QuotaExceeded(String),
}

impl Outcome {
    /// An outcome that stops the whole batch: no further op can succeed either.
    pub fn halts_batch(&self) -> bool {
        matches!(
            self,
            Outcome::CredentialsNeeded(_) | Outcome::QuotaExceeded(_)
        )
    }
}

#[derive(Debug)]
pub struct OpResult {
    pub op: Op,
    pub outcome: Outcome,
}

#[derive(Clone)]
pub struct Uploader {
    client: Client,
    store: Store,
    /// Streams in flight across all mirrors: a small file or a folder call holds one, a
    /// chunked upload as many as it sends chunks in parallel.
    permits: Arc<Semaphore>,
    streams: u32,
    /// Contents being sent now (see `known`).
    sending: known::ContentGate,
}

impl Uploader {
    pub fn new(client: Client, store: Store, concurrency: usize) -> Uploader {
        let streams = concurrency.clamp(1, Semaphore::MAX_PERMITS) as u32;
        Uploader {
            client,
            store,
            permits: Arc::new(Semaphore::new(streams as usize)),
            streams,
            sending: known::ContentGate::default(),
        }
    }

    /// Permits an op holds while it runs: one per stream it keeps busy. A chunked upload
    /// sends up to `parallel_chunks` chunks at once, so many of them cannot start together
    /// (which would multiply connections and buffers); small files fill the rest.
    fn weight(&self, op: &Op) -> u32 {
        let cfg = self.client.upload_config();
        let chunked = |size: u64| {
            let chunk = self.client.session_chunk_size(size).max(1);
            let chunks = size.div_ceil(chunk).max(1);
            (cfg.parallel_chunks.max(1) as u64).min(chunks) as u32
        };
        let w = match op {
            Op::Upload { item, .. } if self.client.uses_session(item.size) => chunked(item.size),
            Op::Replace { item, .. } => chunked(item.size),
            _ => 1,
        };
        w.clamp(1, self.streams)
    }

    /// Runs `ops` (in plan order) for one mirror. `known` is the mirror's view before the
    /// batch; it provides the remote ids of existing folders. Stops starting new ops when
    /// `stop` is cancelled or an op [halts the batch](Outcome::halts_batch) (refused
    /// credentials, full quota); ops already running finish (or are checkpointed by their
    /// upload session).
    pub async fn run_batch(
        &self,
        target: &Arc<MirrorTarget>,
        counters: &Arc<Counters>,
        known: &BTreeMap<String, Entry>,
        ops: Vec<Op>,
        stop: &CancellationToken,
    ) -> Vec<OpResult> {
        self.run_batch_knowing(target, counters, known, None, ops, stop)
            .await
    }

    /// [`Uploader::run_batch`] with what the mirror knows of others' items under its
    /// folder (`None`: unknown; a folder delete under `remote_extras = "keep"` then lists
    /// the folder first).
    pub async fn run_batch_knowing(
        &self,
        target: &Arc<MirrorTarget>,
        counters: &Arc<Counters>,
        known: &BTreeMap<String, Entry>,
        others: Option<&RemoteOthers>,
        ops: Vec<Op>,
        stop: &CancellationToken,
    ) -> Vec<OpResult> {
        // Folder ids by path, updated as folder ops complete within the batch.
        let mut dirs: BTreeMap<String, String> = known
            .values()
            .filter(|e| e.kind == EntryKind::Dir)
            .map(|e| (e.path.clone(), e.remote_id.clone()))
            .collect();
        let mut creating: HashSet<String> = HashSet::new();
        let mut exclusive_running = 0usize;
        let mut running: JoinSet<OpResult> = JoinSet::new();
        let mut results = Vec::with_capacity(ops.len());
        let (files, bytes) = ops.iter().fold((0u64, 0u64), |(f, b), op| match op {
            Op::Upload { item, .. } | Op::Replace { item, .. } => (f + 1, b + item.size),
            _ => (f, b),
        });
        counters.files_remaining.store(files, Ordering::Relaxed);
        counters.bytes_remaining.store(bytes, Ordering::Relaxed);
        let mut pending = ops.into_iter().peekable();
        // Set by the op that halts the batch, as soon as it ends (the loop may be waiting
        // for a slot and not see its result until later).
        let halted = Arc::new(std::sync::atomic::AtomicBool::new(false));
        loop {
            if !stop.is_cancelled()
                && !halted.load(Ordering::SeqCst)
                && let Some(next) = pending.peek()
            {
                let exclusive = matches!(next, Op::Move { .. } | Op::Delete { .. });
                // A move or delete runs alone: it waits for what runs, and what comes after
                // it waits for it (a create of the name a delete frees, or inside a folder
                // a move renames, must see the remote after it).
                let blocked = if exclusive {
                    !running.is_empty()
                } else {
                    exclusive_running > 0 || creating.contains(parent(next.path()))
                };
                if !blocked {
                    // Take a transfer slot before spawning, so at most `concurrency` ops
                    // exist at once and a stop leaves the rest unstarted.
                    let permit = if matches!(next, Op::Refresh { .. }) {
                        None
                    } else {
                        let weight = self.weight(next);
                        tokio::select! {
                            p = self.permits.clone().acquire_many_owned(weight) => p.ok(),
                            _ = stop.cancelled() => continue,
                        }
                    };
                    if halted.load(Ordering::SeqCst) {
                        continue;
                    }
                    let op = pending.next().expect("peeked");
                    let par = parent(op.path()).to_string();
                    let parent_id = if par.is_empty() {
                        Some(target.base_folder_id.clone())
                    } else {
                        dirs.get(&par).map(|id| Some(id.clone()))
                    };
                    let Some(parent_id) = parent_id else {
                        results.push(OpResult {
                            outcome: Outcome::Blocked(format!(
                                "parent folder {par:?} is not on the remote yet"
                            )),
                            op,
                        });
                        continue;
                    };
                    if let Op::Mkdir { path, .. } = &op {
                        creating.insert(path.clone());
                    }
                    if exclusive {
                        exclusive_running += 1;
                    }
                    let keeping = match &op {
                        Op::Delete {
                            path,
                            kind: EntryKind::Dir,
                            ..
                        } if target.delete_mode == DeleteMode::Trash
                            && target.remote_extras == RemoteExtras::Keep =>
                        {
                            Some(tree::Keeping::new(known, others, path))
                        }
                        _ => None,
                    };
                    let ctx = OpCtx {
                        client: self.client.clone(),
                        store: self.store.clone(),
                        target: target.clone(),
                        counters: counters.clone(),
                        sending: self.sending.clone(),
                        keeping,
                    };
                    counters.in_flight.fetch_add(1, Ordering::Relaxed);
                    let halt = halted.clone();
                    running.spawn(async move {
                        let _permit = permit;
                        let mut outcome = ctx.execute(&op, parent_id).await;
                        if outcome.halts_batch() {
                            halt.store(true, Ordering::SeqCst);
                        } else if let (
                            Outcome::Failed { .. },
                            Op::Upload { item, .. } | Op::Replace { item, .. },
                        ) = (&outcome, &op)
                            && !same_as(item, stat_now(&ctx.target.root.join(op.path())))
                        {
                            // The file changed while it was sent (a short read, a checksum
                            // that no longer matches): not a failure, the new content is
                            // planned again.
                            outcome = Outcome::Changed(vec![]);
                        }
                        ctx.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
                        if let Op::Upload { item, .. } | Op::Replace { item, .. } = &op {
                            let c = &ctx.counters;
                            let _ = c.bytes_remaining.fetch_update(
                                Ordering::Relaxed,
                                Ordering::Relaxed,
                                |v| Some(v.saturating_sub(item.size)),
                            );
                            let _ = c.files_remaining.fetch_update(
                                Ordering::Relaxed,
                                Ordering::Relaxed,
                                |v| Some(v.saturating_sub(1)),
                            );
                        }
                        OpResult { op, outcome }
                    });
                    continue;
                }
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            let result = match joined {
                Ok(r) => r,
                Err(e) => {
                    // A panicking op is a bug; report it and keep the rest going.
                    tracing::error!("an upload task failed: {e}");
                    continue;
                }
            };
            if let Op::Mkdir { path, .. } = &result.op {
                creating.remove(path);
            }
            if matches!(result.op, Op::Move { .. } | Op::Delete { .. }) {
                exclusive_running -= 1;
            }
            if let Outcome::Done(effects) | Outcome::Changed(effects) = &result.outcome {
                for e in effects {
                    apply_to_dirs(&mut dirs, e);
                }
            }
            results.push(result);
        }
        // Ops not started because of a stop or a halt stay unplanned; the next pass finds
        // them.
        counters.files_remaining.store(0, Ordering::Relaxed);
        counters.bytes_remaining.store(0, Ordering::Relaxed);
        results
    }
}

fn apply_to_dirs(dirs: &mut BTreeMap<String, String>, effect: &Effect) {
    match effect {
        Effect::Upsert(e) if e.kind == EntryKind::Dir => {
            dirs.insert(e.path.clone(), e.remote_id.clone());
        }
        Effect::Upsert(e) => {
            dirs.remove(&e.path);
        }
        Effect::Remove(p) => {
            dirs.remove(p);
        }
        Effect::RemoveTree(p) => dirs.retain(|k, _| !is_within(k, p)),
        Effect::MoveTree { from, to } => {
            dirs.retain(|k, _| !is_within(k, to));
            let moved: Vec<(String, String)> = dirs
                .iter()
                .filter(|(k, _)| is_within(k, from))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (k, v) in moved {
                dirs.remove(&k);
                dirs.insert(format!("{to}{}", &k[from.len()..]), v);
            }
        }
        Effect::ClearFailure(_) | Effect::DeleteSession(_) | Effect::Trashed(_) => {}
    }
}

struct OpCtx {
    client: Client,
    store: Store,
    target: Arc<MirrorTarget>,
    counters: Arc<Counters>,
    sending: known::ContentGate,
    /// For a folder delete that must leave others' items in place.
    keeping: Option<tree::Keeping>,
}

/// The local fingerprint of a path now (lstat), if it is still a regular file.
fn stat_now(abs: &Path) -> Option<(u64, i64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::symlink_metadata(abs).ok()?;
    if !md.is_file() {
        return None;
    }
    Some((md.len(), crate::watch::mtime_ns(&md), md.ino()))
}

/// 404 or 410: what the call named does not exist (any more) on the remote.
fn is_gone(e: &crate::remote::Error) -> bool {
    e.is_absent()
}

fn same_as(item: &DiskItem, now: Option<(u64, i64, u64)>) -> bool {
    now == Some((item.size, item.mtime_ns, item.inode))
}

fn entry_for(
    path: &str,
    item: &DiskItem,
    remote_id: &str,
    sha: Option<String>,
    version: Option<i64>,
) -> Entry {
    Entry {
        path: path.to_string(),
        kind: item.kind,
        remote_id: remote_id.to_string(),
        size: item.size,
        mtime_ns: item.mtime_ns,
        inode: item.inode,
        sha256: sha,
        remote_version: version,
        ctime_ns: Some(item.ctime_ns),
    }
}

impl OpCtx {
    fn fail(&self, e: &crate::remote::Error) -> Outcome {
        self.counters
            .requests_failed
            .fetch_add(1, Ordering::Relaxed);
        if e.kind() == ErrorKind::CredentialsNeeded {
            return Outcome::CredentialsNeeded(e.to_string());
        }
        if e.status().is_some_and(|s| s.as_u16() == 507) || e.code() == Some("QUOTA_EXCEEDED") {
            return Outcome::QuotaExceeded(e.to_string());
        }
        Outcome::Failed {
            reason: e.to_string(),
            permanent: !e.is_transient() && e.kind() != ErrorKind::Integrity,
        }
    }

    /// [`Self::fail`] for a create or replace whose intent stays open. If the server may
    /// still apply the request (no answer came), the intent says so: settling it then
    /// waits out the time such a request can take before it concludes "not done".
    async fn fail_open(&self, intent: i64, e: &crate::remote::Error) -> Outcome {
        if e.may_apply_later()
            && let Err(se) = self.store.mark_uncertain(intent).await
        {
            tracing::warn!("cannot note that {e} may still be applied: {se}");
        }
        self.fail(e)
    }

    /// Cancels the upload session `session_id` of `path`, which will not be used again,
    /// and forgets it in the store. Best effort: sessions expire on the server after 24 h
    /// idle anyway, so nothing here fails the file.
    async fn abandon(&self, path: &str, session_id: &str) {
        tracing::debug!(mirror = %self.target.name, path, session = session_id, "abandoning an upload session");
        self.client.abandon_session(session_id).await;
        if let Err(e) = self
            .store
            .apply(self.target.mirror, vec![Effect::DeleteSession(path.into())])
            .await
        {
            tracing::debug!(path, "cannot forget the abandoned upload session: {e}");
        }
    }

    /// After a 404 or 410 on a call that put something into the folder `folder_path`
    /// (id `folder_id`): if that folder is gone remotely (trashed or deleted by someone
    /// else while it stays on the disk), the effect that forgets it and all the store knew
    /// inside it. The local side is the truth, so the next pass creates the folder again
    /// with its content. `None` if the folder is still there (then the item itself is what
    /// is gone) or cannot be looked at; the base folder is never forgotten this way.
    async fn gone_folder(&self, folder_path: &str, folder_id: Option<&str>) -> Option<Effect> {
        let id = folder_id?;
        if folder_path.is_empty() {
            return None;
        }
        match self.client.folder(id).await {
            Err(e) if is_gone(&e) => {
                tracing::info!(mirror = %self.target.name, path = folder_path, "the remote folder is gone (trashed or deleted remotely); creating it again");
                Some(Effect::RemoveTree(folder_path.to_string()))
            }
            _ => None,
        }
    }

    /// Applies `effects` after a create or upload found its destination folder gone; the
    /// op is planned again.
    async fn replan(&self, intent: i64, effects: Vec<Effect>) -> Outcome {
        match self
            .store
            .commit(self.target.mirror, intent, effects.clone())
            .await
        {
            Ok(()) => Outcome::Changed(effects),
            Err(e) => self.store_failed(e),
        }
    }

    fn store_failed(&self, e: crate::store::StoreError) -> Outcome {
        Outcome::Failed {
            reason: e.to_string(),
            permanent: false,
        }
    }

    async fn execute(&self, op: &Op, parent_id: Option<String>) -> Outcome {
        match op {
            Op::Mkdir { path, item } => self.mkdir(path, item, parent_id).await,
            Op::Upload { path, item, sha256 } => {
                self.upload(path, item, sha256.as_deref(), parent_id, None)
                    .await
            }
            Op::Replace {
                path,
                remote_id,
                item,
                sha256,
            } => {
                self.upload(path, item, Some(sha256), parent_id, Some(remote_id))
                    .await
            }
            Op::Refresh { path, item, sha256 } => {
                let Some(existing) = self
                    .store
                    .entry(self.target.mirror, path)
                    .await
                    .ok()
                    .flatten()
                else {
                    return Outcome::Failed {
                        reason: format!("{path}: no longer known"),
                        permanent: false,
                    };
                };
                let mut e = entry_for(
                    path,
                    item,
                    &existing.remote_id,
                    sha256.clone().or(existing.sha256),
                    existing.remote_version,
                );
                e.kind = existing.kind;
                let effects = vec![Effect::Upsert(e)];
                match self.store.apply(self.target.mirror, effects.clone()).await {
                    Ok(()) => Outcome::Done(effects),
                    Err(e) => self.store_failed(e),
                }
            }
            Op::Move {
                from,
                to,
                remote_id,
                kind,
                ..
            } => self.move_item(from, to, remote_id, *kind, parent_id).await,
            Op::Delete {
                path,
                remote_id,
                kind,
            } => self.delete(path, remote_id, *kind).await,
        }
    }

    async fn mkdir(&self, path: &str, item: &DiskItem, parent_id: Option<String>) -> Outcome {
        let m = self.target.mirror;
        let name = name_of(path);
        let journaled = IntentOp::Mkdir(CreateFolder {
            parent_id: parent_id.clone(),
            name: name.to_string(),
            inode: item.inode,
            mtime_ns: item.mtime_ns,
        });
        let intent = match self.store.begin_intent(m, path, &journaled).await {
            Ok(i) => i,
            Err(e) => return self.store_failed(e),
        };
        match self
            .client
            .create_folder_or_adopt(&self.target.share_id, parent_id.as_deref(), name)
            .await
        {
            Ok(placed) => {
                let folder = placed.into_inner();
                let effects = vec![
                    Effect::Upsert(entry_for(path, item, &folder.id, None, None)),
                    Effect::ClearFailure(path.into()),
                ];
                match self.store.commit(m, intent, effects.clone()).await {
                    Ok(()) => Outcome::Done(effects),
                    Err(e) => self.store_failed(e),
                }
            }
            Err(e) => {
                if is_gone(&e)
                    && let Some(forget) = self.gone_folder(parent(path), parent_id.as_deref()).await
                {
                    return self.replan(intent, vec![forget]).await;
                }
                // The intent stays open, whatever the error: see `upload`.
                self.fail_open(intent, &e).await
            }
        }
    }

    /// Uploads a new file (`replace` = None) or a new version of `replace`. `planned_sha`
    /// is the hash the planner took of the file as `item` describes it, if it took one.
    async fn upload(
        &self,
        path: &str,
        item: &DiskItem,
        planned_sha: Option<&str>,
        parent_id: Option<String>,
        replace: Option<&String>,
    ) -> Outcome {
        let m = self.target.mirror;
        let abs = self.target.root.join(path);
        // The file must still be what was planned (stable since the quiet period). Then the
        // planner's hash, taken after the stat that `item` records, is still the content's:
        // any write since would have moved the mtime. A file it changed under is planned
        // again with a new hash, never sent with the stale one; the server's checksum
        // check stays the backstop for content changed behind an unchanged stat.
        if !same_as(item, stat_now(&abs)) {
            return Outcome::Changed(vec![]);
        }
        let sha = match planned_sha {
            Some(s) => s.to_string(),
            None => match crate::remote::sha256_file(&abs).await {
                Ok(s) => s,
                Err(e) => return self.fail(&e),
            },
        };
        // Content the remote already holds goes without its bytes (see `known`); a file
        // whose content is being sent right now waits for it, then is copied from it.
        let _sending = self.sending.hold(&sha).await;
        let over;
        let replace = match self
            .place_known(
                path,
                item,
                &sha,
                parent_id.as_deref(),
                replace.map(String::as_str),
            )
            .await
        {
            known::Known::Placed(outcome) => return outcome,
            known::Known::Upload => replace,
            known::Known::UploadOver(id) => {
                over = id;
                Some(&over)
            }
        };
        let send = SendFile {
            parent_id: parent_id.clone(),
            name: name_of(path).to_string(),
            sha256: sha.clone(),
            size: item.size,
            inode: item.inode,
            mtime_ns: item.mtime_ns,
            replace_file_id: replace.cloned(),
        };
        let journaled = if replace.is_some() {
            IntentOp::Replace(send)
        } else {
            IntentOp::Upload(send)
        };
        let intent = match self.store.begin_intent(m, path, &journaled).await {
            Ok(i) => i,
            Err(e) => return self.store_failed(e),
        };
        let dest = Destination::new(
            self.target.share_id.clone(),
            parent_id.as_deref(),
            name_of(path),
        );
        let mut up = ResumableUpload::new(dest.clone(), abs.clone());
        up.sha256 = Some(sha.clone());
        up.replace_file_id = replace.cloned();
        if let Ok(Some(s)) = self.store.session(m, path).await {
            if s.size == item.size
                && s.mtime_ns == item.mtime_ns
                && s.inode == item.inode
                && s.sha256 == sha
                && s.replace_file_id.as_ref() == replace
            {
                up.resume_session_id = Some(s.session_id);
            } else {
                // Started for content the file no longer has: cancel it, and forget it
                // so that it is cancelled once only.
                self.abandon(path, &s.session_id).await;
            }
        }
        // The session this op starts (if any) and the task that records it, so that it
        // can be cancelled (after it is recorded) if the file changes under it.
        type Started = Option<(String, tokio::task::JoinHandle<()>)>;
        let started: Arc<std::sync::Mutex<Started>> = Default::default();
        let store = self.store.clone();
        let (p, it, h, rep, seen) = (
            path.to_string(),
            item.clone(),
            sha.clone(),
            replace.cloned(),
            started.clone(),
        );
        up.on_session = Some(Arc::new(move |s: &crate::remote::UploadSession| {
            // Remembered so a restart resumes this session instead of starting over.
            let rec = UploadSessionRecord {
                path: p.clone(),
                session_id: s.session_id.clone(),
                chunk_size: s.chunk_size,
                total_chunks: s.total_chunks,
                size: it.size,
                mtime_ns: it.mtime_ns,
                inode: it.inode,
                sha256: h.clone(),
                replace_file_id: rep.clone(),
                chunks_done: 0,
            };
            let store = store.clone();
            let saving = tokio::spawn(async move {
                if let Err(e) = store.save_session(m, rec).await {
                    tracing::warn!("cannot remember upload session: {e}");
                }
            });
            *seen.lock().unwrap_or_else(|e| e.into_inner()) = Some((s.session_id.clone(), saving));
        }));
        // New files go by multipart or session as the client judges (size, a 413 seen,
        // transfers that broke off); new content for an existing file always by session
        // with `replace_file_id` (the multipart endpoint cannot overwrite).
        let result = if replace.is_some() {
            self.client.upload_resumable(&up).await.map(Placed::Created)
        } else {
            self.client.upload_or_adopt_with(&up).await
        };
        if result.is_err() && !same_as(item, stat_now(&abs)) {
            let last = started.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some((sid, saving)) = last {
                // Truncated, rewritten or replaced mid-upload: the session holds content
                // the file no longer has. Forgotten after it was recorded, not before.
                let _ = saving.await;
                self.abandon(path, &sid).await;
            }
        }
        // A file that was already there under this name (adopted, or given our bytes as a
        // new version) may be one the store knows under another path: a move that went
        // through but was never recorded. That other entry is stale, and deleting "it"
        // later would delete this very file.
        let adopted = matches!(result, Ok(Placed::Adopted(_) | Placed::Replaced(_)));
        let result = result.map(Placed::into_inner);
        let file = match result {
            Ok(f) => f,
            Err(e) => {
                if is_gone(&e) {
                    // The folder it goes into, or the file it replaces, was trashed or
                    // deleted remotely by someone else: forget it and plan again.
                    if let Some(forget) = self.gone_folder(parent(path), parent_id.as_deref()).await
                    {
                        return self.replan(intent, vec![forget]).await;
                    }
                    if let Some(id) = replace
                        && matches!(self.client.file(id).await, Err(ref g) if is_gone(g))
                    {
                        let forget = vec![
                            Effect::Remove(path.into()),
                            Effect::DeleteSession(path.into()),
                        ];
                        return self.replan(intent, forget).await;
                    }
                }
                // The intent stays open, whatever the error. Even a definite refusal may
                // follow an attempt the server applied (a response lost, then a retry
                // refused: 409 and a replacement that failed, or a checksum that no longer
                // matches a file being edited). The mirror settles it against the remote
                // right after the batch, so what was created is known (and moved or
                // deleted with the local file) instead of left behind as an orphan.
                return self.fail_open(intent, &e).await;
            }
        };
        let stable = same_as(item, stat_now(&abs));
        let remote_sha = file.checksum_sha256.clone().or(Some(sha));
        let mut stale = Vec::new();
        if adopted {
            match self.store.paths_of_remote_id(m, &file.id).await {
                Ok(paths) => stale = paths.into_iter().filter(|p| p != path).collect(),
                Err(e) => return self.store_failed(e),
            }
        }
        let mut effects: Vec<Effect> = stale.into_iter().map(Effect::Remove).collect();
        effects.extend([
            Effect::Upsert(entry_for(
                path,
                item,
                &file.id,
                remote_sha,
                Some(file.version as i64),
            )),
            Effect::ClearFailure(path.into()),
            Effect::DeleteSession(path.into()),
        ]);
        if let Err(e) = self.store.commit(m, intent, effects.clone()).await {
            return self.store_failed(e);
        }
        self.counters.files_done.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_done
            .fetch_add(item.size, Ordering::Relaxed);
        if stable {
            Outcome::Done(effects)
        } else {
            Outcome::Changed(effects)
        }
    }
}
