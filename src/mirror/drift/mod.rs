//! Remote drift: following the share's change log (`scaidrive-api.md` §12) and repairing
//! what other people changed under the mirror's folder toward the local root (DESIGN.md
//! §4 "Others write too").
//!
//! Each daemon registers one sync device per share (`POST /sync/devices`, the id kept in
//! the state database) and each mirror keeps its cursor into the share's log, locally and
//! on the server (`POST /sync/cursor`, so the server's "last seen" shows the daemon
//! alive). Every `remote_poll_secs` the mirror reads the log after its cursor (paging
//! while `has_more`), folds the rows per resource into its final state, and compares that
//! with what the store says the mirror holds — which is local truth once a pass is done:
//!
//! - a change that agrees with the store (our own uploads, renames, deletes, restores;
//!   an `updated` row whose version or checksum is the one recorded) needs no call;
//! - a mirrored item deleted remotely is restored from the trash (no bytes); if it is
//!   gone for good the store forgets it and the next pass uploads it again;
//! - a mirrored item renamed or moved remotely is put back (one call per item; the
//!   descendants of a folder put back come with it);
//! - a new version of a mirrored file saved remotely is superseded by the local content
//!   (the store forgets the recorded hash so the pass uploads the file as a new version;
//!   the colleague's version stays in the history) and the overwrite is logged with who
//!   made it and counted in status;
//! - items others created are left alone (`remote_extras = "keep"`, listed by `verify`
//!   as remote only) or trashed (`"trash"`), never when the local root has that path.
//!
//! A repair that fails transiently leaves the cursor where it was: the next poll reads
//! the same rows again (folding them is idempotent). A cursor the server refuses (a
//! 4xx: retention ran out, an unknown cursor) is a log gap: the mirror lists its remote
//! folder once, puts back what it can and continues from the current position.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

mod fold;
mod others;

use fold::{Repair, fold, plan};

use super::{Engine, MirrorState, unix_now};
use crate::config::RemoteExtras;
use crate::remote::follow::NewDevice;
use crate::remote::{Cursor, Error as RemoteError};
use crate::store::{Effect, EntryKind, SyncCursor};

/// Rows asked for per `/sync/changes` call (the documented maximum): each page is folded
/// and dropped before the next is read, and what agrees with the store is not kept.
const PAGE: u32 = 5000;
/// Pages read in one poll before the rows are acted on (the next poll continues).
const MAX_PAGES: usize = 20;
/// The server-side cursor is stored when it moved, and at least this often while the
/// daemon runs, so "last seen" stays fresh.
const SERVER_CURSOR_EVERY: Duration = Duration::from_secs(600);
/// Polls in a row that cannot read the log before the mirror lists its folder instead.
const UNREADABLE_POLLS: u32 = 3;
/// After a batch the log is read early when at least this share of the token's budget is
/// left, and not more often than [`EARLY_READ_GAP`].
const EARLY_READ_SPARE: f64 = 0.5;
const EARLY_READ_GAP: Duration = Duration::from_secs(5);

/// The follower's state in one mirror task.
#[derive(Debug, Default)]
pub(super) struct Follow {
    device_id: Option<String>,
    cursor: Option<Cursor>,
    read_at: Option<i64>,
    repairs: u64,
    overwrites: u64,
    /// Drift known and not yet repaired (a repair that failed transiently).
    pending: usize,
    next_poll: Option<Instant>,
    /// The cursor last stored on the server, and when.
    server_saved: Option<(Cursor, Instant)>,
    /// Polls in a row that could not read the log (transient errors), and the listings
    /// made meanwhile (each doubles the polls before the next: a long outage of the log
    /// does not turn into a listing every few polls).
    read_failures: u32,
    unreadable_listings: u32,
    /// The daemon's own user (`GET /users/me`), to tell its items from others'.
    user_id: Option<String>,
    /// When the log was last read (for reads brought forward after a batch).
    last_read: Option<Instant>,
    /// The mirror holds entries from before it had a position in the log (an upgrade,
    /// or a first run cut short before the position was stored): what others changed
    /// meanwhile is found by one listing.
    resync: bool,
    /// Others' items under the mirror's folder (see `others`); `None` = unknown.
    others: Option<crate::upload::RemoteOthers>,
    /// What their folder deletes took along, by folder id (back with a restore).
    hidden_others: std::collections::HashMap<String, crate::upload::RemoteOthers>,
    /// This start created the remote base folder.
    fresh_base: bool,
    /// A rebuild from the log: its last position, and the items it left to others.
    adopted: Option<(Cursor, crate::upload::RemoteOthers)>,
}

