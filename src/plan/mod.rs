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

/// `hash(path)`, once per path and plan, whether it succeeds or not: a file that cannot be
/// read is one failure, not one per candidate move that wanted its hash. A vanished file is
/// not a failure (the watcher, or the next pass, sees it); another read error is.
fn hash_cached(
    hashes: &mut HashMap<String, Option<String>>,
    hash: &mut dyn FnMut(&str) -> std::io::Result<String>,
    path: &str,
    failures: &mut Vec<(String, String)>,
) -> Option<String> {
    if let Some(h) = hashes.get(path) {
        return h.clone();
    }
    let h = match hash(path) {
        Ok(h) => Some(h),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            failures.push((path.to_string(), format!("cannot read {path}: {e}")));
            None
        }
    };
    hashes.insert(path.to_string(), h.clone());
    h
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
    let mut hashes: HashMap<String, Option<String>> = HashMap::new();
    let paired: BTreeSet<(&str, &str)> = renames
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();

    // Moves, and the deletes that free a name for one, in the order they must run: each is
    // expressed in the coordinates the ones before it produced, and the view is re-keyed
    // after each, so a moved folder's subtree compares in place. Kind changes are looked
    // for only after the moves, at the paths the moves produced (a folder inside a renamed
    // folder that became a file changes kind at its new path).
    let mut chain: Vec<Op> = Vec::new();
    // Only a known entry can move, and it looks its inode up here: with nothing known (a
    // first pass) the maps stay empty rather than index the whole disk for nothing.
    let by_inode = |kind: EntryKind| {
        let mut m: HashMap<u64, Vec<&DiskItem>> = HashMap::new();
        if !known.is_empty() {
            for d in disk.values().filter(|d| d.kind == kind) {
                m.entry(d.inode).or_default().push(d);
            }
        }
        m
    };
    let dirs_by_inode = by_inode(EntryKind::Dir);
    let files_by_inode = by_inode(EntryKind::File);
    let mut replaces_after_move = Vec::new();
    loop {
        let before = chain.len();
        // Directories: the move whose target is nearest the root first, so a folder moved
        // into a moved folder goes after it; a move runs only when its target name is free
        // and its target folder exists (or is a new folder), else it waits for the move
        // that frees or makes it.
        loop {
            let pending: BTreeSet<&str> = view
                .values()
                .filter_map(|e| dir_target(e, &dirs_by_inode))
                .map(|d| d.path.as_str())
                .collect();
            let mut best: Option<(usize, Entry, &DiskItem, Vec<Entry>)> = None;
            for k in view.values() {
                let Some(d) = dir_target(k, &dirs_by_inode) else {
                    continue;
                };
                let depth = d.path.matches('/').count();
                if best.as_ref().is_some_and(|b| b.0 <= depth) {
                    continue;
                }
                let mut frees = Vec::new();
                match view.get(&d.path) {
                    None => {}
                    // A file where the disk now has this folder: deleted first, unless it
                    // moves elsewhere itself.
                    Some(x)
                        if x.kind == EntryKind::File
                            && file_target(x, &view, &files_by_inode).is_none() =>
                    {
                        frees.push(x.clone());
                    }
                    Some(_) => continue,
                }
                if !ancestors_ready(
                    &d.path,
                    &view,
                    &dirs_by_inode,
                    &files_by_inode,
                    &pending,
                    &mut frees,
                ) {
                    continue;
                }
                // An earlier move may have put something where the subtree lands.
                let collides = subtree_keys(&view, &k.path).iter().any(|p| {
                    p != &k.path
                        && view
                            .get(&rekey(p, &k.path, &d.path))
                            .is_some_and(|o| !is_within(&o.path, &k.path))
                });
                if !collides {
                    best = Some((depth, k.clone(), d, frees));
                }
            }
            let Some((_, k, d, frees)) = best else { break };
            for x in frees {
                free_name(view.to_mut(), &x, &mut chain, &mut out.deleted_entries);
            }
            let view = view.to_mut();
            for p in subtree_keys(view, &k.path) {
                let mut e = view.remove(&p).expect("listed");
                e.path = rekey(&p, &k.path, &d.path);
                view.insert(e.path.clone(), e);
            }
            chain.push(Op::Move {
                from: k.path,
                to: d.path.clone(),
                remote_id: k.remote_id,
                kind: EntryKind::Dir,
                item: d.clone(),
            });
        }

        // Files: a vanished file and the one new file with its inode, confirmed by hash
        // unless the kernel paired the rename. A move whose target name holds a folder
        // (which became this file) frees it only when nothing else can move: files inside
        // that folder may still move out first.
        let mut eager = false;
        loop {
            let mut progress = false;
            // Folders that a later folder move would bring (a move now stuck).
            let pending: BTreeSet<&str> = view
                .values()
                .filter_map(|e| dir_target(e, &dirs_by_inode))
                .map(|d| d.path.as_str())
                .collect();
            let vanished: Vec<Entry> = view
                .values()
                .filter(|k| {
                    k.kind == EntryKind::File
                        && !disk.get(&k.path).is_some_and(|d| d.kind == EntryKind::File)
                })
                .cloned()
                .collect();
            for k in vanished {
                if view.get(&k.path).is_none_or(|e| e.remote_id != k.remote_id) {
                    continue; // deleted with a folder that freed a name
                }
                let Some(d) = file_target(&k, &view, &files_by_inode) else {
                    continue;
                };
                let mut frees = Vec::new();
                if let Some(x) = view.get(&d.path) {
                    // A folder that holds the file itself (`mv b/f t; rm -r b; mv t b`) would
                    // need a temporary name: the file is uploaded afresh instead.
                    if !eager
                        || dir_target(x, &dirs_by_inode).is_some()
                        || is_within(&k.path, &x.path)
                    {
                        continue;
                    }
                    frees.push(x.clone());
                }
                if !ancestors_ready(
                    &d.path,
                    &view,
                    &dirs_by_inode,
                    &files_by_inode,
                    &pending,
                    &mut frees,
                ) {
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
                for x in frees {
                    free_name(view.to_mut(), &x, &mut chain, &mut out.deleted_entries);
                }
                let view = view.to_mut();
                view.remove(&k.path);
                let mut moved = k.clone();
                moved.path = d.path.clone();
                view.insert(d.path.clone(), moved);
                chain.push(Op::Move {
                    from: k.path.clone(),
                    to: d.path.clone(),
                    remote_id: k.remote_id.clone(),
                    kind: EntryKind::File,
                    item: d.clone(),
                });
                if !content_same {
                    // Renamed and edited: the move keeps history, the new bytes become a version.
                    replaces_after_move.push(d.path.clone());
                }
                progress = true;
            }
            if progress {
                eager = false;
            } else if eager {
                break;
            } else {
                eager = true;
            }
        }
        // A file move can free the name a folder move waits for.
        if chain.len() == before {
            break;
        }
    }

    // What still differs in kind at a disk path is a delete of the old item (and its
    // subtree) before the create of the new one.
    let changed: Vec<Entry> = disk
        .values()
        .filter_map(|d| view.get(&d.path).filter(|k| k.kind != d.kind).cloned())
        .collect();
    for x in changed {
        if view
            .get(&x.path)
            .is_some_and(|e| e.remote_id == x.remote_id)
        {
            free_name(view.to_mut(), &x, &mut chain, &mut out.deleted_entries);
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
                    sha256: hashes.get(path).cloned().flatten(),
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
    // Every folder deleted so far, not just the last: a sibling such as `a.b` sorts between
    // `a` and `a/x`, so the last one is not always the ancestor.
    let mut deleted_dirs: BTreeSet<&str> = BTreeSet::new();
    for k in vanished {
        out.deleted_entries += 1;
        if has_ancestor_in(&k.path, &deleted_dirs) {
            continue;
        }
        if k.kind == EntryKind::Dir {
            deleted_dirs.insert(&k.path);
        }
        deletes.push(Op::Delete {
            path: k.path.clone(),
            remote_id: k.remote_id.clone(),
            kind: k.kind,
        });
    }

    out.ops = order_creations(known, &view, chain, creates);
    out.ops.extend(updates);
    out.ops.extend(deletes);
    out
}

/// Whether a proper ancestor of `path` is in `dirs`.
fn has_ancestor_in(path: &str, dirs: &BTreeSet<&str>) -> bool {
    let mut p = parent(path);
    while !p.is_empty() {
        if dirs.contains(p) {
            return true;
        }
        p = parent(p);
    }
    false
}

/// Whether disk and store list the same paths with the same kinds and stat data (one merge
/// over the two sorted maps): the common case of a restart or periodic rescan, which then
/// needs none of the lookups below. Directories compare by inode only, as in [`plan`].
fn unchanged(known: &BTreeMap<String, Entry>, disk: &BTreeMap<String, DiskItem>) -> bool {
    known.len() == disk.len()
        && known
            .iter()
            .zip(disk)
            .all(|((kp, k), (dp, d))| kp == dp && unchanged_item(k, d))
}

fn unchanged_item(k: &Entry, d: &DiskItem) -> bool {
    k.kind == d.kind && k.inode == d.inode && (k.kind == EntryKind::Dir || same_file(k, d))
}

/// [`unchanged`] for entries read one by one in path order (from the store, without a map
/// of them all), and stricter: a file whose ctime the store does not have yet counts as
/// changed, so the pass that records it runs. `true` means a full pass has nothing to do.
pub fn unchanged_in_order(
    known: &mut dyn Iterator<Item = Entry>,
    disk: &BTreeMap<String, DiskItem>,
) -> bool {
    let mut disk = disk.iter();
    loop {
        match (known.next(), disk.next()) {
            (None, None) => return true,
            (Some(k), Some((dp, d))) => {
                if k.path != *dp
                    || !unchanged_item(&k, d)
                    || (k.kind == EntryKind::File && k.ctime_ns.is_none())
                {
                    return false;
                }
            }
            _ => return false,
        }
    }
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

/// Where a known folder went: the one disk folder with its inode, if that is not where the
/// view has it. A folder at the same path with a new inode is the same folder (refreshed)
/// unless its inode shows up elsewhere.
fn dir_target<'d>(e: &Entry, dirs: &HashMap<u64, Vec<&'d DiskItem>>) -> Option<&'d DiskItem> {
    if e.kind != EntryKind::Dir {
        return None;
    }
    match dirs.get(&e.inode).map(Vec::as_slice) {
        Some([only]) if only.path != e.path && !is_within(&only.path, &e.path) => Some(only),
        _ => None,
    }
}

/// Where a known file may have gone (not yet confirmed by hash): the one disk file with
/// its inode at a path the view does not hold as a file.
fn file_target<'d>(
    e: &Entry,
    view: &BTreeMap<String, Entry>,
    files: &HashMap<u64, Vec<&'d DiskItem>>,
) -> Option<&'d DiskItem> {
    if e.kind != EntryKind::File {
        return None;
    }
    let mut found = files.get(&e.inode)?.iter().filter(|d| {
        d.path != e.path && !view.get(&d.path).is_some_and(|v| v.kind == EntryKind::File)
    });
    match (found.next(), found.next()) {
        (Some(d), None) => Some(d),
        _ => None,
    }
}

