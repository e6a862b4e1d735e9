//! The planner: compares what is on disk with what the store knows was mirrored and
//! emits the remote operations that make the remote match the disk.
//!
//! It is pure (the hasher is injected) and serves every trigger alike: the start-up scan,
//! the periodic rescan and a batch of settled watcher paths differ only in how much of the
//! tree is passed in. Hashing happens only when a file's (size, mtime, inode) differs from
//! the stored fingerprint; only a hash difference becomes an upload, so a `touch` costs no
//! upload. A known item that vanished while an unknown one with the same inode appeared
//! is a move (a directory move is one op, its subtree follows), confirmed by hash for
//! files unless the kernel paired the rename. Ops come out in an order that can be
//! executed one by one: every op's parent (and a move's source) exists when it runs;
//! deletes come last, except where a path changed kind and must be freed first.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

// The leaves and the op type are re-exported so the mirror keeps naming them through the
// planner; the stages below the planner import them from their own modules.
pub use crate::hash::hash_file;
pub use crate::relpath::{is_within, join, name_of, parent};
use crate::store::{Entry, EntryKind};
pub use crate::upload::{DiskItem, Op};

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub ops: Vec<Op>,
    /// Paths that could not be examined (e.g. unreadable while hashing), with the reason.
    pub failures: Vec<(String, String)>,
    /// How many known entries the deletes remove (a directory counts with its subtree);
    /// the mass-delete guard compares this with the number of known entries.
    pub deleted_entries: usize,
}

/// `hash(path)`, once per path and plan. A vanished file is not a failure (the watcher, or
/// the next pass, sees it); another read error is.
fn hash_cached(
    hashes: &mut HashMap<String, String>,
    hash: &mut dyn FnMut(&str) -> std::io::Result<String>,
    path: &str,
    failures: &mut Vec<(String, String)>,
) -> Option<String> {
    if let Some(h) = hashes.get(path) {
        return Some(h.clone());
    }
    match hash(path) {
        Ok(h) => {
            hashes.insert(path.to_string(), h.clone());
            Some(h)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            failures.push((path.to_string(), format!("cannot read {path}: {e}")));
            None
        }
    }
}

fn rekey(path: &str, from: &str, to: &str) -> String {
    format!("{to}{}", &path[from.len()..])
}