impl Follow {
    /// When the next poll is due (`None` = not following).
    pub(super) fn due(&self) -> Option<Instant> {
        self.next_poll
    }
}

fn new_device_id() -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let mut rng = rand::rng();
    let tail: String = (0..26)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("dev_{tail}")
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown host".into())
}

impl Engine {
    pub(super) fn poll_every(&self) -> Option<Duration> {
        (self.cfg.remote_poll_secs > 0).then(|| Duration::from_secs(self.cfg.remote_poll_secs))
    }

    /// The mirror's remote base folder as an absolute share path (`""` = share root).
    pub(super) fn base_abs(&self) -> String {
        let p = self.cfg.remote_path.trim_matches('/');
        if p.is_empty() {
            String::new()
        } else {
            format!("/{p}")
        }
    }

    /// Arms the follower after start-up: the device and the position in the log are set
    /// up now, before the first pass uploads anything (a new device starts at the current
    /// head, so every change from here on is seen); the first poll comes right after the
    /// first pass.
    pub(super) async fn follow_arm(&mut self) {
        let Some(every) = self.poll_every() else {
            return;
        };
        self.drift.next_poll = Some(Instant::now());
        if self.paused.is_some() {
            return;
        }
        if let Err(e) = self.follow_setup().await {
            tracing::warn!(mirror = %self.name, "change log: cannot set up the sync device or cursor, trying again in {} s: {e}", every.as_secs());
        }
    }

    /// After a batch: reads the log at once if the pacer has budget to spare (half or
    /// more of the token's units left) and the last read is a few seconds old, so drift
    /// caused while the mirror was busy is found without waiting a whole interval.
    pub(super) fn follow_after_batch(&mut self) {
        let Some(next) = self.drift.next_poll else {
            return;
        };
        if self
            .drift
            .last_read
            .is_some_and(|at| at.elapsed() < EARLY_READ_GAP)
        {
            return;
        }
        let (limit, remaining) = self.deps.client.rate_budget();
        let spare = limit.is_none_or(|l| remaining as f64 >= l as f64 * EARLY_READ_SPARE);
        if spare {
            self.drift.next_poll = Some(next.min(Instant::now()));
        }
    }

