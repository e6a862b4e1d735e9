//! Why a mirror is paused and how each pause ends. One [`Pause`] value replaces the flags
//! the engine used to keep side by side: the user's pause, the safety guards' (a pass that
//! would delete too much, a root that is gone, empty or another directory now), and the
//! pauses that lift by themselves (a full quota, a full state database, refused
//! credentials). The guards' pauses are saved in the store, so a restart stays paused;
//! the others are judged again by a restart. The pure part (reasons, states, what lifts
//! what) is [`Pause`]; the engine's side (saving, the root's identity, the quota and space
//! checks) is the `impl Engine` below.

use tokio::time::Instant;

use super::{Engine, MirrorState};
use crate::store::{self, RootIdentity};

/// Why the mirror does no remote work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Pause {
    /// `scaidrivectl pause`; ends with `resume`.
    User,
    /// A pass would have deleted more than the threshold; ends with `resume --allow-deletes`.
    MassDelete { reason: String },
    /// The root vanished, is empty, unreadable or another directory now. Ends with
    /// `resume`, or by itself (`lifts_when_back`) once the directory the mirror was synced
    /// from is back at its path.
    Root {
        reason: String,
        lifts_when_back: bool,
    },
    /// A guard's pause saved by an earlier run (the store keeps only its reason).
    Saved { reason: String },
    /// A quota is full (507); the share is looked at again at `check_at`, and the pause
    /// lifts once it has more free space than `free_at_pause` (`None` = unknown).
    Quota {
        reason: String,
        check_at: Instant,
        free_at_pause: Option<u64>,
    },
    /// The state database's file system is full: nothing could be recorded. A probe write
    /// every 30 s lifts it.
    Space { reason: String },
    /// The credentials were refused; a reload (HUP) lifts it.
    Credentials { reason: String },
    /// The machine runs on battery (`pause_on_battery`); AC power lifts it.
    Battery,
}

/// Something that may end a pause by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lift {
    CredentialsRenewed,
    /// The directory the mirror was synced from is at the root's path again.
    RootBack,
    /// A probe write to the state database succeeded.
    StoreWritable,
    /// The machine is on AC power again.
    AcPower,
    /// The share was looked at: its free bytes by its own quota (`Some(None)` = no quota
    /// of its own), or `None` if it could not be read (the pass itself is then the check).
    QuotaChecked(Option<Option<u64>>),
}

impl Pause {
    /// The reason shown in `status`, the log and the systemd status line.
    pub fn reason(&self) -> String {
        match self {
            Pause::User => "paused by user".into(),
            Pause::Battery => "on battery power (pause_on_battery); resumes on AC power".into(),
            Pause::MassDelete { reason }
            | Pause::Root { reason, .. }
            | Pause::Saved { reason }
            | Pause::Quota { reason, .. }
            | Pause::Space { reason }
            | Pause::Credentials { reason } => reason.clone(),
        }
    }

    pub fn state(&self) -> MirrorState {
        match self {
            Pause::Credentials { .. } => MirrorState::NeedsCredentials,
            _ => MirrorState::Paused,
        }
    }

    /// Saved in the store: the safety guards' pauses, which a restart must not forget.
    pub fn is_saved(&self) -> bool {
        matches!(
            self,
            Pause::MassDelete { .. } | Pause::Root { .. } | Pause::Saved { .. }
        )
    }

    pub fn lifts_when_root_back(&self) -> bool {
        matches!(
            self,
            Pause::Root {
                lifts_when_back: true,
                ..
            }
        )
    }

    /// When a quota pause looks at the share again.
    pub fn quota_check_at(&self) -> Option<Instant> {
        match self {
            Pause::Quota { check_at, .. } => Some(*check_at),
            _ => None,
        }
    }

    /// The root is gone: a guard's pause then lifts by itself once the directory the
    /// mirror was synced from is back (if it knows which one that is: `anchored`).
    pub fn wait_for_root(self, anchored: bool) -> Pause {
        match self {
            Pause::Root { reason, .. } | Pause::Saved { reason } | Pause::MassDelete { reason }
                if anchored =>
            {
                Pause::Root {
                    reason,
                    lifts_when_back: true,
                }
            }
            other => other,
        }
    }

    /// Whether `lift` ends this pause.
    pub fn lifted_by(&self, lift: Lift) -> bool {
        match (self, lift) {
            (Pause::Credentials { .. }, Lift::CredentialsRenewed) => true,
            (Pause::Root { .. }, Lift::RootBack) => self.lifts_when_root_back(),
            (Pause::Space { .. }, Lift::StoreWritable) => true,
            (Pause::Battery, Lift::AcPower) => true,
            (Pause::Quota { free_at_pause, .. }, Lift::QuotaChecked(free)) => match free {
                // Unreadable, or no quota of its own any more (another level may still be
                // full; the pass then pauses again after one refusal).
                None | Some(None) => true,
                Some(Some(free)) => free_at_pause.is_none_or(|before| free > before),
            },
            _ => false,
        }
    }
}

