//! The remote tree of a share rebuilt from its change log read from the start (cursor 0),
//! as the Folders page advises for "the whole share for caching/indexing": about 2 units
//! per 5,000 changes instead of 2 units per folder listed.
//!
//! The log names every resource with its path after each change. What it does not repeat
//! is folded here: a folder move is one row (its subtree's paths follow it), a folder
//! delete is one row (its live subtree goes with it, and a restore brings back exactly
//! that subtree), and a subtree moved in from another share arrives as one `moved` row for
//! its top folder only — such folders are reported in [`LogTree::foreign`] so the caller
//! lists them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::Engine;
use super::error::{Context, MirrorError};
use super::pass::{disk_item, entry_of};
use super::recovery::local_matches;
use super::verify::list_subtree;
use crate::remote::{Change, ChildItem, Cursor, ItemKind};
use crate::store::{self, Effect, EntryKind};
use crate::upload::MirrorTarget;

/// Changes asked for per page when reading the whole log (the documented maximum).
const WHOLE_LOG_PAGE: u32 = 5000;
/// Below this many known folders a listing is cheap enough not to try the log.
const MIN_FOLDERS: u64 = 5;

#[derive(Clone, Debug, PartialEq)]
struct Item {
    dir: bool,
    /// Absolute path in the share.
    path: String,
    live: bool,
    /// The folder whose delete took this item with it.
    hidden_by: Option<String>,
    size: Option<u64>,
    /// The file's content as the last row that named it said (`checksum_sha256`,
    /// `version` in the row's metadata, where the server fills them).
    sha: Option<String>,
    version: Option<i64>,
}

/// One remote item: (is a folder, id, size).
pub(super) type Remote = (bool, String, Option<u64>);

#[derive(Debug, Default)]
pub(super) struct LogTree {
    items: HashMap<String, Item>,
    /// Folders that came from another share (their subtree is not in this log).
    foreign: Vec<String>,
}

fn under(path: &str, top: &str) -> bool {
    path.strip_prefix(top).is_some_and(|r| r.starts_with('/'))
}

impl LogTree {
    pub(super) fn apply(&mut self, c: &Change) {
        if c.resource_type == "share" {
            return;
        }
        let id = c.resource_id.as_str();
        let dir = c.resource_type == "folder";
        let size = c.metadata.get("size").and_then(|v| v.as_u64());
        let sha = c
            .metadata
            .get("checksum_sha256")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let version = c.metadata.get("version").and_then(|v| v.as_i64());
        self.apply_placement(c, id, dir, size);
        if let Some(it) = self.items.get_mut(id)
            && !dir
            && (sha.is_some() || version.is_some())
        {
            it.sha = sha;
            it.version = version;
        }
    }

