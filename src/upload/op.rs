//! The contract between the planner and the uploader: [`Op`], one remote operation the
//! planner decided on, and [`DiskItem`], the local fingerprint it was planned from.
//!
//! It lives with the uploader, its consumer, as `store::Effect` lives with the store: the
//! planner imports the uploader's input type, so imports run down the pipeline only.

use crate::store::EntryKind;

/// A file or directory as found on disk (ignored paths already removed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskItem {
    pub path: String,
    pub kind: EntryKind,
    pub size: u64,
    pub mtime_ns: i64,
    pub inode: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create a remote folder.
    Mkdir { path: String, item: DiskItem },
    /// Upload a file the remote does not have.
    Upload { path: String, item: DiskItem },
    /// Upload new content as a new version of an existing remote file.
    Replace {
        path: String,
        remote_id: String,
        item: DiskItem,
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
