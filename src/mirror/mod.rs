//! The mirror engine's conductor: one task per configured mirror that keeps the remote
//! folder equal to the local root (DESIGN.md §1–2). It owns the mirror's state (what the
//! store knows, the pause, the failures, the delete gate, the watcher and the debounce
//! queue) and its run loop: start-up (waited out while the remote is down or the
//! credentials are refused), then one `select!` over commands, watcher hints, and the
//! deadlines of the queue, the gate, retries, rescans, the root check and quota checks.
//! The work itself happens in the rooms below; this file decides when each runs.
//!
//! - `recovery`: start-up, base folder, adoption of a remote tree, open intents;
//! - `pass`: full pass, batch, retries; plan → gate → run → apply;
//! - `pause`: why the mirror is paused, what lifts it, the root's identity;
//! - `failures`: failed items and their backoff; `verify`: `scaidrivectl verify`;
//! - `progress`: the once-a-second transfer figures; [`status`]: what the task shows;
//! - `watching`: the event source for `[mirror] watch`, the watcher's start-up, and the
//!   parts of the root polled because their changes raise no events (network and FUSE
//!   mounts);
//! - `drift`: the share's change log followed, others' changes repaired toward the local
//!   root; `logtree`: the remote tree read from the log (for `verify`);
//! - `commands`: what each control command does;
//! - [`error`]: the engine's error type, [`MirrorError`].

mod commands;
mod drift;
pub mod error;
mod failures;
mod known;
mod logtree;
mod memory;
mod mounts;
mod outcomes;
mod pass;
mod pause;
mod progress;
mod recovery;
pub mod status;
mod verify;
mod watching;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{MirrorConfig, WatchMode};

use crate::queue::gate::{DeleteGate, DeleteGateConfig};
use crate::queue::{Queue, QueueConfig};
use crate::remote::Client;
use crate::store::{self, Store};
use crate::upload::{Counters, MirrorTarget, Uploader};
use crate::watch::{self as local, IgnoreRules, Watcher};
/// How many ops a pass runs before it applies their outcomes (see the `pass` module).
pub use pass::CHUNK_OPS;

use error::ErrorKind;
use failures::Failures;
use pause::{Lift, Pause, root_identity};
use recovery::{HELD_RECHECK, OpenIntents};

pub use error::MirrorError;
pub use failures::failure_backoff;
pub use status::{
    MirrorCmd, MirrorHandle, MirrorState, MirrorStatus, RateLimits, SkippedItem, VerifyReport,
};