/// Whether a move to `path` can run now as far as its ancestors go: each is a folder in
/// the view that stays where it is (all the way up), or a new folder the creates will make (not one a
/// pending folder move will bring, `pending`). A file the disk now has as a folder is
/// deleted first (added to `frees`) unless it moves elsewhere itself.
fn ancestors_ready(
    path: &str,
    view: &BTreeMap<String, Entry>,
    dirs: &HashMap<u64, Vec<&DiskItem>>,
    files: &HashMap<u64, Vec<&DiskItem>>,
    pending: &BTreeSet<&str>,
    frees: &mut Vec<Entry>,
) -> bool {
    let mut p = parent(path);
    while !p.is_empty() {
        match view.get(p) {
            // A folder about to move away would carry the moved item with it, and so would
            // any folder above it: every ancestor must stay.
            Some(e) if e.kind == EntryKind::Dir && dir_target(e, dirs).is_some() => return false,
            Some(e) if e.kind == EntryKind::Dir => {}
            Some(e) => {
                if pending.contains(p) || file_target(e, view, files).is_some() {
                    return false;
                }
                frees.push(e.clone());
            }
            None if pending.contains(p) => return false,
            None => {}
        }
        p = parent(p);
    }
    true
}

/// `path` and every key below it, in order.
fn subtree_keys<V>(map: &BTreeMap<String, V>, path: &str) -> Vec<String> {
    use std::ops::Bound;
    // Keys below `path` start with `path/`, so they sort before `path0` ('0' follows '/').
    let (lo, hi) = (format!("{path}/"), format!("{path}0"));
    map.get_key_value(path)
        .map(|(k, _)| k.clone())
        .into_iter()
        .chain(
            map.range::<str, _>((Bound::Included(lo.as_str()), Bound::Excluded(hi.as_str())))
                .map(|(k, _)| k.clone()),
        )
        .collect()
}

