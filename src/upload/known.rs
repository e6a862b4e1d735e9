//! No bytes for content the remote already holds (issue 19, item 5). Before a file is
//! uploaded, the uploader asks the store ([`crate::store::known`]) whether the remote has
//! its content already:
//!
//! - a file the mirror trashed from this very path, with this content → restore it from
//!   the trash (`PATCH {"restore": true}`);
//! - new content equal to one of the file's own earlier versions → restore that version
//!   (`POST /files/{id}/versions/{n}/restore`);
//! - a new file whose content a mirrored file has → server-side copy (`POST
//!   /files/{id}/copy`, with the new name).
//!
//! Each is one write (2 units, `scaidrive-api.md` §5) where the upload is 5 (multipart) or
//! at least 9 (a session: create, a chunk, complete), and is used only where the
//! documented costs say it is cheaper ([`cheaper`]). Each is journaled (`copy`, `restore`,
//! `untrash`), settled after a crash like the upload it stands for, and checked by the
//! SHA-256 of the file object the server answers with: content other than ours is recorded
//! as what the remote holds and the file is uploaded over it; a refused call (the source
//! gone, the trash emptied, the name taken) falls back to the upload.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use reqwest::Method;

use super::{DiskItem, OpCtx, Outcome, entry_for, is_gone, same_as, stat_now};
use crate::config::DeleteMode;
use crate::relpath::name_of;
use crate::remote::{Destination, ErrorKind, RemoteFile, documented_cost};
use crate::store::Effect;
use crate::store::journal::{IntentOp, PlaceKnown, SendFile};

/// Contents being sent right now, by SHA-256: a second file with the same content waits
/// for the first, so that it is copied from it rather than sent as well (duplicates in one
/// batch would otherwise race past the store's lookup).
#[derive(Clone, Default)]
pub(super) struct ContentGate {
    sending: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

/// Held while a content is being placed; the gate forgets the content once nobody waits.
pub(super) struct Sending {
    gate: ContentGate,
    sha: String,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl ContentGate {
    pub(super) async fn hold(&self, sha: &str) -> Sending {
        let turn = {
            let mut m = self.sending.lock().unwrap_or_else(|e| e.into_inner());
            m.entry(sha.to_string()).or_default().clone()
        };
        Sending {
            gate: self.clone(),
            sha: sha.to_string(),
            _turn: turn.lock_owned().await,
        }
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        let mut m = self.gate.sending.lock().unwrap_or_else(|e| e.into_inner());
        // Ours and the map's are the only references: nobody waits for this content.
        if m.get(&self.sha).is_some_and(|t| Arc::strong_count(t) <= 2) {
            m.remove(&self.sha);
        }
    }
}

/// What [`OpCtx::place_known`] did.
pub(super) enum Known {
    /// The content is in place (or the attempt failed in a way the upload cannot help):
    /// the op's outcome.
    Placed(Outcome),
    /// Upload the file as planned.
    Upload,
    /// A copy or restore created remote file `0` with content other than ours: upload the
    /// content as a new version of it.
    UploadOver(String),
}

/// Where the content comes from.
#[derive(Debug)]
enum Way {
    Untrash { id: String },
    Restore { id: String, version: i64 },
    Copy { id: String, from: String },
}

impl Way {
    fn name(&self) -> &'static str {
        match self {
            Way::Untrash { .. } => "untrash",
            Way::Restore { .. } => "restore",
            Way::Copy { .. } => "copy",
        }
    }

