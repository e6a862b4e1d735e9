//! The mirror engine: one task per configured mirror that keeps the remote folder equal
//! to the local root (DESIGN.md §1–2).
//!
//! Start-up: register the mirror in the store, find or create the remote base folder,
//! load what the store knows, resolve intents left open by a crash (looking at the
//! remote, never guessing), then run a full pass. Afterwards watcher hints are debounced
//! into batches of settled paths; each batch is planned over just those paths (plus their
//! new subtrees and vanished known subtrees) by the same planner the full pass uses, and
//! executed by the uploader. A periodic jittered rescan and any lost-events signal run a
//! full pass again. A vanished, unreadable or suddenly empty root, and a pass that would
//! delete more than the configured threshold, pause the mirror with the reason until
//! `resume --allow-deletes`; nothing is deleted remotely on a guess.
//!
//! A delete seen through the watcher waits one grace period before it is executed, and
//! every batch planned in that period considers the waiting entries, so a move whose two
//! halves settle in different batches is still one remote move, not a delete plus a
//! re-upload.

pub mod status;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::MirrorConfig;
use crate::plan::{self, DiskItem, Op};
use crate::queue::gate::{DeleteGate, DeleteGateConfig};
use crate::queue::{Queue, QueueConfig, Settled};
use crate::remote::ItemKind;
use crate::store::{self, Effect, Entry, EntryKind, Store};
use crate::upload::{Counters, MirrorTarget, Outcome, Uploader};
use crate::watch::{
    self as local, IgnoreRules, Kind, LocalEntry, RelPath, ScanError, ScanItem, WatchError, Watcher,
};

pub use status::{MirrorCmd, MirrorHandle, MirrorState, MirrorStatus, SkippedItem, VerifyReport};

/// What a mirror task needs from the daemon.
#[derive(Clone)]
pub struct MirrorDeps {
    pub store: Store,
    pub uploader: Uploader,
    /// While paused for a full quota, how often the share's usage is checked again.
    pub quota_recheck: Duration,
}

/// Why a start attempt failed in a way that can pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StartBlocked {
    /// The remote was unreachable or refused for now (5xx, 429, dropped connection).
    Transient,
    /// The credentials were refused: waits for a reload (HUP).
    Credentials,
}

/// Pauses the mirror lifts by itself, as opposed to the user's and the safety guards'.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AutoResume {
    /// The credentials were refused: resumes when the daemon reloads them (HUP).
    Credentials,
    /// A quota is full (507): resumes when a periodic check sees space freed.
    Quota,
    /// The root vanished or is another directory now: resumes when the directory the
    /// mirror was synced from is back at its path.
    RootBack,
}

/// Delay before a failed item is tried again: 30 s doubling to 1 h; permanent failures
/// wait an hour (or a change of the item, or `scaidrivectl retry`).
pub fn failure_backoff(attempts: u32) -> i64 {
    (30i64 << attempts.saturating_sub(1).min(7)).min(3600)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Refreshes the transfer figures of a mirror's status every second while it runs (the
/// engine itself only publishes at state changes, and is busy during a batch): counts,
/// what the batch has left, the rate (smoothed over a few seconds) and the ETA.
async fn sample_progress(
    status: Arc<watch::Sender<MirrorStatus>>,
    counters: Arc<Counters>,
    stop: CancellationToken,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last = counters.bytes_done.load(Relaxed);
    let mut rate = 0.0f64;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let done = counters.bytes_done.load(Relaxed);
        rate = 0.7 * rate + 0.3 * (done.saturating_sub(last) as f64);
        last = done;
        let remaining = counters.bytes_remaining.load(Relaxed);
        status.send_if_modified(|s| {
            let before = (
                s.files_done,
                s.bytes_done,
                s.in_flight,
                s.bytes_remaining,
                s.bytes_per_sec,
            );
            s.files_done = counters.files_done.load(Relaxed);
            s.bytes_done = done;
            s.in_flight = counters.in_flight.load(Relaxed);
            s.files_remaining = counters.files_remaining.load(Relaxed);
            s.bytes_remaining = remaining;
            s.bytes_per_sec = rate.round() as u64;
            s.eta_secs =
                (remaining > 0 && rate >= 1.0).then(|| (remaining as f64 / rate).ceil() as u64);
            before
                != (
                    s.files_done,
                    s.bytes_done,
                    s.in_flight,
                    s.bytes_remaining,
                    s.bytes_per_sec,
                )
        });
    }
}

/// Starts the mirror task; it runs until `shutdown` is cancelled.
pub fn spawn(
    cfg: MirrorConfig,
    deps: MirrorDeps,
    shutdown: CancellationToken,
) -> (MirrorHandle, tokio::task::JoinHandle<()>) {
    let name = cfg.display_name();
    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    let initial = MirrorStatus::new(&name, &cfg);
    let (status_tx, status_rx) = watch::channel(initial);
    let handle = MirrorHandle {
        name: name.clone(),
        cmd: cmd_tx,
        status: status_rx,
    };
    let status_tx = Arc::new(status_tx);
    let counters = Arc::new(Counters::default());
    tokio::spawn(sample_progress(
        status_tx.clone(),
        counters.clone(),
        shutdown.clone(),
    ));
    let task = tokio::spawn(async move {
        let mut engine = Engine::new(cfg, deps, status_tx, counters);
        if let Err(e) = engine.run(cmd_rx, shutdown).await {
            tracing::error!(mirror = %name, "mirror stopped: {e}");
            engine.set_state(MirrorState::Error, Some(e));
        }
    });
    (handle, task)
}

struct Engine {
    cfg: MirrorConfig,
    name: String,
    deps: MirrorDeps,
    target: Option<Arc<MirrorTarget>>,
    counters: Arc<Counters>,
    /// What the store knows, shared copy-on-write with the blocking planner tasks.
    known: Arc<BTreeMap<String, Entry>>,
    ignore: Arc<IgnoreRules>,
    status_tx: Arc<watch::Sender<MirrorStatus>>,
    paused: Option<String>,
    /// Set when `paused` is a pause that lifts by itself.
    auto_resume: Option<AutoResume>,
    /// While paused for a full quota: when to look at the share again, and the free bytes
    /// it had when the mirror paused (`None` = unknown).
    quota_check_at: Option<Instant>,
    quota_free_at_pause: Option<u64>,
    /// Why the last start attempt could not reach the remote, if that can pass.
    start_blocked: Option<StartBlocked>,
    allow_deletes: bool,
    /// Deletes seen by the watcher, waiting out their grace period.
    gate: DeleteGate,
    /// Paths whose failure is not yet due.
    failed: HashMap<String, FailedItem>,
    /// Failed moves: destination path → source path. A retry of the destination must
    /// also look at the source, or the move is planned as a create of a new item.
    move_sources: HashMap<String, String>,
    skipped: Vec<SkippedItem>,
    needs_full_pass: bool,
    /// Some op waited for a folder whose create or move failed (see [`Outcome::Blocked`]).
    blocked: bool,
    /// Restart the watcher before the next pass (set on resume).
    rewatch: bool,
    /// Paused because the state database's file system is full.
    space_paused: bool,
    /// The root directory the mirror was synced from (kept in the store): a pass over
    /// another directory at the same path is refused.
    root_anchor: Option<store::RootIdentity>,
    /// When the watcher last received a removal or lost events, stamped as they arrive
    /// (not when the loop reads them: no events are read while a pass runs, and "still
    /// coming in" must not go stale during a long one).
    removals: Option<Arc<local::RemovalClock>>,
    /// Intents open when this run started (left by an earlier run, maybe with a request
    /// still being applied by the server when this run looked).
    inherited: std::collections::HashSet<i64>,
    /// Intents whose create or replace may still land, with when this run first found
    /// it missing; settled again every [`HELD_RECHECK`] until it shows up or the landing
    /// window (the request timeout plus [`LANDING_MARGIN`]) has passed. Counted as work
    /// to do: the mirror is not in sync while one is held.
    held: HashMap<i64, Instant>,
    /// The watcher being set up (a walk of the whole tree), started as soon as the ignore
    /// rules are known so that it overlaps with loading the store.
    watcher_starting: Option<tokio::task::JoinHandle<(Result<Watcher, WatchError>, Duration)>>,
}