    fn apply_placement(&mut self, c: &Change, id: &str, dir: bool, size: Option<u64>) {
        match c.change_type.as_str() {
            "created" => {
                let Some(path) = c.new_path.clone() else {
                    return;
                };
                let was_hidden = self.items.get(id).is_some_and(|it| !it.live);
                let it = self.items.entry(id.to_string()).or_insert(Item {
                    dir,
                    path: path.clone(),
                    live: true,
                    hidden_by: None,
                    size,
                    sha: None,
                    version: None,
                });
                it.live = true;
                it.hidden_by = None;
                it.path = path;
                if size.is_some() {
                    it.size = size;
                }
                if dir && was_hidden {
                    self.unhide(id);
                }
            }
            "updated" => {
                if let Some(it) = self.items.get_mut(id) {
                    if size.is_some() {
                        it.size = size;
                    }
                    if let Some(p) = &c.new_path {
                        it.path = p.clone();
                    }
                }
            }
            "renamed" | "moved" => {
                let Some(new) = c.new_path.clone() else {
                    return;
                };
                let Some(it) = self.items.get(id).cloned() else {
                    // Never seen in this share: it came from another one.
                    self.items.insert(
                        id.to_string(),
                        Item {
                            dir,
                            path: new,
                            live: true,
                            hidden_by: None,
                            size,
                            sha: None,
                            version: None,
                        },
                    );
                    if dir {
                        self.foreign.push(id.to_string());
                    }
                    return;
                };
                let old = c.old_path.clone().unwrap_or_else(|| it.path.clone());
                if dir {
                    // Its subtree follows (the log repeats only renames, for live items).
                    for d in self.items.values_mut() {
                        if under(&d.path, &old) {
                            d.path = format!("{new}{}", &d.path[old.len()..]);
                        }
                    }
                }
                let back = !it.live;
                let it = self.items.get_mut(id).expect("present");
                it.path = new;
                it.live = true;
                it.hidden_by = None;
                if dir && back {
                    // Back from another share: what is inside now is not in this log.
                    self.unhide(id);
                    self.foreign.push(id.to_string());
                }
            }
            "deleted" => {
                let Some(it) = self.items.get_mut(id) else {
                    return;
                };
                it.live = false;
                let top = it.path.clone();
                if dir {
                    for d in self.items.values_mut() {
                        if d.live && under(&d.path, &top) {
                            d.live = false;
                            d.hidden_by = Some(id.to_string());
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// Brings back what the delete of folder `id` took with it.
    fn unhide(&mut self, id: &str) {
        for d in self.items.values_mut() {
            if d.hidden_by.as_deref() == Some(id) {
                d.live = true;
                d.hidden_by = None;
            }
        }
    }

    /// Live items under `base` (absolute, `""` = share root) by mirror-relative path, and
    /// the relative paths of folders whose contents must be listed (moved in from another
    /// share; their items are left out).
    pub(super) fn under(&self, base: &str) -> (BTreeMap<String, Remote>, Vec<(String, String)>) {
        let rel = |p: &str| -> Option<String> {
            if base.is_empty() {
                p.strip_prefix('/').map(str::to_string)
            } else {
                p.strip_prefix(base)
                    .and_then(|r| r.strip_prefix('/'))
                    .map(str::to_string)
            }
        };
        let foreign: Vec<(String, String)> = self
            .foreign
            .iter()
            .filter_map(|id| self.items.get(id).filter(|it| it.live).map(|it| (id, it)))
            .filter_map(|(id, it)| rel(&it.path).map(|r| (r, id.clone())))
            .collect();
        let mut out = BTreeMap::new();
        for (id, it) in &self.items {
            if !it.live {
                continue;
            }
            let Some(r) = rel(&it.path) else { continue };
            if r.is_empty() || foreign.iter().any(|(f, _)| under(&r, f)) {
                continue;
            }
            out.insert(r, (it.dir, id.clone(), if it.dir { None } else { it.size }));
        }
        (out, foreign)
    }
}

impl Engine {
    /// The remote tree under the mirror's folder read from the change log from its start,
    /// when that is cheaper than listing the folders the mirror knows (2 units each): the
    /// log is read only while it has cost less than half of that listing, so a long log
    /// costs at most 1.5 times the listing before the caller lists instead (`None`).
    /// Folders moved in from another share are listed. Also `None` if the log cannot be
    /// read from its start (retention).
    pub(super) async fn remote_from_log(
        &self,
        t: &MirrorTarget,
    ) -> Option<BTreeMap<String, Remote>> {
        let folders = 1 + self
            .known
            .values()
            .filter(|e| e.kind == EntryKind::Dir)
            .count() as u64;
        self.whole_log(t, folders).await.map(|w| w.items)
    }

    /// The change log read from its start while that costs less than half of listing
    /// `folders` folders; `None` when it is longer, cannot be read, or `folders` is too
    /// few for it to pay.
    pub(super) async fn whole_log(&self, t: &MirrorTarget, folders: u64) -> Option<WholeLog> {
        if folders < MIN_FOLDERS {
            return None;
        }
        let budget = folders; // half of 2 units per folder
        let client = &self.deps.client;
        let (mut cursor, mut spent, mut pages) = (Cursor("0".into()), 0u64, 0u64);
        let mut tree = LogTree::default();
        loop {
            if spent + 2 > budget {
                tracing::info!(mirror = %self.name, "the change log is longer than listing {folders} folder(s) costs; listing instead");
                return None;
            }
            let page = match client
                .changes(&t.share_id, Some(&cursor), Some(WHOLE_LOG_PAGE))
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::info!(mirror = %self.name, "cannot read the change log from its start ({e}); listing instead");
                    return None;
                }
            };
            spent += 2;
            pages += 1;
            for c in &page.changes {
                tree.apply(c);
            }
            cursor = page.cursor;
            if !page.has_more {
                break;
            }
        }
        let (mut items, foreign) = tree.under(&self.base_abs());
        for (rel, id) in &foreign {
            if let Err(e) =
                list_subtree(client, &t.share_id, Some(id.clone()), rel, &mut items).await
            {
                tracing::info!(mirror = %self.name, "{e}; listing instead");
                return None;
            }
        }
        tracing::info!(mirror = %self.name, "read the remote tree from the change log: {pages} page(s) instead of listing {folders} folder(s)");
        let content = items
            .values()
            .filter_map(|(dir, id, _)| {
                let it = tree.items.get(id).filter(|_| !dir)?;
                Some((id.clone(), (it.sha.clone(), it.version)))
            })
            .collect();
        Some(WholeLog {
            items,
            content,
            head: cursor,
        })
    }
}

impl Engine {
    /// The rebuild of a lost state database from the change log read from its start,
    /// when that costs less than half of listing the folders there may be (the local
    /// root's directories, counted without reading a file, plus the base): every remote
    /// item whose local counterpart has the same path and kind is adopted as
    /// `adopt_remote` does, with the content the log names (no metadata GET where the
    /// rows carry `checksum_sha256`). The position after the log's last row becomes the
    /// follower's, with the items left unadopted as others' (see `drift`). `None`: list.
    pub(super) async fn adopt_from_log(
        &mut self,
        t: &Arc<MirrorTarget>,
    ) -> Result<Option<(usize, usize)>, MirrorError> {
        let root = t.root.clone();
        let dirs = tokio::task::spawn_blocking(move || count_dirs(&root, 1_000_000))
            .await
            .unwrap_or(0);
        let Some(log) = self.whole_log(t, dirs + 1).await else {
            return Ok(None);
        };
        let items: Vec<(String, ChildItem)> = log
            .items
            .iter()
            .map(|(rel, (dir, id, size))| {
                let item = ChildItem {
                    id: id.clone(),
                    name: crate::relpath::name_of(rel).to_string(),
                    kind: if *dir {
                        ItemKind::Folder
                    } else {
                        ItemKind::File
                    },
                    size: *size,
                    ..ChildItem::default()
                };
                (rel.clone(), item)
            })
            .collect();
        let (root, ignore) = (t.root.clone(), self.ignore.clone());
        let looked = tokio::task::spawn_blocking(move || local_matches(&root, &ignore, items))
            .await
            .context("adopting the remote tree")?;
        let (mut same, mut differing) = (0usize, 0usize);
        let mut effects = Vec::new();
        for (path, item, local) in looked {
            let d = disk_item(&path, &local);
            if item.kind == ItemKind::Folder {
                effects.push(Effect::Upsert(entry_of(&d, &item.id, None, None)));
                same += 1;
                continue;
            }
            let logged = log
                .content
                .get(&item.id)
                .and_then(|(sha, v)| sha.clone().map(|s| (s, *v)));
            let Some((entry, matches)) = self.adopt_file(t, &d, &item, logged).await else {
                continue;
            };
            if matches {
                same += 1;
            } else {
                differing += 1;
            }
            effects.push(Effect::Upsert(entry));
        }
        // A folder is adopted only with its parent (a listing walks down from the base).
        let adopted: HashSet<String> = effects
            .iter()
            .filter_map(|e| match e {
                Effect::Upsert(e) => Some(e.path.clone()),
                _ => None,
            })
            .collect();
        effects.retain(|e| match e {
            Effect::Upsert(e) => {
                let mut p = e.path.as_str();
                loop {
                    match p.rsplit_once('/') {
                        Some((parent, _)) if !adopted.contains(parent) => break false,
                        Some((parent, _)) => p = parent,
                        None => break true,
                    }
                }
            }
            _ => true,
        });
        if !effects.is_empty() {
            self.deps.store.apply(t.mirror, effects.clone()).await?;
            let known = Arc::make_mut(&mut self.known);
            for e in &effects {
                store::apply_to_map(known, e);
            }
        }
        let ours: HashSet<&str> = self.known.values().map(|e| e.remote_id.as_str()).collect();
        let others = log
            .items
            .iter()
            .filter(|(_, (_, id, _))| !ours.contains(id.as_str()))
            .map(|(rel, (dir, id, _))| (id.clone(), (rel.clone(), *dir)))
            .collect();
        self.note_adopted_at(log.head, others);
        Ok(Some((same, differing)))
    }
}

/// An item a create left, as the rows say: (id, SHA-256, version, size).
pub(super) type Logged = (String, Option<String>, Option<i64>, Option<u64>);

impl LogTree {
    /// The live item called `name` of the given kind in the folder at absolute `parent`
    /// (`""` = the share root): (id, SHA-256, version, size) as the rows last said.
    pub(super) fn created_in(&self, parent: &str, name: &str, dir: bool) -> Option<Logged> {
        let want = format!("{parent}/{name}");
        self.items
            .iter()
            .find(|(_, it)| it.live && it.dir == dir && it.path == want)
            .map(|(id, it)| (id.clone(), it.sha.clone(), it.version, it.size))
    }

    /// Where the rows last put folder `id` (absolute), if they name it.
    pub(super) fn folder_path(&self, id: &str) -> Option<&str> {
        self.items
            .get(id)
            .filter(|it| it.dir && it.live)
            .map(|it| it.path.as_str())
    }
}

impl Engine {
    /// The rows after the mirror's stored position, folded, for settling the create
    /// intents opened after that position was read (so a create that landed is among the
    /// rows): read while they cost at most `budget` units (what settling by listing
    /// would), else `None` (list instead), as for a position the server refuses.
    /// The absolute path of remote folder `parent` as the rows after the stored position
    /// leave it, else as the mirror holds it (`None`: not known, so list).
    pub(super) fn parent_abs(&self, log: &LogTree, parent: &Option<String>) -> Option<String> {
        let t = self.target.as_ref()?;
        let Some(id) = parent else {
            return Some(String::new());
        };
        if let Some(p) = log.folder_path(id) {
            return Some(p.to_string());
        }
        if t.base_folder_id.as_deref() == Some(id.as_str()) {
            return Some(self.base_abs());
        }
        self.known
            .values()
            .find(|e| e.kind == EntryKind::Dir && e.remote_id == *id)
            .map(|e| format!("{}/{}", self.base_abs(), e.path))
    }

    pub(super) async fn log_since_cursor(
        &mut self,
        t: &MirrorTarget,
        opened_from: i64,
        budget: u64,
    ) -> Option<LogTree> {
        let from = match self.intents.log_from.clone() {
            Some(c) => c,
            None => {
                let stored = self.deps.store.sync_cursor(t.mirror).await.ok()??;
                if stored.share_id != t.share_id || stored.read_at >= opened_from {
                    return None;
                }
                let c = Cursor(stored.cursor);
                self.intents.log_from = Some(c.clone());
                c
            }
        };
        let (mut cursor, mut spent) = (from, 0u64);
        let mut tree = LogTree::default();
        loop {
            if spent + 2 > budget {
                return None;
            }
            let page = match self
                .deps
                .client
                .changes(&t.share_id, Some(&cursor), Some(WHOLE_LOG_PAGE))
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::info!(mirror = %self.name, "cannot read the change log to settle open operations ({e}); listing instead");
                    return None;
                }
            };
            spent += 2;
            for c in &page.changes {
                tree.apply(c);
            }
            cursor = page.cursor;
            if !page.has_more {
                return Some(tree);
            }
        }
    }
}

/// Directories under `root` (not following symlinks), counted up to `cap`.
fn count_dirs(root: &std::path::Path, cap: u64) -> u64 {
    let mut n = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                n += 1;
                if n >= cap {
                    return n;
                }
                stack.push(e.path());
            }
        }
    }
    n
}