    /// The call, as the rate limiter prices it.
    fn cost(&self) -> u64 {
        let (method, path) = match self {
            Way::Untrash { .. } => (Method::PATCH, "/api/v1/files/x"),
            Way::Restore { .. } => (Method::POST, "/api/v1/files/x/versions/1/restore"),
            Way::Copy { .. } => (Method::POST, "/api/v1/files/x/copy"),
        };
        documented_cost(&method, path)
    }
}

/// Whether placing by `way` costs fewer units than the upload it replaces would: a
/// multipart POST for a new file the client sends that way, else a session (create, one
/// chunk per `chunk` bytes, complete). A copy whose name the server did not take costs a
/// rename more, so it counts twice.
fn cheaper(way: &Way, upload_by_multipart: bool, size: u64, chunk: u64) -> bool {
    let write = documented_cost(&Method::POST, "/api/v1/uploads");
    let upload = if upload_by_multipart {
        documented_cost(&Method::POST, "/api/v1/files")
    } else {
        let chunks = size.div_ceil(chunk.max(1)).max(1);
        write + chunks * documented_cost(&Method::PUT, "/api/v1/uploads/x/chunks/0") + write
    };
    let worst = match way {
        Way::Copy { .. } => way.cost() + documented_cost(&Method::PATCH, "/api/v1/files/x"),
        _ => way.cost(),
    };
    worst < upload
}

fn same_sha(f: &RemoteFile, sha: &str) -> bool {
    f.checksum_sha256
        .as_deref()
        .is_some_and(|r| r.eq_ignore_ascii_case(sha))
}

fn same_folder(f: &RemoteFile, parent_id: Option<&str>) -> bool {
    let norm = |p: Option<&str>| {
        p.filter(|p| !p.is_empty() && *p != "root")
            .map(str::to_string)
    };
    norm(f.folder_id.as_deref()) == norm(parent_id)
}

impl OpCtx {
    /// The way to place `sha` at `path` without sending it, if the store knows one that
    /// is cheaper than the upload.
    async fn known_way(
        &self,
        path: &str,
        item: &DiskItem,
        sha: &str,
        replace: Option<&str>,
    ) -> Result<Option<Way>, crate::store::StoreError> {
        let k = self
            .store
            .known_content(self.target.mirror, path, sha, replace)
            .await?;
        let way = if let (Some(id), Some(version)) = (replace, k.version) {
            Some(Way::Restore {
                id: id.to_string(),
                version,
            })
        } else if let Some(t) = k.trashed
            && self.target.delete_mode == DeleteMode::Trash
        {
            Some(Way::Untrash { id: t.remote_id })
        } else {
            k.copy.map(|s| Way::Copy {
                id: s.remote_id,
                from: s.path,
            })
        };
        let multipart = replace.is_none() && !self.client.uses_session(item.size);
        let chunk = self.client.session_chunk_size(item.size);
        Ok(way.filter(|w| cheaper(w, multipart, item.size, chunk)))
    }

