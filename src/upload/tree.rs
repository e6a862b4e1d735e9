//! The uploader's moves and deletes: an item renamed and moved to its new folder (one call
//! each, journaled as a move), and a delete that trashes (or, with `delete = "keep"`,
//! only forgets) the remote item. Split from `mod.rs`, which runs them from `execute`.
//!
//! A folder deleted locally is trashed in one call, unless `remote_extras = "keep"` and
//! others added items to it remotely: then only what the mirror holds is trashed (files
//! one by one, its subfolders that hold nothing of theirs in one call each) and the
//! folders holding their items stay. Their items are known from the change log (the
//! follower's view); where it is not known, the folder is listed first (2 units per
//! mirrored folder in it), never trashed on a guess.

use super::*;

/// A folder delete that must not take others' items with it.
/// What a folder delete under `remote_extras = "keep"` found inside the folder.
#[derive(Debug, Default)]
pub(super) struct Inside {
    /// Others' items (mirror-relative paths, as named remotely).
    others: Vec<String>,
    /// Items of the daemon's own user the store does not know (path, id, is a folder).
    mine: Vec<(String, String, bool)>,
    /// Ids of the folders (ours included, whatever their remote name) with others' items
    /// below them, from a listing.
    holding: HashSet<String>,
}

#[derive(Debug)]
pub(super) struct Keeping {
    /// What the mirror holds inside (mirror-relative path, remote id, is a folder), parents
    /// first.
    ours: Vec<(String, String, bool)>,
    /// Others' items inside, from the follower's view (`None`: unknown, so listed).
    others: Option<Vec<String>>,
}

impl Keeping {
    pub(super) fn new(
        known: &BTreeMap<String, Entry>,
        others: Option<&RemoteOthers>,
        path: &str,
    ) -> Keeping {
        let prefix = format!("{path}/");
        let ours = known
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .map(|(p, e)| (p.clone(), e.remote_id.clone(), e.kind == EntryKind::Dir))
            .collect();
        let others = others.map(|o| {
            o.values()
                .filter(|(rel, _)| is_within(rel, path) && rel != path)
                .map(|(rel, _)| rel.clone())
                .collect()
        });
        Keeping { ours, others }
    }
}

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
        let Inside {
            others,
            mine,
            holding,
        } = match &self.keeping {
            Some(k) => match self.others_inside(remote_id, path, k).await {
                Ok(o) => o,
                Err(e) => {
                    let _ = self.store.commit(m, intent, vec![]).await;
                    return self.fail(&e);
                }
            },
            None => Inside::default(),
        };
        if let (Some(k), false) = (&self.keeping, others.is_empty()) {
            return match self.trash_ours(path, k, &others, &mine, &holding).await {
                Ok(trashed) => {
                    effects.splice(0..0, trashed.into_iter().map(Effect::Trashed));
                    match self.store.commit(m, intent, effects.clone()).await {
                        Ok(()) => Outcome::Done(effects),
                        Err(e) => self.store_failed(e),
                    }
                }
                Err(e) => {
                    // A retry trashes the rest (what is already trashed answers 404/410).
                    let _ = self.store.commit(m, intent, vec![]).await;
                    self.fail(&e)
                }
            };
        }
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

