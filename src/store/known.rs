//! Content the remote already holds for a mirror (migration 06): every version the mirror
//! gave a remote file (`remote_versions`) and the files it moved to the remote trash
//! (`trashed`), kept up to date by the effects that record uploads and deletes. The
//! uploader asks here before it sends bytes: a copy of a mirrored file is copied
//! server-side, a file reverted to an earlier content is restored from that version, a
//! deleted file that comes back is restored from the trash (issue 19, item 5).
//!
//! Rows are hints, checked by the remote's answer: a version pruned or a trash emptied
//! costs one refused call, then the row is forgotten and the file uploaded.

use rusqlite::{Connection, OptionalExtension, params};

use super::sql::like_children;
use super::{Effect, EntryKind, MirrorId, Store, StoreError};

/// A mirrored file whose remote content is wanted elsewhere: the source of a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopySource {
    pub path: String,
    pub remote_id: String,
    pub size: u64,
}

/// A file the mirror trashed, by the path it had.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrashedFile {
    pub remote_id: String,
    pub sha256: String,
    pub size: u64,
}

/// Keeps the two tables in step with an effect, in its transaction (called by
/// `apply_effect` before it applies the effect to the entries).
pub(super) fn on_effect(
    c: &Connection,
    mirror: MirrorId,
    effect: &Effect,
) -> Result<(), StoreError> {
    match effect {
        Effect::Upsert(e) => {
            // Something lives at the path again: what was trashed from it is history.
            c.prepare_cached("DELETE FROM trashed WHERE mirror_id = ?1 AND path = ?2")?
                .execute(params![mirror, e.path])?;
            if e.kind == EntryKind::File
                && let (Some(sha), Some(version)) = (&e.sha256, e.remote_version)
            {
                c.prepare_cached(
                    "INSERT INTO remote_versions (mirror_id, remote_id, version, sha256, size) \
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (mirror_id, remote_id, version) \
                     DO UPDATE SET sha256 = excluded.sha256, size = excluded.size",
                )?
                .execute(params![
                    mirror,
                    e.remote_id,
                    version,
                    sha,
                    e.size as i64
                ])?;
            }
        }
        Effect::Trashed(p) => {
            c.execute(
                "INSERT INTO trashed (mirror_id, path, remote_id, sha256, size, trashed_at) \
                 SELECT mirror_id, path, remote_id, sha256, size, ?4 FROM entries \
                 WHERE mirror_id = ?1 AND kind = 'file' AND sha256 IS NOT NULL \
                 AND (path = ?2 OR path LIKE ?3 ESCAPE '\\') \
                 ON CONFLICT (mirror_id, path) DO UPDATE SET remote_id = excluded.remote_id, \
                 sha256 = excluded.sha256, size = excluded.size, trashed_at = excluded.trashed_at",
                params![mirror, p, like_children(p), super::model::unix_now()],
            )?;
        }
        _ => {}
    }
    Ok(())
}

/// The first mirrored file with a content. `INDEXED BY`: without statistics SQLite walks
/// the mirror's whole primary key to return rows in path order, one full scan per upload
/// (W1's daemon CPU went from 11 to 30 s on 20,000 files); the content index returns them
/// in path order too.
const COPY_SOURCE_SQL: &str = "SELECT path, remote_id, size FROM entries INDEXED BY entries_content \
     WHERE mirror_id = ?1 AND sha256 = ?2 AND kind = 'file' AND path <> ?3 ORDER BY path LIMIT 1";

/// Where the remote holds a content, as [`Store::known_content`] found it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KnownContent {
    /// The newest version of the replaced file with this content.
    pub version: Option<i64>,
    /// The file trashed from this path, if it had this content.
    pub trashed: Option<TrashedFile>,
    /// Another mirrored file with this content.
    pub copy: Option<CopySource>,
}

fn copy_source(
    c: &Connection,
    mirror: MirrorId,
    sha: &str,
    path: &str,
) -> Result<Option<CopySource>, StoreError> {
    Ok(c.prepare_cached(COPY_SOURCE_SQL)?
        .query_row(params![mirror, sha, path], |r| {
            Ok(CopySource {
                path: r.get(0)?,
                remote_id: r.get(1)?,
                size: r.get::<_, i64>(2)? as u64,
            })
        })
        .optional()?)
}

fn version_with(
    c: &Connection,
    mirror: MirrorId,
    id: &str,
    sha: &str,
) -> Result<Option<i64>, StoreError> {
    Ok(c.prepare_cached(
        "SELECT max(version) FROM remote_versions WHERE mirror_id = ?1 AND remote_id = ?2 \
         AND sha256 = ?3",
    )?
    .query_row(params![mirror, id, sha], |r| r.get::<_, Option<i64>>(0))?)
}

fn trashed_at(
    c: &Connection,
    mirror: MirrorId,
    path: &str,
) -> Result<Option<TrashedFile>, StoreError> {
    Ok(c.prepare_cached(
        "SELECT remote_id, sha256, size FROM trashed WHERE mirror_id = ?1 AND path = ?2",
    )?
    .query_row(params![mirror, path], |r| {
        Ok(TrashedFile {
            remote_id: r.get(0)?,
            sha256: r.get(1)?,
            size: r.get::<_, i64>(2)? as u64,
        })
    })
    .optional()?)
}