    /// The share's device (registered once per daemon version) and the mirror's cursor:
    /// the stored one, else the server's for this device (a new device starts at the
    /// current head, which is right after a full pass: the store is local truth).
    async fn follow_setup(&mut self) -> Result<(), RemoteError> {
        let Some(t) = self.target.clone() else {
            return Ok(());
        };
        let store = self.deps.store.clone();
        let client = self.deps.client.clone();
        let name = self.name.clone();
        let fail = |e: crate::store::StoreError| {
            tracing::warn!(mirror = %name, "change log: {e}");
        };
        if self.drift.device_id.is_none() {
            let kept = match store.sync_device(&t.share_id).await {
                Ok(Some(d)) => Ok(d),
                Ok(None) => {
                    store
                        .keep_sync_device(&t.share_id, &new_device_id(), unix_now())
                        .await
                }
                Err(e) => Err(e),
            };
            let dev = match kept {
                Ok(d) => d,
                Err(e) => {
                    fail(e);
                    return Ok(());
                }
            };
            let version = env!("CARGO_PKG_VERSION");
            if dev.registered_version.as_deref() != Some(version) {
                client
                    .register_device(&NewDevice {
                        device_id: dev.device_id.clone(),
                        device_name: format!("scaidrived on {}", host_name()),
                        platform: std::env::consts::OS.to_string(),
                        client_version: version.to_string(),
                    })
                    .await?;
                if let Err(e) = store.set_device_registered(&t.share_id, version).await {
                    fail(e);
                }
                tracing::info!(mirror = %self.name, device = %dev.device_id, "registered sync device for share {}", t.share_id);
            }
            self.drift.device_id = Some(dev.device_id);
        }
        if self.drift.user_id.is_none() {
            self.drift.user_id = Some(client.me().await?.id);
        }
        if self.drift.cursor.is_none() {
            match store.sync_cursor(t.mirror).await {
                Ok(Some(c)) if c.share_id == t.share_id => {
                    self.drift.cursor = Some(Cursor(c.cursor));
                    self.drift.read_at = Some(c.read_at);
                    self.drift.repairs = c.repairs;
                    self.drift.overwrites = c.overwrites;
                }
                Ok(_) if self.drift.adopted.is_some() => {
                    let (head, others) = self.drift.adopted.take().expect("checked");
                    self.drift.cursor = Some(head);
                    self.drift.read_at = Some(unix_now());
                    self.drift.others = Some(others);
                    self.save_cursor().await;
                }
                Ok(_) => {
                    let dev = self.drift.device_id.clone().unwrap_or_default();
                    let st = client.sync_status(&t.share_id, &dev).await?;
                    self.drift.cursor = Some(st.cursor_position);
                    self.drift.read_at = Some(unix_now());
                    // Entries recorded before this position: changes made to them in
                    // between are not in the log from here.
                    self.drift.resync = self.known.count() > 0;
                    if !self.drift.resync && self.drift.fresh_base {
                        self.drift.others = Some(Default::default());
                    }
                    self.save_cursor().await;
                }
                Err(e) => fail(e),
            }
        }
        Ok(())
    }

    async fn save_cursor(&mut self) {
        let (Some(t), Some(c)) = (self.target.clone(), self.drift.cursor.clone()) else {
            return;
        };
        let rec = SyncCursor {
            share_id: t.share_id.clone(),
            cursor: c.0.clone(),
            read_at: self.drift.read_at.unwrap_or_else(unix_now),
            repairs: self.drift.repairs,
            overwrites: self.drift.overwrites,
        };
        if let Err(e) = self.deps.store.set_sync_cursor(t.mirror, rec).await {
            tracing::warn!(mirror = %self.name, "change log: saving the cursor: {e}");
        }
        let stale = self
            .drift
            .server_saved
            .as_ref()
            .is_none_or(|(saved, at)| *saved != c || at.elapsed() >= SERVER_CURSOR_EVERY);
        if let (true, Some(dev)) = (stale, self.drift.device_id.clone()) {
            match self.deps.client.set_cursor(&t.share_id, &dev, &c).await {
                Ok(_) => self.drift.server_saved = Some((c, Instant::now())),
                Err(e) => {
                    tracing::warn!(mirror = %self.name, "change log: storing the cursor on the server: {e}")
                }
            }
        }
    }

    /// The id of the live folder at absolute share path `abs` (`None` = the share root),
    /// found by listing from the root (2 units per level).
    async fn folder_at(&self, abs: &str) -> Result<Option<String>, RemoteError> {
        let share = self.cfg.share_id.clone();
        let mut folder: Option<String> = None;
        for seg in abs.split('/').filter(|s| !s.is_empty()) {
            let list = self.deps.client.children(&share, folder.as_deref()).await?;
            let found = list
                .items
                .into_iter()
                .find(|i| i.name == seg && i.kind == crate::remote::ItemKind::Folder);
            match found {
                Some(f) => folder = Some(f.id),
                None => {
                    return Err(RemoteError::decode_unplaced(format!(
                        "no folder at {abs} to put the mirror's folder back into"
                    )));
                }
            }
        }
        Ok(folder)
    }