/// Which directory the root is (through a symlink), `None` if it cannot be looked at or
/// is not a directory.
pub(super) fn root_identity(root: &std::path::Path) -> Option<RootIdentity> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(root).ok().filter(|m| m.is_dir())?;
    let fsid = rustix::fs::statvfs(root).map_or(0, |v| v.f_fsid);
    Some(RootIdentity {
        dev: m.dev(),
        ino: m.ino(),
        fsid,
    })
}

impl Engine {
    /// Pauses; a guard's pause is saved, so a restart stays paused.
    pub(super) async fn pause(&mut self, pause: Pause) {
        let reason = pause.reason();
        if pause == Pause::Battery {
            // A laptop unplugged is no problem to warn about.
            tracing::info!(mirror = %self.name, "paused: {reason}");
        } else {
            tracing::warn!(mirror = %self.name, "paused: {reason}");
        }
        if pause.is_saved()
            && let Some(t) = &self.target
        {
            let _ = self
                .deps
                .store
                .set_paused(
                    t.mirror,
                    Some(reason.clone()),
                    matches!(pause, Pause::Root { .. }),
                )
                .await;
        }
        let state = pause.state();
        self.paused = Some(pause);
        self.set_state(state, Some(reason));
    }

    /// A pause for the root that lifts by itself once the original directory is back.
    pub(super) async fn pause_for_root(&mut self, reason: String) {
        let lifts_when_back = self.root_anchor.is_some();
        self.pause(Pause::Root {
            reason,
            lifts_when_back,
        })
        .await;
    }

    /// Ends the pause if `lift` ends it; a full pass follows. Returns whether it did.
    pub(super) fn lift_if(&mut self, lift: Lift) -> bool {
        if !self.paused.as_ref().is_some_and(|p| p.lifted_by(lift)) {
            return false;
        }
        self.paused = None;
        self.needs_full_pass = true;
        true
    }

    /// `resume`: ends any pause. With the root paused as another directory, the one there
    /// now becomes the one the mirror is synced from.
    pub(super) async fn resume(&mut self, allow_deletes: bool) {
        if self
            .paused
            .as_ref()
            .is_some_and(Pause::lifts_when_root_back)
        {
            self.anchor_root(root_identity(&self.cfg.path)).await;
        }
        self.paused = None;
        self.allow_deletes = allow_deletes;
        if allow_deletes {
            self.forget_gone_mounts().await;
        }
        self.needs_full_pass = true;
        self.rewatch = true;
        if self.deps.store.is_full() {
            // Told to go on: the next write shows whether there is room again.
            self.deps.store.clear_full();
        }
        if let Some(t) = &self.target {
            let _ = self.deps.store.set_paused(t.mirror, None, false).await;
        }
        // Shown before the reply, so a `wait` right after `resume` does not read the old
        // pause (a full pass comes next).
        if self.target.is_some() {
            self.set_state(MirrorState::Scanning, None);
        }
    }

    /// The power source changed: on battery a running mirror pauses (one paused for
    /// another reason keeps that reason); on AC power a battery pause lifts, with a full
    /// pass to catch up on what changed meanwhile.
    pub(super) async fn power_changed(&mut self, on_battery: bool) {
        if on_battery {
            if self.paused.is_none() {
                self.pause(Pause::Battery).await;
            }
        } else if self.lift_if(Lift::AcPower) {
            tracing::info!(mirror = %self.name, "on AC power; resuming");
            self.set_state(MirrorState::Scanning, None);
        }
    }

    /// Ends a root pause that lifted by itself: a full pass on a fresh watcher follows.
    pub(super) async fn root_is_back(&mut self) {
        self.lift_if(Lift::RootBack);
        self.rewatch = true;
        if let Some(t) = &self.target {
            let _ = self.deps.store.set_paused(t.mirror, None, false).await;
        }
        self.set_state(MirrorState::Scanning, None);
    }

    /// At start-up, a root pause saved by an earlier run: if the root is still gone it
    /// lifts once the original is back; if the original came back while the daemon was
    /// stopped, it lifts now (the pass that follows judges the root afresh, so a saved
    /// reason cannot outlive what it said).
    pub(super) async fn settle_saved_pause_at_start(&mut self) {
        let now = root_identity(&self.cfg.path);
        if now.is_none() {
            let anchored = self.root_anchor.is_some();
            self.paused = self.paused.take().map(|p| p.wait_for_root(anchored));
            return;
        }
        let back = self
            .root_anchor
            .zip(now)
            .is_some_and(|(anchor, now)| anchor.same_dir(&now));
        if back
            && self
                .paused
                .as_ref()
                .is_some_and(Pause::lifts_when_root_back)
        {
            tracing::info!(mirror = %self.name, "root {} is back; resuming", crate::relpath::Escaped(&self.cfg.path.to_string_lossy()));
            self.root_is_back().await;
        }
    }