impl Store {
    /// What the store knows of content `sha` for `path`, in one request (asked before
    /// every upload): for new content of file `replace`, its versions; for a new file, the
    /// file trashed from `path` and, failing that, another file with the content.
    pub async fn known_content(
        &self,
        mirror: MirrorId,
        path: &str,
        sha: &str,
        replace: Option<&str>,
    ) -> Result<KnownContent, StoreError> {
        let (path, sha, replace) = (
            path.to_string(),
            sha.to_string(),
            replace.map(str::to_string),
        );
        self.call(move |c| {
            let mut k = KnownContent::default();
            if let Some(id) = &replace {
                k.version = version_with(c, mirror, id, &sha)?;
                return Ok(k);
            }
            k.trashed = trashed_at(c, mirror, &path)?.filter(|t| t.sha256 == sha);
            if k.trashed.is_none() {
                k.copy = copy_source(c, mirror, &sha, &path)?;
            }
            Ok(k)
        })
        .await
    }

    /// A mirrored file (other than `path`) whose remote content has SHA-256 `sha`.
    pub async fn copy_source(
        &self,
        mirror: MirrorId,
        sha: &str,
        path: &str,
    ) -> Result<Option<CopySource>, StoreError> {
        let (sha, path) = (sha.to_string(), path.to_string());
        self.call(move |c| copy_source(c, mirror, &sha, &path))
            .await
    }

    /// The newest version of remote file `remote_id` whose content has SHA-256 `sha`.
    pub async fn version_with(
        &self,
        mirror: MirrorId,
        remote_id: &str,
        sha: &str,
    ) -> Result<Option<i64>, StoreError> {
        let (id, sha) = (remote_id.to_string(), sha.to_string());
        self.call(move |c| version_with(c, mirror, &id, &sha)).await
    }

    /// The file the mirror trashed from `path`, if it remembers one.
    pub async fn trashed_at(
        &self,
        mirror: MirrorId,
        path: &str,
    ) -> Result<Option<TrashedFile>, StoreError> {
        let path = path.to_string();
        self.call(move |c| trashed_at(c, mirror, &path)).await
    }

    /// Forgets a hint the remote refused: version `version` of `remote_id` (all of its
    /// versions if `None`), and the trash row of `path` if it names `remote_id`.
    pub async fn forget_known(
        &self,
        mirror: MirrorId,
        remote_id: &str,
        version: Option<i64>,
        path: &str,
    ) -> Result<(), StoreError> {
        let (id, path) = (remote_id.to_string(), path.to_string());
        self.call(move |c| {
            c.execute(
                "DELETE FROM remote_versions WHERE mirror_id = ?1 AND remote_id = ?2 \
                 AND (?3 IS NULL OR version = ?3)",
                params![mirror, id, version],
            )?;
            c.execute(
                "DELETE FROM trashed WHERE mirror_id = ?1 AND path = ?2 AND remote_id = ?3",
                params![mirror, path, id],
            )?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Entry;

    fn file(path: &str, id: &str, sha: &str, version: i64) -> Entry {
        Entry {
            path: path.into(),
            kind: EntryKind::File,
            remote_id: id.into(),
            size: 3,
            mtime_ns: 1,
            inode: 2,
            sha256: Some(sha.into()),
            remote_version: Some(version),
            ctime_ns: Some(1),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_copy_source_lookup_searches_the_content_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let s = Store::open(&path).unwrap();
        s.ensure_mirror("docs", "/d", "shr_1", "").await.unwrap();
        s.flush().await.unwrap();
        let c = crate::store::open_read_only(&path).unwrap().unwrap();
        let plan: Vec<String> = c
            .prepare(&format!("EXPLAIN QUERY PLAN {COPY_SOURCE_SQL}"))
            .unwrap()
            .query_map(params![1, "aa", "x"], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            plan,
            ["SEARCH entries USING INDEX entries_content (mirror_id=? AND sha256=?)"]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn uploads_and_trash_are_remembered_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("state.db")).unwrap();
        let m = s.ensure_mirror("docs", "/d", "shr_1", "").await.unwrap().id;
        s.apply(
            m,
            vec![
                Effect::Upsert(file("a/x", "fil_1", "aa", 1)),
                Effect::Upsert(file("a/x", "fil_1", "bb", 2)),
                Effect::Upsert(file("a/y", "fil_2", "cc", 1)),
            ],
        )
        .await
        .unwrap();
        assert_eq!(s.version_with(m, "fil_1", "aa").await.unwrap(), Some(1));
        assert_eq!(s.version_with(m, "fil_1", "cc").await.unwrap(), None);
        let src = s.copy_source(m, "cc", "b/z").await.unwrap().unwrap();
        assert_eq!(
            (src.path.as_str(), src.remote_id.as_str()),
            ("a/y", "fil_2")
        );
        assert_eq!(
            s.copy_source(m, "cc", "a/y").await.unwrap(),
            None,
            "not itself"
        );
        assert_eq!(
            s.copy_source(m, "aa", "b/z").await.unwrap(),
            None,
            "old content"
        );

        s.apply(
            m,
            vec![Effect::Trashed("a".into()), Effect::RemoveTree("a".into())],
        )
        .await
        .unwrap();
        let t = s.trashed_at(m, "a/y").await.unwrap().unwrap();
        assert_eq!((t.remote_id.as_str(), t.sha256.as_str()), ("fil_2", "cc"));
        assert_eq!(
            s.copy_source(m, "cc", "b/z").await.unwrap(),
            None,
            "trashed"
        );
        // Something else at the path: the trash row is history.
        s.apply(m, vec![Effect::Upsert(file("a/y", "fil_9", "dd", 1))])
            .await
            .unwrap();
        assert_eq!(s.trashed_at(m, "a/y").await.unwrap(), None);
        s.forget_known(m, "fil_1", Some(1), "a/x").await.unwrap();
        assert_eq!(s.version_with(m, "fil_1", "aa").await.unwrap(), None);
        assert_eq!(s.trashed_at(m, "a/x").await.unwrap(), None);
    }
}
