//! The tree of a share at any moment, replayed from its change log (`scaidrive-api.md`
//! §12.2): every item by id with its name, parent, whether it is live, and for files the
//! version, checksum and size current at that moment. Pure: the caller feeds the log in
//! order and asks for paths.
//!
//! Items are kept as an id tree (name + parent id, from the rows' `metadata`), so a folder
//! rename or move carries its descendants whether or not the server emits a row per
//! descendant, and a folder deleted to the trash hides its subtree until a `created` row
//! restores it. A row without `metadata.parent_id` falls back to its `new_path`: the parent
//! is the live folder at that path's parent.

use std::collections::HashMap;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::remote::Change;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Folder,
}

/// One item as of the last row applied.
#[derive(Clone, Debug)]
pub struct Item {
    pub kind: Kind,
    pub name: String,
    /// `None` at the share root.
    pub parent: Option<String>,
    /// Not deleted itself (an ancestor may still be).
    pub live: bool,
    /// Deleted with `permanent=true` (or moved to another share).
    pub gone: bool,
    pub version: u64,
    pub sha256: Option<String>,
    pub size: u64,
    /// The time of the item's last change (its remote `modified_at` then).
    pub modified_at: Option<String>,
    /// When it was last deleted.
    pub deleted_at: Option<String>,
}

/// Parses a change's `changed_at` (RFC 3339).
pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

#[derive(Default)]
pub struct Timeline {
    items: HashMap<String, Item>,
    /// Every (file id, version) → checksum seen in the log.
    versions: HashMap<(String, u64), String>,
}

fn meta_str(c: &Change, key: &str) -> Option<String> {
    c.metadata.get(key)?.as_str().map(str::to_string)
}

impl Timeline {
    pub fn new() -> Timeline {
        Timeline::default()
    }

    /// Applies one row of the log.
    pub fn apply(&mut self, c: &Change) {
        let kind = match c.resource_type.as_str() {
            "file" => Kind::File,
            "folder" => Kind::Folder,
            _ => return,
        };
        let id = c.resource_id.clone();
        if c.change_type == "deleted" {
            if let Some(it) = self.items.get_mut(&id) {
                it.live = false;
                it.gone = c.metadata.get("permanent").and_then(|v| v.as_bool()) == Some(true)
                    || c.metadata.get("moved_to_share").is_some();
                it.deleted_at = c.changed_at.clone();
            }
            return;
        }
        // created, updated, renamed, moved: the item is live under `new_path`.
        let (name, parent) = self.placement(c);
        let it = self.items.entry(id.clone()).or_insert_with(|| Item {
            kind,
            name: String::new(),
            parent: None,
            live: true,
            gone: false,
            version: 0,
            sha256: None,
            size: 0,
            modified_at: None,
            deleted_at: None,
        });
        if let Some(name) = name {
            it.name = name;
        }
        if let Some(parent) = parent {
            it.parent = parent;
        }
        it.live = true;
        it.gone = false;
        // A folder rename's per-descendant `renamed` rows change no item of their own.
        let own = c.change_type != "renamed"
            || c.old_path.as_deref().map(crate::relpath::name_of)
                != c.new_path.as_deref().map(crate::relpath::name_of);
        if own {
            it.modified_at = c.changed_at.clone();
        }
        if kind == Kind::File {
            if let Some(v) = c.metadata.get("version").and_then(|v| v.as_u64()) {
                it.version = v;
            }
            if let Some(s) = meta_str(c, "checksum_sha256") {
                it.sha256 = Some(s);
            }
            if let Some(n) = c.metadata.get("size").and_then(|v| v.as_u64()) {
                it.size = n;
            }
            if let Some(sha) = &it.sha256 {
                self.versions.insert((id, it.version), sha.clone());
            }
        }
    }

    /// The (name, parent) a row puts its item at: from `metadata` when it has them, else
    /// from `new_path`.
    fn placement(&self, c: &Change) -> (Option<String>, Option<Option<String>>) {
        let name = meta_str(c, "name").or_else(|| {
            c.new_path
                .as_deref()
                .map(|p| crate::relpath::name_of(p.trim_matches('/')).to_string())
        });
        let parent = match c.metadata.get("parent_id") {
            Some(serde_json::Value::String(p)) => Some(Some(p.clone())),
            Some(serde_json::Value::Null) => Some(None),
            _ => c.new_path.as_deref().map(|p| {
                let dir = crate::relpath::parent(p.trim_matches('/'));
                if dir.is_empty() {
                    None
                } else {
                    self.folder_at(dir)
                }
            }),
        };
        (name, parent)
    }