impl Engine {
    fn new(
        cfg: MirrorConfig,
        deps: MirrorDeps,
        status_tx: Arc<watch::Sender<MirrorStatus>>,
        counters: Arc<Counters>,
    ) -> Engine {
        let name = cfg.display_name();
        let gate = DeleteGate::new(DeleteGateConfig::for_quiet_period(
            Duration::from_millis(cfg.quiet_period_ms),
            cfg.mass_delete_count,
        ));
        Engine {
            ignore: Arc::new(IgnoreRules::new(&[]).expect("built-in ignore rules compile")),
            cfg,
            name,
            deps,
            target: None,
            counters,
            known: Arc::new(BTreeMap::new()),
            status_tx,
            paused: None,
            auto_resume: None,
            quota_check_at: None,
            quota_free_at_pause: None,
            start_blocked: None,
            allow_deletes: false,
            gate,
            failed: HashMap::new(),
            move_sources: HashMap::new(),
            skipped: Vec::new(),
            needs_full_pass: true,
            blocked: false,
            rewatch: false,
            space_paused: false,
            root_anchor: None,
            removals: None,
            watcher_starting: None,
            inherited: Default::default(),
            held: HashMap::new(),
        }
    }

    fn root(&self) -> PathBuf {
        self.cfg.path.clone()
    }

    fn set_state(&self, state: MirrorState, reason: Option<String>) {
        // Deletes waiting out their grace are work still to do: never idle with them
        // counted as done (the loop refreshes the exact depth on its next turn).
        let waiting = self.gate.len() + self.held.len();
        let known = self.known.len();
        let failures = self.failed.len();
        let retrying = self.failed.values().filter(|f| !f.permanent).count();
        let skipped = self.skipped.clone();
        let c = self.counters.clone();
        self.status_tx.send_modify(|s| {
            s.state = state;
            s.reason = reason;
            s.queue_depth = s.queue_depth.max(waiting);
            s.entries = known;
            s.failures = failures;
            s.retrying = retrying;
            s.skipped = skipped;
            s.files_done = c.files_done.load(std::sync::atomic::Ordering::Relaxed);
            s.bytes_done = c.bytes_done.load(std::sync::atomic::Ordering::Relaxed);
            s.in_flight = c.in_flight.load(std::sync::atomic::Ordering::Relaxed);
            if state == MirrorState::Idle {
                s.last_sync_at = Some(unix_now());
            }
        });
    }

    fn set_queue(&self, depth: usize) {
        self.status_tx.send_modify(|s| s.queue_depth = depth);
    }

    async fn run(
        &mut self,
        mut cmd_rx: mpsc::Receiver<MirrorCmd>,
        shutdown: CancellationToken,
    ) -> Result<(), String> {
        self.set_state(MirrorState::Starting, None);
        // A server that is down, refusing with 5xx/429 or waiting for new credentials at
        // start is waited out (the mirror stays `starting` / `needs-credentials` with the
        // reason); anything else stops the mirror.
        let mut wait = Duration::from_secs(1);
        loop {
            self.start_blocked = None;
            let e = match self.start().await {
                Ok(()) => break,
                Err(e) => e,
            };
            let credentials = match self.start_blocked.take() {
                Some(StartBlocked::Credentials) => true,
                Some(StartBlocked::Transient) => false,
                None => return Err(e),
            };
            if credentials {
                tracing::error!(mirror = %self.name, "cannot start: {e}");
                self.set_state(
                    MirrorState::NeedsCredentials,
                    Some(format!(
                        "needs new credentials (provide a new token, then reload with HUP): {e}"
                    )),
                );
            } else {
                tracing::warn!(mirror = %self.name, "cannot start, trying again in {}s: {e}", wait.as_secs());
                self.set_state(
                    MirrorState::Starting,
                    Some(format!("trying again in {}s: {e}", wait.as_secs())),
                );
            }
            let retry_at = Instant::now() + wait;
            wait = (wait * 2).min(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep_until(retry_at), if !credentials => break,
                    cmd = cmd_rx.recv() => match cmd {
                        Some(MirrorCmd::CredentialsRenewed) => break,
                        Some(cmd) => self.command(cmd).await,
                        None => return Ok(()),
                    },
                }
            }
            self.set_state(MirrorState::Starting, None);
        }
        if self.paused.is_some() && root_identity(&self.cfg.path).is_none() {
            // Paused by a previous run and the root is still gone: the pause lifts when the
            // directory the mirror was synced from is back (a saved pause of another kind
            // is judged again by the pass that follows).
            self.resume_when_root_is_back();
        }
        // Another directory at the root's path pauses now, with that reason.
        self.check_root().await;
        if let Some(reason) = self.paused.clone() {
            // Paused by a previous run (mass delete, vanished root): say so right away.
            tracing::warn!(mirror = %self.name, "still paused: {reason}");
            self.set_state(MirrorState::Paused, Some(reason));
        }

        let mut poll_every = None;
        let mut watcher = self.start_watcher(&mut poll_every).await?;
        let mut queue = Queue::new(QueueConfig {
            quiet: Duration::from_millis(self.cfg.quiet_period_ms),
            max_delay: Duration::from_secs(self.cfg.max_delay_secs.max(1)),
            ..QueueConfig::default()
        });
        let normal_rescan = Duration::from_secs(self.cfg.rescan_interval_secs.max(60));
        let mut rescan_every = poll_every.unwrap_or(normal_rescan);
        let jitter = |d: Duration| d.mul_f64(rand::rng().random_range(0.9..1.1));
        let mut next_rescan = Instant::now() + jitter(rescan_every);
        let mut next_retry = Instant::now() + Duration::from_secs(30);
        // An unmount (or a mount over the root) sends no usable event: the root's
        // identity is checked every few seconds instead.
        let mut root_id = root_identity(&self.cfg.path);
        let mut next_root_check = Instant::now() + ROOT_CHECK;
        let mut next_held_check = Instant::now() + HELD_RECHECK;

