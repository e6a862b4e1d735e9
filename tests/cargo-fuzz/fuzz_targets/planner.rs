//! The planner (`scaidrive::plan::plan`) on generated disk and store states, checked by
//! executing its ops against a model of the remote.
//!
//! Why: the planner decides every remote write and delete; a wrong order fails uploads, a
//! wrong op loses or trashes data. Its unit tests pin known scenarios; this target builds
//! arbitrary but consistent worlds — a store tree (what was mirrored), a disk tree (what is
//! there now), inodes that moved, were hard-linked, touched, edited or reused, files that
//! cannot be read, kernel-reported renames — and checks what must hold for all of them:
//!
//! - no panic, no arithmetic overflow (run with debug assertions);
//! - every op is executable when it runs, in order, on a remote that starts as the store
//!   says: a create's parent folder exists and its name is free, a move's source exists
//!   with the id and kind the op names, its target name is free and its target folder
//!   exists (and it is not moved into itself), a replace/refresh/delete names an existing
//!   item of that id and kind;
//! - no op outside the given paths: creates, replaces, refreshes and move targets are disk
//!   paths carrying that path's disk item; hashing asks only for files on disk, no path
//!   is hashed twice (nor listed twice as a failure), and a first pass (empty store)
//!   hashes nothing;
//! - a delete never targets a path that is on disk with the same kind;
//! - a refresh that carries a hash carries the file's real hash, equal to what the remote
//!   already holds (a refresh must never hide new bytes);
//! - after the last op the remote has exactly the disk's paths with their kinds, and every
//!   readable file's remote content is its content on disk;
//! - `deleted_entries` (what the mass-delete guard counts) is the number of remote items
//!   the deletes removed.
//!
//! Worlds are consistent in one respect the planner relies on by design: a file whose
//! (inode, size, mtime) equals the stored fingerprint has the stored content (a silent
//! edit that restores the mtime is issue 17 item 4, handled elsewhere).
//!
//! Library bugs this target finds are reported, their inputs kept in
//! `regressions/planner/`, and tolerated here (marked "known bug") unless
//! `SCAIDRIVE_FUZZ_STRICT` is set, so that runs keep finding new ones. None is tolerated
//! now: the ones found so far are fixed, their inputs are in `corpus/planner/` (see
//! `regressions/README.md`), and every check below is strict.
//!
//! Input: `arbitrary` bytes (no readable seeds; the corpus holds what fuzzing found).

#![no_main]

use std::collections::{BTreeMap, BTreeSet, HashMap};

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use scaidrive::plan::{self, DiskItem, Op, Plan};
use scaidrive::store::{Entry, EntryKind};

/// Names that collide and sort around `/` (`-` and `.` sort before it).
const NAMES: &[&str] = &["a", "b", "a-b", "a.b", "c", "d"];

#[derive(Arbitrary, Debug)]
enum Change {
    Same,
    /// New mtime, same bytes.
    Touched,
    /// New mtime and bytes (and maybe size).
    Edited {
        grow: bool,
        content: u8,
    },
}

#[derive(Arbitrary, Debug)]
enum Readable {
    Yes,
    PermissionDenied,
    /// Gone between the scan and the hash.
    NotFound,
}

#[derive(Arbitrary, Debug)]
struct InodeSpec {
    size: u8,
    mtime: i8,
    content: u8,
    change: Change,
    readable: Readable,
}

#[derive(Arbitrary, Debug)]
struct NodeSpec {
    parent: u8,
    name: u8,
    dir: bool,
    inode: u8,
    /// Store entries only: the stored hash is missing.
    no_sha: bool,
}

#[derive(Arbitrary, Debug)]
struct WorldSpec {
    inodes: Vec<InodeSpec>,
    known: Vec<NodeSpec>,
    disk: Vec<NodeSpec>,
    renames: Vec<(u8, u8)>,
}

#[derive(Clone, Copy, Debug)]
struct Attrs {
    size: u64,
    mtime_ns: i64,
    content: u32,
}

struct World {
    known: BTreeMap<String, Entry>,
    disk: BTreeMap<String, DiskItem>,
    renames: Vec<(String, String)>,
    /// inode → (attributes when stored, attributes now, readable)
    inodes: HashMap<u64, (Attrs, Attrs, u8)>,
}

const DIR_INODE_BASE: u64 = 1000;

fn content_hash(c: u32) -> String {
    format!("sha-{c}")
}