    /// Repairs made so far (for `verify --repair`'s count).
    pub(super) fn drift_repairs(&self) -> u64 {
        self.drift.repairs
    }

    fn publish_drift(&self) {
        let (pending, repairs, overwrites, read_at) = (
            self.drift.pending,
            self.drift.repairs,
            self.drift.overwrites,
            self.drift.read_at,
        );
        self.status_tx.send_modify(|s| {
            s.remote_drift = pending;
            s.remote_repairs = repairs;
            s.remote_overwrites = overwrites;
            s.cursor_read_at = read_at;
        });
    }

    /// One poll of the change log: read after the cursor, repair, move the cursor on.
    pub(super) async fn poll_remote(&mut self) {
        let Some(every) = self.poll_every() else {
            self.drift.next_poll = None;
            return;
        };
        self.drift.next_poll = Some(Instant::now() + every);
        if self.paused.is_some() || self.target.is_none() {
            return;
        }
        if let Err(e) = self.follow_setup().await {
            tracing::warn!(mirror = %self.name, "change log: cannot set up the sync device or cursor, trying again in {} s: {e}", every.as_secs());
            return;
        }
        let Some(t) = self.target.clone() else { return };
        if self.drift.resync {
            if !self.ensure_known().await {
                return;
            }
            if self
                .log_gap("no position in the change log was stored with these entries")
                .await
            {
                self.drift.resync = false;
            }
            return;
        }
        let Some(mut cursor) = self.drift.cursor.clone() else {
            return;
        };
        // Folded page by page: a restart after a large first pass reads the mirror's own
        // upload rows (about 105,000 on W4's tree), which agree with the store and are
        // dropped as they are folded; only what may need a repair stays in `seen`.
        // Indexed on the first page that has rows: an idle poll (no rows) must not walk and
        // hash every entry (W6: 0.7 s of CPU a minute on 100,000 entries). An unloaded
        // mirror is not loaded for them: each page's items are read from the store by
        // remote id (a million own upload rows after a first sync need no map).
        let known: std::sync::OnceLock<Arc<BTreeMap<String, crate::store::Entry>>> =
            std::sync::OnceLock::new();
        let mut by_id: Option<std::collections::HashMap<&str, &crate::store::Entry>> = None;
        let base = self.base_abs();
        let mut seen = BTreeMap::new();
        let mut read = 0usize;
        let mut more = false;
        for _ in 0..MAX_PAGES {
            match self
                .deps
                .client
                .changes(&t.share_id, Some(&cursor), Some(PAGE))
                .await
            {
                Ok(page) => {
                    read += page.changes.len();
                    let rows = !page.changes.is_empty();
                    let unloaded = !self.known.is_loaded() && known.get().is_none();
                    if rows && !unloaded {
                        if known.get().is_none() {
                            let _ = known.set(Arc::clone(&self.known));
                        }
                        self.follow_others_rows(&page.changes);
                        fold(&page.changes, &mut seen);
                        let known = known.get().expect("set above");
                        let by_id = by_id.get_or_insert_with(|| {
                            known.values().map(|e| (e.remote_id.as_str(), e)).collect()
                        });
                        fold::prune(&mut seen, by_id, &base);
                    } else if rows {
                        let ids: BTreeSet<String> =
                            page.changes.iter().map(|c| c.resource_id.clone()).collect();
                        let mine = match self
                            .deps
                            .store
                            .entries_by_remote_id(t.mirror, ids.into_iter().collect())
                            .await
                        {
                            Ok(m) => m,
                            Err(e) => {
                                tracing::error!(mirror = %self.name, "change log: cannot read the mirror's entries from the state database {}: {e}", self.deps.store.path().display());
                                return;
                            }
                        };
                        self.follow_others_rows_by(&page.changes, &|id| mine.contains_key(id));
                        fold(&page.changes, &mut seen);
                        let page_ids: std::collections::HashMap<&str, &crate::store::Entry> =
                            mine.iter().map(|(id, e)| (id.as_str(), e)).collect();
                        fold::prune(&mut seen, &page_ids, &base);
                    }
                    cursor = page.cursor;
                    more = page.has_more;
                    if !more {
                        break;
                    }
                }
                Err(e) if e.kind() == crate::remote::ErrorKind::CredentialsNeeded => {
                    tracing::warn!(mirror = %self.name, "change log: cannot read it: {e}");
                    return;
                }
                Err(e) if e.is_transient() => {
                    self.drift.read_failures += 1;
                    let after = UNREADABLE_POLLS << self.drift.unreadable_listings.min(6);
                    if self.drift.read_failures >= after {
                        self.drift.unreadable_listings += 1;
                        // The log cannot be read: what others changed is found by one
                        // listing instead (which may fail the same way; then again later).
                        self.drift.read_failures = 0;
                        self.log_gap(&format!("the log cannot be read: {e}")).await;
                    } else {
                        tracing::warn!(mirror = %self.name, "change log: cannot read it, trying again in {} s: {e}", every.as_secs());
                    }
                    return;
                }
                Err(e) => {
                    self.log_gap(&format!("the server refused the position: {e}"))
                        .await;
                    return;
                }
            }
        }
        self.drift.read_failures = 0;
        self.drift.unreadable_listings = 0;
        self.drift.last_read = Some(Instant::now());
        tracing::debug!(mirror = %self.name, "change log: {read} row(s) read, {} to look at", seen.len());
        drop(by_id);
        drop(known);
        let failed = if seen.is_empty() {
            0
        } else if !self.ensure_known().await {
            return;
        } else {
            let root = t.root.clone();
            let on_disk = move |rel: &str| std::fs::symlink_metadata(root.join(rel)).is_ok();
            let base_id = t.base_folder_id.as_deref();
            let me = self.drift.user_id.clone();
            let repairs = plan(
                &seen,
                &self.known,
                &self.base_abs(),
                base_id,
                me.as_deref(),
                &on_disk,
            );
            self.repair(repairs).await
        };
        if failed == 0 {
            self.drift.cursor = Some(cursor);
        }
        self.drift.pending = failed;
        self.drift.read_at = Some(unix_now());
        self.save_cursor().await;
        self.publish_drift();
        if more {
            self.drift.next_poll = Some(Instant::now());
        }
    }