        loop {
            if !self.space_paused && self.deps.store.is_full() {
                self.pause_for_space();
            }
            if self.rewatch && self.paused.is_none() {
                // Resumed after a pause: the root may be a new mount (the old watches died
                // with the old one), and the watch limit may have been raised.
                self.rewatch = false;
                drop(watcher.take());
                poll_every = None;
                watcher = self.start_watcher(&mut poll_every).await?;
                root_id = root_identity(&self.cfg.path);
                rescan_every = poll_every.unwrap_or(normal_rescan);
                next_rescan = Instant::now() + jitter(rescan_every);
            }
            if self.needs_full_pass && self.paused.is_none() {
                self.needs_full_pass = false;
                self.full_pass(&shutdown).await;
                next_rescan = Instant::now() + jitter(rescan_every);
            }
            let mut deadline = next_rescan.min(next_retry).min(next_root_check);
            if let Some(d) = queue.next_deadline() {
                deadline = deadline.min(d);
            }
            if let Some(d) = self.gate.next_deadline() {
                deadline = deadline.min(d);
            }
            if let Some(due) = self
                .failed
                .values()
                .filter(|f| !f.permanent)
                .map(|f| f.due)
                .min()
                && self.paused.is_none()
            {
                // Transient failures are retried when due, not on the next 30 s tick.
                let wait = Duration::from_secs(due.saturating_sub(unix_now()).max(0) as u64);
                next_retry = next_retry.min(Instant::now() + wait);
                deadline = deadline.min(next_retry);
            }
            if let Some(d) = self.quota_check_at {
                deadline = deadline.min(d);
            }
            if !self.held.is_empty() && self.paused.is_none() {
                deadline = deadline.min(next_held_check);
            }
            self.set_queue(queue.len() + self.gate.len() + self.held.len());
            tokio::select! {
                _ = shutdown.cancelled() => break,
                cmd = cmd_rx.recv() => match cmd {
                    Some(cmd) => self.command(cmd).await,
                    None => break,
                },
                ev = async { match watcher.as_mut() { Some(w) => w.recv().await, None => std::future::pending().await } } => {
                    let Some(ev) = ev else {
                        // The backend is gone (root removed): the next batch notices.
                        watcher = None;
                        self.needs_full_pass = true;
                        continue;
                    };
                    let now = Instant::now();
                    queue.push(ev, now);
                    // Drain whatever else is queued so a burst costs one wake-up.
                    while let Some(ev) = watcher.as_mut().and_then(|w| w.try_recv()) {
                        queue.push(ev, now);
                    }
                    if poll_every.is_none() && watcher.as_ref().is_some_and(Watcher::watch_limit_reached) {
                        // New directories can no longer be watched: scan periodically.
                        let every = fallback_scan_interval(&self.cfg);
                        tracing::error!(mirror = %self.name, "{}; until then a full scan runs every {} s", local::RescanReason::WatchLimit, every.as_secs());
                        poll_every = Some(every);
                        rescan_every = every;
                        next_rescan = next_rescan.min(Instant::now() + every);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let now = Instant::now();
                    if now >= next_root_check {
                        next_root_check = now + ROOT_CHECK;
                        let id = root_identity(&self.cfg.path);
                        if self.auto_resume == Some(AutoResume::RootBack)
                            && id != root_id
                            && self.root_anchor.is_some_and(|a| id.is_some_and(|c| a.same_dir(&c)))
                        {
                            tracing::info!(mirror = %self.name, "root {} is back; resuming", self.cfg.path.display());
                            root_id = id;
                            self.lift_pause().await;
                            continue;
                        }
                        if id != root_id && self.paused.is_none() && !self.check_root().await {
                            root_id = id;
                            continue;
                        }
                        if id != root_id && self.paused.is_none() {
                            tracing::warn!(mirror = %self.name, "root {} changed (unmounted or mounted over?); scanning it again", self.cfg.path.display());
                            root_id = id;
                            // Restart the watcher on what is there now, then a full pass
                            // (which pauses if the root is empty or gone).
                            self.rewatch = true;
                            self.needs_full_pass = true;
                            continue;
                        }
                    }
                    if self.quota_check_at.is_some_and(|at| now >= at) {
                        self.recheck_quota().await;
                        continue;
                    }
                    if now >= next_held_check {
                        next_held_check = now + HELD_RECHECK;
                        if !self.held.is_empty() && self.paused.is_none() {
                            match self.resolve_intents().await {
                                // What showed up is known now: the pass moves, replaces
                                // or deletes it to match the disk.
                                Ok(n) if n > 0 => self.needs_full_pass = true,
                                Ok(_) => {}
                                Err(e) => tracing::warn!(mirror = %self.name, "settling operations left open: {e}"),
                            }
                            continue;
                        }
                    }
                    if now >= next_rescan {
                        // Also moved here: while paused no pass runs to move it, and a
                        // deadline in the past would spin this loop.
                        next_rescan = now + jitter(rescan_every);
                        self.needs_full_pass = true;
                        continue;
                    }
                    if now >= next_retry {
                        next_retry = now + Duration::from_secs(30);
                        if self.space_paused {
                            self.probe_space().await;
                        }
                        self.retry_due(&shutdown).await;
                        continue;
                    }
                    let settled = queue.drain_ready(now);
                    let due_deletes = self.gate.any_due(now);
                    if settled.is_empty() && !due_deletes {
                        continue;
                    }
                    if self.paused.is_some() {
                        // Events while paused are re-examined by the pass after resume
                        // (which sees the deletes too: waiting ones would spin the loop).
                        self.gate.clear();
                        self.needs_full_pass = true;
                        continue;
                    }
                    let busy = !queue.is_empty() || self.gate.removals_recent(self.last_removal(), now);
                    self.gate.hold_while_busy(busy, now);
                    self.batch(settled, &shutdown).await;
                }
            }
        }
        Ok(())
    }

    /// When the watcher last received a removal or lost events.
    fn last_removal(&self) -> Option<Instant> {
        self.removals
            .as_ref()
            .and_then(|c| c.last())
            .map(Instant::from_std)
    }

    /// The state database's file system is full: stop all remote work, since nothing
    /// it does could be recorded. Not saved in the store (it could not be): a restart
    /// tries again, and so does a probe write every 30 s.
    fn pause_for_space(&mut self) {
        let reason = format!(
            "{}; mirroring paused until a write succeeds again",
            store::StoreError::Full {
                path: self.deps.store.path().to_path_buf()
            }
        );
        tracing::error!(mirror = %self.name, "{reason}");
        self.space_paused = true;
        self.paused = Some(reason.clone());
        self.set_state(MirrorState::Paused, Some(reason));
    }

    /// Tries a small write; if there is room again, resumes with a full pass.
    async fn probe_space(&mut self) {
        if self
            .deps
            .store
            .kv_set("space_probe", &unix_now().to_string())
            .await
            .is_ok()
        {
            tracing::info!(mirror = %self.name, "the state database can be written again; resuming");
            self.deps.store.clear_full();
            self.space_paused = false;
            self.paused = None;
            self.needs_full_pass = true;
        }
    }

    /// Sets up the watcher on a blocking thread (it walks the whole tree to add watches).
    fn spawn_watcher(&self) -> tokio::task::JoinHandle<(Result<Watcher, WatchError>, Duration)> {
        let (root, rules) = (self.root(), (*self.ignore).clone());
        tokio::task::spawn_blocking(move || {
            let starting = std::time::Instant::now();
            let w = Watcher::new(&root, rules, local::DEFAULT_CHANNEL_CAPACITY);
            (w, starting.elapsed())
        })
    }

    /// Starts the file watcher (or takes the one `start` set going). When it cannot run
    /// (watch limit reached, a directory it cannot watch, the root unavailable) the mirror
    /// is kept in sync by periodic full scans instead (`poll_every`), after one error line
    /// that says why.
    async fn start_watcher(
        &mut self,
        poll_every: &mut Option<Duration>,
    ) -> Result<Option<Watcher>, String> {
        let pending = match self.watcher_starting.take() {
            Some(pending) => pending,
            None => self.spawn_watcher(),
        };
        let (started, took) = pending.await.map_err(|e| format!("watcher task: {e}"))?;
        tracing::debug!(mirror = %self.name, "watcher started in {} ms", took.as_millis());
        match started {
            Ok(w) => {
                self.removals = Some(w.removals());
                Ok(Some(w))
            }
            Err(e) => {
                let every = fallback_scan_interval(&self.cfg);
                match &e {
                    WatchError::RootUnavailable { .. } => {
                        tracing::warn!(mirror = %self.name, "{e}; the next scan decides whether to pause")
                    }
                    _ => {
                        tracing::error!(mirror = %self.name, "{e}; keeping this mirror in sync by a full scan every {} s instead", every.as_secs())
                    }
                }
                *poll_every = Some(every);
                Ok(None)
            }
        }
    }

    async fn command(&mut self, cmd: MirrorCmd) {
        match cmd {
            MirrorCmd::Pause(reply) => {
                self.auto_resume = None;
                self.quota_check_at = None;
                self.paused = Some("paused by user".into());
                self.set_state(MirrorState::Paused, self.paused.clone());
                let _ = reply.send(());
            }
            MirrorCmd::Resume {
                allow_deletes,
                reply,
            } => {
                if self.auto_resume == Some(AutoResume::RootBack) {
                    // Told to go on with the directory that is there now: it becomes
                    // the one the mirror is synced from.
                    self.anchor_root(root_identity(&self.cfg.path)).await;
                }
                self.paused = None;
                self.auto_resume = None;
                self.quota_check_at = None;
                self.allow_deletes = allow_deletes;
                self.needs_full_pass = true;
                self.rewatch = true;
                if self.space_paused {
                    // Told to go on: the next write shows whether there is room again.
                    self.space_paused = false;
                    self.deps.store.clear_full();
                }
                if let Some(t) = &self.target {
                    let _ = self.deps.store.set_paused(t.mirror, None).await;
                }
                // Shown before the reply, so a `wait` right after `resume` does not read
                // the old pause (a full pass comes next).
                if self.target.is_some() {
                    self.set_state(MirrorState::Scanning, None);
                }
                let _ = reply.send(());
            }
            MirrorCmd::CredentialsRenewed => {
                if self.auto_resume == Some(AutoResume::Credentials) {
                    tracing::info!(mirror = %self.name, "credentials reloaded; resuming");
                    self.paused = None;
                    self.auto_resume = None;
                    self.needs_full_pass = true;
                }
            }
            MirrorCmd::Rescan(reply) => {
                self.needs_full_pass = true;
                let _ = reply.send(());
            }
            MirrorCmd::Retry(reply) => {
                if let Some(t) = &self.target {
                    let _ = self.deps.store.retry_failures_now(t.mirror).await;
                }
                self.failed.clear();
                self.needs_full_pass = true;
                let _ = reply.send(());
            }
            MirrorCmd::Verify {
                checksums,
                repair,
                reply,
            } => {
                let report = self.verify(checksums, repair).await;
                if report.repaired > 0 {
                    self.needs_full_pass = true;
                }
                let _ = reply.send(report);
            }
            MirrorCmd::Failures(reply) => {
                let list = match &self.target {
                    Some(t) => self.deps.store.failures(t.mirror).await.unwrap_or_default(),
                    None => Vec::new(),
                };
                let _ = reply.send(list);
            }
        }
    }

