//! The pure half of following the change log: the rows of one read folded per resource
//! into its final state ([`fold`]), and what that asks of the mirror given what it holds
//! and what the local root has ([`plan`]). Table-tested below.

use std::collections::{BTreeMap, HashMap};

use crate::remote::Change;
use crate::store::{Entry, EntryKind};
use crate::upload::RemoteOthers;

/// One resource's rows folded into its final state.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Seen {
    resource_type: String,
    /// The last row that placed or removed it was a delete.
    deleted: bool,
    /// Where the log last put it (absolute path in the share).
    path: Option<String>,
    /// The latest `updated` row: (version, checksum, who).
    content: Option<(Option<i64>, Option<String>, Option<String>)>,
    /// Who made the last change, and who created it (when the rows say).
    by: Option<String>,
    creator: Option<String>,
    /// A folder delete in the same rows took it along (its fate is the folder's).
    hidden_by: Option<String>,
}

fn is_under(path: &str, top: &str) -> bool {
    path.strip_prefix(top).is_some_and(|r| r.starts_with('/'))
}

pub(super) fn fold(rows: &[Change], seen: &mut BTreeMap<String, Seen>) {
    for c in rows {
        if c.resource_type == "share" {
            continue;
        }
        let id = c.resource_id.as_str();
        let dir = c.resource_type == "folder";
        // A folder's move or delete is one row: what the same rows showed inside it
        // follows it (renames repeat every live descendant, moves and deletes do not).
        match (c.change_type.as_str(), &c.old_path, &c.new_path) {
            ("renamed" | "moved", Some(old), Some(new)) if dir => {
                for (other, o) in seen.iter_mut() {
                    if other != id
                        && let Some(p) = o.path.as_mut().filter(|p| is_under(p, old))
                    {
                        *p = format!("{new}{}", &p[old.len()..]);
                    }
                }
            }
            ("deleted", Some(old), _) if dir => {
                for (other, o) in seen.iter_mut() {
                    let inside = o.path.as_deref().is_some_and(|p| is_under(p, old));
                    if other != id && inside && !o.deleted && o.hidden_by.is_none() {
                        o.hidden_by = Some(id.to_string());
                    }
                }
            }
            ("created", _, _) if dir => {
                for o in seen.values_mut() {
                    if o.hidden_by.as_deref() == Some(id) {
                        o.hidden_by = None;
                    }
                }
            }
            _ => {}
        }
        let s = seen.entry(c.resource_id.clone()).or_default();
        s.resource_type = c.resource_type.clone();
        s.by = c.changed_by.clone();
        match c.change_type.as_str() {
            "deleted" => s.deleted = true,
            "created" | "renamed" | "moved" => {
                if c.change_type == "created" && !s.deleted && s.creator.is_none() {
                    s.creator = c.changed_by.clone();
                }
                s.deleted = false;
                if c.new_path.is_some() {
                    s.path = c.new_path.clone();
                }
            }
            "updated" => {
                if c.new_path.is_some() {
                    s.path = c.new_path.clone();
                }
                let version = c.metadata.get("version").and_then(|v| v.as_i64());
                let sha = c
                    .metadata
                    .get("checksum_sha256")
                    .and_then(|v| v.as_str())
                    .map(str::to_string);
                s.content = Some((version, sha, c.changed_by.clone()));
            }
            _ => {}
        }
    }
}

/// Drops from `seen` the mirrored items whose folded state agrees with the store (our own
/// uploads, renames, deletes): they need no repair, whatever later rows say starts them
/// afresh. Keeps everything [`plan`] may act on: others' items, deletes, moves, newer
/// content, and what a folder delete in the rows hid.
pub(super) fn prune(seen: &mut BTreeMap<String, Seen>, by_id: &HashMap<&str, &Entry>, base: &str) {
    seen.retain(|id, s| {
        let Some(e) = by_id.get(id.as_str()) else {
            return true;
        };
        if s.deleted || s.hidden_by.is_some() {
            return true;
        }
        if s.path
            .as_deref()
            .is_some_and(|p| relative(base, p).as_deref() != Some(e.path.as_str()))
        {
            return true;
        }
        match (&s.content, e.kind) {
            (Some((version, sha, _)), EntryKind::File) => {
                let newer = match (version, e.remote_version) {
                    (Some(v), Some(r)) => *v > r,
                    _ => true,
                };
                newer && (sha.is_none() || *sha != e.sha256)
            }
            _ => false,
        }
    });
}

