//! What a mirror task shows the rest of the daemon: its status (published on a `watch`
//! channel, read by the control API and the systemd status line) and the commands it
//! takes (pause, resume, rescan, retry, failures).

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::MirrorConfig;
use crate::remote::RateDimension;
use crate::store::Failure;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MirrorState {
    Starting,
    Scanning,
    Syncing,
    Idle,
    Paused,
    NeedsCredentials,
    Error,
}

impl std::fmt::Display for MirrorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            MirrorState::Starting => "starting",
            MirrorState::Scanning => "scanning",
            MirrorState::Syncing => "syncing",
            MirrorState::Idle => "idle",
            MirrorState::Paused => "paused",
            MirrorState::NeedsCredentials => "needs-credentials",
            MirrorState::Error => "error",
        };
        f.write_str(s)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedItem {
    pub path: String,
    pub reason: String,
}

fn loaded() -> bool {
    true
}

fn is_loaded(loaded: &bool) -> bool {
    *loaded
}

/// One mirror's status; the `--json` schema of `scaidrivectl status` is built from it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MirrorStatus {
    pub name: String,
    pub root: String,
    pub share_id: String,
    pub remote_path: String,
    pub state: MirrorState,
    /// Why the mirror is paused, needs credentials or stopped.
    pub reason: Option<String>,
    /// Paths waiting to settle or to be executed.
    pub queue_depth: usize,
    pub in_flight: u64,
    pub files_done: u64,
    pub bytes_done: u64,
    /// Files and bytes the current batch still has to upload.
    pub files_remaining: u64,
    pub bytes_remaining: u64,
    /// Upload rate over the last seconds (bytes/s), and the time left at that rate.
    pub bytes_per_sec: u64,
    pub eta_secs: Option<u64>,
    pub entries: usize,
    /// Whether the entries are in memory (`false`: unloaded while idle, see
    /// `unload_idle_secs`; read back from the state database when work comes). Left out
    /// of the JSON when loaded: the `status --json` schema of a small mirror stays what
    /// it was.
    #[serde(default = "loaded", skip_serializing_if = "is_loaded")]
    pub entries_loaded: bool,
    pub failures: usize,
    /// How many of `failures` are transient and will be retried on their own.
    pub retrying: usize,
    pub skipped: Vec<SkippedItem>,
    /// Folders the file watcher could not watch (relative path: why); the rest of the
    /// tree is watched, and the watcher is built again periodically until they are.
    /// Left out of the JSON when empty: the `status --json` schema of a fully watched
    /// mirror stays what it was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unwatched: Vec<String>,
    /// Parts of the root stat'ed every `poll_interval_secs` because their changes raise no
    /// events (network or FUSE filesystems, or `watch = "poll"`), each with why. Left out
    /// of the JSON when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub polled: Vec<String>,
    /// Mount points below the root that are not mounted now (relative path and the
    /// filesystem they had): what was mirrored from them is kept remotely until they are
    /// back. Left out of the JSON when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmounted: Vec<String>,
    pub first_pass_done: bool,
    /// Unix seconds of the last time the mirror went idle.
    pub last_sync_at: Option<i64>,
    /// Remote changes by others known and not yet repaired (not in sync while > 0).
    #[serde(default)]
    pub remote_drift: usize,
    /// Remote changes by others repaired toward the local root, and of those the remote
    /// edits superseded by a new version from local.
    #[serde(default)]
    pub remote_repairs: u64,
    #[serde(default)]
    pub remote_overwrites: u64,
    /// Unix seconds of the last read of the change log (`None` = not following it).
    #[serde(default)]
    pub cursor_read_at: Option<i64>,
    /// The API budget a 429 said is spent (`token`; `user`: all the user's tokens, which
    /// several daemons share; `tenant`) while the daemon waits for it; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_spent: Option<RateDimension>,
    /// 429s met since start, by the budget they named (left out while there were none).
    #[serde(default, skip_serializing_if = "RateLimits::is_zero")]
    pub rate_limited: RateLimits,
}