    /// Runs `repairs`; returns how many failed transiently (retried by the next poll).
    async fn repair(&mut self, repairs: Vec<Repair>) -> usize {
        let Some(t) = self.target.clone() else {
            return 0;
        };
        if repairs.is_empty() {
            return 0;
        }
        let drift = repairs
            .iter()
            .filter(|r| !matches!(r, Repair::Extra { .. }))
            .count();
        if drift > 0 {
            self.drift.pending = drift;
            self.publish_drift();
            self.set_state(MirrorState::Syncing, None);
        }
        let client = self.deps.client.clone();
        let mut failed = 0;
        let mut forget = Vec::new();
        let mut upserts = Vec::new();
        // Folders put back: (mirror path, where it was); their subtree came along.
        let mut put_back: Vec<(String, String)> = Vec::new();
        for r in repairs {
            match r {
                Repair::Restore { path, id, dir } => {
                    let res = if dir {
                        client.restore_folder(&id).await.map(|_| ())
                    } else {
                        // Into the place the mirror holds it at, in the same call.
                        let (parent, name) = path.rsplit_once('/').unwrap_or(("", &path));
                        let parent_id = if parent.is_empty() {
                            t.base_folder_id.clone()
                        } else {
                            self.known.get(parent).map(|e| e.remote_id.clone())
                        };
                        client
                            .restore_file(&id, parent_id.as_deref(), name)
                            .await
                            .map(|_| ())
                    };
                    match res {
                        Ok(()) => {
                            self.drift.repairs += 1;
                            tracing::warn!(mirror = %self.name, "{path}: deleted remotely by someone else; restored it from the trash");
                        }
                        Err(e) if e.is_transient() => failed += 1,
                        Err(e) if path.is_empty() => {
                            tracing::error!(mirror = %self.name, "the mirror's remote folder was deleted by someone else and cannot be restored ({e}); `scaidrivectl verify --repair` uploads the tree again");
                        }
                        Err(e) => {
                            tracing::warn!(mirror = %self.name, "{path}: deleted remotely and cannot be restored ({e}); uploading it again");
                            forget.push(Effect::RemoveTree(path));
                        }
                    }
                }
                Repair::PutBack { path, id, dir, now } => {
                    if put_back.iter().any(|(p, n)| {
                        let rest = if p.is_empty() {
                            Some(format!("/{path}"))
                        } else {
                            path.strip_prefix(p.as_str())
                                .filter(|rest| rest.starts_with('/'))
                                .map(str::to_string)
                        };
                        rest.is_some_and(|rest| now == format!("{n}{rest}"))
                    }) {
                        continue;
                    }
                    // The base folder itself is placed by its path in the share.
                    let (parent, name, want_parent) = if path.is_empty() {
                        let rp = self.cfg.remote_path.trim_matches('/');
                        let (p, n) = rp.rsplit_once('/').unwrap_or(("", rp));
                        let abs = if p.is_empty() {
                            String::new()
                        } else {
                            format!("/{p}")
                        };
                        (None, n.to_string(), abs)
                    } else {
                        let (p, n) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
                        let abs = if p.is_empty() {
                            self.base_abs()
                        } else {
                            format!("{}/{p}", self.base_abs())
                        };
                        (Some(p.to_string()), n.to_string(), abs)
                    };
                    let parent_id = match &parent {
                        Some(p) if p.is_empty() => t.base_folder_id.clone(),
                        Some(p) => self.known.get(p).map(|e| e.remote_id.clone()),
                        None => None,
                    };
                    let res = if dir {
                        let cur_name = now.rsplit('/').next().unwrap_or_default();
                        let cur_parent = now.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
                        let mut r = Ok(());
                        if cur_name != name {
                            r = client.rename_folder(&id, &name).await.map(|_| ());
                        }
                        if r.is_ok() && cur_parent != want_parent {
                            let target = match parent {
                                Some(_) => Ok(parent_id.clone()),
                                None => self.folder_at(&want_parent).await,
                            };
                            r = match target {
                                Ok(target) => {
                                    client.move_folder(&id, target.as_deref()).await.map(|_| ())
                                }
                                Err(e) => Err(e),
                            };
                        }
                        r
                    } else {
                        client
                            .place_file(&id, parent_id.as_deref(), &name)
                            .await
                            .map(|_| ())
                    };
                    match res {
                        Ok(()) => {
                            self.drift.repairs += 1;
                            if dir {
                                put_back.push((path.clone(), now.clone()));
                            }
                            tracing::warn!(mirror = %self.name, "{path}: moved or renamed remotely by someone else (to {now}); moved it back");
                        }
                        Err(e) if e.is_transient() => failed += 1,
                        Err(e) if path.is_empty() => {
                            tracing::error!(mirror = %self.name, "the mirror's remote folder was moved to {now} by someone else and cannot be moved back: {e}");
                        }
                        Err(e) => {
                            tracing::warn!(mirror = %self.name, "{path}: cannot move it back from {now} ({e}); uploading it again");
                            forget.push(Effect::RemoveTree(path));
                        }
                    }
                }
                Repair::Overwrite {
                    path,
                    version,
                    sha,
                    by,
                } => {
                    let Some(e) = self.known.get(&path) else {
                        continue;
                    };
                    // The disk is the truth: an edit that equals the local file (our own
                    // upload whose answer was lost) needs no new version.
                    let abs = t.root.join(&path);
                    let local = tokio::task::spawn_blocking(move || crate::plan::hash_file(&abs))
                        .await
                        .ok()
                        .and_then(Result::ok);
                    if local.is_some() && local == sha {
                        continue;
                    }
                    // The recorded hash becomes the remote's: the pass hashes the file,
                    // finds it differs and uploads it as a new version.
                    let mut e = e.clone();
                    e.sha256 = Some(sha.unwrap_or_else(|| "remote-edit".into()));
                    e.mtime_ns = e.mtime_ns.wrapping_add(1);
                    e.ctime_ns = None;
                    upserts.push(Effect::Upsert(e));
                    self.drift.repairs += 1;
                    self.drift.overwrites += 1;
                    let v = version.map_or_else(|| "?".to_string(), |v| v.to_string());
                    tracing::warn!(mirror = %self.name, "{path}: new version {v} saved remotely by {}; uploading the local content over it (version {v} stays in the file's history)", by.as_deref().unwrap_or("someone else"));
                }
                Repair::Forget { path } => {
                    tracing::warn!(mirror = %self.name, "{path}: gone remotely for good; uploading it again");
                    forget.push(Effect::RemoveTree(path));
                }
                Repair::Extra { rel, id, dir, by } => {
                    let by = by.as_deref().unwrap_or("someone else");
                    if self.cfg.remote_extras == RemoteExtras::Keep {
                        tracing::info!(mirror = %self.name, "{rel}: created remotely by {by}; not in the local root, left alone (remote_extras = \"keep\")");
                        continue;
                    }
                    if self.mount_memory.hides(&rel) {
                        // Below a mount that is not mounted: the local side is unknown.
                        tracing::info!(mirror = %self.name, "{rel}: created remotely by {by} below a mount point that is not mounted; left alone until it is back");
                        continue;
                    }
                    let res = if dir {
                        client.delete_folder(&id, false).await
                    } else {
                        client.delete_file(&id, false).await
                    };
                    match res {
                        Ok(()) => {
                            self.drift.repairs += 1;
                            tracing::warn!(mirror = %self.name, "{rel}: created remotely by {by}; not in the local root, moved it to the trash (remote_extras = \"trash\")");
                        }
                        Err(e) if e.is_transient() => failed += 1,
                        Err(e) => {
                            tracing::warn!(mirror = %self.name, "{rel}: cannot trash this remote-only item: {e}")
                        }
                    }
                }
            }
        }
        if drift > 0 && !self.needs_full_pass && upserts.is_empty() && forget.is_empty() {
            self.set_state(MirrorState::Idle, None);
        }
        let effects: Vec<Effect> = forget.into_iter().chain(upserts).collect();
        if !effects.is_empty() {
            match self.deps.store.apply(t.mirror, effects.clone()).await {
                Ok(()) => {
                    let known = Arc::make_mut(&mut self.known);
                    for e in &effects {
                        crate::store::apply_to_map(known, e);
                    }
                    self.needs_full_pass = true;
                }
                Err(e) => {
                    tracing::warn!(mirror = %self.name, "change log: recording repairs: {e}");
                    failed += 1;
                }
            }
        }
        self.drift.pending = failed;
        self.publish_drift();
        failed
    }