/// What one poll does about what it read.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Repair {
    /// A mirrored item deleted remotely: restore it from the trash.
    Restore { path: String, id: String, dir: bool },
    /// A mirrored item that is elsewhere (absolute `now`): put it back at `path`.
    PutBack {
        path: String,
        id: String,
        dir: bool,
        now: String,
    },
    /// A remote edit of a mirrored file: upload the local content as a new version.
    Overwrite {
        path: String,
        version: Option<i64>,
        sha: Option<String>,
        by: Option<String>,
    },
    /// Gone for good remotely: forget it, so the next pass uploads it again.
    Forget { path: String },
    /// Created remotely by someone else, not in the local root.
    Extra {
        rel: String,
        id: String,
        dir: bool,
        by: Option<String>,
    },
}

/// The mirror-relative path of an absolute share path under `base` (`"/a/b"` or `""`
/// for the share root); `None` outside it, `Some("")` for the base itself.
pub(super) fn relative(base: &str, abs: &str) -> Option<String> {
    if base.is_empty() {
        return abs.strip_prefix('/').map(str::to_string);
    }
    if abs == base {
        return Some(String::new());
    }
    abs.strip_prefix(base)
        .and_then(|r| r.strip_prefix('/'))
        .map(str::to_string)
}

/// The repairs for `seen` (pure: the store's view, what exists locally, the setting).
pub(super) fn plan(
    seen: &BTreeMap<String, Seen>,
    known: &BTreeMap<String, Entry>,
    base: &str,
    base_id: Option<&str>,
    me: Option<&str>,
    on_disk: &dyn Fn(&str) -> bool,
) -> Vec<Repair> {
    let by_id: HashMap<&str, &Entry> = known.values().map(|e| (e.remote_id.as_str(), e)).collect();
    let mut out = Vec::new();
    // The mirror's own folder, trashed or moved: everything in it went along.
    if let Some((id, s)) = base_id.and_then(|b| seen.get_key_value(b)) {
        if s.deleted {
            out.push(Repair::Restore {
                path: String::new(),
                id: id.clone(),
                dir: true,
            });
        }
        if let Some(now) = s.path.as_ref().filter(|p| *p != base) {
            out.push(Repair::PutBack {
                path: String::new(),
                id: id.clone(),
                dir: true,
                now: now.clone(),
            });
        }
    }
    let mut extra_dirs: Vec<String> = Vec::new();
    // Parents first: a restored or put-back folder brings its subtree with it.
    let mut items: Vec<(&String, &Seen)> = seen.iter().collect();
    let depth = |s: &Seen| {
        s.path
            .as_deref()
            .map_or(usize::MAX, |p| p.matches('/').count())
    };
    items.sort_by_key(|(id, s)| {
        by_id
            .get(id.as_str())
            .map_or(depth(s), |e| e.path.matches('/').count())
    });
    for (id, s) in items {
        if Some(id.as_str()) == base_id || s.hidden_by.is_some() {
            continue;
        }
        if let Some(e) = by_id.get(id.as_str()) {
            let dir = e.kind == EntryKind::Dir;
            if !on_disk(&e.path) {
                // Deleted here too: the pass deletes (or already deleted) it remotely.
                continue;
            }
            if s.deleted {
                out.push(Repair::Restore {
                    path: e.path.clone(),
                    id: id.clone(),
                    dir,
                });
            }
            if let Some(now) = &s.path
                && relative(base, now).as_deref() != Some(e.path.as_str())
            {
                out.push(Repair::PutBack {
                    path: e.path.clone(),
                    id: id.clone(),
                    dir,
                    now: now.clone(),
                });
            }
            if let (Some((version, sha, by)), false) = (&s.content, dir) {
                let newer = match (version, e.remote_version) {
                    (Some(v), Some(r)) => *v > r,
                    _ => true,
                };
                let differs = sha.is_none() || *sha != e.sha256;
                if newer && differs {
                    out.push(Repair::Overwrite {
                        path: e.path.clone(),
                        version: *version,
                        sha: sha.clone(),
                        by: by.clone(),
                    });
                }
            }
            continue;
        }
        // Not mirrored: someone else's item, if it is (still) under the mirror's folder.
        // One this daemon's user created is never an extra: it is our own (an upload
        // whose answer was lost, settled by the crash rule), or a colleague sharing our
        // account, whom we cannot tell apart.
        if s.deleted || (me.is_some() && s.creator.as_deref() == me) {
            continue;
        }
        let Some(rel) = s.path.as_deref().and_then(|p| relative(base, p)) else {
            continue;
        };
        if rel.is_empty() || known.contains_key(&rel) || on_disk(&rel) {
            continue;
        }
        if extra_dirs
            .iter()
            .any(|d| rel.starts_with(d.as_str()) && rel[d.len()..].starts_with('/'))
        {
            continue;
        }
        let dir = s.resource_type == "folder";
        if dir {
            extra_dirs.push(rel.clone());
        }
        out.push(Repair::Extra {
            rel,
            id: id.clone(),
            dir,
            by: s.creator.clone().or_else(|| s.by.clone()),
        });
    }
    out
}

