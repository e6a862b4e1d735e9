//! The follower's view of others' items under the mirror's folder ([`RemoteOthers`]), so
//! that a local folder delete under `remote_extras = "keep"` trashes only what the mirror
//! holds and leaves their items (and the folders holding them) in place.
//!
//! The view is whole only from a moment when the daemon saw everything under its folder:
//! a base folder it created itself (nothing of theirs yet), or a listing (`verify`, a log
//! gap). From there every poll brings it up to date with the rows it reads, and a folder
//! delete first reads the rows after the cursor (one `/sync/changes` call) so an item
//! added since the last poll is not missed. After a restart, or with the log off, the
//! view is unknown and the uploader lists the folder before deleting it.

use std::collections::HashSet;
use std::sync::Arc;

use super::fold::follow_others;
use super::{MAX_PAGES, PAGE};
use crate::mirror::Engine;
use crate::mirror::logtree::Remote;
use crate::remote::Change;
use crate::upload::RemoteOthers;

impl Engine {
    /// Start-up created the remote base folder: nothing of others is in it.
    pub(in crate::mirror) fn note_fresh_base(&mut self) {
        self.drift.fresh_base = true;
    }

    /// A rebuild read the log from its start up to `head`: the follower continues from
    /// there (the entries were recorded from the tree as of `head`), and the items it left
    /// unadopted are others'.
    pub(in crate::mirror) fn note_adopted_at(
        &mut self,
        head: crate::remote::Cursor,
        others: RemoteOthers,
    ) {
        self.drift.adopted = Some((head, others));
    }

    /// Brings the view up to date with `rows` (read after the cursor, in order).
    pub(super) fn follow_others_rows(&mut self, rows: &[Change]) {
        if rows.is_empty() || self.drift.others.is_none() {
            return;
        }
        let ids: HashSet<&str> = rows.iter().map(|c| c.resource_id.as_str()).collect();
        let known = Arc::clone(&self.known);
        let ours: HashSet<&str> = known
            .values()
            .map(|e| e.remote_id.as_str())
            .filter(|id| ids.contains(id))
            .collect();
        self.follow_others_rows_by(rows, &|id| ours.contains(id));
    }

    /// [`Self::follow_others_rows`] with the mirror's own items told by `ours` (for an
    /// unloaded mirror: the page's items read from the store).
    pub(super) fn follow_others_rows_by(&mut self, rows: &[Change], ours: &dyn Fn(&str) -> bool) {
        let base = self.base_abs();
        let me = self.drift.user_id.clone();
        let Some(others) = self.drift.others.as_mut() else {
            return;
        };
        follow_others(
            rows,
            others,
            &mut self.drift.hidden_others,
            ours,
            &base,
            me.as_deref(),
        );
    }

    /// A listing of the whole remote folder (`verify`, a log gap) makes the view whole:
    /// every remote item the mirror does not hold is someone else's.
    pub(in crate::mirror) fn seed_others(
        &mut self,
        remote: &std::collections::BTreeMap<String, Remote>,
    ) {
        if self.poll_every().is_none() || self.drift.cursor.is_none() {
            return;
        }
        let ours: HashSet<&str> = self.known.values().map(|e| e.remote_id.as_str()).collect();
        let others: RemoteOthers = remote
            .iter()
            .filter(|(_, (_, id, _))| !ours.contains(id.as_str()))
            .map(|(rel, (dir, id, _))| (id.clone(), (rel.clone(), *dir)))
            .collect();
        self.drift.others = Some(others);
        self.drift.hidden_others.clear();
    }

    /// The view brought up to the server's present (the rows after the cursor read, the
    /// cursor left where it is: the next poll acts on them), for a folder delete about to
    /// run. `None` when it is unknown or the log cannot be read now.
    pub(in crate::mirror) async fn others_now(&mut self) -> Option<RemoteOthers> {
        self.drift.others.as_ref()?;
        let share = self.target.as_ref()?.share_id.clone();
        let mut cursor = self.drift.cursor.clone()?;
        let mut rows = Vec::new();
        for page in 0.. {
            if page == MAX_PAGES {
                return None;
            }
            match self
                .deps
                .client
                .changes(&share, Some(&cursor), Some(PAGE))
                .await
            {
                Ok(p) => {
                    rows.extend(p.changes);
                    cursor = p.cursor;
                    if !p.has_more {
                        break;
                    }
                }
                Err(e) => {
                    tracing::info!(mirror = %self.name, "change log: cannot read it before a folder delete ({e}); listing the folder instead");
                    return None;
                }
            }
        }
        self.follow_others_rows(&rows);
        self.drift.others.clone()
    }
}
