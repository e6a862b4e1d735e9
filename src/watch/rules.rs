//! Ignore rules: which paths under a mirror root are never mirrored. Owns the built-in list of
//! temporary/editor/OS files, the user's `exclude` globs, the optional `.scaidriveignore` file in
//! the root, and the check that keeps the daemon's state directory and a mirror root apart.

use std::io;
use std::path::{Path, PathBuf};

use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use super::RelPath;

/// Name of the per-mirror ignore file, read from the mirror root.
pub const IGNORE_FILE_NAME: &str = ".scaidriveignore";

/// Files that are half-written, machine-local or editor scratch: uploading them would only
/// create remote noise (and lock files would be wrong on every other machine).
/// Gitignore syntax; `#` must be escaped because a leading `#` starts a comment.
pub const BUILTIN_PATTERNS: &[&str] = &[
    "*.swp",
    "*.swo",
    "*.swx",
    "*~",
    ".#*",
    "\\#*#",
    "*.part",
    "*.crdownload",
    "*.tmp",
    ".DS_Store",
    "._*",
    "Thumbs.db",
    "desktop.ini",
    "~$*",
    ".~lock.*#",
    ".goutputstream-*",
    "*.kate-swp",
];

#[derive(Debug, thiserror::Error)]
pub enum IgnoreError {
    #[error("invalid exclude glob {glob:?}: {reason}")]
    BadGlob { glob: String, reason: String },
    #[error("invalid line {line} in {path}: {reason}")]
    BadIgnoreFile {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
}

/// The compiled rules for one mirror. Later sources override earlier ones, as in git:
/// built-ins, then `exclude` globs, then `.scaidriveignore`, so a user can re-include a
/// built-in with `!name`.
#[derive(Debug, Clone)]
pub struct IgnoreRules {
    matcher: Gitignore,
}

impl IgnoreRules {
    /// Built-ins plus `exclude` globs (gitignore syntax, one pattern per string); no file.
    pub fn new(user_globs: &[String]) -> Result<Self, IgnoreError> {
        Self::build(Path::new("/"), user_globs, None)
    }

    /// Built-ins, `exclude` globs, and `root/.scaidriveignore` if present. Call again when the
    /// watcher reports a change to [`IGNORE_FILE_NAME`]. Blocking (reads one small file).
    pub fn load(root: &Path, user_globs: &[String]) -> Result<Self, IgnoreError> {
        let path = root.join(IGNORE_FILE_NAME);
        let text = match std::fs::read(&path) {
            Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(source) => return Err(IgnoreError::Read { path, source }),
        };
        Self::build(
            root,
            user_globs,
            text.as_deref().map(|t| (path.as_path(), t)),
        )
    }

    /// Like [`IgnoreRules::load`] with the ignore file's text given (for tests and callers that
    /// already read it).
    pub fn from_parts(
        root: &Path,
        user_globs: &[String],
        ignore_file: Option<&str>,
    ) -> Result<Self, IgnoreError> {
        let path = root.join(IGNORE_FILE_NAME);
        Self::build(root, user_globs, ignore_file.map(|t| (path.as_path(), t)))
    }

    fn build(
        root: &Path,
        user_globs: &[String],
        file: Option<(&Path, &str)>,
    ) -> Result<Self, IgnoreError> {
        let mut b = GitignoreBuilder::new(root);
        // OS droppings come in every case spelling (THUMBS.DB on FAT media); user globs keep
        // gitignore's case-sensitive meaning.
        let _ = b.case_insensitive(true);
        for pat in BUILTIN_PATTERNS {
            b.add_line(None, pat).map_err(|e| IgnoreError::BadGlob {
                glob: (*pat).to_owned(),
                reason: e.to_string(),
            })?;
        }
        let _ = b.case_insensitive(false);
        for glob in user_globs {
            // An empty or comment-only glob would silently match nothing: a config typo.
            if glob.trim().is_empty() || glob.starts_with('#') {
                return Err(IgnoreError::BadGlob {
                    glob: glob.clone(),
                    reason: "empty pattern or comment".into(),
                });
            }
            b.add_line(None, glob).map_err(|e| IgnoreError::BadGlob {
                glob: glob.clone(),
                reason: e.to_string(),
            })?;
        }
        if let Some((path, text)) = file {
            for (i, line) in text.lines().enumerate() {
                b.add_line(Some(path.to_path_buf()), line).map_err(|e| {
                    IgnoreError::BadIgnoreFile {
                        path: path.to_path_buf(),
                        line: i + 1,
                        reason: e.to_string(),
                    }
                })?;
            }
        }
        let matcher = b.build().map_err(|e| IgnoreError::BadGlob {
            glob: "<combined>".into(),
            reason: e.to_string(),
        })?;
        Ok(IgnoreRules { matcher })
    }