    /// Whether the root is still the directory the mirror was synced from. If it is
    /// another one, pauses (whatever the mirror's size: a swapped root would be mirrored
    /// as deletes of everything) until that directory is back or `resume` accepts the new
    /// one. The first directory seen becomes the anchor.
    pub(super) async fn check_root(&mut self) -> bool {
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
        let reason = format!(
            "root {} is another directory now ({now}, was {anchor}: unmounted, mounted over or a re-pointed symlink?); \
             nothing is deleted remotely; resumes when the original is back, or `scaidrivectl resume` mirrors what is there now",
            crate::relpath::Escaped(&self.cfg.path.to_string_lossy())
        );
        // Said again only if it says something new (a pause saved by an earlier run may
        // name what was true then: "vanished").
        if self.paused.as_ref().is_none_or(|p| p.reason() != reason) {
            self.pause_for_root(reason).await;
        }
        false
    }

    pub(super) async fn anchor_root(&mut self, id: Option<RootIdentity>) {
        let Some(id) = id else { return };
        self.root_anchor = Some(id);
        if let Some(t) = &self.target {
            let _ = self.deps.store.set_root_identity(t.mirror, Some(id)).await;
        }
    }

    /// The state database's file system is full: stop all remote work, since nothing it
    /// does could be recorded. Not saved in the store (it could not be): a restart tries
    /// again, and so does a probe write every 30 s.
    pub(super) fn pause_for_space(&mut self) {
        let reason = format!(
            "{}; mirroring paused until a write succeeds again",
            store::StoreError::Full {
                path: self.deps.store.path().to_path_buf()
            }
        );
        tracing::error!(mirror = %self.name, "{reason}");
        self.paused = Some(Pause::Space {
            reason: reason.clone(),
        });
        self.set_state(MirrorState::Paused, Some(reason));
    }

    /// Tries a small write; if there is room again, resumes with a full pass.
    pub(super) async fn probe_space(&mut self) {
        let probe = self
            .deps
            .store
            .kv_set("space_probe", &super::unix_now().to_string())
            .await;
        if probe.is_ok() && self.lift_if(Lift::StoreWritable) {
            tracing::info!(mirror = %self.name, "the state database can be written again; resuming");
            self.deps.store.clear_full();
        }
    }

    /// Free bytes of the share by its own quota: `Ok(None)` = no share quota.
    async fn share_free_bytes(&self) -> Result<Option<u64>, crate::remote::Error> {
        let Some(t) = &self.target else {
            return Ok(None);
        };
        let share = self.deps.client.share(&t.share_id).await?;
        Ok(share
            .quota_bytes
            .map(|q| q.saturating_sub(share.used_bytes.unwrap_or(0))))
    }

    /// A quota is full (507): pause until space is freed instead of failing every file.
    /// Not stored: a restart simply tries again.
    pub(super) async fn pause_for_quota(&mut self, refusal: String) {
        let every = self.deps.quota_recheck;
        let free_at_pause = self.share_free_bytes().await.ok().flatten();
        let reason = format!(
            "quota full, uploads wait until space is freed (checked every {}s): {refusal}",
            every.as_secs().max(1)
        );
        self.pause(Pause::Quota {
            reason,
            check_at: Instant::now() + every,
            free_at_pause,
        })
        .await;
    }