    /// The server refused the cursor: list the remote folder once (what `verify` does),
    /// put back what is missing, upload again what differs, and continue from the
    /// position taken before the listing.
    /// Returns whether it got through (else the next poll tries again).
    async fn log_gap(&mut self, why: &str) -> bool {
        let Some(t) = self.target.clone() else {
            return false;
        };
        tracing::warn!(mirror = %self.name, "change log gap ({why}); listing the remote folder once instead");
        // The position to continue from is taken before the listing. When the log
        // cannot be read at all the listing still repairs; the old position is kept and
        // read again once the log answers (its rows then agree with the store).
        let head = match self.deps.client.changes(&t.share_id, None, None).await {
            Ok(c) => Some(c.cursor),
            Err(e) => {
                tracing::warn!(mirror = %self.name, "change log: cannot read the current position either: {e}");
                None
            }
        };
        let report = self.verify(false, false).await;
        if let Some(e) = &report.error {
            tracing::warn!(mirror = %self.name, "change log gap: listing failed, trying again at the next poll: {e}");
            return false;
        }
        let (missing, different) = (report.missing_remotely.clone(), report.different.clone());
        let failed = self.put_back_missing(&missing).await;
        let forget: Vec<Effect> = different
            .iter()
            .map(|(p, _)| Effect::RemoveTree(p.clone()))
            .collect();
        if !forget.is_empty()
            && self
                .deps
                .store
                .apply(t.mirror, forget.clone())
                .await
                .is_ok()
        {
            let known = Arc::make_mut(&mut self.known);
            for e in &forget {
                crate::store::apply_to_map(known, e);
            }
            self.needs_full_pass = true;
        }
        let done = failed == 0 && head.is_some();
        if let (0, Some(head)) = (failed, head) {
            self.drift.cursor = Some(head);
        }
        self.drift.pending = failed;
        self.drift.read_at = Some(unix_now());
        self.save_cursor().await;
        self.publish_drift();
        tracing::warn!(mirror = %self.name, "change log gap: {} item(s) missing remotely, {} different, {} remote only; continuing from the current position", missing.len(), different.len(), report.extra_remotely.len());
        done
    }

