//! Relative paths of hostile names: arbitrary bytes as OS paths through
//! `scaidrive::watch::RelPath` (`from_path`, `from_abs`, `new`, `join`, `rebase`, ordering,
//! serde) and the planner's string helpers (`scaidrive::plan::{parent, name_of, join,
//! is_within}`), which must agree with it.
//!
//! Why: every stage after the watcher names files with `RelPath`; a name the kernel
//! allows but the type mishandles (`..`, NUL, a newline, invalid UTF-8, a leading `/`)
//! could make the daemon upload, or delete, outside the mirror. What is checked:
//!
//! - an accepted `RelPath` is UTF-8 with no empty, `.` or `..` component, no leading or
//!   trailing `/`, no NUL; it round-trips through `RelPath::new`, serde (JSON) and
//!   `to_path` + `from_abs`; `to_path(root)` stays under `root` with only normal
//!   components (it never escapes the root);
//! - `from_path` keeps the names: its components are the path's normal components, in
//!   order; it fails exactly when the path has a root, `..`, a non-UTF-8 or a NUL name;
//! - `parent`/`name`/`depth`/`join`/`is_within`/`rebase` agree with each other, and the
//!   planner's helpers agree with them on every non-root path;
//! - the order is parent-first (an ancestor sorts before its descendants) and consistent
//!   with equality;
//! - every error renders on one line (an error naming a hostile path ends up in a log).
//!
//! The one library bug this target found (`OutsideRoot` printed a path with a newline
//! raw) is fixed; its input is in the corpus and nothing is tolerated.
//!
//! Input: raw bytes; split at the first `0xFF` byte (never part of a UTF-8 name) into a
//! path and a second path used for `join`, `rebase` and ordering.

#![no_main]

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use scaidrive::plan;
use scaidrive::watch::{RelPath, RelPathError};

/// A hostile name must not split the line its error is logged on (`OutsideRoot` printed
/// the path raw until session 7; input `corpus/relpath/outside-root-newline`).
fn assert_one_line(e: &RelPathError) {
    let s = e.to_string();
    assert!(
        !s.contains('\n') && !s.contains('\r'),
        "RelPathError is not one line: {s:?}"
    );
}

/// Everything that must hold for an accepted path.
fn check_valid(r: &RelPath) {
    let root = Path::new("/srv/mirror");
    let s = r.as_str();
    if r.is_root() {
        assert_eq!(s, "");
        assert_eq!(r.depth(), 0);
        assert_eq!(r.parent(), None);
        assert_eq!(r.to_path(root), root);
    } else {
        assert!(!s.starts_with('/') && !s.ends_with('/'), "{s:?}");
        assert!(!s.contains('\0'), "{s:?}");
        for c in s.split('/') {
            assert!(
                !c.is_empty() && c != "." && c != "..",
                "component {c:?} in {s:?}"
            );
        }
        assert_eq!(r.depth(), s.split('/').count());
        assert_eq!(
            r.components().collect::<Vec<_>>(),
            s.split('/').collect::<Vec<_>>()
        );
        let parent = r.parent().expect("a non-root path has a parent");
        assert_eq!(parent.depth() + 1, r.depth());
        assert_eq!(
            parent.join(r.name()).as_ref(),
            Ok(r),
            "parent + name of {s:?}"
        );
        assert!(r.is_within(&parent) && !parent.is_within(r));
        assert!(parent < *r, "a parent sorts before its child: {s:?}");
        // The planner's string helpers say the same.
        assert_eq!(plan::parent(s), parent.as_str());
        assert_eq!(plan::name_of(s), r.name());
        assert_eq!(plan::join(parent.as_str(), r.name()), s);
        if !parent.is_root() {
            assert!(plan::is_within(s, parent.as_str()));
            assert!(!plan::is_within(parent.as_str(), s));
        }
    }
    assert!(r.is_within(r) && r.is_within(&RelPath::root()));
    assert_eq!(RelPath::new(s).as_ref(), Ok(r), "new() round trip of {s:?}");
    let json = serde_json::to_string(r).unwrap();
    assert_eq!(
        serde_json::from_str::<RelPath>(&json).ok().as_ref(),
        Some(r)
    );
    // Never escapes the root, and comes back from the absolute path.
    let abs = r.to_path(root);
    assert!(abs.starts_with(root), "{abs:?} escapes {root:?}");
    let rest = abs.strip_prefix(root).unwrap();
    assert!(
        rest.components().all(|c| matches!(c, Component::Normal(_))),
        "{abs:?} has a non-normal component"
    );
    assert_eq!(rest.components().count(), r.depth());
    assert_eq!(RelPath::from_abs(root, &abs).as_ref(), Ok(r));
    assert_eq!(RelPath::from_path(Path::new(s)).as_ref(), Ok(r));
}

