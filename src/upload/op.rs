//! The contract between the planner and the uploader: [`Op`], one remote operation the
//! planner decided on, and [`DiskItem`], the local fingerprint it was planned from.
//!
//! It lives with the uploader, its consumer, as `store::Effect` lives with the store: the
//! planner imports the uploader's input type, so imports run down the pipeline only.
//!
//! A hash the planner computed travels in the op, so the uploader does not read the file
//! a second time to learn it: the hash is valid for as long as the file still has the
//! planned [`DiskItem`] fingerprint, which the uploader checks with a stat before sending.

use crate::store::EntryKind;

/// A file or directory as found on disk (ignored paths already removed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskItem {
    pub path: String,
    pub kind: EntryKind,
    pub size: u64,
    pub mtime_ns: i64,
    pub inode: u64,
    /// The inode change time: moves on every write, even one that restores the mtime.
    pub ctime_ns: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create a remote folder.
    Mkdir { path: String, item: DiskItem },
    /// Upload a file the remote does not have.
    Upload {
        path: String,
        item: DiskItem,
        /// The content's SHA-256 if the planner already read the file (to rule out a
        /// move onto a reused inode); `None` for a plain new file, which the planner
        /// never reads, so the uploader hashes it.
        sha256: Option<String>,
    },
    /// Upload new content as a new version of an existing remote file.
    Replace {
        path: String,
        remote_id: String,
        item: DiskItem,
        /// The new content's SHA-256: the planner always hashes before it replaces.
        sha256: String,
    },
    /// The fingerprint changed but the bytes did not: update the store only.
    Refresh {
        path: String,
        item: DiskItem,
        sha256: Option<String>,
    },
    /// Move and/or rename a remote item; its subtree follows.
    Move {
        from: String,
        to: String,
        remote_id: String,
        kind: EntryKind,
        item: DiskItem,
    },
    /// Soft delete (or forget, in `keep` mode) a remote item and its subtree.
    Delete {
        path: String,
        remote_id: String,
        kind: EntryKind,
    },
}

impl Op {
    pub fn path(&self) -> &str {
        match self {
            Op::Mkdir { path, .. }
            | Op::Upload { path, .. }
            | Op::Replace { path, .. }
            | Op::Refresh { path, .. }
            | Op::Delete { path, .. } => path,
            Op::Move { to, .. } => to,
        }
    }
}
