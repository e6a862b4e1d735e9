//! What the mirror task does for each control command (`scaidrivectl pause`, `resume`,
//! `rescan`, `retry`, `verify`, `failures`, and the daemon's credentials reload): the
//! conductor hands every [`MirrorCmd`] it receives to [`super::Engine::command`].

use super::*;

impl Engine {
    pub(super) async fn command(&mut self, cmd: MirrorCmd) {
        match cmd {
            MirrorCmd::Pause(reply) => {
                self.paused = Some(Pause::User);
                self.set_state(MirrorState::Paused, Some(Pause::User.reason()));
                let _ = reply.send(());
            }
            MirrorCmd::Resume {
                allow_deletes,
                reply,
            } => {
                self.resume(allow_deletes).await;
                let _ = reply.send(());
            }
            MirrorCmd::CredentialsRenewed => {
                if self.lift_if(Lift::CredentialsRenewed) {
                    tracing::info!(mirror = %self.name, "credentials reloaded; resuming");
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
                self.failures.clear();
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
}
