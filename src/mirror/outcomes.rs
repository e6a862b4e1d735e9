//! Step 4 of a pass (`pass`): the outcomes of the ops the uploader ran. What they
//! committed updates the known entries (or only their count, for a big first sync run
//! without them); failures are recorded; refused credentials, a full quota or a full state
//! database pause the whole mirror; and the state the mirror is left in is shown.

use std::sync::Arc;

use super::pause::Pause;
use super::{Engine, MirrorState};
use crate::plan::Op;
use crate::relpath::Escaped;
use crate::store;
use crate::upload::{MirrorTarget, OpResult, Outcome};

impl Engine {
    /// Step 4: the outcomes. What the ops committed updates the known entries; failures
    /// are recorded; refused credentials or a full quota pause the whole mirror.
    /// `last` is false for a chunk with more to come: the state stays "syncing".
    pub(super) async fn apply(&mut self, t: &MirrorTarget, results: Vec<OpResult>, last: bool) {
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
                    if self.known.is_loaded() {
                        for e in &effects {
                            store::apply_to_map(Arc::make_mut(&mut self.known), e);
                        }
                    } else {
                        // A big first sync (`first_sync_in_slices`): every item is new.
                        let added = effects
                            .iter()
                            .filter(|e| matches!(e, store::Effect::Upsert(_)))
                            .count();
                        self.known.note_added(added);
                    }
                    self.failures.forget(r.op.path());
                    if let Some(kind) = done_event(&r.op) {
                        self.deps.events.publish(&self.name, kind);
                    }
                }
                Outcome::Changed(effects) => {
                    if self.known.is_loaded() {
                        for e in &effects {
                            store::apply_to_map(Arc::make_mut(&mut self.known), e);
                        }
                    }
                    requeue = true;
                }
                Outcome::Blocked(reason) => {
                    // Planned again (by a full pass) once the op it waits for succeeds.
                    tracing::debug!(mirror = %self.name, path = r.op.path(), "waits: {}", Escaped(&reason));
                    self.blocked = true;
                }
                Outcome::Failed { reason, permanent } => {
                    tracing::warn!(mirror = %self.name, path = r.op.path(), "failed: {}", Escaped(&reason));
                    self.deps.events.publish(
                        &self.name,
                        crate::events::EventKind::Failed {
                            path: r.op.path().to_string(),
                            reason: reason.clone(),
                            permanent,
                        },
                    );
                    if let Op::Move { from, .. } = &r.op {
                        self.failures.note_failed_move(r.op.path(), from);
                    }
                    if let Ok(f) = self
                        .deps
                        .store
                        .record_failure(
                            t.mirror,
                            r.op.path(),
                            &reason,
                            permanent,
                            super::failures::failure_backoff,
                        )
                        .await
                    {
                        self.failures.note(&f);
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
            let reason = format!(
                "needs new credentials (provide a new token, then reload with HUP): {reason}"
            );
            self.paused = Some(Pause::Credentials {
                reason: reason.clone(),
            });
            self.set_state(MirrorState::NeedsCredentials, Some(reason));
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
        if last {
            if self.paused.is_none() && self.deps.store.is_full() {
                // Not "in sync" for a moment before the loop pauses: ops failed for
                // lack of room for the state database.
                self.pause_for_space();
                return;
            }
            self.show_settled();
        }
    }

    /// The state after a pass: paused, a pass still to come (not idle: a `wait` must not
    /// see "in sync" in between), or idle.
    pub(super) fn show_settled(&self) {
        match &self.paused {
            Some(p) => self.set_state(p.state(), Some(p.reason())),
            None if self.needs_full_pass => self.set_state(MirrorState::Scanning, None),
            None => self.set_state(MirrorState::Idle, None),
        }
    }
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

/// The event a finished op makes (none for a store-only refresh).
fn done_event(op: &Op) -> Option<crate::events::EventKind> {
    use crate::events::EventKind;
    Some(match op {
        Op::Mkdir { path, .. } => EventKind::FolderCreated { path: path.clone() },
        Op::Upload { path, item, .. } => EventKind::Uploaded {
            path: path.clone(),
            bytes: item.size,
        },
        Op::Replace { path, item, .. } => EventKind::NewVersion {
            path: path.clone(),
            bytes: item.size,
        },
        Op::Move { from, to, .. } => EventKind::Moved {
            from: from.clone(),
            to: to.clone(),
        },
        Op::Delete { path, .. } => EventKind::Deleted { path: path.clone() },
        Op::Refresh { .. } => return None,
    })
}