    /// True if `path` or any of its ancestors is excluded. `is_dir` matters for patterns that
    /// end in `/`. The root itself is never ignored.
    pub fn is_ignored(&self, path: &RelPath, is_dir: bool) -> bool {
        if path.is_root() {
            return false;
        }
        matches!(
            self.matcher
                .matched_path_or_any_parents(Path::new(path.as_str()), is_dir),
            Match::Ignore(_)
        )
    }

    /// True if `path` is the root's `.scaidriveignore` (a change means: rebuild the rules).
    pub fn is_ignore_file(path: &RelPath) -> bool {
        path.as_str() == IGNORE_FILE_NAME
    }
}

/// A mirror root and the daemon's state directory overlap.
#[derive(Debug, thiserror::Error)]
#[error(
    "mirror root {root} and state directory {state_dir} overlap: {why}; the daemon would mirror \
     its own database (or scan its state as user files). Move one of them."
)]
pub struct ForbiddenRoot {
    pub root: PathBuf,
    pub state_dir: PathBuf,
    pub why: &'static str,
}

/// Refuses a mirror root that contains, equals, or lies inside the state directory. Paths are
/// resolved through symlinks where they exist so that an alias cannot sneak past.
/// Blocking (canonicalizes).
pub fn forbidden_root(root: &Path, state_dir: &Path) -> Result<(), ForbiddenRoot> {
    let r = resolve(root);
    let s = resolve(state_dir);
    let why = if r == s {
        Some("they are the same directory")
    } else if s.starts_with(&r) {
        Some("the state directory is inside the mirror root")
    } else if r.starts_with(&s) {
        Some("the mirror root is inside the state directory")
    } else {
        None
    };
    match why {
        Some(why) => Err(ForbiddenRoot {
            root: root.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            why,
        }),
        None => Ok(()),
    }
}