/// 429s by the budget they named (`scaidrive-api.md` §5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimits {
    pub token: u64,
    pub user: u64,
    pub tenant: u64,
}

impl RateLimits {
    pub fn is_zero(&self) -> bool {
        *self == RateLimits::default()
    }
}

impl MirrorStatus {
    pub fn new(name: &str, cfg: &MirrorConfig) -> MirrorStatus {
        MirrorStatus {
            name: name.to_string(),
            root: cfg.path.display().to_string(),
            share_id: cfg.share_id.clone(),
            remote_path: cfg.remote_path.clone(),
            state: MirrorState::Starting,
            reason: None,
            queue_depth: 0,
            in_flight: 0,
            files_done: 0,
            bytes_done: 0,
            files_remaining: 0,
            bytes_remaining: 0,
            bytes_per_sec: 0,
            eta_secs: None,
            entries: 0,
            entries_loaded: true,
            failures: 0,
            retrying: 0,
            skipped: Vec::new(),
            unwatched: Vec::new(),
            polled: Vec::new(),
            unmounted: Vec::new(),
            first_pass_done: false,
            last_sync_at: None,
            remote_drift: 0,
            remote_repairs: 0,
            remote_overwrites: 0,
            cursor_read_at: None,
            budget_spent: None,
            rate_limited: RateLimits::default(),
        }
    }

    /// Idle with nothing queued and the first pass done: the remote equals the disk.
    pub fn in_sync(&self) -> bool {
        self.state == MirrorState::Idle
            && self.queue_depth == 0
            && self.in_flight == 0
            && self.first_pass_done
            && self.remote_drift == 0
    }
}

/// What `verify` found: the remote tree compared with what the mirror believes it holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct VerifyReport {
    pub mirror: String,
    pub remote_items: usize,
    pub known_items: usize,
    /// Known as mirrored but absent remotely (deleted or moved there by someone else).
    pub missing_remotely: Vec<String>,
    /// On the remote under the mirror's folder but not known to the mirror.
    pub extra_remotely: Vec<String>,
    /// Present on both sides but different: (path, what differs).
    pub different: Vec<(String, String)>,
    /// Entries forgotten by `--repair` (the next pass uploads them again).
    pub repaired: usize,
    pub error: Option<String>,
}

impl VerifyReport {
    pub fn in_sync(&self) -> bool {
        self.error.is_none() && self.missing_remotely.is_empty() && self.different.is_empty()
    }
}

#[derive(Debug)]
pub enum MirrorCmd {
    Pause(oneshot::Sender<()>),
    Resume {
        allow_deletes: bool,
        reply: oneshot::Sender<()>,
    },
    Rescan(oneshot::Sender<()>),
    /// The daemon reloaded its credentials: a mirror waiting for them resumes.
    CredentialsRenewed,
    Retry(oneshot::Sender<()>),
    Failures(oneshot::Sender<Vec<Failure>>),
    Verify {
        checksums: bool,
        repair: bool,
        reply: oneshot::Sender<VerifyReport>,
    },
}

/// The daemon's handle to one mirror task.
#[derive(Clone, Debug)]
pub struct MirrorHandle {
    pub name: String,
    pub cmd: mpsc::Sender<MirrorCmd>,
    pub status: watch::Receiver<MirrorStatus>,
}

impl MirrorHandle {
    pub fn status(&self) -> MirrorStatus {
        self.status.borrow().clone()
    }

    /// Sends a command built around a reply channel and waits for the reply.
    pub async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> MirrorCmd) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.cmd.send(make(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Waits until the mirror is in sync (or paused / failed), returning its status.
    pub async fn wait_settled(&self) -> MirrorStatus {
        let mut rx = self.status.clone();
        loop {
            {
                let s = rx.borrow_and_update();
                if s.in_sync()
                    || matches!(
                        s.state,
                        MirrorState::Paused | MirrorState::NeedsCredentials | MirrorState::Error
                    )
                {
                    return s.clone();
                }
            }
            if rx.changed().await.is_err() {
                return self.status();
            }
        }
    }
}