/// Others' items under the mirror's folder ([`RemoteOthers`]: id → (relative path, is a
/// folder)) brought up to date with `rows`, in order. `ours` says whether an id is one the
/// mirror holds; an item this daemon's user created is never theirs (as in [`plan`]). What
/// a folder delete takes along is kept in `hidden` by the folder's id and comes back with
/// its restore. Applying the same rows twice gives the same view (a poll may read again
/// rows a catch-up already applied).
pub(super) fn follow_others(
    rows: &[Change],
    others: &mut RemoteOthers,
    hidden: &mut HashMap<String, RemoteOthers>,
    ours: &dyn Fn(&str) -> bool,
    base: &str,
    me: Option<&str>,
) {
    let rel = |abs: &Option<String>| abs.as_deref().and_then(|p| relative(base, p));
    let within = |p: &str, top: &str| p.strip_prefix(top).is_some_and(|r| r.starts_with('/'));
    for c in rows {
        if c.resource_type == "share" {
            continue;
        }
        let id = c.resource_id.as_str();
        let dir = c.resource_type == "folder";
        let (old, new) = (rel(&c.old_path), rel(&c.new_path));
        match c.change_type.as_str() {
            "created" | "renamed" | "moved" => {
                if dir
                    && c.change_type != "created"
                    && let Some(o) = old.as_deref().filter(|o| !o.is_empty())
                {
                    // The folder's subtree follows it (a move is one row).
                    let inside: Vec<String> = others
                        .iter()
                        .filter(|(_, (p, _))| within(p, o))
                        .map(|(k, _)| k.clone())
                        .collect();
                    for k in inside {
                        match new.as_deref().filter(|n| !n.is_empty()) {
                            Some(n) => {
                                if let Some((p, _)) = others.get_mut(&k) {
                                    *p = format!("{n}{}", &p[o.len()..]);
                                }
                            }
                            None => {
                                others.remove(&k);
                            }
                        }
                    }
                }
                if dir
                    && c.change_type == "created"
                    && let Some(back) = hidden.remove(id)
                {
                    others.extend(back);
                }
                let mine =
                    c.change_type == "created" && me.is_some() && c.changed_by.as_deref() == me;
                match new.filter(|r| !r.is_empty()) {
                    Some(r) if !ours(id) && !mine => {
                        others.insert(id.to_string(), (r, dir));
                    }
                    _ => {
                        others.remove(id);
                    }
                }
            }
            "deleted" => {
                // A delete row without its old path: where the view had it.
                let top = old.or_else(|| others.get(id).map(|(p, _)| p.clone()));
                others.remove(id);
                if dir && let Some(top) = top {
                    let inside: RemoteOthers = others
                        .iter()
                        .filter(|(_, (p, _))| top.is_empty() || within(p, &top))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    for k in inside.keys() {
                        others.remove(k);
                    }
                    if !inside.is_empty() {
                        hidden.entry(id.to_string()).or_default().extend(inside);
                    }
                }
            }
            _ => {}
        }
    }
}

