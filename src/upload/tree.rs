//! The uploader's moves and deletes: an item renamed and moved to its new folder (one call
//! each, journaled as a move), and a delete that trashes (or, with `delete = "keep"`,
//! only forgets) the remote item. Split from `mod.rs`, which runs them from `execute`.

use super::*;

impl OpCtx {
    /// `target_parent` is the remote id of the destination folder (`None` = share root).
    pub(super) async fn move_item(
        &self,
        from: &str,
        to: &str,
        remote_id: &str,
        kind: EntryKind,
        target_parent: Option<String>,
    ) -> Outcome {
        let m = self.target.mirror;
        let (from_parent, to_parent) = (parent(from), parent(to));
        let (from_name, to_name) = (name_of(from), name_of(to));
        let journaled = IntentOp::Move(MoveItem {
            from: from.to_string(),
            remote_id: remote_id.to_string(),
        });
        let intent = match self.store.begin_intent(m, to, &journaled).await {
            Ok(i) => i,
            Err(e) => return self.store_failed(e),
        };
        let is_dir = kind == EntryKind::Dir;
        let mut result = Ok(());
        let mut renamed = false;
        if from_name != to_name {
            result = if is_dir {
                self.client
                    .rename_folder(remote_id, to_name)
                    .await
                    .map(|_| ())
            } else {
                self.client
                    .rename_file(remote_id, to_name)
                    .await
                    .map(|_| ())
            };
            renamed = result.is_ok();
        }
        if result.is_ok() && from_parent != to_parent {
            result = if is_dir {
                self.client
                    .move_folder(remote_id, target_parent.as_deref())
                    .await
                    .map(|_| ())
            } else {
                self.client
                    .move_file(remote_id, target_parent.as_deref())
                    .await
                    .map(|_| ())
            };
        }
        match result {
            Ok(()) => {
                let effects = vec![
                    Effect::MoveTree {
                        from: from.into(),
                        to: to.into(),
                    },
                    Effect::ClearFailure(to.into()),
                ];
                match self.store.commit(m, intent, effects.clone()).await {
                    Ok(()) => Outcome::Done(effects),
                    Err(e) => self.store_failed(e),
                }
            }
            Err(e) if is_gone(&e) => {
                // The item is gone, or (for a move) the destination folder is: ask which.
                let item = if is_dir {
                    self.client.folder(remote_id).await.map(|_| ())
                } else {
                    self.client.file(remote_id).await.map(|_| ())
                };
                let mut effects = Vec::new();
                if renamed {
                    // The rename went through: the item is in its old folder, new name
                    // (recorded only with the replan below, whose effects the mirror sees).
                    effects.push(Effect::MoveTree {
                        from: from.into(),
                        to: join(from_parent, to_name),
                    });
                }
                match item {
                    Err(g) if is_gone(&g) => {
                        // Deleted remotely: forget it; the next pass uploads the local
                        // item afresh.
                        let effects = vec![Effect::RemoveTree(from.into())];
                        let _ = self.store.commit(m, intent, effects.clone()).await;
                        Outcome::Changed(effects)
                    }
                    Ok(()) => match self.gone_folder(to_parent, target_parent.as_deref()).await {
                        // Still there; its destination folder is what is gone.
                        Some(forget) => {
                            effects.push(forget);
                            self.replan(intent, effects).await
                        }
                        // A failure carries no effects (the mirror's view must stay the
                        // store's): a retry repeats the rename, a no-op if it went through.
                        None => {
                            let _ = self.store.commit(m, intent, vec![]).await;
                            self.fail(&e)
                        }
                    },
                    Err(g) => {
                        let _ = self.store.commit(m, intent, vec![]).await;
                        self.fail(&g)
                    }
                }
            }
            Err(e) => {
                // A retry repeats the rename (a no-op if it went through) and the move.
                let _ = self.store.commit(m, intent, vec![]).await;
                self.fail(&e)
            }
        }
    }

    pub(super) async fn delete(&self, path: &str, remote_id: &str, kind: EntryKind) -> Outcome {
        let m = self.target.mirror;
        let mut effects = vec![
            Effect::RemoveTree(path.into()),
            Effect::ClearFailure(path.into()),
        ];
        if self.target.delete_mode == DeleteMode::Keep {
            return match self.store.apply(m, effects.clone()).await {
                Ok(()) => Outcome::Done(effects),
                Err(e) => self.store_failed(e),
            };
        }
        let journaled = IntentOp::Delete(DeleteItem {
            remote_id: remote_id.to_string(),
        });
        let intent = match self.store.begin_intent(m, path, &journaled).await {
            Ok(i) => i,
            Err(e) => return self.store_failed(e),
        };
        let r = if kind == EntryKind::Dir {
            self.client.delete_folder(remote_id, false).await
        } else {
            self.client.delete_file(remote_id, false).await
        };
        if r.is_ok() {
            // In the trash now: remembered, so a file that comes back is restored from there.
            effects.insert(0, Effect::Trashed(path.into()));
        }
        match r {
            // Already deleted or gone: the remote is where we want it.
            Err(e) if !is_gone(&e) => {
                let _ = self.store.commit(m, intent, vec![]).await;
                self.fail(&e)
            }
            _ => match self.store.commit(m, intent, effects.clone()).await {
                Ok(()) => Outcome::Done(effects),
                Err(e) => self.store_failed(e),
            },
        }
    }
}