/// A tree from node specs: parents are folders made earlier, inodes obey what a file
/// system allows at one moment (a folder's inode is its own; files may share one).
fn build_tree(specs: &[NodeSpec], n_inodes: u64) -> Vec<(String, bool, u64, bool)> {
    let mut dirs: Vec<String> = vec![String::new()];
    let mut out: Vec<(String, bool, u64, bool)> = Vec::new();
    let mut taken: BTreeSet<String> = BTreeSet::new();
    let mut file_inodes = BTreeSet::new();
    let mut dir_inodes = BTreeSet::new();
    for (i, s) in specs.iter().take(40).enumerate() {
        let parent = dirs[s.parent as usize % dirs.len()].clone();
        let path = plan::join(&parent, NAMES[s.name as usize % NAMES.len()]);
        if !taken.insert(path.clone()) {
            continue;
        }
        let mut inode = u64::from(s.inode) % n_inodes.max(1);
        if s.dir {
            if dir_inodes.contains(&inode) || file_inodes.contains(&inode) {
                inode = DIR_INODE_BASE + i as u64;
            }
            dir_inodes.insert(inode);
            dirs.push(path.clone());
        } else {
            if dir_inodes.contains(&inode) {
                taken.remove(&path);
                continue;
            }
            file_inodes.insert(inode);
        }
        out.push((path, s.dir, inode, s.no_sha));
    }
    out
}

fn build(spec: &WorldSpec) -> World {
    let mut inodes = HashMap::new();
    for (i, s) in spec.inodes.iter().take(16).enumerate() {
        let old = Attrs {
            size: u64::from(s.size),
            mtime_ns: i64::from(s.mtime),
            content: u32::from(s.content),
        };
        let now = match s.change {
            Change::Same => old,
            Change::Touched => Attrs {
                mtime_ns: old.mtime_ns + 1,
                ..old
            },
            Change::Edited { grow, content } => Attrs {
                size: old.size + u64::from(grow),
                mtime_ns: old.mtime_ns + 1,
                content: 256 + u32::from(content),
            },
        };
        let readable = match s.readable {
            Readable::Yes => 0,
            Readable::PermissionDenied => 1,
            Readable::NotFound => 2,
        };
        inodes.insert(i as u64, (old, now, readable));
    }
    if inodes.is_empty() {
        let a = Attrs {
            size: 1,
            mtime_ns: 1,
            content: 1,
        };
        inodes.insert(0, (a, a, 0));
    }
    let n = inodes.len() as u64;
    let dir_attrs = Attrs {
        size: 0,
        mtime_ns: 0,
        content: 0,
    };
    let attrs = |inode: u64| {
        inodes
            .get(&inode)
            .copied()
            .unwrap_or((dir_attrs, dir_attrs, 0))
    };

    let mut known = BTreeMap::new();
    for (path, dir, inode, no_sha) in build_tree(&spec.known, n) {
        let (old, _, _) = attrs(inode);
        let kind = if dir { EntryKind::Dir } else { EntryKind::File };
        known.insert(
            path.clone(),
            Entry {
                path: path.clone(),
                kind,
                remote_id: format!("id:{path}"),
                size: if dir { 0 } else { old.size },
                mtime_ns: if dir { 0 } else { old.mtime_ns },
                inode,
                sha256: (!dir && !no_sha).then(|| content_hash(old.content)),
                remote_version: Some(1),
                // Unknown (as in a store from before ctimes were kept): the planner then
                // judges by size, mtime and inode alone, which is what this model's edits
                // are built around; the ctime rule has its own unit test in src/plan.
                ctime_ns: None,
            },
        );
    }
    let mut disk = BTreeMap::new();
    for (path, dir, inode, _) in build_tree(&spec.disk, n) {
        let (_, now, _) = attrs(inode);
        disk.insert(
            path.clone(),
            DiskItem {
                path,
                kind: if dir { EntryKind::Dir } else { EntryKind::File },
                size: if dir { 0 } else { now.size },
                mtime_ns: if dir { 0 } else { now.mtime_ns },
                inode,
                ctime_ns: if dir { 0 } else { now.mtime_ns },
            },
        );
    }
    // Renames the kernel could have reported: a stored file gone from its path, the same
    // inode at a new path.
    let known_files: Vec<&Entry> = known
        .values()
        .filter(|e| e.kind == EntryKind::File)
        .collect();
    let disk_files: Vec<&DiskItem> = disk
        .values()
        .filter(|d| d.kind == EntryKind::File)
        .collect();
    let mut renames = Vec::new();
    if !known_files.is_empty() && !disk_files.is_empty() {
        for (a, b) in spec.renames.iter().take(8) {
            let k = known_files[*a as usize % known_files.len()];
            let d = disk_files[*b as usize % disk_files.len()];
            if k.inode == d.inode && !disk.contains_key(&k.path) && !known.contains_key(&d.path) {
                renames.push((k.path.clone(), d.path.clone()));
            }
        }
    }
    World {
        known,
        disk,
        renames,
        inodes,
    }
}