/// `dev_` and 26 random characters: the client-generated device id.
#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn change(
        kind: &str,
        ty: &str,
        id: &str,
        new_path: Option<&str>,
        meta: serde_json::Value,
    ) -> Change {
        Change {
            id: format!("chg_{id}"),
            resource_type: ty.into(),
            resource_id: id.into(),
            change_type: kind.into(),
            changed_by: Some("usr_colleague".into()),
            new_path: new_path.map(str::to_string),
            metadata: meta,
            ..Change::default()
        }
    }

    /// A row with an `old_path` by `by`.
    fn moved(kind: &str, ty: &str, id: &str, old: &str, new: Option<&str>, by: &str) -> Change {
        Change {
            old_path: Some(old.into()),
            changed_by: Some(by.into()),
            ..change(kind, ty, id, new, json!({}))
        }
    }

    fn entry(path: &str, id: &str, dir: bool, sha: &str, version: i64) -> Entry {
        Entry {
            path: path.into(),
            kind: if dir { EntryKind::Dir } else { EntryKind::File },
            remote_id: id.into(),
            size: 1,
            mtime_ns: 1,
            inode: 1,
            sha256: (!dir).then(|| sha.to_string()),
            remote_version: (!dir).then_some(version),
            ctime_ns: None,
        }
    }

    /// (rows, the repairs they need) for a mirror of `/base` holding `d/` and `d/f`,
    /// with local root holding the same plus `local-only`.
    #[test]
    fn repairs_table() {
        let known: BTreeMap<String, Entry> = [
            entry("d", "fld_d", true, "", 0),
            entry("d/f", "fil_f", false, "aaa", 2),
        ]
        .into_iter()
        .map(|e| (e.path.clone(), e))
        .collect();
        let on_disk = |p: &str| ["d", "d/f", "local-only"].contains(&p);
        let v = |n: i64, sha: &str| json!({ "version": n, "checksum_sha256": sha });
        let put_back = |path: &str, id: &str, dir: bool, now: &str| Repair::PutBack {
            path: path.into(),
            id: id.into(),
            dir,
            now: now.into(),
        };
        let table: Vec<(&str, Vec<Change>, Vec<Repair>)> = vec![
            (
                "our own changes agree with the store",
                vec![
                    change("created", "folder", "fld_d", Some("/base/d"), json!({})),
                    change("updated", "file", "fil_f", Some("/base/d/f"), v(2, "aaa")),
                    change("renamed", "file", "fil_f", Some("/base/d/f"), json!({})),
                ],
                vec![],
            ),
            (
                "an older or equal version is not a remote edit",
                vec![change(
                    "updated",
                    "file",
                    "fil_f",
                    Some("/base/d/f"),
                    v(1, "zzz"),
                )],
                vec![],
            ),
            (
                "a remote edit is overwritten",
                vec![change(
                    "updated",
                    "file",
                    "fil_f",
                    Some("/base/d/f"),
                    v(3, "bbb"),
                )],
                vec![Repair::Overwrite {
                    path: "d/f".into(),
                    version: Some(3),
                    sha: Some("bbb".into()),
                    by: Some("usr_colleague".into()),
                }],
            ),
            (
                "deleted remotely: restore",
                vec![change("deleted", "file", "fil_f", None, json!({}))],
                vec![Repair::Restore {
                    path: "d/f".into(),
                    id: "fil_f".into(),
                    dir: false,
                }],
            ),
            (
                "deleted then restored by them: nothing",
                vec![
                    change("deleted", "file", "fil_f", None, json!({})),
                    change("created", "file", "fil_f", Some("/base/d/f"), json!({})),
                ],
                vec![],
            ),
            (
                "a folder rename: the folder first, its file too (the run skips it)",
                vec![
                    change("renamed", "folder", "fld_d", Some("/base/e"), json!({})),
                    change("renamed", "file", "fil_f", Some("/base/e/f"), json!({})),
                ],
                vec![
                    put_back("d", "fld_d", true, "/base/e"),
                    put_back("d/f", "fil_f", false, "/base/e/f"),
                ],
            ),
            (
                "moved out of the mirror's folder",
                vec![change(
                    "moved",
                    "file",
                    "fil_f",
                    Some("/elsewhere/f"),
                    json!({}),
                )],
                vec![put_back("d/f", "fil_f", false, "/elsewhere/f")],
            ),
            (
                "created by them: an extra; not when the local root has the path",
                vec![
                    change("created", "file", "fil_x", Some("/base/d/x"), json!({})),
                    change(
                        "created",
                        "file",
                        "fil_l",
                        Some("/base/local-only"),
                        json!({}),
                    ),
                    change("created", "file", "fil_o", Some("/outside/x"), json!({})),
                ],
                vec![Repair::Extra {
                    rel: "d/x".into(),
                    id: "fil_x".into(),
                    dir: false,
                    by: Some("usr_colleague".into()),
                }],
            ),
            (
                "an extra folder is one item",
                vec![
                    change("created", "folder", "fld_n", Some("/base/n"), json!({})),
                    change("created", "file", "fil_n", Some("/base/n/x"), json!({})),
                ],
                vec![Repair::Extra {
                    rel: "n".into(),
                    id: "fld_n".into(),
                    dir: true,
                    by: Some("usr_colleague".into()),
                }],
            ),
            (
                "our own folder move: what the rows showed inside it follows",
                vec![
                    change("created", "file", "fil_f", Some("/base/x/f"), v(2, "aaa")),
                    moved(
                        "moved",
                        "folder",
                        "fld_d",
                        "/base/x",
                        Some("/base/d"),
                        "usr_me",
                    ),
                ],
                vec![],
            ),
            (
                "a folder deleted with what was inside: no extras, no repairs",
                vec![
                    change("created", "folder", "fld_g", Some("/base/g"), json!({})),
                    change("created", "file", "fil_z", Some("/base/g/z"), json!({})),
                    moved(
                        "deleted",
                        "folder",
                        "fld_g",
                        "/base/g",
                        None,
                        "usr_colleague",
                    ),
                ],
                vec![],
            ),
            (
                "an item of our own user unknown to the store is not an extra",
                vec![moved(
                    "created",
                    "file",
                    "fil_m",
                    "/x",
                    Some("/base/m"),
                    "usr_me",
                )],
                vec![],
            ),
            (
                "their folder delete hides our file in it: the folder is restored, not the file",
                vec![
                    change("renamed", "file", "fil_f", Some("/base/d/f"), json!({})),
                    moved(
                        "deleted",
                        "folder",
                        "fld_d",
                        "/base/d",
                        None,
                        "usr_colleague",
                    ),
                ],
                vec![Repair::Restore {
                    path: "d".into(),
                    id: "fld_d".into(),
                    dir: true,
                }],
            ),
        ];
        for (what, rows, want) in table {
            let mut seen = BTreeMap::new();
            fold(&rows, &mut seen);
            let got = plan(
                &seen,
                &known,
                "/base",
                Some("fld_base"),
                Some("usr_me"),
                &on_disk,
            );
            assert_eq!(got, want, "{what}");
        }
        // Deleted here as well: the pass handles it, no repair.
        let mut seen = BTreeMap::new();
        fold(
            &[change("deleted", "file", "fil_f", None, json!({}))],
            &mut seen,
        );
        assert!(
            plan(
                &seen,
                &known,
                "/base",
                Some("fld_base"),
                Some("usr_me"),
                &|_| false
            )
            .is_empty()
        );
    }

    #[test]
    fn others_view_follows_moves_deletes_and_restores() {
        let mut others = RemoteOthers::new();
        let mut hidden = HashMap::new();
        let ours = |id: &str| id.starts_with("our_");
        let rows = [
            change("created", "folder", "our_d", Some("/base/d"), json!({})),
            change("created", "file", "fil_t", Some("/base/d/t"), json!({})),
            change("created", "file", "fil_o", Some("/outside/o"), json!({})),
            moved("created", "file", "fil_m", "/x", Some("/base/m"), "usr_me"),
            moved(
                "moved",
                "folder",
                "our_d",
                "/base/d",
                Some("/base/e"),
                "usr_me",
            ),
        ];
        follow_others(
            &rows,
            &mut others,
            &mut hidden,
            &ours,
            "/base",
            Some("usr_me"),
        );
        let view = |o: &RemoteOthers| o.values().map(|(p, _)| p.clone()).collect::<Vec<_>>();
        assert_eq!(view(&others), ["e/t"]);
        // Their folder delete takes the file along; its restore brings it back.
        let rows = [
            moved(
                "deleted",
                "folder",
                "our_d",
                "/base/e",
                None,
                "usr_colleague",
            ),
            change("created", "folder", "our_d", Some("/base/e"), json!({})),
        ];
        follow_others(
            &rows[..1],
            &mut others,
            &mut hidden,
            &ours,
            "/base",
            Some("usr_me"),
        );
        assert!(others.is_empty());
        follow_others(
            &rows[1..],
            &mut others,
            &mut hidden,
            &ours,
            "/base",
            Some("usr_me"),
        );
        assert_eq!(view(&others), ["e/t"]);
        // Moved out of the mirror's folder, then deleted: gone from the view; rows read
        // twice give the same view.
        let rows = [
            moved(
                "moved",
                "file",
                "fil_t",
                "/base/e/t",
                Some("/outside/t"),
                "usr_colleague",
            ),
            change("created", "file", "fil_n", Some("/base/n"), json!({})),
        ];
        follow_others(
            &rows,
            &mut others,
            &mut hidden,
            &ours,
            "/base",
            Some("usr_me"),
        );
        follow_others(
            &rows,
            &mut others,
            &mut hidden,
            &ours,
            "/base",
            Some("usr_me"),
        );
        assert_eq!(view(&others), ["n"]);
    }

    #[test]
    fn prune_keeps_only_what_may_need_a_repair() {
        let known: BTreeMap<String, Entry> = [
            entry("d", "fld_d", true, "", 0),
            entry("d/f", "fil_f", false, "aaa", 2),
            entry("g", "fil_g", false, "ggg", 1),
        ]
        .into_iter()
        .map(|e| (e.path.clone(), e))
        .collect();
        let by_id: HashMap<&str, &Entry> =
            known.values().map(|e| (e.remote_id.as_str(), e)).collect();
        let v = |n: i64, sha: &str| json!({ "version": n, "checksum_sha256": sha });
        let mut seen = BTreeMap::new();
        fold(
            &[
                // Ours, agreeing with the store: dropped.
                change("created", "folder", "fld_d", Some("/base/d"), json!({})),
                change("updated", "file", "fil_f", Some("/base/d/f"), v(2, "aaa")),
                // A newer version by someone else, and an unknown item: kept.
                change("updated", "file", "fil_g", Some("/base/g"), v(2, "zzz")),
                change("created", "file", "fil_x", Some("/base/x"), json!({})),
            ],
            &mut seen,
        );
        prune(&mut seen, &by_id, "/base");
        assert_eq!(seen.keys().collect::<Vec<_>>(), ["fil_g", "fil_x"]);
        // A later page deletes a pruned item: folded afresh, it asks for a restore.
        fold(
            &[change("deleted", "file", "fil_f", None, json!({}))],
            &mut seen,
        );
        prune(&mut seen, &by_id, "/base");
        let on_disk = |_: &str| true;
        let got = plan(&seen, &known, "/base", None, Some("usr_me"), &on_disk);
        assert!(got.contains(&Repair::Restore {
            path: "d/f".into(),
            id: "fil_f".into(),
            dir: false
        }));
    }

    #[test]
    fn relative_paths() {
        assert_eq!(relative("/a/b", "/a/b/c/d").as_deref(), Some("c/d"));
        assert_eq!(relative("/a/b", "/a/b").as_deref(), Some(""));
        assert_eq!(relative("/a/b", "/a/bc/d"), None);
        assert_eq!(relative("", "/x/y").as_deref(), Some("x/y"));
    }
}
