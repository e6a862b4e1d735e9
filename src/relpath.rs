//! Mirror-relative paths: [`RelPath`], the one way the pipeline names a file inside a
//! mirror, and the string helpers ([`parent`], [`name_of`], [`join`], [`is_within`]) for
//! paths that are already stored as plain strings (store keys, ops, journal details).
//!
//! [`Escaped`] and [`escape_bytes`] show a name to a person (a terminal, a log line)
//! without letting the name speak: a file name may hold newlines, escape sequences or
//! bytes that are not UTF-8, and printed raw it can forge log lines or drive the terminal.
//!
//! Every stage after the watcher (queue, planner, uploader, store) speaks in these, so the
//! rules about what a mirrorable name is live here and nowhere else. It is a leaf at the
//! bottom of the pipeline (it depends on nothing in the crate): the store and the uploader
//! use it without importing the planner or the watcher, which is why it is not in either.

use std::cmp::Ordering;
use std::fmt;
use std::path::{Component, Path, PathBuf};

/// `parent("a/b/c") == "a/b"`, `parent("a") == ""`.
pub fn parent(path: &str) -> &str {
    path.rsplit_once('/').map(|(p, _)| p).unwrap_or("")
}

/// `name_of("a/b/c") == "c"`, `name_of("a") == "a"`.
pub fn name_of(path: &str) -> &str {
    path.rsplit_once('/').map(|(_, n)| n).unwrap_or(path)
}

/// `join("a/b", "c") == "a/b/c"`, `join("", "c") == "c"`.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Whether `path` is `ancestor` or below it. Unlike [`RelPath::is_within`], the empty
/// string is not everyone's ancestor: store keys never name the root, so a subtree
/// effect on `""` touches only `""`.
pub fn is_within(path: &str, ancestor: &str) -> bool {
    path == ancestor
        || (path.len() > ancestor.len()
            && path.starts_with(ancestor)
            && path.as_bytes()[ancestor.len()] == b'/')
}

/// A path relative to a mirror root: UTF-8, `/`-separated, no leading or trailing slash, no
/// empty, `.` or `..` components, no NUL. The empty path is the root itself.
///
/// Ordering is component-wise, so a directory sorts directly before its own subtree
/// (`a`, `a/b`, `a-b`), which is the order the planner needs for parent-first work.
#[derive(Clone, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RelPath(String);

/// Why a string or path is not a valid [`RelPath`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelPathError {
    #[error("path {0:?} is not valid UTF-8 and cannot be mirrored")]
    NonUtf8(String),
    #[error("path {path:?} is not a mirror-relative path: {why}")]
    Invalid { path: String, why: &'static str },
    // Quoted like the others: a hostile name must not split the line it is logged on.
    #[error("path {path:?} is outside the mirror root {root:?}")]
    OutsideRoot { path: String, root: String },
}

impl RelPath {
    /// The mirror root itself.
    pub fn root() -> Self {
        RelPath(String::new())
    }

    /// Validates a `/`-separated relative path.
    pub fn new(s: impl Into<String>) -> Result<Self, RelPathError> {
        let s = s.into();
        if s.is_empty() {
            return Ok(RelPath(s));
        }
        let why = if s.starts_with('/') {
            Some("leading slash")
        } else if s.ends_with('/') {
            Some("trailing slash")
        } else if s.contains('\0') {
            Some("NUL byte")
        } else if s.split('/').any(|c| c.is_empty()) {
            Some("empty component")
        } else if s.split('/').any(|c| c == "." || c == "..") {
            Some("`.` or `..` component")
        } else {
            None
        };
        match why {
            Some(why) => Err(RelPathError::Invalid { path: s, why }),
            None => Ok(RelPath(s)),
        }
    }

    /// Converts a native relative path (as found under a root on disk).
    pub fn from_path(p: &Path) -> Result<Self, RelPathError> {
        let mut out = String::new();
        for comp in p.components() {
            match comp {
                Component::Normal(name) => {
                    let name = name
                        .to_str()
                        .ok_or_else(|| RelPathError::NonUtf8(p.to_string_lossy().into_owned()))?;
                    if !out.is_empty() {
                        out.push('/');
                    }
                    out.push_str(name);
                }
                Component::CurDir => {}
                _ => {
                    return Err(RelPathError::Invalid {
                        path: p.to_string_lossy().into_owned(),
                        why: "absolute or `..` component",
                    });
                }
            }
        }
        RelPath::new(out)
    }