#[derive(Clone, Debug)]
struct Remote {
    kind: EntryKind,
    id: String,
    /// Content of a file (`None` for folders).
    content: Option<u32>,
}

fn fail(w: &World, p: &Plan, at: usize, why: String) -> ! {
    panic!(
        "{why}\n  at op #{at}\n  store: {:#?}\n  disk: {:#?}\n  renames: {:?}\n  ops: {:#?}\n  failures: {:?}",
        w.known, w.disk, w.renames, p.ops, p.failures
    );
}

fuzz_target!(|spec: WorldSpec| {
    let w = build(&spec);
    let mut hashed: Vec<String> = Vec::new();
    let p = plan::plan(&w.known, &w.disk, &w.renames, &mut |path| {
        hashed.push(path.to_string());
        let d = w
            .disk
            .get(path)
            .filter(|d| d.kind == EntryKind::File)
            .unwrap_or_else(|| panic!("the planner hashed {path:?}, not a file on disk"));
        let (_, now, readable) = w.inodes[&d.inode];
        match readable {
            1 => Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "denied",
            )),
            2 => Err(std::io::Error::new(std::io::ErrorKind::NotFound, "gone")),
            _ => Ok(content_hash(now.content)),
        }
    });
    let unreadable = |path: &str| {
        w.disk
            .get(path)
            .is_some_and(|d| w.inodes.get(&d.inode).is_some_and(|i| i.2 != 0))
    };
    // A hash is taken once per plan, whether it succeeded or not; an unreadable file is
    // one failure.
    let mut seen = BTreeSet::new();
    for h in &hashed {
        if !seen.insert(h) {
            fail(&w, &p, 0, format!("{h:?} hashed twice"));
        }
    }
    let mut failed = BTreeSet::new();
    for (path, _) in &p.failures {
        if !failed.insert(path) {
            fail(&w, &p, 0, format!("{path:?} listed twice in the failures"));
        }
    }
    if w.known.is_empty() && !hashed.is_empty() {
        fail(&w, &p, 0, format!("a first pass hashed {hashed:?}"));
    }
    for (path, msg) in &p.failures {
        if !unreadable(path) {
            fail(
                &w,
                &p,
                0,
                format!("failure for a readable path {path:?}: {msg}"),
            );
        }
    }

    // Execute the plan against the remote as the store describes it.
    let mut remote: BTreeMap<String, Remote> = w
        .known
        .values()
        .map(|e| {
            let content = (e.kind == EntryKind::File).then(|| w.inodes[&e.inode].0.content);
            (
                e.path.clone(),
                Remote {
                    kind: e.kind,
                    id: e.remote_id.clone(),
                    content,
                },
            )
        })
        .collect();
    let now_content = |d: &DiskItem| w.inodes.get(&d.inode).map(|i| i.1.content);
    let mut removed = 0usize;
    for (i, op) in p.ops.iter().enumerate() {
        let folder_exists = |remote: &BTreeMap<String, Remote>, path: &str| {
            let par = plan::parent(path);
            par.is_empty() || remote.get(par).is_some_and(|r| r.kind == EntryKind::Dir)
        };
        let disk_item = |path: &str, item: &DiskItem| {
            if w.disk.get(path) != Some(item) {
                fail(
                    &w,
                    &p,
                    i,
                    format!("op on {path:?} does not carry its disk item"),
                );
            }
        };
        // A hash in an op spares the uploader a read: it must be the file's real hash.
        let carried_hash = |path: &str, item: &DiskItem, h: &str| {
            if now_content(item).map(content_hash).as_deref() != Some(h) {
                fail(&w, &p, i, format!("op on {path:?} carries a wrong hash"));
            }
        };
        match op {
            Op::Mkdir { path, item } | Op::Upload { path, item, .. } => {
                disk_item(path, item);
                if let Op::Upload {
                    sha256: Some(h), ..
                } = op
                {
                    carried_hash(path, item, h);
                }
                let want = if matches!(op, Op::Mkdir { .. }) {
                    EntryKind::Dir
                } else {
                    EntryKind::File
                };
                if item.kind != want {
                    fail(&w, &p, i, format!("{path:?} created with the wrong kind"));
                }
                if !folder_exists(&remote, path) {
                    fail(&w, &p, i, format!("{path:?} created before its folder"));
                }
                if remote.contains_key(path) {
                    fail(&w, &p, i, format!("{path:?} created over an existing item"));
                }
                remote.insert(
                    path.clone(),
                    Remote {
                        kind: want,
                        id: format!("new:{path}"),
                        content: (want == EntryKind::File).then(|| now_content(item).unwrap()),
                    },
                );
            }
            Op::Replace {
                path,
                remote_id,
                item,
                sha256,
            } => {
                disk_item(path, item);
                carried_hash(path, item, sha256);
                match remote.get_mut(path) {
                    Some(r) if r.kind == EntryKind::File && r.id == *remote_id => {
                        r.content = now_content(item);
                    }
                    other => fail(&w, &p, i, format!("replace of {path:?} finds {other:?}")),
                }
            }
            Op::Refresh { path, item, sha256 } => {
                disk_item(path, item);
                let Some(r) = remote.get(path).filter(|r| r.kind == item.kind) else {
                    fail(
                        &w,
                        &p,
                        i,
                        format!("refresh of {path:?}: no such remote item"),
                    );
                };
                if let Some(h) = sha256 {
                    let real = now_content(item).map(content_hash);
                    if real.as_deref() != Some(h.as_str()) {
                        fail(
                            &w,
                            &p,
                            i,
                            format!("refresh of {path:?} carries a wrong hash"),
                        );
                    }
                    if r.content.map(content_hash).as_deref() != Some(h.as_str()) {
                        fail(&w, &p, i, format!("refresh of {path:?} hides new bytes"));
                    }
                }
            }
            Op::Move {
                from,
                to,
                remote_id,
                kind,
                item,
            } => {
                disk_item(to, item);
                if item.kind != *kind {
                    fail(&w, &p, i, format!("move to {to:?} changes kind"));
                }
                match remote.get(from) {
                    Some(r) if r.id == *remote_id && r.kind == *kind => {}
                    other => fail(&w, &p, i, format!("move from {from:?} finds {other:?}")),
                }
                if remote.contains_key(to) {
                    fail(&w, &p, i, format!("move onto an existing {to:?}"));
                }
                if plan::is_within(to, from) {
                    fail(&w, &p, i, format!("{from:?} moved into itself"));
                }
                if !folder_exists(&remote, to) {
                    fail(
                        &w,
                        &p,
                        i,
                        format!("move to {to:?} before its folder exists"),
                    );
                }
                let subtree: Vec<String> = remote
                    .keys()
                    .filter(|k| plan::is_within(k, from))
                    .cloned()
                    .collect();
                for k in subtree {
                    let r = remote.remove(&k).unwrap();
                    remote.insert(format!("{to}{}", &k[from.len()..]), r);
                }
            }
            Op::Delete {
                path,
                remote_id,
                kind,
            } => {
                if w.disk.get(path).is_some_and(|d| d.kind == *kind) {
                    fail(
                        &w,
                        &p,
                        i,
                        format!("delete of {path:?}, on disk with that kind"),
                    );
                }
                match remote.get(path) {
                    Some(r) if r.id == *remote_id && r.kind == *kind => {}
                    other => fail(&w, &p, i, format!("delete of {path:?} finds {other:?}")),
                }
                let subtree: Vec<String> = remote
                    .keys()
                    .filter(|k| plan::is_within(k, path))
                    .cloned()
                    .collect();
                removed += subtree.len();
                for k in subtree {
                    remote.remove(&k);
                }
            }
        }
    }

    // The remote now is the disk.
    let remote_shape: Vec<(&String, EntryKind)> = remote.iter().map(|(k, r)| (k, r.kind)).collect();
    let disk_shape: Vec<(&String, EntryKind)> = w.disk.iter().map(|(k, d)| (k, d.kind)).collect();
    if remote_shape != disk_shape {
        fail(
            &w,
            &p,
            p.ops.len(),
            format!("remote after the plan {remote_shape:?} is not the disk {disk_shape:?}"),
        );
    }
    for (path, d) in &w.disk {
        if d.kind == EntryKind::File && !unreadable(path) && remote[path].content != now_content(d)
        {
            fail(
                &w,
                &p,
                p.ops.len(),
                format!("{path:?} has stale content remotely"),
            );
        }
    }
    if removed != p.deleted_entries {
        fail(
            &w,
            &p,
            p.ops.len(),
            format!(
                "deleted_entries {} but the deletes removed {removed}",
                p.deleted_entries
            ),
        );
    }
});