    /// Places `sha` (the content of `path`, as `item` describes it) from what the remote
    /// holds, if the store knows a cheaper way than uploading it.
    pub(super) async fn place_known(
        &self,
        path: &str,
        item: &DiskItem,
        sha: &str,
        parent_id: Option<&str>,
        replace: Option<&str>,
    ) -> Known {
        let m = self.target.mirror;
        let way = match self.known_way(path, item, sha, replace).await {
            Ok(Some(w)) => w,
            Ok(None) => return Known::Upload,
            Err(e) => {
                tracing::debug!(path, "cannot look up known content: {e}");
                return Known::Upload;
            }
        };
        let name = name_of(path);
        let file = SendFile {
            parent_id: parent_id.map(str::to_string),
            name: name.to_string(),
            sha256: sha.to_string(),
            size: item.size,
            inode: item.inode,
            mtime_ns: item.mtime_ns,
            replace_file_id: replace.map(str::to_string),
        };
        let (source_id, version) = match &way {
            Way::Untrash { id } | Way::Copy { id, .. } => (id.clone(), None),
            Way::Restore { id, version } => (id.clone(), Some(*version)),
        };
        let known = PlaceKnown {
            file,
            source_id: source_id.clone(),
            version,
        };
        let journaled = match &way {
            Way::Untrash { .. } => IntentOp::Untrash(known),
            Way::Restore { .. } => IntentOp::Restore(known),
            Way::Copy { .. } => IntentOp::Copy(known),
        };
        let intent = match self.store.begin_intent(m, path, &journaled).await {
            Ok(i) => i,
            Err(e) => return Known::Placed(self.store_failed(e)),
        };
        let result = match &way {
            Way::Untrash { id } => self.client.restore_file(id, parent_id, name).await,
            Way::Restore { id, version } => self.client.restore_version(id, *version).await,
            Way::Copy { id, .. } => {
                let dest = Destination::new(self.target.share_id.clone(), parent_id, name);
                match self.client.copy_file(id, &dest).await {
                    // The docs leave a copy's name undocumented: a server that kept the
                    // source's name gets a rename (still cheaper than the upload).
                    Ok(f) if f.name != name && same_folder(&f, parent_id) => {
                        self.client.rename_file(&f.id, name).await
                    }
                    other => other,
                }
            }
        };
        let f = match result {
            Ok(f) => f,
            Err(e) => {
                let upload_may_help = !e.is_transient()
                    && !e.may_apply_later()
                    && e.kind() != ErrorKind::CredentialsNeeded
                    && e.status().is_none_or(|s| s.as_u16() != 507);
                if !upload_may_help {
                    // Left open: the server may still apply it; settled after the batch.
                    return Known::Placed(self.fail_open(intent, &e).await);
                }
                tracing::debug!(mirror = %self.target.name, path, way = way.name(), "placing known content refused ({e}); uploading");
                if is_gone(&e) && !matches!(way, Way::Copy { .. }) {
                    // The version was pruned or the trash emptied: forget the hint.
                    let _ = self.store.forget_known(m, &source_id, version, path).await;
                }
                if let Err(se) = self.store.commit(m, intent, vec![]).await {
                    return Known::Placed(self.store_failed(se));
                }
                return Known::Upload;
            }
        };
        let placed = same_sha(&f, sha)
            && !f.is_deleted
            && f.name == name
            && match &way {
                Way::Restore { id, .. } => f.id == *id,
                _ => same_folder(&f, parent_id),
            };
        if !placed {
            // The remote's content is not ours (the source changed remotely since the
            // store saw it): record what is there, with a fingerprint no local file has,
            // so that it is replaced even if the upload below fails; then upload.
            tracing::info!(mirror = %self.target.name, path, way = way.name(), remote = %f.id, "the remote answered with other content than ours; uploading");
            let _ = self.store.forget_known(m, &source_id, version, path).await;
            let mut e = entry_for(
                path,
                item,
                &f.id,
                f.checksum_sha256.clone(),
                Some(f.version as i64),
            );
            (e.size, e.mtime_ns, e.inode, e.ctime_ns) = (f.size, -1, 0, None);
            let effects = if f.name == name && same_folder(&f, parent_id) && !f.is_deleted {
                vec![Effect::Upsert(e)]
            } else {
                vec![]
            };
            if let Err(se) = self.store.commit(m, intent, effects.clone()).await {
                return Known::Placed(self.store_failed(se));
            }
            return if effects.is_empty() {
                Known::Upload
            } else {
                Known::UploadOver(f.id)
            };
        }
        let abs = self.target.root.join(path);
        let stable = same_as(item, stat_now(&abs));
        let effects = vec![
            Effect::Upsert(entry_for(
                path,
                item,
                &f.id,
                Some(sha.to_string()),
                Some(f.version as i64),
            )),
            Effect::ClearFailure(path.into()),
            Effect::DeleteSession(path.into()),
        ];
        if let Err(e) = self.store.commit(m, intent, effects.clone()).await {
            return Known::Placed(self.store_failed(e));
        }
        match &way {
            Way::Copy { from, .. } => {
                tracing::debug!(mirror = %self.target.name, path, from = %from, "copied server-side (no bytes sent)")
            }
            w => {
                tracing::debug!(mirror = %self.target.name, path, way = w.name(), "placed from the remote's content (no bytes sent)")
            }
        }
        self.counters.files_done.fetch_add(1, Ordering::Relaxed);
        self.counters.files_known.fetch_add(1, Ordering::Relaxed);
        Known::Placed(if stable {
            Outcome::Done(effects)
        } else {
            Outcome::Changed(effects)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_way_is_cheaper_than_the_upload_it_replaces() {
        let copy = Way::Copy {
            id: "f".into(),
            from: "a".into(),
        };
        let restore = Way::Restore {
            id: "f".into(),
            version: 1,
        };
        let untrash = Way::Untrash { id: "f".into() };
        const MIB: u64 = 1 << 20;
        // (way, multipart, size, chunk, cheaper)
        let cases = [
            (&copy, true, 0, 64 * MIB, true),      // 2 (+2 rename) < 5
            (&untrash, true, 10, 64 * MIB, true),  // 2 < 5
            (&restore, false, 10, 64 * MIB, true), // 2 < 2 + 5 + 2
            (&copy, false, 300 * MIB, 64 * MIB, true),
        ];
        for (way, multipart, size, chunk, want) in cases {
            assert_eq!(cheaper(way, multipart, size, chunk), want, "{way:?} {size}");
        }
        assert_eq!((copy.cost(), restore.cost(), untrash.cost()), (2, 2, 2));
    }
}
