//! Typed records of the state database and the store's operations on them: mirrors,
//! entries (what is on the remote and the local fingerprint it came from), the intent
//! journal, resumable upload sessions, failures, and key/value settings.
//!
//! The crash rule of DESIGN.md §3 is [`Store::begin_intent`] (in `journal.rs`) before a remote call that creates
//! something and [`Store::commit`] after it: the result and the removal of the intent
//! land in one transaction, so after a crash every open intent names exactly the remote
//! calls whose outcome is unknown.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::links;
use super::sql::like_children;
use super::{MirrorId, Store, StoreError};
use crate::relpath::is_within;

pub(super) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
}

impl EntryKind {
    fn as_str(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
        }
    }
    fn parse(s: &str) -> Result<EntryKind, StoreError> {
        match s {
            "file" => Ok(EntryKind::File),
            "dir" => Ok(EntryKind::Dir),
            other => Err(StoreError::Corrupt(format!("unknown entry kind {other:?}"))),
        }
    }
}

/// A mirrored item: its remote id and the local fingerprint that was uploaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub kind: EntryKind,
    pub remote_id: String,
    pub size: u64,
    pub mtime_ns: i64,
    pub inode: u64,
    pub sha256: Option<String>,
    pub remote_version: Option<i64>,
    /// The file's ctime when it was synced (`None` = unknown: an entry from before the
    /// column existed, or adopted after a crash). A write moves it even when size and
    /// mtime come out as before, so a file whose ctime moved is hashed.
    pub ctime_ns: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorRecord {
    pub id: MirrorId,
    pub name: String,
    pub root: String,
    pub share_id: String,
    pub remote_path: String,
    pub base_folder_id: Option<String>,
    pub paused_reason: Option<String>,
    /// The saved pause is the root's: it lifts when the original root is back.
    pub paused_for_root: bool,
    pub first_pass_done: bool,
    /// The root directory this mirror was synced from (`None` before the first look).
    pub root_identity: Option<RootIdentity>,
}

/// Which directory a mirror root is: another directory at the same path (the mount point
/// of a disk that is gone, a tmpfs mounted over it, a re-pointed symlink) has another
/// identity, and mirroring it would turn the old content into remote deletes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RootIdentity {
    pub dev: u64,
    pub ino: u64,
    /// The file system's id (`statvfs` `f_fsid`, 0 if it has none): stable across
    /// reboots where a disk's device number may not be.
    pub fsid: u64,
}

impl RootIdentity {
    /// The same directory: the same inode on the same file system, known by its device
    /// number or, if that changed (a disk re-plugged as another device), by its id.
    pub fn same_dir(&self, other: &RootIdentity) -> bool {
        self.ino == other.ino
            && (self.dev == other.dev || (self.fsid != 0 && self.fsid == other.fsid))
    }
}

impl std::fmt::Display for RootIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "device {}:{} inode {}",
            self.dev >> 8,
            self.dev & 0xff,
            self.ino
        )
    }
}