/// Plans the ops that bring the remote in line with `disk` for the paths in scope.
///
/// `known` and `disk` hold the same scope (everything for a full scan; the settled paths
/// and their subtrees for an event batch). `renames` are (from, to) pairs the kernel
/// reported, trusted without hashing. `hash` returns a local file's SHA-256 (hex).
pub fn plan(
    known: &BTreeMap<String, Entry>,
    disk: &BTreeMap<String, DiskItem>,
    renames: &[(String, String)],
    hash: &mut dyn FnMut(&str) -> std::io::Result<String>,
) -> Plan {
    let mut out = Plan::default();
    if renames.is_empty() && unchanged(known, disk) {
        return out;
    }
    // The store's view as the plan goes along; copied only if a move or kind change alters
    // it (a pass that finds nothing moved compares against `known` itself).
    let mut view: Cow<BTreeMap<String, Entry>> = Cow::Borrowed(known);
    // Every hash taken here travels in the op that needed it, so the uploader need not
    // read the file again.
    let mut hashes: HashMap<String, String> = HashMap::new();
    let paired: BTreeSet<(&str, &str)> = renames
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();

    // A path whose kind changed is a delete of the old item plus a create of the new one;
    // the delete must run first to free the name.
    let mut early_deletes = Vec::new();
    for (path, d) in disk {
        if let Some(k) = view.get(path)
            && k.kind != d.kind
        {
            let k = k.clone();
            out.deleted_entries += view.keys().filter(|p| is_within(p, path)).count();
            view.to_mut().retain(|p, _| !is_within(p, path));
            early_deletes.push(Op::Delete {
                path: path.clone(),
                remote_id: k.remote_id,
                kind: k.kind,
            });
        }
    }

    // Moves, directories first (top-down), then files. After each directory move the
    // view is re-keyed so its subtree compares in place.
    let mut moves = Vec::new();
    loop {
        let new_dirs: HashMap<u64, Vec<&DiskItem>> = disk
            .values()
            .filter(|d| d.kind == EntryKind::Dir && !view.contains_key(&d.path))
            .fold(HashMap::new(), |mut m, d| {
                m.entry(d.inode).or_default().push(d);
                m
            });
        let found = view.values().find_map(|k| {
            if k.kind != EntryKind::Dir || disk.contains_key(&k.path) {
                return None;
            }
            match new_dirs.get(&k.inode).map(Vec::as_slice) {
                Some([only]) if !is_within(&only.path, &k.path) => {
                    Some((k.clone(), (*only).clone()))
                }
                _ => None,
            }
        });
        let Some((k, d)) = found else { break };
        let moved: Vec<Entry> = view
            .values()
            .filter(|e| is_within(&e.path, &k.path))
            .cloned()
            .collect();
        let view = view.to_mut();
        for mut e in moved {
            view.remove(&e.path);
            e.path = rekey(&e.path, &k.path, &d.path);
            view.insert(e.path.clone(), e);
        }
        moves.push(Op::Move {
            from: k.path,
            to: d.path.clone(),
            remote_id: k.remote_id,
            kind: EntryKind::Dir,
            item: d,
        });
    }
    let mut replaces_after_move = Vec::new();
    {
        let new_files: HashMap<u64, Vec<&DiskItem>> = disk
            .values()
            .filter(|d| d.kind == EntryKind::File && !view.contains_key(&d.path))
            .fold(HashMap::new(), |mut m, d| {
                m.entry(d.inode).or_default().push(d);
                m
            });
        let vanished: Vec<Entry> = view
            .values()
            .filter(|k| k.kind == EntryKind::File && !disk.contains_key(&k.path))
            .cloned()
            .collect();
        let mut taken = BTreeSet::new();
        for k in vanished {
            let Some([d]) = new_files.get(&k.inode).map(Vec::as_slice) else {
                continue;
            };
            if taken.contains(&d.path) {
                continue;
            }
            let kernel_paired = paired.contains(&(k.path.as_str(), d.path.as_str()));
            let same_stat = d.size == k.size && d.mtime_ns == k.mtime_ns;
            let content_same = if same_stat && !kernel_paired {
                // Inodes are reused after deletes; only the hash proves it is the same file.
                match (
                    &k.sha256,
                    hash_cached(&mut hashes, hash, &d.path, &mut out.failures),
                ) {
                    (Some(known_sha), Some(h)) => *known_sha == h,
                    _ => false,
                }
            } else {
                same_stat
            };
            if !content_same && !kernel_paired {
                continue;
            }
            taken.insert(d.path.clone());
            let view = view.to_mut();
            view.remove(&k.path);
            let mut moved = k.clone();
            moved.path = d.path.clone();
            view.insert(d.path.clone(), moved);
            moves.push(Op::Move {
                from: k.path.clone(),
                to: d.path.clone(),
                remote_id: k.remote_id.clone(),
                kind: EntryKind::File,
                item: (*d).clone(),
            });
            if !content_same {
                // Renamed and edited: the move keeps history, the new bytes become a version.
                replaces_after_move.push(d.path.clone());
            }
        }
    }

    let mut creates = Vec::new();
    let mut updates = Vec::new();
    for (path, d) in disk {
        match view.get(path) {
            None => creates.push(match d.kind {
                EntryKind::Dir => Op::Mkdir {
                    path: path.clone(),
                    item: d.clone(),
                },
                EntryKind::File => Op::Upload {
                    path: path.clone(),
                    item: d.clone(),
                    sha256: hashes.get(path).cloned(),
                },
            }),
            Some(k) => {
                let same = same_file(k, d);
                if d.kind == EntryKind::Dir {
                    if k.inode != d.inode {
                        updates.push(Op::Refresh {
                            path: path.clone(),
                            item: d.clone(),
                            sha256: None,
                        });
                    }
                    continue;
                }
                if same && !replaces_after_move.contains(path) {
                    continue;
                }
                let Some(h) = hash_cached(&mut hashes, hash, path, &mut out.failures) else {
                    continue;
                };
                if k.sha256.as_deref() == Some(h.as_str()) && !replaces_after_move.contains(path) {
                    updates.push(Op::Refresh {
                        path: path.clone(),
                        item: d.clone(),
                        sha256: Some(h),
                    });
                } else {
                    updates.push(Op::Replace {
                        path: path.clone(),
                        remote_id: k.remote_id.clone(),
                        item: d.clone(),
                        sha256: h,
                    });
                }
            }
        }
    }

    // Deletes: only the top-most vanished item of each subtree is a remote call.
    let mut deletes = Vec::new();
    let vanished: Vec<&Entry> = view
        .values()
        .filter(|k| !disk.contains_key(&k.path))
        .collect();
    let mut covered: Option<String> = None;
    for k in vanished {
        out.deleted_entries += 1;
        if covered.as_deref().is_some_and(|c| is_within(&k.path, c)) {
            continue;
        }
        if k.kind == EntryKind::Dir {
            covered = Some(k.path.clone());
        }
        deletes.push(Op::Delete {
            path: k.path.clone(),
            remote_id: k.remote_id.clone(),
            kind: k.kind,
        });
    }

    out.ops = early_deletes;
    out.ops
        .extend(order_creations(known, &out.ops, moves, creates));
    out.ops.extend(updates);
    out.ops.extend(deletes);
    out
}