/// Canonical form of the longest existing prefix of `p`, plus the lexically normalized rest:
/// the state dir may not exist yet on first start, but its parent usually does.
fn resolve(p: &Path) -> PathBuf {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    };
    let mut norm = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                norm.pop();
            }
            std::path::Component::CurDir => {}
            other => norm.push(other.as_os_str()),
        }
    }
    let mut existing = norm.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            let mut out = c;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return norm,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(s: &str) -> RelPath {
        RelPath::new(s).unwrap()
    }

    fn globs(g: &[&str]) -> Vec<String> {
        g.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_builtin_pattern_matches_its_example() {
        let rules = IgnoreRules::new(&[]).unwrap();
        let ignored = [
            "notes.txt.swp",
            ".notes.txt.swo",
            "a/.x.swx",
            "report.doc~",
            ".#report.org",
            "#report.org#",
            "video.mp4.part",
            "setup.exe.crdownload",
            "build.tmp",
            ".DS_Store",
            "sub/.DS_Store",
            "._photo.jpg",
            "Thumbs.db",
            "THUMBS.DB",
            "desktop.ini",
            "~$budget.xlsx",
            ".~lock.budget.ods#",
            ".goutputstream-ABC123",
            "deep/er/file.kate-swp",
        ];
        for p in ignored {
            assert!(rules.is_ignored(&rp(p), false), "{p} should be ignored");
        }
        let kept = [
            "notes.txt",
            "swp",
            "report.doc",
            "a#b",
            "partial.txt",
            "tmp",
            "tmp/data.bin",
            "DS_Store.txt",
            "photo._jpg",
            "my~file.txt",
            "lock.ods",
            ".scaidriveignore",
        ];
        for p in kept {
            assert!(!rules.is_ignored(&rp(p), false), "{p} should be kept");
        }
        assert!(!rules.is_ignored(&RelPath::root(), true));
    }

    #[test]
    fn ignored_directory_hides_its_subtree() {
        let rules = IgnoreRules::new(&globs(&["build/"])).unwrap();
        let cases: &[(&str, bool, bool)] = &[
            ("build", true, true),
            ("build", false, false), // a *file* named build is not matched by `build/`
            ("build/out.o", false, true),
            ("src/build", true, true),
            ("src/build/x/y", false, true),
            ("builder", true, false),
            ("x.tmp/inside.txt", false, true), // built-in `*.tmp` on a directory
        ];
        for &(p, is_dir, want) in cases {
            assert_eq!(rules.is_ignored(&rp(p), is_dir), want, "{p} (dir={is_dir})");
        }
    }

    #[test]
    fn user_globs_table() {
        let rules = IgnoreRules::new(&globs(&[
            "*.log",
            "!keep.log",
            "/top-only",
            "cache/**",
            "docs/*.pdf",
            "!important.tmp",
        ]))
        .unwrap();
        let cases: &[(&str, bool)] = &[
            ("a.log", true),
            ("x/y/b.log", true),
            ("keep.log", false),
            ("sub/keep.log", false),
            ("top-only", true),
            ("sub/top-only", false),
            ("cache/a", true),
            ("cache/a/b", true),
            ("cache", false),
            ("docs/a.pdf", true),
            ("docs/sub/a.pdf", false),
            ("other/a.pdf", false),
            ("important.tmp", false), // user negation re-includes a built-in
            ("other.tmp", true),
        ];
        for &(p, want) in cases {
            assert_eq!(rules.is_ignored(&rp(p), false), want, "{p}");
        }
    }

    #[test]
    fn bad_user_glob_names_the_glob() {
        for bad in ["{a,b", "", "# comment"] {
            let err = IgnoreRules::new(&globs(&[bad])).unwrap_err();
            assert!(
                matches!(&err, IgnoreError::BadGlob { glob, .. } if glob == bad),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn scaidriveignore_file_is_read_and_reread() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let rules = IgnoreRules::load(root, &[]).unwrap();
        assert!(!rules.is_ignored(&rp("secret.key"), false));

        std::fs::write(
            root.join(IGNORE_FILE_NAME),
            "# keys stay local\n*.key\n\nmedia/\n!public.key\n",
        )
        .unwrap();
        let rules = IgnoreRules::load(root, &globs(&["*.bak"])).unwrap();
        let cases: &[(&str, bool, bool)] = &[
            ("secret.key", false, true),
            ("a/b/secret.key", false, true),
            ("public.key", false, false),
            ("media", true, true),
            ("media/film.mkv", false, true),
            ("x.bak", false, true),
            ("x.swp", false, true),
            ("readme.md", false, false),
        ];
        for &(p, is_dir, want) in cases {
            assert_eq!(rules.is_ignored(&rp(p), is_dir), want, "{p}");
        }

        std::fs::write(root.join(IGNORE_FILE_NAME), "*.md\n").unwrap();
        let rules = IgnoreRules::load(root, &[]).unwrap();
        assert!(!rules.is_ignored(&rp("secret.key"), false));
        assert!(rules.is_ignored(&rp("readme.md"), false));

        std::fs::write(root.join(IGNORE_FILE_NAME), "ok\nbad{x\n").unwrap();
        match IgnoreRules::load(root, &[]).unwrap_err() {
            IgnoreError::BadIgnoreFile { path, line, .. } => {
                assert_eq!(path, root.join(IGNORE_FILE_NAME));
                assert_eq!(line, 2);
            }
            other => panic!("unexpected {other}"),
        }
        assert!(IgnoreRules::is_ignore_file(&rp(".scaidriveignore")));
        assert!(!IgnoreRules::is_ignore_file(&rp("a/.scaidriveignore")));
    }

    #[test]
    fn state_dir_and_root_must_not_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        std::fs::create_dir_all(base.join("mirror/sub")).unwrap();
        std::fs::create_dir_all(base.join("state")).unwrap();
        std::os::unix::fs::symlink(base.join("mirror"), base.join("alias")).unwrap();

        let ok: &[(&str, &str)] = &[("mirror", "state"), ("mirror", "mirror-state")];
        for &(r, s) in ok {
            assert!(
                forbidden_root(&base.join(r), &base.join(s)).is_ok(),
                "{r} vs {s}"
            );
        }
        let bad: &[(&str, &str)] = &[
            ("mirror", "mirror"),
            ("mirror", "mirror/.state"),   // does not exist yet
            ("mirror", "alias/sub/state"), // through a symlink
            ("mirror/sub", "mirror"),
            ("state/inner", "state"),
            ("mirror", "state/../mirror/x"),
        ];
        for &(r, s) in bad {
            let err = forbidden_root(&base.join(r), &base.join(s)).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&base.join(r).display().to_string()), "{msg}");
            assert!(msg.contains(&base.join(s).display().to_string()), "{msg}");
        }
    }
}