    /// Puts mirrored items missing at their path back where they belong, by their remote
    /// id (restore from the trash, move back), top-most first; what cannot be put back is
    /// forgotten so the next pass uploads it. Returns the number of transient failures.
    pub(super) async fn put_back_missing(&mut self, missing: &[String]) -> usize {
        let mut top: Vec<&String> = Vec::new();
        let mut sorted: Vec<&String> = missing.iter().collect();
        sorted.sort_by_key(|p| p.matches('/').count());
        for p in sorted {
            if !top.iter().any(|t| {
                p.strip_prefix(t.as_str())
                    .is_some_and(|r| r.starts_with('/'))
            }) {
                top.push(p);
            }
        }
        let mut repairs = Vec::new();
        for path in top {
            let Some(e) = self.known.get(path).cloned() else {
                continue;
            };
            let dir = e.kind == EntryKind::Dir;
            let looked = if dir {
                self.deps
                    .client
                    .folder(&e.remote_id)
                    .await
                    .map(|f| (f.path, f.is_deleted))
            } else {
                self.deps
                    .client
                    .file(&e.remote_id)
                    .await
                    .map(|f| (f.path, f.is_deleted))
            };
            let (now, deleted) = match looked {
                Ok(x) => x,
                Err(err) if err.status().is_some_and(|s| s.as_u16() == 410) => {
                    (String::new(), true)
                }
                Err(err) if err.is_transient() => return 1,
                Err(_) => {
                    repairs.push(Repair::Forget { path: path.clone() });
                    continue;
                }
            };
            if deleted {
                repairs.push(Repair::Restore {
                    path: path.clone(),
                    id: e.remote_id.clone(),
                    dir,
                });
            }
            if !now.is_empty() {
                repairs.push(Repair::PutBack {
                    path: path.clone(),
                    id: e.remote_id.clone(),
                    dir,
                    now,
                });
            }
        }
        self.repair(repairs).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn device_ids_are_prefixed_and_random() {
        let (a, b) = (super::new_device_id(), super::new_device_id());
        assert!(a.starts_with("dev_") && a.len() == 30, "{a}");
        assert_ne!(a, b);
    }
}