/// Whether disk and store list the same paths with the same kinds and stat data (one merge
/// over the two sorted maps): the common case of a restart or periodic rescan, which then
/// needs none of the lookups below. Directories compare by inode only, as in [`plan`].
fn unchanged(known: &BTreeMap<String, Entry>, disk: &BTreeMap<String, DiskItem>) -> bool {
    known.len() == disk.len()
        && known.iter().zip(disk).all(|((kp, k), (dp, d))| {
            kp == dp
                && k.kind == d.kind
                && k.inode == d.inode
                && (k.kind == EntryKind::Dir || same_file(k, d))
        })
}

/// Whether a file is as it was synced, without reading it: same size, mtime and inode,
/// and the same ctime where it is known. The ctime catches an edit that kept the size and
/// put the old mtime back (`touch -d @OLD`): the kernel moves it on every write and no
/// program can set it. An unknown ctime (an entry from before it was stored) counts as
/// the same: the full pass fills it in, so an upgrade does not re-hash every file.
/// (A chmod, a rename or a new hard link move it too: such a file is hashed once and
/// only its fingerprint is refreshed.)
pub fn same_file(k: &Entry, d: &DiskItem) -> bool {
    k.size == d.size
        && k.mtime_ns == d.mtime_ns
        && k.inode == d.inode
        && k.ctime_ns.is_none_or(|c| c == d.ctime_ns)
}