/// Deletes `x` (with its subtree) to free its name for an item of the other kind.
fn free_name(
    view: &mut BTreeMap<String, Entry>,
    x: &Entry,
    chain: &mut Vec<Op>,
    deleted_entries: &mut usize,
) {
    let gone = subtree_keys(view, &x.path);
    *deleted_entries += gone.len();
    for p in gone {
        view.remove(&p);
    }
    chain.push(Op::Delete {
        path: x.path.clone(),
        remote_id: x.remote_id.clone(),
        kind: x.kind,
    });
}

/// Interleaves the chain of moves and name-freeing deletes (kept in their order: each is
/// expressed in the coordinates the ones before it produced) with the creates, so that
/// every op finds what it needs when it runs: a move its item at the source and a free
/// target name in an existing folder, a delete its item, a create a free name in an
/// existing folder. The remote is simulated by path with each item's id, so an op never
/// counts on another item that happens to be at the same path; `view` is the store's view
/// after the plan, which says what each folder path finally holds.
fn order_creations(
    known: &BTreeMap<String, Entry>,
    view: &BTreeMap<String, Entry>,
    chain: Vec<Op>,
    creates: Vec<Op>,
) -> Vec<Op> {
    if chain.is_empty() && creates.is_empty() {
        return Vec::new();
    }
    // path → (kind, remote id; empty for what this plan creates)
    let mut present: BTreeMap<String, (EntryKind, String)> = known
        .values()
        .map(|e| (e.path.clone(), (e.kind, e.remote_id.clone())))
        .collect();
    // The folder an op puts something into must be the one that stays there: an item
    // about to move away (or be deleted) would take the new child with it.
    let folder_exists = |present: &BTreeMap<String, (EntryKind, String)>, path: &str| {
        let par = parent(path);
        let stays = view.get(par).map_or("", |e| e.remote_id.as_str());
        par.is_empty()
            || present
                .get(par)
                .is_some_and(|(k, id)| *k == EntryKind::Dir && id == stays)
    };
    let is_at = |present: &BTreeMap<String, (EntryKind, String)>, path: &str, id: &str| {
        present.get(path).is_some_and(|(_, i)| i == id)
    };
    let mut chain = std::collections::VecDeque::from(chain);
    let mut creates = creates;
    creates.sort_by(|a, b| a.path().cmp(b.path()));
    let mut out = Vec::with_capacity(chain.len() + creates.len());
    loop {
        let mut progress = false;
        while let Some(op) = chain.front() {
            let ready = match op {
                Op::Move {
                    from,
                    to,
                    remote_id,
                    ..
                } => {
                    is_at(&present, from, remote_id)
                        && folder_exists(&present, to)
                        && !present.contains_key(to)
                }
                Op::Delete {
                    path, remote_id, ..
                } => is_at(&present, path, remote_id),
                _ => true,
            };
            if !ready {
                break;
            }
            match op {
                Op::Move { from, to, .. } => {
                    for p in subtree_keys(&present, from) {
                        let v = present.remove(&p).expect("listed");
                        present.insert(rekey(&p, from, to), v);
                    }
                }
                Op::Delete { path, .. } => {
                    for p in subtree_keys(&present, path) {
                        present.remove(&p);
                    }
                }
                _ => {}
            }
            out.extend(chain.pop_front());
            progress = true;
        }
        let mut rest = Vec::new();
        for op in creates {
            let path = op.path();
            if folder_exists(&present, path) && !present.contains_key(path) {
                let kind = match op {
                    Op::Mkdir { .. } => EntryKind::Dir,
                    _ => EntryKind::File,
                };
                present.insert(path.to_string(), (kind, String::new()));
                out.push(op);
                progress = true;
            } else {
                rest.push(op);
            }
        }
        creates = rest;
        if chain.is_empty() && creates.is_empty() {
            break;
        }
        if !progress {
            // Unsatisfiable dependencies cannot happen for a consistent disk view (moves
            // are only planned when they can run); keep the ops rather than lose them,
            // the uploader reports what fails.
            out.extend(chain);
            out.extend(creates);
            break;
        }
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

    /// Known items with their stored hashes, as `run` takes them.
    type Known = Vec<(DiskItem, &'static str)>;

    #[test]
    fn a_vanished_subtree_is_one_delete_even_with_siblings_sorting_inside_it() {
        // `.` and `-` sort before `/`: `a.b` and `a-b` come between `a` and `a/…`.
        let cases: &[(&str, Known, &[&str], usize)] = &[
            (
                "a.b between a and a/a.b",
                vec![
                    (dir("a", 1), ""),
                    (dir("a.b", 2), ""),
                    (dir("a/a.b", 3), ""),
                ],
                &["delete a", "delete a.b"],
                3,
            ),
            (
                "a-b and a.b, files inside a",
                vec![
                    (dir("a", 1), ""),
                    (file("a-b", 2, 1, 1), "h"),
                    (dir("a.b", 3), ""),
                    (file("a.b/x", 4, 1, 1), "h"),
                    (dir("a/b", 5), ""),
                    (file("a/b/y", 6, 1, 1), "h"),
                    (file("a/z", 7, 1, 1), "h"),
                ],
                &["delete a", "delete a-b", "delete a.b"],
                7,
            ),
        ];
        for (case, known, want, count) in cases {
            let (ops, _, deleted) = run(&[], known, &[], &[]);
            assert_eq!(ops, *want, "{case}");
            assert_eq!(deleted, *count, "{case}");
        }
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
    fn an_unreadable_file_is_hashed_once_and_one_failure() {
        // (case, known, disk): each wants the hash of `z` more than once.
        let cases: &[(&str, Known, Vec<DiskItem>)] = &[(
            "two vanished hard links, one new name with their inode",
            vec![(file("x", 5, 1, 1), "h"), (file("y", 5, 1, 1), "h")],
            vec![file("z", 5, 1, 1)],
        )];
        for (case, known, disk) in cases {
            let (ops, notes, _) = run(disk, known, &[], &[]);
            assert_eq!(notes, ["z", "hashed z"], "{case}: {ops:?}");
            assert_eq!(
                ops,
                ["upload z", "delete x", "delete y"],
                "{case}: unconfirmed, so no move"
            );
        }
    }

    /// (case, known, disk, want): for the move tests below.
    type MoveCase = (&'static str, Known, Vec<DiskItem>, &'static [&'static str]);

    fn check_moves(cases: &[MoveCase]) {
        for (case, known, disk, want) in cases {
            let (ops, notes, _) = run(disk, known, &[], &[]);
            assert_eq!(ops, *want, "{case}");
            assert!(notes.is_empty(), "{case}: {notes:?}");
        }
    }

    #[test]
    fn folder_moves_never_land_on_an_occupied_name() {
        check_moves(&[
            (
                "mv b d; mv d/a.b d/b; mv a.b d/a.b",
                vec![
                    (dir("a.b", 2), ""),
                    (dir("b", 1), ""),
                    (dir("b/a.b", 3), ""),
                ],
                vec![dir("d", 1), dir("d/a.b", 2), dir("d/b", 3)],
                &["move b -> d", "move d/a.b -> d/b", "move a.b -> d/a.b"],
            ),
            (
                "the same with new folders inside the moved-in a.b",
                vec![
                    (dir("a.b", 2), ""),
                    (dir("b", 1), ""),
                    (dir("b/a.b", 3), ""),
                ],
                vec![
                    dir("d", 1),
                    dir("d/a.b", 2),
                    dir("d/a.b/a.b", 4),
                    dir("d/a.b/b", 6),
                    dir("d/b", 3),
                ],
                &[
                    "move b -> d",
                    "move d/a.b -> d/b",
                    "move a.b -> d/a.b",
                    "mkdir d/a.b/a.b",
                    "mkdir d/a.b/b",
                ],
            ),
            (
                "mv a b; mkdir a: the new a waits for the old one to leave",
                vec![(dir("a", 1), ""), (file("a/f", 5, 1, 1), "h")],
                vec![dir("a", 2), dir("b", 1), file("b/f", 5, 1, 1)],
                &["move a -> b", "mkdir a"],
            ),
        ]);
    }

    #[test]
    fn kind_changes_inside_a_moved_folder_are_found_at_the_new_path() {
        check_moves(&[
            (
                "folder d/d became file a.b/d",
                vec![(dir("d", 1), ""), (dir("d/d", 2), "")],
                vec![dir("a.b", 1), file("a.b/d", 5, 1, 1)],
                &["move d -> a.b", "delete a.b/d", "upload a.b/d"],
            ),
            (
                "file d/x became folder e/x",
                vec![(dir("d", 1), ""), (file("d/x", 5, 1, 1), "h")],
                vec![dir("e", 1), dir("e/x", 6), file("e/x/f", 7, 1, 1)],
                &["move d -> e", "delete e/x", "mkdir e/x", "upload e/x/f"],
            ),
            (
                "mv b/f t; rm -r b; mv t b: the file cannot move out of the folder it replaces",
                vec![(dir("b", 1), ""), (file("b/f", 5, 1, 1), "h")],
                vec![file("b", 5, 1, 1)],
                &["delete b", "upload b"],
            ),
            (
                "rm b; mv a.b b, and the file a.b/b became folder b/b",
                vec![
                    (dir("a.b", 1), ""),
                    (file("a.b/b", 5, 1, 1), "h"),
                    (file("b", 6, 1, 1), "h"),
                ],
                vec![dir("b", 1), dir("b/b", 7), file("b/b/f", 8, 1, 1)],
                &[
                    "delete b",
                    "move a.b -> b",
                    "delete b/b",
                    "mkdir b/b",
                    "upload b/b/f",
                ],
            ),
        ]);
    }

    #[test]
    fn moves_that_depend_on_each_other_run_in_the_order_that_works() {
        check_moves(&[
            (
                "mv a/a-b d; mv a d/a",
                vec![(dir("a", 1), ""), (dir("a/a-b", 2), "")],
                vec![dir("d", 2), dir("d/a", 1)],
                &["move a/a-b -> d", "move a -> d/a"],
            ),
            (
                "mv a/sub sub; mv a sub/a, with files inside both",
                vec![
                    (dir("a", 1), ""),
                    (file("a/x", 4, 1, 1), "h"),
                    (dir("a/sub", 2), ""),
                    (file("a/sub/f", 3, 1, 1), "h"),
                ],
                vec![
                    dir("sub", 2),
                    dir("sub/a", 1),
                    file("sub/a/x", 4, 1, 1),
                    file("sub/f", 3, 1, 1),
                ],
                &["move a/sub -> sub", "move a -> sub/a"],
            ),
        ]);
    }

    #[test]
    fn a_move_waits_while_any_folder_above_its_target_is_to_move_away() {
        check_moves(&[(
            "mv a n/m/l/x; rm -r n/m/l/x/b; mkdir -p a/b; mv c a/b/c: not into the old a/b",
            vec![(dir("a", 1), ""), (dir("a/b", 2), ""), (dir("c", 3), "")],
            vec![
                dir("a", 4),
                dir("a/b", 5),
                dir("a/b/c", 3),
                dir("n", 6),
                dir("n/m", 7),
                dir("n/m/l", 8),
                dir("n/m/l/x", 1),
            ],
            &[
                "mkdir n",
                "mkdir n/m",
                "mkdir n/m/l",
                "move a -> n/m/l/x",
                "mkdir a",
                "mkdir a/b",
                "move c -> a/b/c",
                "delete n/m/l/x/b",
            ],
        )]);
    }

    #[test]
    fn creates_go_into_the_folder_that_ends_up_at_their_path() {
        check_moves(&[(
            "mv x/y n/w; mv z x/y; mkdir x/y/new: not into the old x/y, which leaves",
            vec![(dir("x", 1), ""), (dir("x/y", 2), ""), (dir("z", 3), "")],
            vec![
                dir("n", 5),
                dir("n/w", 2),
                dir("x", 1),
                dir("x/y", 3),
                dir("x/y/new", 4),
            ],
            &[
                "mkdir n",
                "move x/y -> n/w",
                "move z -> x/y",
                "mkdir x/y/new",
            ],
        )]);
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