    /// The live folder at `path` (relative to the share root, no leading slash).
    fn folder_at(&self, path: &str) -> Option<String> {
        self.items
            .iter()
            .filter(|(_, it)| it.kind == Kind::Folder)
            .find(|(id, _)| self.path_of(id).as_deref() == Some(path))
            .map(|(id, _)| id.clone())
    }

    pub fn get(&self, id: &str) -> Option<&Item> {
        self.items.get(id)
    }

    /// The path of a visible item (it and all its ancestors live), relative to the share
    /// root without a leading slash; `None` if it is deleted or under a deleted folder.
    pub fn path_of(&self, id: &str) -> Option<String> {
        let mut parts = Vec::new();
        let mut cur = Some(id.to_string());
        let mut hops = 0;
        while let Some(i) = cur {
            let it = self.items.get(&i)?;
            if !it.live {
                return None;
            }
            parts.push(it.name.clone());
            cur = it.parent.clone();
            hops += 1;
            if hops > 10_000 {
                return None; // a cycle: the log is inconsistent
            }
        }
        parts.reverse();
        Some(parts.join("/"))
    }

    /// Every visible item: (id, path, item).
    pub fn visible(&self) -> Vec<(String, String, &Item)> {
        let mut out: Vec<_> = self
            .items
            .iter()
            .filter_map(|(id, it)| self.path_of(id).map(|p| (id.clone(), p, it)))
            .collect();
        out.sort_by(|a, b| a.1.cmp(&b.1));
        out
    }

    /// A visible file holding content `sha256` in some version: (file id, version).
    pub fn visible_copy(&self, sha256: &str) -> Option<(String, u64)> {
        let mut hits: Vec<_> = self
            .versions
            .iter()
            .filter(|(_, s)| s.as_str() == sha256)
            .map(|((id, v), _)| (id.clone(), *v))
            .filter(|(id, v)| {
                self.path_of(id).is_some() && self.items.get(id).is_some_and(|it| it.version >= *v)
            })
            .collect();
        hits.sort();
        hits.into_iter().next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(kind: &str, id: &str, ct: &str, new: Option<&str>, meta: serde_json::Value) -> Change {
        Change {
            resource_type: kind.into(),
            resource_id: id.into(),
            change_type: ct.into(),
            changed_at: Some("2026-01-01T00:00:00Z".into()),
            new_path: new.map(str::to_string),
            metadata: meta,
            ..Change::default()
        }
    }

    #[test]
    fn folder_moves_and_trash_carry_the_subtree() {
        let mut t = Timeline::new();
        t.apply(&row(
            "folder",
            "a",
            "created",
            Some("/A"),
            json!({"name":"A","parent_id":null}),
        ));
        t.apply(&row(
            "folder",
            "b",
            "created",
            Some("/B"),
            json!({"name":"B","parent_id":null}),
        ));
        t.apply(&row(
            "file",
            "f",
            "created",
            Some("/A/x"),
            json!({"name":"x","parent_id":"a","version":1,"checksum_sha256":"s1","size":1}),
        ));
        assert_eq!(t.path_of("f").as_deref(), Some("A/x"));
        // Folder move without per-descendant rows.
        t.apply(&row(
            "folder",
            "a",
            "moved",
            Some("/B/A"),
            json!({"name":"A","parent_id":"b"}),
        ));
        assert_eq!(t.path_of("f").as_deref(), Some("B/A/x"));
        t.apply(&row(
            "folder",
            "b",
            "deleted",
            None,
            json!({"permanent": false}),
        ));
        assert_eq!(t.path_of("f"), None);
        assert!(t.visible().is_empty() || t.visible().iter().all(|v| v.0 != "f"));
        t.apply(&row(
            "folder",
            "b",
            "created",
            Some("/B"),
            json!({"name":"B","parent_id":null}),
        ));
        assert_eq!(t.path_of("f").as_deref(), Some("B/A/x"));
        t.apply(&row(
            "file",
            "f",
            "updated",
            Some("/B/A/x"),
            json!({"name":"x","parent_id":"a","version":2,"checksum_sha256":"s2","size":2}),
        ));
        assert_eq!(t.visible_copy("s1"), Some(("f".into(), 1)));
        assert_eq!(t.get("f").map(|i| i.version), Some(2));
    }

    #[test]
    fn rows_without_metadata_use_new_path() {
        let mut t = Timeline::new();
        t.apply(&row("folder", "a", "created", Some("/A"), json!({})));
        t.apply(&row("file", "f", "created", Some("/A/y"), json!({})));
        assert_eq!(t.path_of("f").as_deref(), Some("A/y"));
        t.apply(&row("file", "f", "renamed", Some("/A/z"), json!({})));
        assert_eq!(t.path_of("f").as_deref(), Some("A/z"));
    }
}