/// Orders moves and creations so that every op's parent, and a move's source, exists
/// when it runs. Moves keep their computed order (a later move's source is expressed in
/// the coordinates earlier moves produced).
fn order_creations(
    known: &BTreeMap<String, Entry>,
    early: &[Op],
    moves: Vec<Op>,
    creates: Vec<Op>,
) -> Vec<Op> {
    if moves.is_empty() && creates.is_empty() {
        return Vec::new();
    }
    let mut present: BTreeSet<String> = known.keys().cloned().collect();
    for op in early {
        if let Op::Delete { path, .. } = op {
            present.retain(|p| !is_within(p, path));
        }
    }
    let mut pending: Vec<Op> = Vec::with_capacity(moves.len() + creates.len());
    pending.extend(moves);
    let mut creates = creates;
    creates.sort_by(|a, b| a.path().cmp(b.path()));
    pending.extend(creates);
    let mut out = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let before = pending.len();
        let mut rest = Vec::new();
        for op in pending {
            let parent_ok = |p: &str| {
                let par = parent(p);
                par.is_empty() || present.contains(par)
            };
            let ready = match &op {
                Op::Move { from, to, .. } => present.contains(from) && parent_ok(to),
                other => parent_ok(other.path()),
            };
            if !ready {
                rest.push(op);
                continue;
            }
            match &op {
                Op::Move { from, to, .. } => {
                    let moved: Vec<String> = present
                        .iter()
                        .filter(|p| is_within(p, from))
                        .cloned()
                        .collect();
                    for p in moved {
                        present.remove(&p);
                        present.insert(rekey(&p, from, to));
                    }
                }
                other => {
                    present.insert(other.path().to_string());
                }
            }
            out.push(op);
        }
        if rest.len() == before {
            // Unsatisfiable dependencies cannot happen for a consistent disk view; keep
            // the ops rather than lose them, the uploader reports what fails.
            out.extend(rest);
            break;
        }
        pending = rest;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, inode: u64, size: u64, mtime: i64) -> DiskItem {
        DiskItem {
            path: path.into(),
            kind: EntryKind::File,
            size,
            mtime_ns: mtime,
            inode,
            ctime_ns: mtime,
        }
    }
    fn dir(path: &str, inode: u64) -> DiskItem {
        DiskItem {
            path: path.into(),
            kind: EntryKind::Dir,
            size: 0,
            mtime_ns: 0,
            inode,
            ctime_ns: 0,
        }
    }
    fn known_of(d: &DiskItem, sha: &str) -> Entry {
        Entry {
            path: d.path.clone(),
            kind: d.kind,
            remote_id: format!("r:{}", d.path),
            size: d.size,
            mtime_ns: d.mtime_ns,
            inode: d.inode,
            sha256: (d.kind == EntryKind::File).then(|| sha.to_string()),
            remote_version: Some(1),
            ctime_ns: Some(d.ctime_ns),
        }
    }

    /// Disk items, the subset already known (with hashes), the content hashes on disk, and
    /// kernel rename pairs → the ops as short strings.
    fn run(
        disk: &[DiskItem],
        known: &[(DiskItem, &str)],
        content: &[(&str, &str)],
        renames: &[(&str, &str)],
    ) -> (Vec<String>, Vec<String>, usize) {
        let disk: BTreeMap<String, DiskItem> =
            disk.iter().map(|d| (d.path.clone(), d.clone())).collect();
        let known: BTreeMap<String, Entry> = known
            .iter()
            .map(|(d, sha)| (d.path.clone(), known_of(d, sha)))
            .collect();
        let content: HashMap<String, String> = content
            .iter()
            .map(|(p, h)| (p.to_string(), h.to_string()))
            .collect();
        let mut hashed = Vec::new();
        let renames: Vec<(String, String)> = renames
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let p = plan(&known, &disk, &renames, &mut |path| {
            hashed.push(path.to_string());
            content
                .get(path)
                .cloned()
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied"))
        });
        let ops = p
            .ops
            .iter()
            .map(|op| match op {
                Op::Mkdir { path, .. } => format!("mkdir {path}"),
                Op::Upload { path, .. } => format!("upload {path}"),
                Op::Replace { path, .. } => format!("replace {path}"),
                Op::Refresh { path, .. } => format!("refresh {path}"),
                Op::Move { from, to, .. } => format!("move {from} -> {to}"),
                Op::Delete { path, .. } => format!("delete {path}"),
            })
            .collect();
        let mut failures: Vec<String> = p.failures.iter().map(|(p, _)| p.clone()).collect();
        failures.extend(hashed.iter().map(|h| format!("hashed {h}")));
        (ops, failures, p.deleted_entries)
    }

    #[test]
    fn ctime_gives_away_a_silent_edit() {
        let synced = file("a", 1, 4, 100);
        let known = known_of(&synced, "old");
        // (disk ctime, stored ctime) → hashed?
        let table = [
            (100, Some(100), false),
            (250, Some(100), true),
            (250, None, false),
        ];
        for (disk_ctime, stored, hashed) in table {
            let d = DiskItem {
                ctime_ns: disk_ctime,
                ..synced.clone()
            };
            let k = Entry {
                ctime_ns: stored,
                ..known.clone()
            };
            let mut reads = 0;
            let p = plan(
                &BTreeMap::from([(k.path.clone(), k)]),
                &BTreeMap::from([(d.path.clone(), d)]),
                &[],
                &mut |_| {
                    reads += 1;
                    Ok("new".into())
                },
            );
            assert_eq!(reads > 0, hashed, "{disk_ctime} vs {stored:?}");
            assert_eq!(
                matches!(p.ops.as_slice(), [Op::Replace { sha256, .. }] if sha256 == "new"),
                hashed
            );
        }
    }

    #[test]
    fn first_pass_creates_parents_before_children() {
        let disk = [
            dir("b", 1),
            file("b/x.txt", 2, 5, 1),
            dir("a", 3),
            dir("a/c", 4),
            file("a/c/y", 5, 1, 1),
            file("top", 6, 0, 1),
        ];
        let (ops, notes, _) = run(&disk, &[], &[], &[]);
        assert_eq!(
            ops,
            [
                "mkdir a",
                "mkdir a/c",
                "upload a/c/y",
                "mkdir b",
                "upload b/x.txt",
                "upload top"
            ]
        );
        assert!(
            notes.is_empty(),
            "a first pass hashes nothing in the planner: {notes:?}"
        );
    }

    #[test]
    fn unchanged_tree_plans_nothing_and_hashes_nothing() {
        let disk = [dir("a", 1), file("a/x", 2, 5, 10)];
        let known = [(dir("a", 1), ""), (file("a/x", 2, 5, 10), "h1")];
        let (ops, notes, _) = run(&disk, &known, &[], &[]);
        assert!(ops.is_empty(), "{ops:?}");
        assert!(notes.is_empty(), "{notes:?}");

        // Same paths and count, one difference each: the quick "unchanged" check must not
        // hide any of them.
        let cases: &[(&str, DiskItem, &str)] =
            &[("a directory replaced (new inode)", dir("a", 9), "refresh a")];
        for (case, d, want) in cases {
            let disk = [d.clone(), file("a/x", 2, 5, 10)];
            let (ops, _, _) = run(&disk, &known, &[("a", "h0")], &[]);
            assert_eq!(
                ops.first().map(String::as_str),
                Some(*want),
                "{case}: {ops:?}"
            );
        }
    }

    #[test]
    fn content_changes_replace_and_touches_refresh() {
        let cases: &[(&str, DiskItem, &str, &str)] = &[
            // (case, disk item, hash on disk, expected op)
            ("edit", file("x", 2, 6, 11), "h2", "replace x"),
            ("touch", file("x", 2, 5, 11), "h1", "refresh x"),
            (
                "same size new bytes",
                file("x", 2, 5, 11),
                "h9",
                "replace x",
            ),
            (
                "atomic save (new inode, same bytes)",
                file("x", 7, 5, 11),
                "h1",
                "refresh x",
            ),
            (
                "atomic save (new inode, new bytes)",
                file("x", 7, 8, 11),
                "h3",
                "replace x",
            ),
        ];
        for (case, d, sha, want) in cases {
            let (ops, _, _) = run(
                std::slice::from_ref(d),
                &[(file("x", 2, 5, 10), "h1")],
                &[("x", sha)],
                &[],
            );
            assert_eq!(ops, [*want], "{case}");
        }
    }

    #[test]
    fn directory_rename_is_one_move_and_children_follow() {
        let known: Vec<(DiskItem, &str)> = std::iter::once((dir("old", 1), ""))
            .chain((0..100).map(|i| (file(&format!("old/f{i}"), 100 + i, 1, 1), "h")))
            .collect();
        let disk: Vec<DiskItem> = std::iter::once(dir("new", 1))
            .chain((0..100).map(|i| file(&format!("new/f{i}"), 100 + i, 1, 1)))
            .collect();
        let (ops, notes, deleted) = run(&disk, &known, &[], &[]);
        assert_eq!(ops, ["move old -> new"]);
        assert!(
            notes.is_empty(),
            "no hashing for a directory move: {notes:?}"
        );
        assert_eq!(deleted, 0);
    }

    #[test]
    fn file_moves_need_hash_unless_kernel_paired() {
        let known = [(dir("d", 1), ""), (file("a.txt", 2, 5, 10), "h1")];
        let disk = [dir("d", 1), file("d/b.txt", 2, 5, 10)];
        // Offline: confirmed by hash.
        let (ops, notes, _) = run(&disk, &known, &[("d/b.txt", "h1")], &[]);
        assert_eq!(ops, ["move a.txt -> d/b.txt"]);
        assert_eq!(notes, ["hashed d/b.txt"]);
        // Offline, inode reused by a different file: delete + upload.
        let (ops, _, _) = run(&disk, &known, &[("d/b.txt", "other")], &[]);
        assert_eq!(ops, ["upload d/b.txt", "delete a.txt"]);
        // Kernel-paired rename: trusted without hashing.
        let (ops, notes, _) = run(&disk, &known, &[], &[("a.txt", "d/b.txt")]);
        assert_eq!(ops, ["move a.txt -> d/b.txt"]);
        assert!(notes.is_empty());
        // Kernel-paired rename of an edited file: move, then a new version.
        let edited = [dir("d", 1), file("d/b.txt", 2, 9, 12)];
        let (ops, _, _) = run(
            &edited,
            &known,
            &[("d/b.txt", "h2")],
            &[("a.txt", "d/b.txt")],
        );
        assert_eq!(ops, ["move a.txt -> d/b.txt", "replace d/b.txt"]);
    }

    #[test]
    fn move_into_a_new_directory_waits_for_its_mkdir() {
        let known = [(file("a.txt", 2, 5, 10), "h1")];
        let disk = [dir("new", 9), file("new/a.txt", 2, 5, 10)];
        let (ops, _, _) = run(&disk, &known, &[], &[("a.txt", "new/a.txt")]);
        assert_eq!(ops, ["mkdir new", "move a.txt -> new/a.txt"]);
    }

    #[test]
    fn deletes_come_last_and_only_top_most() {
        let known = [
            (dir("gone", 1), ""),
            (dir("gone/sub", 2), ""),
            (file("gone/sub/f", 3, 1, 1), "h"),
            (file("x", 4, 1, 1), "h"),
        ];
        let disk = [file("y", 5, 1, 1)];
        let (ops, _, deleted) = run(&disk, &known, &[("y", "new")], &[]);
        assert_eq!(ops, ["upload y", "delete gone", "delete x"]);
        assert_eq!(deleted, 4);
    }

    #[test]
    fn kind_change_deletes_first() {
        let known = [(file("p", 1, 1, 1), "h")];
        let disk = [dir("p", 2), file("p/inside", 3, 1, 1)];
        let (ops, _, _) = run(&disk, &known, &[], &[]);
        assert_eq!(ops, ["delete p", "mkdir p", "upload p/inside"]);
    }

    #[test]
    fn unreadable_file_is_a_failure_not_an_op() {
        let known = [(file("x", 2, 5, 10), "h1")];
        let disk = [file("x", 2, 6, 11)];
        let (ops, notes, _) = run(&disk, &known, &[], &[]);
        assert!(ops.is_empty());
        assert_eq!(notes, ["x", "hashed x"]);
    }

    #[test]
    fn swapped_names_are_not_confused() {
        // a and b swap names via a temp: inode says a→b and b→a.
        let known = [(file("a", 1, 1, 1), "ha"), (file("b", 2, 1, 1), "hb")];
        let disk = [file("a", 2, 1, 1), file("b", 1, 1, 1)];
        let (ops, _, _) = run(&disk, &known, &[("a", "hb"), ("b", "ha")], &[]);
        // Both paths still exist, so each is a content change at its path.
        assert_eq!(ops, ["replace a", "replace b"]);
    }

    /// (case, disk, content, kernel renames, want: (path of upload/replace, hash)).
    type Case = (
        &'static str,
        Vec<DiskItem>,
        &'static [(&'static str, &'static str)],
        &'static [(&'static str, &'static str)],
        &'static [(&'static str, Option<&'static str>)],
    );

    #[test]
    fn hashes_the_planner_took_travel_in_the_op() {
        let known = [(dir("d", 1), ""), (file("a.txt", 2, 5, 10), "h1")];
        let cases: &[Case] = &[
            (
                "an edit is replaced with the hash that found it changed",
                vec![dir("d", 1), file("a.txt", 2, 6, 11)],
                &[("a.txt", "h2")],
                &[],
                &[("a.txt", Some("h2"))],
            ),
            (
                "a new file is not read by the planner",
                vec![dir("d", 1), file("a.txt", 2, 5, 10), file("d/new", 3, 1, 1)],
                &[],
                &[],
                &[("d/new", None)],
            ),
            (
                "a new file read to rule out a move onto a reused inode",
                vec![dir("d", 1), file("d/b.txt", 2, 5, 10)],
                &[("d/b.txt", "other")],
                &[],
                &[("d/b.txt", Some("other"))],
            ),
            (
                "renamed and edited: the version after the move",
                vec![dir("d", 1), file("d/b.txt", 2, 9, 12)],
                &[("d/b.txt", "h3")],
                &[("a.txt", "d/b.txt")],
                &[("d/b.txt", Some("h3"))],
            ),
        ];
        for (case, disk, content, renames, want) in cases {
            let disk: BTreeMap<String, DiskItem> =
                disk.iter().map(|d| (d.path.clone(), d.clone())).collect();
            let known: BTreeMap<String, Entry> = known
                .iter()
                .map(|(d, sha)| (d.path.clone(), known_of(d, sha)))
                .collect();
            let renames: Vec<(String, String)> = renames
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
            let p = plan(&known, &disk, &renames, &mut |path| {
                content
                    .iter()
                    .find(|(p, _)| *p == path)
                    .map(|(_, h)| h.to_string())
                    .ok_or_else(|| std::io::Error::other(format!("{path} read unexpectedly")))
            });
            assert!(p.failures.is_empty(), "{case}: {:?}", p.failures);
            let got: Vec<(&str, Option<&str>)> = p
                .ops
                .iter()
                .filter_map(|op| match op {
                    Op::Upload { path, sha256, .. } => Some((path.as_str(), sha256.as_deref())),
                    Op::Replace { path, sha256, .. } => {
                        Some((path.as_str(), Some(sha256.as_str())))
                    }
                    _ => None,
                })
                .collect();
            assert_eq!(got, *want, "{case}: {:?}", p.ops);
        }
    }

    #[test]
    fn within_and_parent() {
        assert!(is_within("a/b", "a"));
        assert!(is_within("a", "a"));
        assert!(!is_within("ab", "a"));
        assert!(!is_within("a", "a/b"));
        assert_eq!(parent("a/b/c"), "a/b");
        assert_eq!(parent("a"), "");
    }
}