    /// The periodic look at a full share: resumes (with a full pass) once the share has
    /// more free space than when the mirror paused, or has no quota of its own any more.
    pub(super) async fn recheck_quota(&mut self) {
        let free = match self.share_free_bytes().await {
            Ok(free) => Some(free),
            Err(e) => {
                tracing::debug!(mirror = %self.name, "quota check: {e}");
                None
            }
        };
        if self.lift_if(Lift::QuotaChecked(free)) {
            tracing::info!(mirror = %self.name, "space freed on the remote; resuming");
        } else if let Some(Pause::Quota { check_at, .. }) = &mut self.paused {
            *check_at = Instant::now() + self.deps.quota_recheck;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(lifts: bool) -> Pause {
        Pause::Root {
            reason: "root gone".into(),
            lifts_when_back: lifts,
        }
    }

    fn quota(free_at_pause: Option<u64>) -> Pause {
        Pause::Quota {
            reason: "quota full".into(),
            check_at: Instant::now(),
            free_at_pause,
        }
    }

    #[test]
    fn what_lifts_which_pause() {
        use Lift::*;
        let space = Pause::Space {
            reason: "full".into(),
        };
        let creds = Pause::Credentials {
            reason: "401".into(),
        };
        let mass = Pause::MassDelete {
            reason: "allow-deletes".into(),
        };
        let cases: Vec<(&str, Pause, Lift, bool)> = vec![
            (
                "the user's pause lifts only by resume",
                Pause::User,
                RootBack,
                false,
            ),
            (
                "... not by a reload",
                Pause::User,
                CredentialsRenewed,
                false,
            ),
            (
                "... nor a writable store",
                Pause::User,
                StoreWritable,
                false,
            ),
            (
                "... nor a quota check",
                Pause::User,
                QuotaChecked(None),
                false,
            ),
            (
                "a mass delete waits for resume",
                mass.clone(),
                RootBack,
                false,
            ),
            (
                "a mass delete ignores a reload",
                mass,
                CredentialsRenewed,
                false,
            ),
            (
                "a root pause with an anchor lifts when it is back",
                root(true),
                RootBack,
                true,
            ),
            (
                "a root pause without an anchor does not",
                root(false),
                RootBack,
                false,
            ),
            (
                "a root pause ignores a reload",
                root(true),
                CredentialsRenewed,
                false,
            ),
            (
                "credentials lift on reload",
                creds.clone(),
                CredentialsRenewed,
                true,
            ),
            (
                "credentials do not lift on a store probe",
                creds,
                StoreWritable,
                false,
            ),
            (
                "space lifts on a successful write",
                space.clone(),
                StoreWritable,
                true,
            ),
            ("space ignores the root", space, RootBack, false),
            (
                "quota: more free space lifts",
                quota(Some(10)),
                QuotaChecked(Some(Some(11))),
                true,
            ),
            (
                "quota: the same free space does not",
                quota(Some(10)),
                QuotaChecked(Some(Some(10))),
                false,
            ),
            (
                "quota: less free space does not",
                quota(Some(10)),
                QuotaChecked(Some(Some(3))),
                false,
            ),
            (
                "quota: unknown at pause, any reading lifts",
                quota(None),
                QuotaChecked(Some(Some(0))),
                true,
            ),
            (
                "quota: no share quota any more lifts",
                quota(Some(10)),
                QuotaChecked(Some(None)),
                true,
            ),
            (
                "quota: an unreadable share lifts (the pass checks)",
                quota(Some(10)),
                QuotaChecked(None),
                true,
            ),
            (
                "quota ignores a store probe",
                quota(Some(10)),
                StoreWritable,
                false,
            ),
        ];
        for (name, pause, lift, want) in cases {
            assert_eq!(pause.lifted_by(lift), want, "{name}: {pause:?} by {lift:?}");
        }
    }

    #[test]
    fn states_reasons_and_what_is_saved() {
        let cases: Vec<(Pause, MirrorState, &str, bool)> = vec![
            (Pause::User, MirrorState::Paused, "paused by user", false),
            (
                Pause::MassDelete { reason: "m".into() },
                MirrorState::Paused,
                "m",
                true,
            ),
            (root(true), MirrorState::Paused, "root gone", true),
            (
                Pause::Saved { reason: "s".into() },
                MirrorState::Paused,
                "s",
                true,
            ),
            (quota(None), MirrorState::Paused, "quota full", false),
            (
                Pause::Space { reason: "d".into() },
                MirrorState::Paused,
                "d",
                false,
            ),
            (
                Pause::Credentials { reason: "c".into() },
                MirrorState::NeedsCredentials,
                "c",
                false,
            ),
        ];
        for (pause, state, reason, saved) in cases {
            assert_eq!(pause.state(), state, "{pause:?}");
            assert_eq!(pause.reason(), reason, "{pause:?}");
            assert_eq!(pause.is_saved(), saved, "{pause:?}");
        }
    }

    #[test]
    fn a_gone_root_turns_guard_pauses_into_root_pauses_when_anchored() {
        let saved = Pause::Saved { reason: "s".into() };
        assert_eq!(
            saved.clone().wait_for_root(true),
            Pause::Root {
                reason: "s".into(),
                lifts_when_back: true
            }
        );
        assert_eq!(saved.clone().wait_for_root(false), saved);
        assert_eq!(root(false).wait_for_root(true), root(true));
        assert_eq!(Pause::User.wait_for_root(true), Pause::User);
        assert!(quota(None).wait_for_root(true).quota_check_at().is_some());
        assert_eq!(root(true).quota_check_at(), None);
    }
}