    /// Walks the remote folder of the mirror and compares it with the known entries. One
    /// listing per remote folder (plus one metadata GET per file with `checksums`).
    async fn verify(&mut self, checksums: bool, repair: bool) -> VerifyReport {
        let mut report = VerifyReport {
            mirror: self.name.clone(),
            known_items: self.known.len(),
            ..Default::default()
        };
        let Some(t) = self.target.clone() else {
            report.error = Some("the mirror has not started".into());
            return report;
        };
        let client = self.deps.uploader.client().clone();
        // path → (is_dir, id, size)
        let mut remote: BTreeMap<String, (bool, String, Option<u64>)> = BTreeMap::new();
        let mut stack: Vec<(Option<String>, String)> =
            vec![(t.base_folder_id.clone(), String::new())];
        while let Some((folder, prefix)) = stack.pop() {
            let list = match client.children(&t.share_id, folder.as_deref()).await {
                Ok(l) => l,
                Err(e) => {
                    report.error = Some(format!(
                        "listing {}: {e}",
                        if prefix.is_empty() { "/" } else { &prefix }
                    ));
                    return report;
                }
            };
            for item in list.items {
                let path = if prefix.is_empty() {
                    item.name.clone()
                } else {
                    format!("{prefix}/{}", item.name)
                };
                let is_dir = item.kind == ItemKind::Folder;
                if is_dir {
                    stack.push((Some(item.id.clone()), path.clone()));
                }
                remote.insert(path, (is_dir, item.id, item.size));
            }
        }
        report.remote_items = remote.len();
        let mut drifted = Vec::new();
        for (path, e) in self.known.iter() {
            match remote.get(path) {
                None => {
                    report.missing_remotely.push(path.clone());
                    drifted.push(path.clone());
                }
                Some((is_dir, id, size)) => {
                    let why = if *is_dir != (e.kind == EntryKind::Dir) {
                        Some("kind differs".to_string())
                    } else if *id != e.remote_id {
                        Some(format!("remote id {id}, expected {}", e.remote_id))
                    } else if !is_dir && size.is_some_and(|s| s != e.size) {
                        Some(format!(
                            "remote size {}, expected {}",
                            size.unwrap_or(0),
                            e.size
                        ))
                    } else if checksums && !is_dir {
                        match client.file(id).await {
                            Ok(f) if f.checksum_sha256 != e.sha256 => Some(format!(
                                "remote checksum {}, expected {}",
                                f.checksum_sha256.unwrap_or_default(),
                                e.sha256.clone().unwrap_or_default()
                            )),
                            Ok(_) => None,
                            Err(err) => Some(format!("cannot read its metadata: {err}")),
                        }
                    } else {
                        None
                    };
                    if let Some(why) = why {
                        report.different.push((path.clone(), why));
                        drifted.push(path.clone());
                    }
                }
            }
        }
        report.extra_remotely = remote
            .keys()
            .filter(|p| !self.known.contains_key(*p))
            .cloned()
            .collect();
        if repair && !drifted.is_empty() {
            let effects: Vec<Effect> = drifted
                .iter()
                .map(|p| Effect::RemoveTree(p.clone()))
                .collect();
            if let Err(e) = self.deps.store.apply(t.mirror, effects.clone()).await {
                report.error = Some(format!("repair: {e}"));
                return report;
            }
            let before = self.known.len();
            for e in &effects {
                store::apply_to_map(Arc::make_mut(&mut self.known), e);
            }
            report.repaired = before - self.known.len();
        }
        report
    }