impl OpCtx {
    /// Others' items inside folder `path` (mirror-relative paths), and items of the
    /// daemon's own user the store does not know (a create a killed run left open):
    /// the follower's view, or else one listing of the folder and of each folder in it,
    /// with one metadata GET per file the store does not know (its `created_by`).
    ///
    /// The view names items by their remote paths; it is taken only when each folder on
    /// the way to their items is one the mirror holds at that path, or theirs. A folder of
    /// ours that someone renamed and put their items in is found by the listing, which
    /// goes by ids and says which of our folders hold theirs (`holding`).
    async fn others_inside(
        &self,
        remote_id: &str,
        path: &str,
        k: &Keeping,
    ) -> Result<Inside, crate::remote::Error> {
        if let Some(o) = &k.others {
            let ours: HashSet<&str> = k.ours.iter().map(|(rel, _, _)| rel.as_str()).collect();
            let theirs: HashSet<&str> = o.iter().map(String::as_str).collect();
            let explained = o.iter().all(|rel| {
                let mut at = crate::relpath::parent(rel);
                while at != path && is_within(at, path) {
                    if !ours.contains(at) && !theirs.contains(at) {
                        return false;
                    }
                    at = crate::relpath::parent(at);
                }
                true
            });
            if explained {
                return Ok(Inside {
                    others: o.clone(),
                    ..Inside::default()
                });
            }
        }
        let ours: HashSet<&str> = k.ours.iter().map(|(_, id, _)| id.as_str()).collect();
        let mut me: Option<String> = None;
        let mut found = Vec::new();
        let mut mine = Vec::new();
        let mut holding = HashSet::new();
        let mut unknown_dirs = Vec::new();
        // Each folder to list with the ids of the folders on the way down to it.
        let mut stack = vec![(
            remote_id.to_string(),
            path.to_string(),
            Vec::<String>::new(),
        )];
        while let Some((folder, prefix, above)) = stack.pop() {
            let list = self
                .client
                .children(&self.target.share_id, Some(&folder))
                .await?;
            for item in list
                .items
                .into_iter()
                .filter(|i| i.is_deleted != Some(true))
            {
                let rel = join(&prefix, &item.name);
                let dir = item.kind == crate::remote::ItemKind::Folder;
                let below = || {
                    let mut ids = above.clone();
                    ids.push(item.id.clone());
                    ids
                };
                if ours.contains(item.id.as_str()) {
                    if dir {
                        stack.push((item.id.clone(), rel, below()));
                    }
                } else if dir {
                    // Theirs if anything of theirs is inside, else ours (below).
                    unknown_dirs.push((rel.clone(), item.id.clone()));
                    stack.push((item.id.clone(), rel, below()));
                } else {
                    if me.is_none() {
                        me = Some(self.client.me().await?.id);
                    }
                    match self.client.file(&item.id).await {
                        Ok(f) if f.created_by.is_some() && f.created_by == me => {
                            mine.push((rel, item.id, false))
                        }
                        Ok(_) => {
                            holding.extend(above.iter().cloned());
                            found.push(rel)
                        }
                        Err(e) if is_gone(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        for (rel, id) in unknown_dirs {
            if found.iter().any(|o| is_within(o, &rel)) {
                found.push(rel);
            } else {
                mine.push((rel, id, true));
            }
        }
        found.sort();
        mine.sort();
        Ok(Inside {
            others: found,
            mine,
            holding,
        })
    }

    /// Trashes what the mirror holds in folder `path` around `others` (their items, which
    /// stay with the folders holding them); returns the paths trashed.
    async fn trash_ours(
        &self,
        path: &str,
        k: &Keeping,
        others: &[String],
        mine: &[(String, String, bool)],
        holding: &HashSet<String>,
    ) -> Result<Vec<String>, crate::remote::Error> {
        let holds_theirs = |dir: &str, id: &str| {
            holding.contains(id) || others.iter().any(|o| is_within(o, dir) && o != dir)
        };
        let mut trashed: Vec<String> = Vec::new();
        let mut all: Vec<&(String, String, bool)> = k.ours.iter().chain(mine).collect();
        all.sort();
        for (rel, id, dir) in all {
            if trashed.iter().any(|t| is_within(rel, t)) || others.contains(rel) {
                continue;
            }
            if *dir && holds_theirs(rel, id) {
                continue;
            }
            let r = if *dir {
                self.client.delete_folder(id, false).await
            } else {
                self.client.delete_file(id, false).await
            };
            match r {
                Ok(()) => trashed.push(rel.clone()),
                Err(e) if is_gone(&e) => {}
                Err(e) => return Err(e),
            }
        }
        let shown: Vec<&str> = others.iter().take(3).map(String::as_str).collect();
        let more = if others.len() > shown.len() {
            ", …"
        } else {
            ""
        };
        tracing::warn!(
            mirror = %self.target.name,
            "{path}: deleted locally, but others added {} item(s) to its remote folder ({}{more}); trashed the {} mirrored item(s) and kept the folder with theirs (remote_extras = \"keep\")",
            others.len(),
            shown.join(", "),
            trashed.len()
        );
        Ok(trashed)
    }
}