/// The log read from its start: the remote tree under the mirror's folder, what the rows
/// said of each file's content ((SHA-256, version), where they said it), and the position
/// after the last row.
pub(super) struct WholeLog {
    pub(super) items: BTreeMap<String, Remote>,
    pub(super) content: HashMap<String, (Option<String>, Option<i64>)>,
    pub(super) head: Cursor,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(kind: &str, ty: &str, id: &str, old: Option<&str>, new: Option<&str>) -> Change {
        Change {
            resource_type: ty.into(),
            resource_id: id.into(),
            change_type: kind.into(),
            old_path: old.map(str::to_string),
            new_path: new.map(str::to_string),
            metadata: if ty == "file" {
                json!({ "size": 3 })
            } else {
                json!({})
            },
            ..Change::default()
        }
    }

    fn paths(t: &LogTree, base: &str) -> Vec<String> {
        t.under(base).0.into_keys().collect()
    }

    #[test]
    fn folds_moves_deletes_and_restores_of_subtrees() {
        let mut t = LogTree::default();
        for c in [
            row("created", "folder", "b", None, Some("/base")),
            row("created", "folder", "a", None, Some("/base/a")),
            row("created", "folder", "s", None, Some("/base/a/s")),
            row("created", "file", "x", None, Some("/base/a/s/x")),
            row("created", "file", "y", None, Some("/base/a/y")),
            row("created", "file", "o", None, Some("/other/o")),
        ] {
            t.apply(&c);
        }
        assert_eq!(paths(&t, "/base"), ["a", "a/s", "a/s/x", "a/y"]);
        // A folder move is one row: the subtree follows.
        t.apply(&row(
            "moved",
            "folder",
            "s",
            Some("/base/a/s"),
            Some("/base/s"),
        ));
        assert_eq!(paths(&t, "/base"), ["a", "a/y", "s", "s/x"]);
        // A file deleted on its own, then its folder deleted and restored: the file stays
        // deleted, what the folder's delete took comes back.
        t.apply(&row("deleted", "file", "y", Some("/base/a/y"), None));
        t.apply(&row("created", "file", "z", None, Some("/base/a/z")));
        t.apply(&row("deleted", "folder", "a", Some("/base/a"), None));
        assert_eq!(paths(&t, "/base"), ["s", "s/x"]);
        t.apply(&row("created", "folder", "a", None, Some("/base/a")));
        assert_eq!(paths(&t, "/base"), ["a", "a/z", "s", "s/x"]);
        // Renames repeat descendants; a move out of the base leaves it.
        t.apply(&row(
            "renamed",
            "folder",
            "s",
            Some("/base/s"),
            Some("/base/t"),
        ));
        t.apply(&row(
            "renamed",
            "file",
            "x",
            Some("/base/s/x"),
            Some("/base/t/x"),
        ));
        t.apply(&row(
            "moved",
            "folder",
            "a",
            Some("/base/a"),
            Some("/other/a"),
        ));
        assert_eq!(paths(&t, "/base"), ["t", "t/x"]);
        assert_eq!(paths(&t, "/other"), ["a", "a/z", "o"]);
        // A folder from another share: listed, its (unknown) contents left out.
        t.apply(&row(
            "moved",
            "folder",
            "f",
            Some("/x/f"),
            Some("/base/t/f"),
        ));
        let (items, foreign) = t.under("/base");
        assert_eq!(foreign, [("t/f".to_string(), "f".to_string())]);
        assert_eq!(items.keys().collect::<Vec<_>>(), ["t", "t/f", "t/x"]);
        assert_eq!(items["t/x"], (false, "x".to_string(), Some(3)));
    }
}