/// What a mirror task needs from the daemon.
#[derive(Clone)]
pub struct MirrorDeps {
    pub store: Store,
    /// The ScaiDrive client, for what the mirror asks the remote itself (base folder,
    /// settling intents, adoption, verify, quota checks); the uploader has its own.
    pub client: Client,
    pub uploader: Uploader,
    /// While paused for a full quota, how often the share's usage is checked again.
    pub quota_recheck: Duration,
    /// Where the mirror says what it did (`scaidrivectl events`).
    pub events: crate::events::EventBus,
    /// `true` while uploads should pause for battery power (`pause_on_battery`).
    pub power: watch::Receiver<bool>,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
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
    tokio::spawn(progress::sample_progress(
        status_tx.clone(),
        counters.clone(),
        deps.client.clone(),
        shutdown.clone(),
    ));
    let task = tokio::spawn(async move {
        let mut engine = Engine::new(cfg, deps, status_tx, counters);
        if let Err(e) = engine.run(cmd_rx, shutdown).await {
            tracing::error!(mirror = %name, "mirror stopped: {e}");
            engine.set_state(MirrorState::Error, Some(e.to_string()));
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
    /// What the store knows, shared copy-on-write with the blocking planner tasks;
    /// unloaded while a big mirror is idle (`known`).
    known: known::Known,
    ignore: Arc<IgnoreRules>,
    status_tx: Arc<watch::Sender<MirrorStatus>>,
    /// Why no remote work is done, if none is.
    paused: Option<Pause>,
    allow_deletes: bool,
    /// Deletes seen by the watcher, waiting out their grace period.
    gate: DeleteGate,
    failures: Failures,
    /// Intents left open by a crash or an unanswered create, being settled.
    intents: OpenIntents,
    skipped: Vec<SkippedItem>,
    needs_full_pass: bool,
    /// Some op waited for a folder whose create or move failed (see
    /// [`crate::upload::Outcome::Blocked`]).
    blocked: bool,
    /// Restart the watcher before the next pass (set on resume, and periodically while
    /// some folder could not be watched).
    rewatch: bool,
    /// Folders the watcher could not watch, as shown in status and the log.
    unwatched: Vec<String>,
    /// Parts of the root that are polled, as shown in status and the log.
    polled: Vec<String>,
    /// Polled mount points below the root: scanned every `poll_interval_secs`.
    polled_subtrees: Vec<local::RelPath>,
    /// The mount points below the root, to rebuild the watcher when they change.
    mounts: watching::Mounts,
    /// The mount points below the root ever seen, and which are gone now.
    mount_memory: mounts::MountMemory,
    /// The root directory the mirror was synced from (kept in the store): a pass over
    /// another directory at the same path is refused.
    root_anchor: Option<store::RootIdentity>,
    /// When the watcher last received a removal or lost events, stamped as they arrive
    /// (not when the loop reads them: no events are read while a pass runs, and "still
    /// coming in" must not go stale during a long one).
    removals: Option<Arc<local::RemovalClock>>,
    /// The watcher being set up (on the root alone: the first full pass adds the watches
    /// below), started as soon as the ignore rules are known.
    watcher_starting: Option<tokio::task::JoinHandle<(watching::Started, Duration)>>,
    /// Following the share's change log (`drift`).
    drift: drift::Follow,
    /// The running watcher's handle for the full pass's scan, which adds the watches
    /// directory by directory as it lists them (`watching`).
    dir_watches: Option<local::DirWatches>,
    /// The full scan made right after the watcher started (overlapping the store load),
    /// for the full pass that follows; dropped unless that pass comes next.
    prescanned: Option<Result<pass::Scanned, local::ScanError>>,
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
            known: known::Known::default(),
            status_tx,
            paused: None,
            allow_deletes: false,
            gate,
            failures: Failures::default(),
            intents: OpenIntents::default(),
            skipped: Vec::new(),
            needs_full_pass: true,
            blocked: false,
            rewatch: false,
            unwatched: Vec::new(),
            polled: Vec::new(),
            polled_subtrees: Vec::new(),
            mounts: watching::Mounts::default(),
            mount_memory: mounts::MountMemory::default(),
            root_anchor: None,
            removals: None,
            watcher_starting: None,
            drift: drift::Follow::default(),
            dir_watches: None,
            prescanned: None,
        }
    }

    fn root(&self) -> PathBuf {
        self.cfg.path.clone()
    }

    fn set_state(&self, state: MirrorState, reason: Option<String>) {
        // Deletes waiting out their grace are work still to do: never idle with them
        // counted as done (the loop refreshes the exact depth on its next turn).
        let waiting = self.gate.len() + self.intents.held();
        let (known, loaded) = (self.known.count(), self.known.is_loaded());
        let (failures, retrying) = (self.failures.len(), self.failures.retrying());
        let skipped = self.skipped.clone();
        let c = self.counters.clone();
        let (before, before_reason) = {
            let s = self.status_tx.borrow();
            (s.state, s.reason.clone())
        };
        self.publish_transition(before, before_reason, state, reason.as_deref(), failures);
        self.status_tx.send_modify(|s| {
            s.state = state;
            s.reason = reason;
            s.queue_depth = s.queue_depth.max(waiting);
            s.entries = known;
            s.entries_loaded = loaded;
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

    /// The events a change of state makes: paused (or paused for another reason),
    /// resumed, in sync.
    fn publish_transition(
        &self,
        before: MirrorState,
        before_reason: Option<String>,
        state: MirrorState,
        reason: Option<&str>,
        failures: usize,
    ) {
        use crate::events::EventKind;
        let stopped =
            |s: MirrorState| matches!(s, MirrorState::Paused | MirrorState::NeedsCredentials);
        if stopped(state) {
            if !stopped(before) || before_reason.as_deref() != reason {
                let reason = reason.unwrap_or("paused").to_string();
                self.deps
                    .events
                    .publish(&self.name, EventKind::Paused { reason });
            }
        } else if stopped(before) {
            self.deps.events.publish(&self.name, EventKind::Resumed);
        }
        if state == MirrorState::Idle && before != MirrorState::Idle && failures == 0 {
            self.deps.events.publish(&self.name, EventKind::InSync);
        }
    }

    fn set_queue(&self, depth: usize) {
        self.status_tx.send_modify(|s| s.queue_depth = depth);
    }

    async fn run(
        &mut self,
        mut cmd_rx: mpsc::Receiver<MirrorCmd>,
        shutdown: CancellationToken,
    ) -> Result<(), MirrorError> {
        self.set_state(MirrorState::Starting, None);
        // A server that is down, refusing with 5xx/429 or waiting for new credentials at
        // start is waited out (the mirror stays `starting` / `needs-credentials` with the
        // reason); anything else stops the mirror.
        let mut wait = Duration::from_secs(1);
        loop {
            let e = match self.start().await {
                Ok(()) => break,
                Err(e) => e,
            };
            let credentials = match e.kind() {
                ErrorKind::Credentials => true,
                ErrorKind::Transient => false,
                ErrorKind::Fatal => return Err(e),
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
        self.follow_arm().await;
        // A root pause saved by an earlier run lifts if the original root is back.
        self.settle_saved_pause_at_start().await;
        // Another directory at the root's path pauses now, with that reason.
        self.check_root().await;
        if let Some(p) = &self.paused {
            // Paused by a previous run (mass delete, vanished root): say so right away.
            let reason = p.reason();
            tracing::warn!(mirror = %self.name, "still paused: {reason}");
            self.set_state(p.state(), Some(reason));
        }
        let mut power = self.deps.power.clone();
        if *power.borrow_and_update() {
            self.power_changed(true).await;
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
        let mut next_rewatch = Instant::now() + fallback_scan_interval(&self.cfg);
        let poll_interval = Duration::from_secs(self.cfg.poll_interval_secs.max(1));
        let mut next_poll = Instant::now() + poll_interval;
        // When work last used the known entries (they are unloaded after a quiet spell).
        let mut last_use = Instant::now();

        loop {
            if self.paused.is_none() && self.deps.store.is_full() {
                self.pause_for_space();
            }
            if self.rewatch && self.paused.is_none() {
                // Resumed after a pause: the root may be a new mount (the old watches died
                // with the old one), and the watch limit may have been raised.
                self.rewatch = false;
                // A new watcher watches the root alone until a full pass lists the rest.
                self.needs_full_pass = true;
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
                if self.watched_pass_done(watcher.as_ref(), &mut poll_every) {
                    rescan_every = poll_every.unwrap_or(normal_rescan);
                }
                next_rescan = Instant::now() + jitter(rescan_every);
            }
            // Only the pass right after the watcher started may use its scan: events
            // dropped later (while paused) would make it stale.
            self.prescanned = None;
            if self.known.take_touched() {
                last_use = Instant::now();
            }
            let unload_at = self.unload_due(last_use, queue.is_empty());
            let mut deadline = next_rescan.min(next_retry).min(next_root_check);
            if let Some(at) = unload_at {
                deadline = deadline.min(at);
            }
            if let Some(d) = queue.next_deadline() {
                deadline = deadline.min(d);
            }
            if let Some(d) = self.gate.next_deadline() {
                deadline = deadline.min(d);
            }
            if let Some(due) = self.failures.next_due()
                && self.paused.is_none()
            {
                // Transient failures are retried when due, not on the next 30 s tick.
                let wait = Duration::from_secs(due.saturating_sub(unix_now()).max(0) as u64);
                next_retry = next_retry.min(Instant::now() + wait);
                deadline = deadline.min(next_retry);
            }
            if let Some(d) = self.paused.as_ref().and_then(Pause::quota_check_at) {
                deadline = deadline.min(d);
            }
            if self.intents.held() > 0 && self.paused.is_none() {
                deadline = deadline.min(next_held_check);
            }
            if !self.unwatched.is_empty() && self.paused.is_none() {
                deadline = deadline.min(next_rewatch);
            }
            if !self.polled_subtrees.is_empty() && self.paused.is_none() {
                deadline = deadline.min(next_poll);
            }
            if let Some(d) = self.drift.due() {
                deadline = deadline.min(d);
            }
            self.set_queue(queue.len() + self.gate.len() + self.intents.held());
            tokio::select! {
                _ = shutdown.cancelled() => break,
                cmd = cmd_rx.recv() => match cmd {
                    Some(cmd) => self.command(cmd).await,
                    None => break,
                },
                on_battery = async { match power.changed().await { Ok(()) => *power.borrow_and_update(), Err(_) => std::future::pending().await } } => {
                    self.power_changed(on_battery).await;
                }
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
                        if self.paused.as_ref().is_some_and(Pause::lifts_when_root_back)
                            && id != root_id
                            && self.root_anchor.is_some_and(|a| id.is_some_and(|c| a.same_dir(&c)))
                        {
                            tracing::info!(mirror = %self.name, "root {} is back; resuming", self.cfg.path.display());
                            root_id = id;
                            self.root_is_back().await;
                            continue;
                        }
                        if id != root_id && self.paused.is_none() && !self.check_root().await {
                            root_id = id;
                            continue;
                        }
                        if self.cfg.watch == WatchMode::Auto
                            && self.paused.is_none()
                            && self.mounts.changed(&self.cfg.path)
                        {
                            // A mount came or went below the root: it may need polling.
                            tracing::info!(mirror = %self.name, "mounts below {} changed; watching it again", self.cfg.path.display());
                            self.rewatch = true;
                            self.needs_full_pass = true;
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
                    if self.paused.as_ref().and_then(Pause::quota_check_at).is_some_and(|at| now >= at) {
                        self.recheck_quota().await;
                        continue;
                    }
                    if now >= next_held_check {
                        next_held_check = now + HELD_RECHECK;
                        if self.intents.held() > 0 && self.paused.is_none() {
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
                    if !self.unwatched.is_empty() && self.paused.is_none() && now >= next_rewatch {
                        // Try the folders it could not watch again; what changed in the
                        // meantime (there, or in a folder created unwatched) is scanned.
                        next_rewatch = now + fallback_scan_interval(&self.cfg);
                        self.rewatch = true;
                        self.needs_full_pass = true;
                        continue;
                    }
                    if !self.polled_subtrees.is_empty() && self.paused.is_none() && now >= next_poll {
                        // Mounts whose changes raise no events: their subtrees are scanned
                        // (stat only; what differs from the store is hashed) like a folder
                        // an event named.
                        next_poll = now + poll_interval;
                        for rel in &self.polled_subtrees {
                            queue.push(local::WatchEvent::Changed(rel.clone()), now);
                        }
                        continue;
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
                        if matches!(self.paused, Some(Pause::Space { .. })) {
                            self.probe_space().await;
                        }
                        self.retry_due(&shutdown).await;
                        continue;
                    }
                    if self.drift.due().is_some_and(|d| now >= d) && queue.is_empty() {
                        self.poll_remote().await;
                        continue;
                    }
                    if unload_at.is_some_and(|at| now >= at) {
                        self.unload_known();
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
                    self.follow_after_batch();
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
}

/// How often the root's identity (device, inode) is checked.
const ROOT_CHECK: Duration = Duration::from_secs(2);

/// How often a mirror without a working file watcher is scanned: its rescan interval,
/// at most 60 s.
fn fallback_scan_interval(cfg: &MirrorConfig) -> Duration {
    Duration::from_secs(cfg.rescan_interval_secs.clamp(1, 60))
}