    /// Converts an absolute path under `root` (both as the OS reports them).
    pub fn from_abs(root: &Path, abs: &Path) -> Result<Self, RelPathError> {
        let rel = abs
            .strip_prefix(root)
            .map_err(|_| RelPathError::OutsideRoot {
                path: abs.to_string_lossy().into_owned(),
                root: root.to_string_lossy().into_owned(),
            })?;
        RelPath::from_path(rel)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The containing directory; `None` for the root. A top-level name's parent is the root.
    pub fn parent(&self) -> Option<RelPath> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.rfind('/') {
            Some(i) => RelPath(self.0[..i].to_owned()),
            None => RelPath::root(),
        })
    }

    /// The last component; empty for the root.
    pub fn name(&self) -> &str {
        match self.0.rfind('/') {
            Some(i) => &self.0[i + 1..],
            None => &self.0,
        }
    }

    /// Appends one or more components (`child` is itself validated as a relative path).
    pub fn join(&self, child: &str) -> Result<RelPath, RelPathError> {
        let child = RelPath::new(child)?;
        if self.is_root() {
            return Ok(child);
        }
        if child.is_root() {
            return Ok(self.clone());
        }
        Ok(RelPath(format!("{}/{}", self.0, child.0)))
    }

    /// True if `self` equals `ancestor` or lies below it. Everything is within the root.
    pub fn is_within(&self, ancestor: &RelPath) -> bool {
        if ancestor.is_root() || self == ancestor {
            return true;
        }
        self.0.len() > ancestor.0.len()
            && self.0.starts_with(&ancestor.0)
            && self.0.as_bytes()[ancestor.0.len()] == b'/'
    }

    /// Number of components: 0 for the root, 1 for a top-level name.
    pub fn depth(&self) -> usize {
        if self.is_root() {
            0
        } else {
            self.0.split('/').count()
        }
    }

    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    /// `root/self` as a native path. Never escapes `root` because `..` cannot be represented.
    pub fn to_path(&self, root: &Path) -> PathBuf {
        let mut p = root.to_path_buf();
        for c in self.components() {
            p.push(c);
        }
        p
    }

    /// Rewrites the `from` prefix of `self` to `to` (for paths inside a renamed directory).
    pub fn rebase(&self, from: &RelPath, to: &RelPath) -> Option<RelPath> {
        if !self.is_within(from) {
            return None;
        }
        let rest = if from.is_root() {
            self.0.as_str()
        } else {
            self.0[from.0.len()..].trim_start_matches('/')
        };
        to.join(rest).ok()
    }
}

impl Ord for RelPath {
    fn cmp(&self, other: &Self) -> Ordering {
        self.components().cmp(other.components())
    }
}

impl PartialOrd for RelPath {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            f.write_str(".")
        } else {
            f.write_str(&self.0)
        }
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<str> for RelPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for RelPath {
    type Error = RelPathError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        RelPath::new(s)
    }
}

impl From<RelPath> for String {
    fn from(p: RelPath) -> String {
        p.0
    }
}

impl TryFrom<String> for RelPath {
    type Error = RelPathError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        RelPath::new(s)
    }
}