    /// Registers the mirror, finds the base folder, loads the store, resolves intents.
    async fn start(&mut self) -> Result<(), String> {
        let store = self.deps.store.clone();
        let root = self.cfg.path.display().to_string();
        let rec = store
            .ensure_mirror(&self.name, &root, &self.cfg.share_id, &self.cfg.remote_path)
            .await
            .map_err(|e| e.to_string())?;
        let (root, globs) = (self.cfg.path.clone(), self.cfg.exclude.clone());
        let rules = tokio::task::spawn_blocking(move || IgnoreRules::load(&root, &globs))
            .await
            .map_err(|e| format!("ignore rules: {e}"))?
            .map_err(|e| format!("ignore rules: {e}"))?;
        self.ignore = Arc::new(rules);
        if self.watcher_starting.is_none() {
            self.watcher_starting = Some(self.spawn_watcher());
        }
        // Whether the remote base folder may hold items this store does not know (it
        // existed before this start, or was recorded by an earlier run).
        let mut base_existed = true;
        let base = match rec.base_folder_id.clone() {
            Some(id) => {
                if id.is_empty() {
                    None
                } else {
                    Some(id)
                }
            }
            None => {
                let (id, existed) = self.ensure_base_folder().await?;
                base_existed = existed;
                store
                    .set_base_folder(rec.id, id.as_deref().unwrap_or(""))
                    .await
                    .map_err(|e| e.to_string())?;
                id
            }
        };
        if let Some(reason) = &rec.paused_reason {
            self.paused = Some(reason.clone());
        }
        self.root_anchor = rec.root_identity;
        self.target = Some(Arc::new(MirrorTarget {
            mirror: rec.id,
            name: self.name.clone(),
            root: self.cfg.path.clone(),
            share_id: self.cfg.share_id.clone(),
            base_folder_id: base,
            delete_mode: self.cfg.delete,
        }));
        let loading = std::time::Instant::now();
        self.known = Arc::new(
            store
                .entries(rec.id)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|e| (e.path.clone(), e))
                .collect(),
        );
        tracing::debug!(mirror = %self.name, "loaded {} entries from the store in {} ms", self.known.len(), loading.elapsed().as_millis());
        let now = unix_now();
        for f in store.failures(rec.id).await.map_err(|e| e.to_string())? {
            if f.next_retry_at > now {
                self.failed.insert(f.path.clone(), FailedItem::of(&f));
            }
        }
        // No op of this run has begun yet: every open intent is an earlier run's.
        self.inherited = store
            .intents(rec.id)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|i| i.id)
            .collect();
        self.resolve_intents().await?;
        if self.known.is_empty() && base_existed {
            self.adopt_remote().await?;
        }
        Ok(())
    }

    /// Walks `remote_path` from the share root, creating missing folders. Also says
    /// whether the base folder already existed (a new one is known to be empty).
    async fn ensure_base_folder(&mut self) -> Result<(Option<String>, bool), String> {
        let client = self.deps.uploader.client().clone();
        let mut parent: Option<String> = None;
        let mut existed = true;
        for seg in self.cfg.remote_path.split('/').filter(|s| !s.is_empty()) {
            let f = match client
                .create_folder_or_adopt(&self.cfg.share_id, parent.as_deref(), seg)
                .await
            {
                Ok(f) => f,
                Err(e) => {
                    if e.kind() == crate::remote::ErrorKind::CredentialsNeeded {
                        self.start_blocked = Some(StartBlocked::Credentials);
                    } else if e.is_transient() {
                        self.start_blocked = Some(StartBlocked::Transient);
                    }
                    return Err(format!(
                        "remote base folder {:?}: {e}",
                        self.cfg.remote_path
                    ));
                }
            };
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
    async fn adopt_remote(&mut self) -> Result<(), String> {
        let Some(t) = self.target.clone() else {
            return Ok(());
        };
        let client = self.deps.uploader.client().clone();
        let store = self.deps.store.clone();
        let started = std::time::Instant::now();
        let (mut same, mut differing) = (0usize, 0usize);
        let mut stack: Vec<(Option<String>, String)> =
            vec![(t.base_folder_id.clone(), String::new())];
        while let Some((folder, prefix)) = stack.pop() {
            let list = match client.children(&t.share_id, folder.as_deref()).await {
                Ok(l) => l,
                Err(e) => {
                    // Not fatal: the planner's create-or-adopt calls cannot duplicate.
                    tracing::warn!(mirror = %self.name, "cannot adopt the remote folder {:?}: {e}", if prefix.is_empty() { "/" } else { &prefix });
                    continue;
                }
            };
            // Local side of every live child, looked at off the async workers.
            let (root, ignore) = (t.root.clone(), self.ignore.clone());
            let items: Vec<(String, crate::remote::ChildItem)> = list
                .items
                .into_iter()
                .filter(|i| i.is_deleted != Some(true))
                .map(|i| {
                    let path = if prefix.is_empty() {
                        i.name.clone()
                    } else {
                        format!("{prefix}/{}", i.name)
                    };
                    (path, i)
                })
                .collect();
            let looked = tokio::task::spawn_blocking(move || {
                items
                    .into_iter()
                    .filter_map(|(path, item)| {
                        let rel = RelPath::new(path.clone()).ok()?;
                        let local = local::stat_path(&root, &rel).ok().flatten()?;
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
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| format!("adopting the remote tree: {e}"))?;
            let mut effects = Vec::new();
            for (path, item, local) in looked {
                let d = disk_item(&path, &local);
                if item.kind == ItemKind::Folder {
                    effects.push(Effect::Upsert(entry_of(&d, &item.id, None, None)));
                    stack.push((Some(item.id.clone()), path));
                    same += 1;
                    continue;
                }
                let mut remote_sha = None;
                let mut version = None;
                let mut matches = false;
                if item.size == Some(d.size) {
                    match client.file(&item.id).await {
                        Ok(f) => {
                            let abs = t.root.join(&path);
                            let local_sha =
                                tokio::task::spawn_blocking(move || plan::hash_file(&abs))
                                    .await
                                    .ok()
                                    .and_then(Result::ok);
                            matches = f.checksum_sha256.is_some()
                                && f.checksum_sha256.as_deref() == local_sha.as_deref();
                            remote_sha = f.checksum_sha256;
                            version = Some(f.version as i64);
                        }
                        Err(e) => {
                            tracing::warn!(mirror = %self.name, "cannot adopt {path}: {e}");
                            continue;
                        }
                    }
                }
                let entry = if matches {
                    same += 1;
                    entry_of(&d, &item.id, remote_sha, version)
                } else {
                    // The remote's fingerprint, which no local file has: the planner hashes
                    // the local file and uploads it as a new version of this remote file.
                    differing += 1;
                    Entry {
                        path: path.clone(),
                        kind: EntryKind::File,
                        remote_id: item.id.clone(),
                        size: item.size.unwrap_or(0),
                        mtime_ns: -1,
                        inode: 0,
                        sha256: remote_sha,
                        remote_version: version,
                    }
                };
                effects.push(Effect::Upsert(entry));
            }
            if effects.is_empty() {
                continue;
            }
            store
                .apply(t.mirror, effects.clone())
                .await
                .map_err(|e| e.to_string())?;
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

    /// Settles every intent a crash left open by looking at the remote: a create whose
    /// item exists with our content is adopted without sending the bytes again; anything
    /// else is left to the planner, whose create-or-adopt calls cannot duplicate.
    ///
    /// A create or replace that is not (yet) on the remote is only concluded "not done"
    /// if no request for it can still land: one left by an earlier run (killed while the
    /// server was still working on it) or one that ended without an answer may be applied
    /// after this look. Those stay open and are looked at again (see [`Self::held`])
    /// until they show up or the time such a request can take has passed; otherwise an
    /// item created a moment later would be an orphan no pass knows to move or delete.
    /// Returns how many intents recorded something (the next pass must see it).
    async fn resolve_intents(&mut self) -> Result<usize, String> {
        let Some(t) = self.target.clone() else {
            return Ok(0);
        };
        let store = self.deps.store.clone();
        let client = self.deps.uploader.client().clone();
        let intents = store.intents(t.mirror).await.map_err(|e| e.to_string())?;
        let fresh = intents
            .iter()
            .filter(|i| !self.held.contains_key(&i.id))
            .count();
        if fresh > 0 {
            tracing::info!(mirror = %self.name, "settling {fresh} operations left open (by a crash or a failed create)");
        }
        let now = Instant::now();
        let window = client.request_timeout() + LANDING_MARGIN;
        let open: BTreeSet<i64> = intents.iter().map(|i| i.id).collect();
        self.held.retain(|id, _| open.contains(id));
        let mut recorded = 0;
        // One listing per folder, however many intents point into it.
        let mut listings: HashMap<Option<String>, crate::remote::Children> = HashMap::new();
        for intent in intents {
            tracing::debug!(mirror = %self.name, op = %intent.op, path = %intent.path, detail = %intent.detail, "resolving an open intent");
            let mut effects = Vec::new();
            let abs = t.root.join(&intent.path);
            let local = RelPath::new(intent.path.clone())
                .ok()
                .and_then(|r| local::stat_path(&t.root, &r).ok().flatten());
            let known = self.known.get(&intent.path).cloned();
            // Not on the remote yet: wait if a request for it may still land.
            let may_land =
                self.inherited.contains(&intent.id) || intent.detail["uncertain"] == true;
            let mut hold = || -> bool {
                if !may_land {
                    return false;
                }
                let since = *self.held.entry(intent.id).or_insert_with(|| {
                    tracing::info!(mirror = %self.name, path = %intent.path, "the {} of {} is not on the remote yet, but its request may still be applied: looking again for up to {} s", intent.op, intent.path, window.as_secs());
                    now
                });
                if now.saturating_duration_since(since) < window {
                    return true;
                }
                tracing::info!(mirror = %self.name, path = %intent.path, "the {} of {} is still not on the remote {} s after it was first looked for; settled as not done", intent.op, intent.path, window.as_secs());
                false
            };
            match intent.op.as_str() {
                "mkdir" | "upload" => {
                    let parent = intent.detail["parent_id"].as_str().map(str::to_string);
                    let name = intent.detail["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let kind = if intent.op == "upload" {
                        ItemKind::File
                    } else {
                        ItemKind::Folder
                    };
                    if !listings.contains_key(&parent) {
                        match client.children(&t.share_id, parent.as_deref()).await {
                            Ok(children) => {
                                listings.insert(parent.clone(), children);
                            }
                            // The folder was deleted: nothing can be created in it any
                            // more, and what was is deleted with it.
                            Err(e) if e.is_absent() => {
                                tracing::debug!(mirror = %self.name, path = %intent.path, "settled: its folder is gone ({e})");
                                self.commit_intent(&t, intent.id, effects).await?;
                                continue;
                            }
                            Err(e) => {
                                // Left open for the next settle; the pass's create-or-adopt
                                // calls cannot duplicate meanwhile.
                                tracing::warn!(mirror = %self.name, path = %intent.path, "cannot look up an operation left open: {e}");
                                self.unhold_expired(intent.id, now, window);
                                continue;
                            }
                        }
                    }
                    let found = listings[&parent].find(&name, kind).map(|i| i.id.clone());
                    match (found, known) {
                        (None, _) => {
                            if hold() {
                                continue;
                            }
                        }
                        // Recorded since (the pass created or adopted it): nothing to do.
                        (Some(id), Some(k)) if k.remote_id == id => {}
                        (Some(id), Some(k)) => {
                            tracing::warn!(mirror = %self.name, path = %intent.path, "an earlier attempt created {} remotely as {id}, but {} is mirrored as {} now; {id} is left as it is", intent.path, intent.path, k.remote_id);
                        }
                        (Some(id), None) => {
                            let remote = if kind == ItemKind::File {
                                match client.file(&id).await {
                                    Ok(f) => Some(f),
                                    // Listed a moment ago, deleted since: nothing to record.
                                    Err(e) if e.is_absent() => {
                                        self.commit_intent(&t, intent.id, effects).await?;
                                        continue;
                                    }
                                    Err(e) => {
                                        // Closing it now would forget what was created.
                                        tracing::warn!(mirror = %self.name, path = %intent.path, "cannot look up an operation left open: {e}");
                                        self.unhold_expired(intent.id, now, window);
                                        continue;
                                    }
                                }
                            } else {
                                None
                            };
                            let local_kind_ok = local.as_ref().is_some_and(|l| {
                                (l.kind == Kind::Dir) == (kind == ItemKind::Folder)
                            });
                            let sha = intent.detail["sha256"].as_str().unwrap_or_default();
                            if let (Some(local), true) = (&local, local_kind_ok) {
                                let item = disk_item(&intent.path, local);
                                match &remote {
                                    None => effects
                                        .push(Effect::Upsert(entry_of(&item, &id, None, None))),
                                    Some(f)
                                        if f.checksum_sha256.as_deref() == Some(sha)
                                            && plan::hash_file(&abs).ok().as_deref()
                                                == Some(sha) =>
                                    {
                                        effects.push(Effect::Upsert(entry_of(
                                            &item,
                                            &f.id,
                                            Some(sha.to_string()),
                                            Some(f.version as i64),
                                        )));
                                    }
                                    Some(_) => {}
                                }
                            }
                            if effects.is_empty() {
                                // Created remotely, but the local item is not that any more
                                // (gone, moved, edited, replaced by the other kind) and the run
                                // never recorded it: record what was created, with the
                                // fingerprint the intent kept, so the pass moves, replaces or
                                // deletes it like any known item instead of leaving an orphan.
                                if let Some(e) = created_entry(&intent, &id, remote.as_ref()) {
                                    effects.push(Effect::Upsert(e));
                                }
                            }
                        }
                    }
                }
                "replace" => {
                    let id = intent.detail["replace_file_id"]
                        .as_str()
                        .unwrap_or_default();
                    let sha = intent.detail["sha256"].as_str().unwrap_or_default();
                    let f = match client.file(id).await {
                        Ok(f) => f,
                        // Gone remotely: the pass uploads the file again.
                        Err(e) if e.is_absent() => {
                            self.commit_intent(&t, intent.id, effects).await?;
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!(mirror = %self.name, path = %intent.path, "cannot look up an operation left open: {e}");
                            self.unhold_expired(intent.id, now, window);
                            continue;
                        }
                    };
                    let same_item = known.as_ref().is_some_and(|k| k.remote_id == f.id);
                    if f.checksum_sha256.as_deref() != Some(sha) {
                        if hold() {
                            continue;
                        }
                    } else if !same_item
                        || known.as_ref().and_then(|k| k.remote_version) == Some(f.version as i64)
                    {
                        // Not this path's file any more, or recorded since.
                    } else if let Some(local) = local
                        .as_ref()
                        .filter(|_| plan::hash_file(&abs).ok().as_deref() == Some(sha))
                    {
                        let item = disk_item(&intent.path, local);
                        effects.push(Effect::Upsert(entry_of(
                            &item,
                            &f.id,
                            Some(sha.to_string()),
                            Some(f.version as i64),
                        )));
                    } else if let Some(e) = created_entry(&intent, &f.id, Some(&f)) {
                        // The new version went up, but the file changed (or went) since:
                        // record what the remote holds now, so the pass sends the file
                        // again (or deletes it) instead of believing the old version.
                        effects.push(Effect::Upsert(e));
                    }
                }
                "move" => {
                    // Where the item is now says whether the move (a rename, then a move
                    // to the new folder) went through; the planner may not pair the paths
                    // again (the file may have been replaced by an editor's save since),
                    // and an entry left at the old path would later delete the item.
                    let from = intent.detail["from"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let id = intent.detail["remote_id"].as_str().unwrap_or_default();
                    if let Some(e) = self.known.get(&from).filter(|e| e.remote_id == id) {
                        let now_at = if e.kind == EntryKind::Dir {
                            client.folder(id).await.map(|f| (f.name, f.parent_id))
                        } else {
                            client.file(id).await.map(|f| (f.name, f.folder_id))
                        };
                        if let Ok((name, parent_id)) = now_at {
                            let to = intent.path.clone();
                            let (to_parent, to_name) = (plan::parent(&to), plan::name_of(&to));
                            let to_parent_id = if to_parent.is_empty() {
                                Some(t.base_folder_id.clone())
                            } else {
                                self.known.get(to_parent).map(|p| Some(p.remote_id.clone()))
                            };
                            let root = |p: &Option<String>| {
                                p.clone().filter(|s| !s.is_empty() && s != "root")
                            };
                            if name == to_name
                                && to_parent_id.is_some_and(|p| root(&p) == root(&parent_id))
                            {
                                effects.push(Effect::MoveTree { from, to });
                            } else if name == to_name && name != plan::name_of(&from) {
                                // Renamed, not yet moved.
                                let renamed = plan::join(plan::parent(&from), to_name);
                                effects.push(Effect::MoveTree { from, to: renamed });
                            }
                        }
                    }
                }
                // Deletes are planned again from the disk; repeating one is harmless (a
                // delete of a deleted item is accepted as done).
                _ => {}
            }
            if !effects.is_empty() {
                recorded += 1;
            }
            self.commit_intent(&t, intent.id, effects).await?;
        }
        Ok(recorded)
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

    /// Closes an intent with its effects, in the store and in the known map.
    async fn commit_intent(
        &mut self,
        t: &MirrorTarget,
        intent: i64,
        effects: Vec<Effect>,
    ) -> Result<(), String> {
        for e in &effects {
            store::apply_to_map(Arc::make_mut(&mut self.known), e);
        }
        self.held.remove(&intent);
        self.inherited.remove(&intent);
        self.deps
            .store
            .commit(t.mirror, intent, effects)
            .await
            .map_err(|e| e.to_string())
    }

    /// Scans the whole root and plans everything against the whole store.
    async fn full_pass(&mut self, stop: &CancellationToken) {
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
        let root = t.root.clone();
        let ignore = self.ignore.clone();
        let scanning = std::time::Instant::now();
        let scanned = tokio::task::spawn_blocking(move || {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
            local::scan_parallel(&root, &ignore, threads).map(|items| {
                let mut disk = BTreeMap::new();
                let mut skipped = Vec::new();
                for item in items {
                    match item {
                        ScanItem::Entry(e) => {
                            let d = disk_item(e.path.as_str(), &e);
                            disk.insert(d.path.clone(), d);
                        }
                        ScanItem::Skipped { path, reason } => skipped.push((path, reason)),
                    }
                }
                skipped.sort_by(|a, b| a.0.cmp(&b.0));
                (disk, skipped)
            })
        })
        .await;
        let (disk, skipped) = match scanned {
            Ok(Ok(found)) => found,
            Ok(Err(e @ ScanError::RootUnavailable { .. })) => {
                self.pause(format!(
                    "{e}; nothing is deleted remotely while the root is unavailable"
                ))
                .await;
                self.resume_when_root_is_back();
                return;
            }
            Err(e) => {
                tracing::error!(mirror = %self.name, "scan task failed: {e}");
                return;
            }
        };
        tracing::debug!(mirror = %self.name, "full pass: scanned {} items in {} ms", disk.len(), scanning.elapsed().as_millis());
        self.skipped.clear();
        for (path, reason) in skipped {
            tracing::warn!(mirror = %self.name, "skipped {path}: {reason}");
            self.skipped.push(SkippedItem {
                path,
                reason: reason.to_string(),
            });
        }
        if disk.is_empty() && !self.known.is_empty() {
            self.pause(format!(
                "root {} is empty but {} items were mirrored (unmounted disk?); nothing is deleted remotely",
                t.root.display(),
                self.known.len()
            ))
            .await;
            return;
        }
        // What could not be looked at is unknown, not deleted: keep its known subtree out
        // of the comparison.
        // (Shared, not copied, when nothing was skipped: a copy of 100,000 entries is most
        // of a no-change pass's memory peak.)
        let known = if self.skipped.is_empty() {
            Arc::clone(&self.known)
        } else {
            let mut known = (*self.known).clone();
            for item in &self.skipped {
                known.retain(|k, _| !plan::is_within(k, &item.path));
            }
            Arc::new(known)
        };
        self.plan_and_execute(known, disk, Vec::new(), false, stop)
            .await;
        if self.paused.is_none() {
            let _ = self.deps.store.set_first_pass_done(t.mirror).await;
            self.status_tx.send_modify(|s| s.first_pass_done = true);
        }
    }

    /// Plans and executes one batch of settled paths.
    async fn batch(&mut self, settled: Vec<Settled>, stop: &CancellationToken) {
        let Some(t) = self.target.clone() else { return };
        if std::fs::metadata(&t.root)
            .map(|m| !m.is_dir())
            .unwrap_or(true)
        {
            self.pause(format!(
                "root {} vanished or is not a directory; nothing is deleted remotely",
                t.root.display()
            ))
            .await;
            self.resume_when_root_is_back();
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
            self.failed.remove(p);
        }
        paths.extend(self.gate.paths().cloned());
        let root = t.root.clone();
        let ignore = self.ignore.clone();
        let known_all = Arc::clone(&self.known);
        let scope =
            tokio::task::spawn_blocking(move || build_scope(&root, &ignore, &known_all, &paths))
                .await;
        let Ok((known, disk)) = scope else { return };
        self.plan_and_execute(Arc::new(known), disk, renames, true, stop)
            .await;
    }

    /// Whether the root is still the directory the mirror was synced from. If it is
    /// another one, pauses (whatever the mirror's size: a swapped root would be mirrored
    /// as deletes of everything) until that directory is back or `resume` accepts the new
    /// one. The first directory seen becomes the anchor.
    async fn check_root(&mut self) -> bool {
        let Some(now) = root_identity(&self.cfg.path) else {
            // Gone: the scan pauses with the reason the file system gives.
            return true;
        };
        let Some(anchor) = self.root_anchor else {
            self.anchor_root(Some(now)).await;
            return true;
        };
        if anchor.same_dir(&now) {
            return true;
        }
        if self.auto_resume != Some(AutoResume::RootBack) {
            self.pause(format!(
                "root {} is another directory now ({now}, was {anchor}: unmounted, mounted over or a re-pointed symlink?); \
                 nothing is deleted remotely; resumes when the original is back, or `scaidrivectl resume` mirrors what is there now",
                self.cfg.path.display()
            ))
            .await;
            self.resume_when_root_is_back();
        }
        false
    }

    async fn anchor_root(&mut self, id: Option<store::RootIdentity>) {
        let Some(id) = id else { return };
        self.root_anchor = Some(id);
        if let Some(t) = &self.target {
            let _ = self.deps.store.set_root_identity(t.mirror, Some(id)).await;
        }
    }

    /// A pause for the root lifts by itself once the directory the mirror was synced
    /// from is back at its path.
    fn resume_when_root_is_back(&mut self) {
        if self.root_anchor.is_some() {
            self.auto_resume = Some(AutoResume::RootBack);
        }
    }

    /// Ends a pause that lifted by itself: a full pass on a fresh watcher follows.
    async fn lift_pause(&mut self) {
        self.paused = None;
        self.auto_resume = None;
        self.needs_full_pass = true;
        self.rewatch = true;
        if let Some(t) = &self.target {
            let _ = self.deps.store.set_paused(t.mirror, None).await;
        }
        self.set_state(MirrorState::Scanning, None);
    }

    async fn pause(&mut self, reason: String) {
        tracing::warn!(mirror = %self.name, "paused: {reason}");
        if let Some(t) = &self.target {
            let _ = self
                .deps
                .store
                .set_paused(t.mirror, Some(reason.clone()))
                .await;
        }
        self.paused = Some(reason.clone());
        self.auto_resume = None;
        self.quota_check_at = None;
        self.set_state(MirrorState::Paused, Some(reason));
    }

    /// Free bytes of the share by its own quota: `Ok(None)` = no share quota.
    async fn share_free_bytes(&self) -> Result<Option<u64>, crate::remote::Error> {
        let Some(t) = &self.target else {
            return Ok(None);
        };
        let share = self.deps.uploader.client().share(&t.share_id).await?;
        Ok(share
            .quota_bytes
            .map(|q| q.saturating_sub(share.used_bytes.unwrap_or(0))))
    }

    /// A quota is full (507): pause until space is freed instead of failing every file.
    /// Not stored: a restart simply tries again.
    async fn pause_for_quota(&mut self, refusal: String) {
        let every = self.deps.quota_recheck;
        self.quota_free_at_pause = self.share_free_bytes().await.ok().flatten();
        let reason = format!(
            "quota full, uploads wait until space is freed (checked every {}s): {refusal}",
            every.as_secs().max(1)
        );
        tracing::warn!(mirror = %self.name, "paused: {reason}");
        self.paused = Some(reason);
        self.auto_resume = Some(AutoResume::Quota);
        self.quota_check_at = Some(Instant::now() + every);
        self.set_state(MirrorState::Paused, self.paused.clone());
    }

    /// The periodic look at a full share: resumes (with a full pass) once the share has
    /// more free space than when the mirror paused, or has no quota of its own any more
    /// (another level may still be full; the pass then pauses again after one refusal).
    /// If the share cannot be read, the pass itself is the check.
    async fn recheck_quota(&mut self) {
        if self.auto_resume != Some(AutoResume::Quota) {
            self.quota_check_at = None;
            return;
        }
        let resume = match self.share_free_bytes().await {
            Ok(None) => true,
            Ok(Some(free)) => self.quota_free_at_pause.is_none_or(|before| free > before),
            Err(e) => {
                tracing::debug!(mirror = %self.name, "quota check: {e}");
                true
            }
        };
        if resume {
            tracing::info!(mirror = %self.name, "space freed on the remote; resuming");
            self.paused = None;
            self.auto_resume = None;
            self.quota_check_at = None;
            self.needs_full_pass = true;
        } else {
            self.quota_check_at = Some(Instant::now() + self.deps.quota_recheck);
        }
    }

    async fn retry_due(&mut self, stop: &CancellationToken) {
        let now = unix_now();
        let due: Vec<String> = self
            .failed
            .iter()
            .filter(|(_, f)| f.due <= now)
            .map(|(p, _)| p.clone())
            .collect();
        if due.is_empty() || self.paused.is_some() {
            return;
        }
        let mut paths = due.clone();
        paths.extend(due.iter().filter_map(|p| self.move_sources.remove(p)));
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
        let root = t.root.clone();
        let known_count = self.known.len();
        let planning = std::time::Instant::now();
        let planned = tokio::task::spawn_blocking(move || {
            let planned = plan::plan(&known, &disk, &renames, &mut |rel| {
                plan::hash_file(&root.join(rel))
            });
            // A path that changed kind must be freed before its new item is created: its
            // delete does not wait out the grace period.
            let mut kind_changed = BTreeSet::new();
            for op in &planned.ops {
                if let Op::Delete { path, kind, .. } = op
                    && disk.get(path).is_some_and(|d| d.kind != *kind)
                {
                    kind_changed.insert(path.clone());
                }
            }
            (planned, kind_changed)
        })
        .await;
        let Ok((planned, kind_changed)) = planned else {
            return;
        };
        tracing::debug!(mirror = %self.name, "planned {} ops in {} ms", planned.ops.len(), planning.elapsed().as_millis());
        for (path, reason) in &planned.failures {
            let _ = self
                .deps
                .store
                .record_failure(t.mirror, path, reason, false, failure_backoff)
                .await;
            let now = unix_now();
            self.failed.insert(
                path.clone(),
                FailedItem {
                    due: now + failure_backoff(1),
                    at: now,
                    permanent: false,
                },
            );
        }
        // Mass-delete guard: count AND share of what is mirrored.
        let limit_pct = (known_count * usize::from(self.cfg.mass_delete_percent)) / 100;
        if !self.allow_deletes
            && planned.deleted_entries > self.cfg.mass_delete_count
            && planned.deleted_entries > limit_pct
        {
            self.pause(format!(
                "this pass would delete {} of {} mirrored items (over {} and {}%); run `scaidrivectl resume --allow-deletes {}` if that is intended",
                planned.deleted_entries, known_count, self.cfg.mass_delete_count, self.cfg.mass_delete_percent, self.name
            ))
            .await;
            return;
        }
        // Told to go ahead (`resume --allow-deletes`): this pass deletes what it sees gone.
        let allowed = std::mem::take(&mut self.allow_deletes);
        let now = Instant::now();
        let mut ops = Vec::with_capacity(planned.ops.len());
        let now_unix = unix_now();
        let pass = self.gate.begin_pass(
            planned.deleted_entries,
            allowed,
            from_events,
            self.last_removal(),
            now,
        );
        for op in planned.ops {
            if let Op::Delete { path, .. } = &op
                && !kind_changed.contains(path)
                && !self.gate.admit(pass, path, now)
            {
                continue;
            }
            if let Some(f) = self.failed.get(op.path())
                && f.due > now_unix
            {
                // A file modified after it failed is worth another try now (its change
                // may have been made while the daemon was stopped).
                let changed_since = match &op {
                    Op::Upload { item, .. } | Op::Replace { item, .. } => {
                        item.mtime_ns / 1_000_000_000 >= f.at
                    }
                    _ => false,
                };
                if !changed_since {
                    continue;
                }
                self.failed.remove(op.path());
            }
            ops.push(op);
        }
        // A path that is no longer a pending delete (it came back or moved) is settled.
        let planned_deletes: BTreeSet<String> = ops
            .iter()
            .filter_map(|o| {
                if let Op::Delete { path, .. } = o {
                    Some(path.clone())
                } else {
                    None
                }
            })
            .collect();
        let known = &self.known;
        self.gate
            .settle(|p| known.contains_key(p), &planned_deletes);
        if ops.is_empty() {
            self.set_state(
                if self.paused.is_some() {
                    MirrorState::Paused
                } else {
                    MirrorState::Idle
                },
                self.paused.clone(),
            );
            return;
        }
        self.set_state(MirrorState::Syncing, None);
        self.status_tx.send_modify(|s| s.queue_depth = ops.len());
        let results = self
            .deps
            .uploader
            .run_batch(&t, &self.counters, &self.known, ops, stop)
            .await;
        let mut requeue = false;
        let mut credentials_refused = None;
        let mut quota_full = None;
        // A create that did not end as planned leaves its intent open (the server may
        // have applied it): settle those against the remote before anything else.
        let settle = results
            .iter()
            .any(|r| !matches!(r.outcome, Outcome::Done(_)));
        // Ops that waited for a folder's create or move were planned against the remote
        // as it would have been: once such an op succeeds, plan everything again.
        let unblocks = self.blocked
            && results.iter().any(|r| {
                matches!(r.outcome, Outcome::Done(_))
                    && matches!(r.op, Op::Move { .. } | Op::Mkdir { .. })
            });
        for r in results {
            tracing::debug!(mirror = %self.name, op = op_label(&r.op), path = r.op.path(), outcome = ?r.outcome, "op finished");
            match r.outcome {
                Outcome::Done(effects) => {
                    for e in &effects {
                        store::apply_to_map(Arc::make_mut(&mut self.known), e);
                    }
                    self.failed.remove(r.op.path());
                }
                Outcome::Changed(effects) => {
                    for e in &effects {
                        store::apply_to_map(Arc::make_mut(&mut self.known), e);
                    }
                    requeue = true;
                }
                Outcome::Blocked(reason) => {
                    // Planned again (by a full pass) once the op it waits for succeeds.
                    tracing::debug!(mirror = %self.name, path = r.op.path(), "waits: {reason}");
                    self.blocked = true;
                }
                Outcome::Failed { reason, permanent } => {
                    tracing::warn!(mirror = %self.name, path = r.op.path(), "failed: {reason}");
                    if let Op::Move { from, .. } = &r.op {
                        self.move_sources
                            .insert(r.op.path().to_string(), from.clone());
                    }
                    if let Ok(f) = self
                        .deps
                        .store
                        .record_failure(t.mirror, r.op.path(), &reason, permanent, failure_backoff)
                        .await
                    {
                        self.failed.insert(f.path.clone(), FailedItem::of(&f));
                    }
                }
                // Not the item's failure: the whole mirror waits (below). What the
                // other ops of the batch committed is still applied above.
                Outcome::CredentialsNeeded(reason) => {
                    credentials_refused.get_or_insert(reason);
                }
                Outcome::QuotaExceeded(reason) => {
                    quota_full.get_or_insert(reason);
                }
            }
        }
        if settle
            && credentials_refused.is_none()
            && let Err(e) = self.resolve_intents().await
        {
            tracing::warn!(mirror = %self.name, "settling operations left open: {e}");
        }
        if let Some(reason) = credentials_refused {
            tracing::error!(mirror = %self.name, "needs new credentials: {reason}");
            self.paused = Some(format!(
                "needs new credentials (provide a new token, then reload with HUP): {reason}"
            ));
            self.auto_resume = Some(AutoResume::Credentials);
            self.quota_check_at = None;
            self.set_state(MirrorState::NeedsCredentials, self.paused.clone());
            return;
        }
        if let Some(reason) = quota_full {
            self.pause_for_quota(reason).await;
            return;
        }
        if requeue {
            // Something changed under us; the watcher reports it too, but a pass makes sure.
            self.needs_full_pass = true;
        }
        if unblocks {
            self.blocked = false;
            self.needs_full_pass = true;
        }
        // A pass still to come is not idle (a `wait` must not see "in sync" in between).
        self.set_state(
            if self.paused.is_some() {
                MirrorState::Paused
            } else if self.needs_full_pass {
                MirrorState::Scanning
            } else {
                MirrorState::Idle
            },
            self.paused.clone(),
        );
    }
}

/// The entry for an item a crashed run created remotely (intent `mkdir` or `upload`) or
/// gave a new version (`replace`), with the local fingerprint the intent recorded; `remote`
/// is the file as the remote has it (`None` for a folder). `None` if a file's remote content
/// is not the one the run sent (then it is not ours to track).
fn created_entry(
    intent: &store::Intent,
    id: &str,
    remote: Option<&crate::remote::RemoteFile>,
) -> Option<Entry> {
    let d = &intent.detail;
    let (inode, mtime_ns) = (d["inode"].as_u64()?, d["mtime_ns"].as_i64()?);
    let mut e = Entry {
        path: intent.path.clone(),
        kind: EntryKind::Dir,
        remote_id: id.to_string(),
        size: 0,
        mtime_ns,
        inode,
        sha256: None,
        remote_version: None,
    };
    if let Some(f) = remote {
        let sha = d["sha256"].as_str()?;
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

/// The op's kind, for logs (the ops themselves carry whole disk items).
fn op_label(op: &Op) -> String {
    match op {
        Op::Mkdir { .. } => "mkdir".into(),
        Op::Upload { .. } => "upload".into(),
        Op::Replace { .. } => "replace".into(),
        Op::Refresh { .. } => "refresh".into(),
        Op::Move { from, .. } => format!("move from {from}"),
        Op::Delete { .. } => "delete".into(),
    }
}

/// A failed path the engine holds back until its retry is due.
#[derive(Clone, Copy, Debug)]
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

/// Added to the request timeout: how long after this run first looked a request an
/// earlier run (or an unanswered attempt) sent may still be applied by the server.
const LANDING_MARGIN: Duration = Duration::from_secs(5);

/// How often intents that may still land are looked at again.
const HELD_RECHECK: Duration = Duration::from_secs(1);

/// How often the root's identity (device, inode) is checked.
const ROOT_CHECK: Duration = Duration::from_secs(2);

/// Which directory the root is (through a symlink), `None` if it cannot be looked at or
/// is not a directory.
fn root_identity(root: &std::path::Path) -> Option<store::RootIdentity> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(root).ok().filter(|m| m.is_dir())?;
    let fsid = rustix::fs::statvfs(root).map_or(0, |v| v.f_fsid);
    Some(store::RootIdentity {
        dev: m.dev(),
        ino: m.ino(),
        fsid,
    })
}

/// How often a mirror without a working file watcher is scanned: its rescan interval,
/// at most 60 s.
fn fallback_scan_interval(cfg: &MirrorConfig) -> Duration {
    Duration::from_secs(cfg.rescan_interval_secs.clamp(1, 60))
}

fn disk_item(path: &str, e: &LocalEntry) -> DiskItem {
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
    }
}

fn entry_of(d: &DiskItem, remote_id: &str, sha: Option<String>, version: Option<i64>) -> Entry {
    Entry {
        path: d.path.clone(),
        kind: d.kind,
        remote_id: remote_id.to_string(),
        size: d.size,
        mtime_ns: d.mtime_ns,
        inode: d.inode,
        sha256: sha,
        remote_version: version,
    }
}

/// The known and disk views for a batch of paths: each path, its not-yet-known
/// ancestors, the subtree of a new directory, and the known subtree of a path that
/// vanished or changed kind.
fn build_scope(
    root: &std::path::Path,
    ignore: &IgnoreRules,
    known_all: &BTreeMap<String, Entry>,
    paths: &BTreeSet<String>,
) -> (BTreeMap<String, Entry>, BTreeMap<String, DiskItem>) {
    let mut known = BTreeMap::new();
    let mut disk = BTreeMap::new();
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
        if l.kind == Kind::Dir && !known_all.get(p).is_some_and(|e| e.kind == EntryKind::Dir) {
            // A new directory: everything inside is new too (no events come for the
            // contents of a directory moved in from outside the root).
            if let Ok(items) = local::scan(&root.join(p), ignore) {
                for item in items {
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
    (known, disk)
}