fn check_pair(a: &RelPath, b: &RelPath) {
    use std::cmp::Ordering;
    assert_eq!(a.cmp(b) == Ordering::Equal, a == b, "{a:?} vs {b:?}");
    assert_eq!(a.cmp(b), b.cmp(a).reverse());
    if a.is_within(b) {
        assert!(b <= a, "ancestor {b:?} sorts after {a:?}");
        if !b.is_root() {
            assert!(plan::is_within(a.as_str(), b.as_str()));
        }
        // Moving the subtree of b to a fresh place and back restores a.
        let to = RelPath::new("moved/here").unwrap();
        let moved = a.rebase(b, &to).expect("rebase of a path within");
        check_valid(&moved);
        assert!(moved.is_within(&to), "{moved:?} not within {to:?}");
        assert_eq!(moved.depth() + b.depth(), a.depth() + to.depth());
        assert_eq!(moved.rebase(&to, b).as_ref(), Some(a));
    } else {
        assert_eq!(a.rebase(b, &RelPath::root()), None);
        if !b.is_root() {
            assert!(!plan::is_within(a.as_str(), b.as_str()));
        }
    }
    match a.join(b.as_str()) {
        Ok(j) => {
            check_valid(&j);
            assert!(j.is_within(a));
            assert_eq!(j.depth(), a.depth() + b.depth());
            assert_eq!(j.rebase(a, &RelPath::root()).as_ref(), Some(b));
        }
        Err(e) => panic!("joining two valid paths {a:?} + {b:?} failed: {e}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let (first, second) = match data.iter().position(|&b| b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let p = Path::new(OsStr::from_bytes(first));

    // from_path: accepted exactly when every component is a UTF-8, NUL-free normal name.
    let expect_ok = p.components().all(|c| match c {
        Component::Normal(n) => n.to_str().is_some_and(|s| !s.contains('\0')),
        Component::CurDir => true,
        _ => false,
    });
    match RelPath::from_path(p) {
        Ok(r) => {
            assert!(expect_ok, "{p:?} accepted as {r:?}");
            let names: Vec<&str> = p
                .components()
                .filter_map(|c| match c {
                    Component::Normal(n) => n.to_str(),
                    _ => None,
                })
                .collect();
            assert_eq!(r.components().collect::<Vec<_>>(), names, "names of {p:?}");
            check_valid(&r);
        }
        Err(e) => {
            assert!(!expect_ok, "{p:?} refused: {e}");
            assert_one_line(&e);
        }
    }

    // from_abs under a root, with the input as the part after the root (and as a whole
    // absolute path that may or may not be under it).
    let root = Path::new("/srv/mirror");
    for abs in [root.join(p), PathBuf::from(p)] {
        match RelPath::from_abs(root, &abs) {
            Ok(r) => {
                check_valid(&r);
                assert!(r.to_path(root).starts_with(root));
            }
            Err(e) => assert_one_line(&e),
        }
    }

    // new() on the text itself.
    let a = match std::str::from_utf8(first) {
        Ok(s) => match RelPath::new(s) {
            Ok(r) => {
                check_valid(&r);
                Some(r)
            }
            Err(e) => {
                assert_one_line(&e);
                None
            }
        },
        Err(_) => None,
    };
    let b = std::str::from_utf8(second)
        .ok()
        .and_then(|s| RelPath::new(s).ok());
    if let Some(b) = &b {
        check_valid(b);
    }
    if let (Some(a), Some(b)) = (&a, &b) {
        check_pair(a, b);
        check_pair(b, a);
        if let Ok(j) = a.join(b.as_str()) {
            check_pair(&j, a);
        }
    }
    // A hostile child never escapes through join.
    if let (Some(a), Ok(child)) = (&a, std::str::from_utf8(second)) {
        match a.join(child) {
            Ok(j) => {
                check_valid(&j);
                assert!(j.is_within(a));
            }
            Err(e) => assert_one_line(&e),
        }
    }
});