/// A change to the entries table, applied atomically with an intent's removal.
#[derive(Clone, Debug)]
pub enum Effect {
    Upsert(Entry),
    Remove(String),
    /// Removes `path` and everything below it.
    RemoveTree(String),
    /// Re-keys `from` and everything below it to `to` (a directory rename is one row
    /// update per descendant, one remote call in all).
    MoveTree {
        from: String,
        to: String,
    },
    ClearFailure(String),
    DeleteSession(String),
    /// `path` and everything below it went to the remote trash: its files are remembered
    /// for a restore ([`super::known`]). Comes before the `RemoveTree` that forgets them.
    Trashed(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadSessionRecord {
    pub path: String,
    pub session_id: String,
    pub chunk_size: u64,
    pub total_chunks: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub inode: u64,
    pub sha256: String,
    pub replace_file_id: Option<String>,
    pub chunks_done: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub path: String,
    pub reason: String,
    /// The item cannot succeed as it is (a name the remote rejects, over the size cap);
    /// it is retried only when it changes or on `scaidrivectl retry`.
    pub permanent: bool,
    pub attempts: u32,
    pub first_failed_at: i64,
    pub last_failed_at: i64,
    pub next_retry_at: i64,
}

pub(super) fn entry_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Entry, String)> {
    let kind: String = r.get(1)?;
    Ok((
        Entry {
            path: r.get(0)?,
            kind: EntryKind::File,
            remote_id: r.get(2)?,
            size: r.get::<_, i64>(3)? as u64,
            mtime_ns: r.get(4)?,
            inode: r.get::<_, i64>(5)? as u64,
            sha256: r.get(6)?,
            remote_version: r.get(7)?,
            ctime_ns: r.get(8)?,
        },
        kind,
    ))
}

pub(super) const ENTRY_COLS: &str =
    "path, kind, remote_id, size, mtime_ns, inode, sha256, remote_version, ctime_ns";

pub(super) fn finish_entry((mut e, kind): (Entry, String)) -> Result<Entry, StoreError> {
    e.kind = EntryKind::parse(&kind)?;
    Ok(e)
}

pub(crate) fn apply_effect(
    c: &Connection,
    mirror: MirrorId,
    effect: &Effect,
) -> Result<(), StoreError> {
    // Every change to what the store knows, for post-mortems of crash tests.
    tracing::trace!(target: "scaidrive::store::effects", mirror, ?effect, "store effect");
    super::known::on_effect(c, mirror, effect)?;
    match effect {
        Effect::Upsert(e) => {
            c.execute(
                "INSERT INTO entries (mirror_id, path, kind, remote_id, size, mtime_ns, inode, sha256, \
                 remote_version, synced_at, ctime_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
                 ON CONFLICT (mirror_id, path) DO UPDATE SET kind = excluded.kind, remote_id = excluded.remote_id, \
                 size = excluded.size, mtime_ns = excluded.mtime_ns, inode = excluded.inode, \
                 sha256 = excluded.sha256, remote_version = excluded.remote_version, synced_at = excluded.synced_at, \
                 ctime_ns = excluded.ctime_ns",
                params![
                    mirror,
                    e.path,
                    e.kind.as_str(),
                    e.remote_id,
                    e.size as i64,
                    e.mtime_ns,
                    e.inode as i64,
                    e.sha256,
                    e.remote_version,
                    unix_now(),
                    e.ctime_ns
                ],
            )?;
        }
        Effect::Remove(p) => {
            c.execute(
                "DELETE FROM entries WHERE mirror_id = ?1 AND path = ?2",
                params![mirror, p],
            )?;
            links::mark_gone(c, mirror, p, false)?;
        }
        Effect::RemoveTree(p) => {
            c.execute(
                "DELETE FROM entries WHERE mirror_id = ?1 AND (path = ?2 OR path LIKE ?3 ESCAPE '\\')",
                params![mirror, p, like_children(p)],
            )?;
            // The linked items are gone remotely (or no longer mirrored): their links with them.
            links::mark_gone(c, mirror, p, true)?;
        }
        Effect::MoveTree { from, to } => {
            // Clear whatever stood at the destination first; the remote move replaced it.
            c.execute(
                "DELETE FROM entries WHERE mirror_id = ?1 AND (path = ?2 OR path LIKE ?3 ESCAPE '\\')",
                params![mirror, to, like_children(to)],
            )?;
            links::mark_gone(c, mirror, to, true)?;
            // The remote item keeps its id across a move, so its links keep working.
            links::move_tree(c, mirror, from, to)?;
            c.execute(
                "UPDATE entries SET path = ?3 || substr(path, ?4) WHERE mirror_id = ?1 \
                 AND (path = ?2 OR path LIKE ?5 ESCAPE '\\')",
                params![mirror, from, to, from.len() as i64 + 1, like_children(from)],
            )?;
            // Operations still open on the moved item or below it follow it (defect 36): a create
            // held because it may still land is recorded, when it shows up, at the path
            // its item has now, not at one the store no longer knows.
            c.execute(
                "UPDATE journal SET path = ?3 || substr(path, ?4) WHERE mirror_id = ?1 \
                 AND (path = ?2 OR path LIKE ?5 ESCAPE '\\')",
                params![mirror, from, to, from.len() as i64 + 1, like_children(from)],
            )?;
        }
        Effect::ClearFailure(p) => {
            c.execute(
                "DELETE FROM failures WHERE mirror_id = ?1 AND path = ?2",
                params![mirror, p],
            )?;
        }
        Effect::DeleteSession(p) => {
            c.execute(
                "DELETE FROM upload_sessions WHERE mirror_id = ?1 AND path = ?2",
                params![mirror, p],
            )?;
        }
        Effect::Trashed(_) => {}
    }
    Ok(())
}

impl Store {
    /// Registers a mirror by name, or returns the existing one. If its share or remote
    /// path changed, what the store knew about the old remote no longer applies: its
    /// entries, intents and sessions are dropped so the next pass starts from the disk.
    pub async fn ensure_mirror(
        &self,
        name: &str,
        root: &str,
        share_id: &str,
        remote_path: &str,
    ) -> Result<MirrorRecord, StoreError> {
        let (name, root, share_id, remote_path) = (
            name.to_string(),
            root.to_string(),
            share_id.to_string(),
            remote_path.to_string(),
        );
        self.call(move |c| {
            let existing: Option<(MirrorId, String, String, String)> = c
                .query_row(
                    "SELECT id, root, share_id, remote_path FROM mirrors WHERE name = ?1",
                    [&name],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()?;
            match existing {
                Some((id, old_root, old_share, old_remote)) => {
                    if old_share != share_id || old_remote != remote_path || old_root != root {
                        for t in [
                            "entries",
                            "journal",
                            "upload_sessions",
                            "failures",
                            "remote_versions",
                            "trashed",
                        ] {
                            c.execute(&format!("DELETE FROM {t} WHERE mirror_id = ?1"), [id])?;
                        }
                        c.execute(
                            "UPDATE mirrors SET root = ?2, share_id = ?3, remote_path = ?4, base_folder_id = NULL, \
                             first_pass_done = 0, root_dev = NULL, root_ino = NULL, root_fsid = NULL WHERE id = ?1",
                            params![id, root, share_id, remote_path],
                        )?;
                    }
                }
                None => {
                    c.execute(
                        "INSERT INTO mirrors (name, root, share_id, remote_path, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![name, root, share_id, remote_path, unix_now()],
                    )?;
                }
            }
            mirror_by_name(c, &name)?.ok_or_else(|| StoreError::Corrupt(format!("mirror {name} vanished")))
        })
        .await
    }

    pub async fn mirrors(&self) -> Result<Vec<MirrorRecord>, StoreError> {
        self.call(all_mirrors).await
    }

    pub async fn set_base_folder(
        &self,
        mirror: MirrorId,
        folder_id: &str,
    ) -> Result<(), StoreError> {
        let folder_id = folder_id.to_string();
        self.call(move |c| {
            c.execute(
                "UPDATE mirrors SET base_folder_id = ?2 WHERE id = ?1",
                params![mirror, folder_id],
            )?;
            Ok(())
        })
        .await
    }

    /// Saves the guard's pause (`None` clears it); `for_root`: it is the root's pause.
    pub async fn set_paused(
        &self,
        mirror: MirrorId,
        reason: Option<String>,
        for_root: bool,
    ) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "UPDATE mirrors SET paused_reason = ?2, paused_for_root = ?3 WHERE id = ?1",
                params![mirror, reason, for_root && reason.is_some()],
            )?;
            Ok(())
        })
        .await
    }

    /// Records the root directory the mirror is synced from (`None` forgets it).
    pub async fn set_root_identity(
        &self,
        mirror: MirrorId,
        id: Option<RootIdentity>,
    ) -> Result<(), StoreError> {
        // SQLite integers are signed: the bits are stored as they are.
        let cols = id.map(|i| (i.dev as i64, i.ino as i64, i.fsid as i64));
        self.call(move |c| {
            c.execute(
                "UPDATE mirrors SET root_dev = ?2, root_ino = ?3, root_fsid = ?4 WHERE id = ?1",
                params![
                    mirror,
                    cols.map(|c| c.0),
                    cols.map(|c| c.1),
                    cols.map(|c| c.2)
                ],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn set_first_pass_done(&self, mirror: MirrorId) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "UPDATE mirrors SET first_pass_done = 1 WHERE id = ?1",
                [mirror],
            )?;
            Ok(())
        })
        .await
    }

    /// Every entry of a mirror, parents before children.
    pub async fn entries(&self, mirror: MirrorId) -> Result<Vec<Entry>, StoreError> {
        Ok(self.entries_map(mirror).await?.into_values().collect())
    }

    pub async fn entry(&self, mirror: MirrorId, path: &str) -> Result<Option<Entry>, StoreError> {
        let path = path.to_string();
        self.call(move |c| {
            let row = c
                .query_row(
                    &format!("SELECT {ENTRY_COLS} FROM entries WHERE mirror_id = ?1 AND path = ?2"),
                    params![mirror, path],
                    entry_from_row,
                )
                .optional()?;
            row.map(finish_entry).transpose()
        })
        .await
    }

    /// Paths of a mirror's entries that point at remote item `remote_id` (normally at most
    /// one). Not indexed: only asked when an upload adopted an existing remote file.
    pub async fn paths_of_remote_id(
        &self,
        mirror: MirrorId,
        remote_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        let id = remote_id.to_string();
        self.call(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT path FROM entries WHERE mirror_id = ?1 AND remote_id = ?2",
            )?;
            let rows = stmt.query_map(params![mirror, id], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Applies effects without an intent (e.g. recording a new mtime after a `touch`).
    pub async fn apply(&self, mirror: MirrorId, effects: Vec<Effect>) -> Result<(), StoreError> {
        self.call(move |c| {
            for e in &effects {
                apply_effect(c, mirror, e)?;
            }
            Ok(())
        })
        .await
    }

    pub async fn save_session(
        &self,
        mirror: MirrorId,
        s: UploadSessionRecord,
    ) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO upload_sessions (mirror_id, path, session_id, chunk_size, total_chunks, size, \
                 mtime_ns, inode, sha256, replace_file_id, chunks_done, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    mirror,
                    s.path,
                    s.session_id,
                    s.chunk_size as i64,
                    s.total_chunks as i64,
                    s.size as i64,
                    s.mtime_ns,
                    s.inode as i64,
                    s.sha256,
                    s.replace_file_id,
                    s.chunks_done as i64,
                    unix_now()
                ],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn session(
        &self,
        mirror: MirrorId,
        path: &str,
    ) -> Result<Option<UploadSessionRecord>, StoreError> {
        let path = path.to_string();
        self.call(move |c| {
            Ok(c.query_row(
                "SELECT path, session_id, chunk_size, total_chunks, size, mtime_ns, inode, sha256, replace_file_id, \
                 chunks_done FROM upload_sessions WHERE mirror_id = ?1 AND path = ?2",
                params![mirror, path],
                |r| {
                    Ok(UploadSessionRecord {
                        path: r.get(0)?,
                        session_id: r.get(1)?,
                        chunk_size: r.get::<_, i64>(2)? as u64,
                        total_chunks: r.get::<_, i64>(3)? as u64,
                        size: r.get::<_, i64>(4)? as u64,
                        mtime_ns: r.get(5)?,
                        inode: r.get::<_, i64>(6)? as u64,
                        sha256: r.get(7)?,
                        replace_file_id: r.get(8)?,
                        chunks_done: r.get::<_, i64>(9)? as u64,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    pub async fn set_session_progress(
        &self,
        mirror: MirrorId,
        path: &str,
        chunks_done: u64,
    ) -> Result<(), StoreError> {
        let path = path.to_string();
        self.call(move |c| {
            c.execute(
                "UPDATE upload_sessions SET chunks_done = ?3 WHERE mirror_id = ?1 AND path = ?2",
                params![mirror, path, chunks_done as i64],
            )?;
            Ok(())
        })
        .await
    }

    /// Records a failure; `backoff(attempts)` gives the delay before the next try.
    pub async fn record_failure(
        &self,
        mirror: MirrorId,
        path: &str,
        reason: &str,
        permanent: bool,
        backoff: fn(u32) -> i64,
    ) -> Result<Failure, StoreError> {
        let (path, reason) = (path.to_string(), reason.to_string());
        self.call(move |c| {
            let now = unix_now();
            let attempts: u32 = c
                .query_row(
                    "SELECT attempts FROM failures WHERE mirror_id = ?1 AND path = ?2",
                    params![mirror, path],
                    |r| r.get(0),
                )
                .optional()?
                .map(|a: u32| a + 1)
                .unwrap_or(1);
            let next = now + backoff(attempts);
            c.execute(
                "INSERT INTO failures (mirror_id, path, reason, permanent, attempts, first_failed_at, last_failed_at, \
                 next_retry_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7) ON CONFLICT (mirror_id, path) DO UPDATE SET \
                 reason = excluded.reason, permanent = excluded.permanent, attempts = excluded.attempts, \
                 last_failed_at = excluded.last_failed_at, next_retry_at = excluded.next_retry_at",
                params![mirror, path, reason, permanent, attempts, now, next],
            )?;
            failure(c, mirror, &path)?.ok_or_else(|| StoreError::Corrupt("failure vanished".into()))
        })
        .await
    }

    pub async fn failures(&self, mirror: MirrorId) -> Result<Vec<Failure>, StoreError> {
        self.call(move |c| failures(c, mirror)).await
    }

    /// Removes the failures of `paths` (items that are gone); returns the paths that had one.
    pub async fn clear_failures(
        &self,
        mirror: MirrorId,
        paths: Vec<String>,
    ) -> Result<Vec<String>, StoreError> {
        self.call(move |c| {
            let mut cleared = Vec::new();
            for p in paths {
                if c.execute(
                    "DELETE FROM failures WHERE mirror_id = ?1 AND path = ?2",
                    params![mirror, p],
                )? > 0
                {
                    cleared.push(p);
                }
            }
            Ok(cleared)
        })
        .await
    }

    /// Makes every failure of a mirror due now (`scaidrivectl retry`).
    pub async fn retry_failures_now(&self, mirror: MirrorId) -> Result<usize, StoreError> {
        self.call(move |c| {
            Ok(c.execute(
                "UPDATE failures SET next_retry_at = 0 WHERE mirror_id = ?1",
                [mirror],
            )?)
        })
        .await
    }

    pub async fn kv_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_string();
        self.call(move |c| {
            Ok(
                c.query_row("SELECT value FROM kv WHERE key = ?1", [key], |r| r.get(0))
                    .optional()?,
            )
        })
        .await
    }

    pub async fn kv_set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let (key, value) = (key.to_string(), value.to_string());
        self.call(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)",
                params![key, value],
            )?;
            Ok(())
        })
        .await
    }
}

pub fn mirror_by_name(c: &Connection, name: &str) -> Result<Option<MirrorRecord>, StoreError> {
    Ok(all_mirrors(c)?.into_iter().find(|m| m.name == name))
}

pub fn all_mirrors(c: &Connection) -> Result<Vec<MirrorRecord>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT id, name, root, share_id, remote_path, base_folder_id, paused_reason, first_pass_done, \
         root_dev, root_ino, root_fsid, paused_for_root FROM mirrors ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(MirrorRecord {
            id: r.get(0)?,
            name: r.get(1)?,
            root: r.get(2)?,
            share_id: r.get(3)?,
            remote_path: r.get(4)?,
            base_folder_id: r.get(5)?,
            paused_reason: r.get(6)?,
            paused_for_root: r.get(11)?,
            first_pass_done: r.get(7)?,
            root_identity: match (
                r.get::<_, Option<i64>>(8)?,
                r.get::<_, Option<i64>>(9)?,
                r.get::<_, Option<i64>>(10)?,
            ) {
                (Some(dev), Some(ino), Some(fsid)) => Some(RootIdentity {
                    dev: dev as u64,
                    ino: ino as u64,
                    fsid: fsid as u64,
                }),
                _ => None,
            },
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

fn failure(c: &Connection, mirror: MirrorId, path: &str) -> Result<Option<Failure>, StoreError> {
    Ok(failures(c, mirror)?.into_iter().find(|f| f.path == path))
}

pub fn failures(c: &Connection, mirror: MirrorId) -> Result<Vec<Failure>, StoreError> {
    let mut stmt = c.prepare_cached(
        "SELECT path, reason, permanent, attempts, first_failed_at, last_failed_at, next_retry_at \
         FROM failures WHERE mirror_id = ?1 ORDER BY path",
    )?;
    let rows = stmt.query_map([mirror], |r| {
        Ok(Failure {
            path: r.get(0)?,
            reason: r.get(1)?,
            permanent: r.get(2)?,
            attempts: r.get(3)?,
            first_failed_at: r.get(4)?,
            last_failed_at: r.get(5)?,
            next_retry_at: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Applies an effect to an in-memory copy of a mirror's entries, exactly as
/// [`apply_effect`] does to the table, so the engine's view and the store agree.
pub fn apply_to_map(map: &mut std::collections::BTreeMap<String, Entry>, effect: &Effect) {
    match effect {
        Effect::Upsert(e) => {
            map.insert(e.path.clone(), e.clone());
        }
        Effect::Remove(p) => {
            map.remove(p);
        }
        Effect::RemoveTree(p) => {
            let doomed: Vec<String> = map
                .range(p.clone()..)
                .map(|(k, _)| k.clone())
                .take_while(|k| k.starts_with(p.as_str()))
                .filter(|k| is_within(k, p))
                .collect();
            for k in doomed {
                map.remove(&k);
            }
        }
        Effect::MoveTree { from, to } => {
            apply_to_map(map, &Effect::RemoveTree(to.clone()));
            let moved: Vec<String> = map
                .range(from.clone()..)
                .map(|(k, _)| k.clone())
                .take_while(|k| k.starts_with(from.as_str()))
                .filter(|k| is_within(k, from))
                .collect();
            for k in moved {
                if let Some(mut e) = map.remove(&k) {
                    e.path = format!("{to}{}", &k[from.len()..]);
                    map.insert(e.path.clone(), e);
                }
            }
        }
        Effect::ClearFailure(_) | Effect::DeleteSession(_) | Effect::Trashed(_) => {}
    }
}

/// An entry for unit tests: remote id `id-PATH`, fixed stat data.
#[cfg(test)]
pub(crate) fn test_entry(path: &str, kind: EntryKind) -> Entry {
    Entry {
        path: path.into(),
        kind,
        remote_id: format!("id-{path}"),
        size: 1,
        mtime_ns: 2,
        inode: 3,
        sha256: None,
        remote_version: Some(1),
        ctime_ns: Some(4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: EntryKind) -> Entry {
        test_entry(path, kind)
    }

    async fn store() -> (tempfile::TempDir, Store, MirrorId) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let m = store
            .ensure_mirror("docs", "/data/docs", "shr_1", "")
            .await
            .unwrap();
        (dir, store, m.id)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn move_tree_takes_the_open_intents_below_it_along() {
        let (_d, s, m) = store().await;
        for p in ["a", "a/x/y.txt", "a_b/z", "ab"] {
            let detail =
                serde_json::json!({ "parent_id": null, "name": "n", "inode": 1, "mtime_ns": 0 });
            s.begin(m, "mkdir", p, detail).await.unwrap();
        }
        s.apply(
            m,
            vec![Effect::MoveTree {
                from: "a".into(),
                to: "b/c".into(),
            }],
        )
        .await
        .unwrap();
        let mut paths: Vec<String> = s
            .intents(m)
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.path)
            .collect();
        paths.sort();
        assert_eq!(paths, ["a_b/z", "ab", "b/c", "b/c/x/y.txt"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn move_tree_rekeys_descendants_only() {
        let (_d, s, m) = store().await;
        let effects = ["a", "a/x", "a/x/y.txt", "a_b", "a_b/z", "ab"]
            .iter()
            .map(|p| {
                Effect::Upsert(entry(
                    p,
                    if p.ends_with(".txt") {
                        EntryKind::File
                    } else {
                        EntryKind::Dir
                    },
                ))
            })
            .collect();
        s.apply(m, effects).await.unwrap();
        s.apply(
            m,
            vec![Effect::MoveTree {
                from: "a".into(),
                to: "b/a".into(),
            }],
        )
        .await
        .unwrap();
        let paths: Vec<String> = s
            .entries(m)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(paths, ["a_b", "a_b/z", "ab", "b/a", "b/a/x", "b/a/x/y.txt"]);
        s.apply(m, vec![Effect::RemoveTree("b".into())])
            .await
            .unwrap();
        s.apply(m, vec![Effect::RemoveTree("b/a".into())])
            .await
            .unwrap();
        let paths: Vec<String> = s
            .entries(m)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(
            paths,
            ["a_b", "a_b/z", "ab"],
            "'_' in a path is not a LIKE wildcard"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn changing_the_share_resets_what_the_mirror_knew() {
        let (_d, s, m) = store().await;
        s.apply(m, vec![Effect::Upsert(entry("a", EntryKind::Dir))])
            .await
            .unwrap();
        let same = s
            .ensure_mirror("docs", "/data/docs", "shr_1", "")
            .await
            .unwrap();
        assert_eq!(same.id, m);
        assert_eq!(s.entries(m).await.unwrap().len(), 1);
        let moved = s
            .ensure_mirror("docs", "/data/docs", "shr_2", "")
            .await
            .unwrap();
        assert_eq!(moved.id, m);
        assert!(s.entries(m).await.unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failures_count_attempts_and_back_off() {
        let (_d, s, m) = store().await;
        fn backoff(n: u32) -> i64 {
            60 * i64::from(n)
        }
        let f1 = s
            .record_failure(m, "bad:name", "INVALID_PATH", true, backoff)
            .await
            .unwrap();
        assert_eq!(f1.attempts, 1);
        let f2 = s
            .record_failure(m, "bad:name", "INVALID_PATH", true, backoff)
            .await
            .unwrap();
        assert_eq!(f2.attempts, 2);
        assert!(f2.next_retry_at >= f2.last_failed_at + 120);
        assert_eq!(s.retry_failures_now(m).await.unwrap(), 1);
        assert_eq!(s.failures(m).await.unwrap()[0].next_retry_at, 0);
        s.apply(m, vec![Effect::ClearFailure("bad:name".into())])
            .await
            .unwrap();
        assert!(s.failures(m).await.unwrap().is_empty());
    }
}