/// A path or name as shown in a terminal or a log line: control characters (C0, DEL, C1,
/// so ESC and CSI) and the bidirectional overrides are escaped, Rust style (`\n`, `\t`,
/// `\r`, `\u{1b}`), so one name is one visible line that can neither forge another nor
/// move the cursor. A backslash is left as it is: the rendering is idempotent (an escaped
/// name, such as a non-UTF-8 failure's key, shows unchanged) and a name with a backslash
/// reads as before; the price is that a name spelling `\n` literally reads like one with
/// a newline. With [`escape_bytes`], bytes that are not UTF-8 read as `\xFF`: nothing is
/// dropped or replaced. JSON output does not need it (JSON escapes by itself).
#[derive(Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The common case, a plain name, is written in one piece.
        if !self.0.chars().any(needs_escape) {
            return f.write_str(self.0);
        }
        for c in self.0.chars() {
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if needs_escape(c) => write!(f, "\\u{{{:x}}}", c as u32)?,
                c => write!(f, "{c}")?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        // Bidirectional embeddings, overrides and isolates reorder what a terminal shows.
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// Shows a name that may not be UTF-8 (as readdir gives it): valid runs as [`Escaped`],
/// each invalid byte as `\xNN`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(&Escaped(chunk.valid()).to_string());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

/// [`escape_bytes`] of a native name or path.
pub fn escape_os(name: &std::ffi::OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    escape_bytes(name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    #[test]
    fn string_helpers() {
        // `is_within` and `parent` are also covered by the planner's `within_and_parent`.
        assert!(!is_within("a", ""));
        assert!(is_within("", ""));
        assert_eq!(name_of("a/b/c"), "c");
        assert_eq!(name_of("a"), "a");
        assert_eq!(join("a/b", "c"), "a/b/c");
        assert_eq!(join("", "c"), "c");
    }

    #[test]
    fn validation() {
        for ok in [
            "",
            "a",
            "a/b",
            "a b/c.txt",
            "ü/日本",
            "a\\b",
            "...",
            ".hidden",
        ] {
            assert!(RelPath::new(ok).is_ok(), "{ok:?} should be valid");
        }
        for bad in [
            "/a", "a/", "a//b", "./a", "a/../b", "..", ".", "a/./b", "a\0b",
        ] {
            assert!(RelPath::new(bad).is_err(), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn parent_name_depth_join() {
        let cases: &[(&str, Option<&str>, &str, usize)] = &[
            ("", None, "", 0),
            ("a", Some(""), "a", 1),
            ("a/b", Some("a"), "b", 2),
            ("a/b/c.txt", Some("a/b"), "c.txt", 3),
        ];
        for &(p, parent, name, depth) in cases {
            let p = rp(p);
            assert_eq!(p.parent(), parent.map(rp), "parent of {p:?}");
            assert_eq!(p.name(), name, "name of {p:?}");
            assert_eq!(p.depth(), depth, "depth of {p:?}");
        }
        assert_eq!(rp("").join("a/b").unwrap(), rp("a/b"));
        assert_eq!(rp("a").join("b").unwrap(), rp("a/b"));
        assert!(rp("a").join("../etc").is_err());
        assert!(rp("a").join("/etc").is_err());
    }

    #[test]
    fn is_within_and_rebase() {
        assert!(rp("a/b").is_within(&rp("a")));
        assert!(rp("a").is_within(&rp("a")));
        assert!(rp("a").is_within(&RelPath::root()));
        assert!(!rp("ab").is_within(&rp("a")));
        assert!(!rp("a").is_within(&rp("a/b")));
        assert_eq!(
            rp("a/b/c").rebase(&rp("a"), &rp("x/y")),
            Some(rp("x/y/b/c"))
        );
        assert_eq!(rp("a").rebase(&rp("a"), &rp("z")), Some(rp("z")));
        assert_eq!(rp("ab").rebase(&rp("a"), &rp("z")), None);
    }

    #[test]
    fn parents_sort_before_children_and_subtrees_stay_together() {
        let mut v: Vec<RelPath> = ["a-b", "a/b", "b", "a", "a/b/c", "", "a.txt", "a/a"]
            .into_iter()
            .map(rp)
            .collect();
        v.sort();
        let got: Vec<&str> = v.iter().map(|p| p.as_str()).collect();
        assert_eq!(got, ["", "a", "a/a", "a/b", "a/b/c", "a-b", "a.txt", "b"]);
    }

    #[test]
    fn from_abs_and_to_path() {
        let root = Path::new("/srv/mirror");
        assert_eq!(
            RelPath::from_abs(root, Path::new("/srv/mirror/x/y.txt")).unwrap(),
            rp("x/y.txt")
        );
        assert_eq!(RelPath::from_abs(root, root).unwrap(), RelPath::root());
        assert!(matches!(
            RelPath::from_abs(root, Path::new("/srv/other/x")),
            Err(RelPathError::OutsideRoot { .. })
        ));
        assert!(matches!(
            RelPath::from_abs(root, Path::new("/srv/mirrored/x")),
            Err(RelPathError::OutsideRoot { .. })
        ));
        assert_eq!(rp("x/y").to_path(root), PathBuf::from("/srv/mirror/x/y"));
    }

    #[test]
    fn serde_round_trip_validates() {
        let p = rp("a/b.txt");
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, "\"a/b.txt\"");
        assert_eq!(serde_json::from_str::<RelPath>(&json).unwrap(), p);
        assert!(serde_json::from_str::<RelPath>("\"../etc/passwd\"").is_err());
    }

    #[test]
    fn escaped_names_cannot_speak() {
        let table: &[(&[u8], &str)] = &[
            (b"plain name.txt", "plain name.txt"),
            (b"caf\xc3\xa9", "caf\u{e9}"),
            (b"a\nERROR forged", "a\\nERROR forged"),
            (b"\x1b[2Jwipe", "\\u{1b}[2Jwipe"),
            (b"tab\tcr\r", "tab\\tcr\\r"),
            (b"back\\slash", "back\\slash"),
            (b"csi\xc2\x9b", "csi\\u{9b}"),
            (b"rlo\xe2\x80\xaetxt.exe", "rlo\\u{202e}txt.exe"),
            (b"bad-\xff-name", "bad-\\xFF-name"),
            (b"lone \xc3", "lone \\xC3"),
        ];
        for (raw, shown) in table {
            assert_eq!(escape_bytes(raw), *shown, "{raw:?}");
            assert!(!escape_bytes(raw).chars().any(|c| c.is_control()));
        }
        // Idempotent: an escaped name shows as it is.
        let once = escape_bytes(b"x\n\xff\x1b");
        assert_eq!(Escaped(&once).to_string(), once);
        assert_eq!(Escaped("a\nb").to_string(), "a\\nb");
    }

    #[test]
    fn non_utf8_is_reported() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let p = Path::new(OsStr::from_bytes(b"dir/bad\xffname"));
        assert!(matches!(
            RelPath::from_path(p),
            Err(RelPathError::NonUtf8(_))
        ));
    }

    /// Found by the relpath fuzz target: `OutsideRoot` printed a path with a newline raw.
    #[test]
    fn an_outside_root_error_is_one_line() {
        let e = RelPath::from_abs(
            Path::new("/srv/mirror"),
            Path::new("/srv/other/evil\nERROR uploaded fine"),
        )
        .unwrap_err();
        let shown = e.to_string();
        assert!(!shown.contains('\n'), "{shown}");
        assert!(shown.contains("evil\\nERROR"), "{shown}");
    }
}
