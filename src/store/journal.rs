//! The intent journal: the typed contract between the stage that makes a remote call (the
//! uploader journals what it is about to do) and the one that settles what a crash left
//! open (the mirror's recovery). One [`IntentOp`] per kind of remote call, with the details
//! recovery needs, serialized by serde.
//!
//! On disk a row is the op's name (`journal.op`: `mkdir`, `upload`, `replace`, `move`,
//! `delete`, and since migration 06 `copy`, `restore`, `untrash`) and its details as a JSON object (`journal.detail`), the shape every release
//! so far has written; [`Store::mark_uncertain`] adds `"uncertain": true` to that object.
//! A row that does not fit (a future or a damaged one) is read as [`IntentOp::Unreadable`]
//! rather than failing the mirror's start.

use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::MirrorId;
use super::{Effect, Store, StoreError};

/// A create: the folder (`mkdir`) or the file's name in its parent, and the local
/// fingerprint of what was sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateFolder {
    /// The remote parent folder (`None` = the share root).
    pub parent_id: Option<String>,
    pub name: String,
    pub inode: u64,
    pub mtime_ns: i64,
}

/// A file upload, new (`upload`) or as a new version of `replace_file_id` (`replace`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendFile {
    pub parent_id: Option<String>,
    pub name: String,
    pub sha256: String,
    pub size: u64,
    pub inode: u64,
    pub mtime_ns: i64,
    /// Always written (`null` for a new file), as releases before the typed journal did.
    pub replace_file_id: Option<String>,
}

/// A file placed from content the remote already holds, without sending bytes: a
/// server-side copy (`copy`), a version restore (`restore`, `file.replace_file_id` names
/// the file) or a restore from the trash (`untrash`). `file` is what an upload of the file
/// would have journaled, so each settles like the upload it stands for: a copy or an
/// untrash as a create at `file.name`, a restore as a new version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceKnown {
    #[serde(flatten)]
    pub file: SendFile,
    /// The file copied, or the trashed file restored (for `restore`, the file itself).
    pub source_id: String,
    /// The version restored (`restore` only).
    #[serde(default)]
    pub version: Option<i64>,
}

/// A move (rename, then move to the new folder) of `remote_id`, journaled at the new path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveItem {
    pub from: String,
    pub remote_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteItem {
    pub remote_id: String,
}

/// What a journaled remote call was about to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", content = "detail", rename_all = "lowercase")]
pub enum IntentOp {
    Mkdir(CreateFolder),
    Upload(SendFile),
    Replace(SendFile),
    Move(MoveItem),
    Delete(DeleteItem),
    Copy(PlaceKnown),
    Restore(PlaceKnown),
    Untrash(PlaceKnown),
    /// A row this release cannot read: its op name and why.
    #[serde(skip)]
    Unreadable {
        op: String,
        why: String,
    },
}

impl IntentOp {
    /// The `journal.op` column.
    pub fn name(&self) -> &str {
        match self {
            IntentOp::Mkdir(_) => "mkdir",
            IntentOp::Upload(_) => "upload",
            IntentOp::Replace(_) => "replace",
            IntentOp::Move(_) => "move",
            IntentOp::Delete(_) => "delete",
            IntentOp::Copy(_) => "copy",
            IntentOp::Restore(_) => "restore",
            IntentOp::Untrash(_) => "untrash",
            IntentOp::Unreadable { op, .. } => op,
        }
    }

    /// The row's two columns: the op's name and its details as a JSON object.
    fn to_row(&self) -> Result<(String, String), StoreError> {
        let tagged = serde_json::to_value(self)
            .map_err(|e| StoreError::Corrupt(format!("intent {}: {e}", self.name())))?;
        let detail = tagged.get("detail").cloned().unwrap_or_default();
        Ok((self.name().to_string(), detail.to_string()))
    }

    /// Reads a row's two columns.
    pub fn from_row(op: &str, detail: &serde_json::Value) -> IntentOp {
        let tagged = serde_json::json!({ "op": op, "detail": detail });
        serde_json::from_value(tagged).unwrap_or_else(|e| IntentOp::Unreadable {
            op: op.to_string(),
            why: e.to_string(),
        })
    }
}

/// A remote operation whose outcome is not yet recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent {
    pub id: i64,
    pub mirror_id: MirrorId,
    /// The mirror-relative path the op is about (a move's destination).
    pub path: String,
    pub op: IntentOp,
    /// Its request ended without an answer: the server may still apply it.
    pub uncertain: bool,
    /// Unix seconds when it was journaled (0 for intents from before the typed journal).
    pub opened_at: i64,
}

/// The flag [`Store::mark_uncertain`] adds to a row's details.
#[derive(Deserialize)]
struct Flags {
    #[serde(default)]
    uncertain: bool,
}

impl Store {
    /// Journals an intent before the remote call; returns its id.
    pub async fn begin_intent(
        &self,
        mirror: MirrorId,
        path: &str,
        op: &IntentOp,
    ) -> Result<i64, StoreError> {
        let (op, detail) = op.to_row()?;
        self.insert_intent(mirror, op, path.to_string(), detail)
            .await
    }

    /// Journals an intent given as a row (op name and JSON details), the shape written by
    /// every release: what a killed run leaves, as tests stage it. Refused if this release
    /// could not read it back.
    pub async fn begin(
        &self,
        mirror: MirrorId,
        op: &str,
        path: &str,
        detail: serde_json::Value,
    ) -> Result<i64, StoreError> {
        if let IntentOp::Unreadable { op, why } = IntentOp::from_row(op, &detail) {
            return Err(StoreError::Corrupt(format!("intent {op}: {why}")));
        }
        self.insert_intent(mirror, op.to_string(), path.to_string(), detail.to_string())
            .await
    }

    async fn insert_intent(
        &self,
        mirror: MirrorId,
        op: String,
        path: String,
        detail: String,
    ) -> Result<i64, StoreError> {
        self.call(move |c| {
            c.execute(
                "INSERT INTO journal (mirror_id, op, path, detail, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![mirror, op, path, detail, super::model::unix_now()],
            )?;
            Ok(c.last_insert_rowid())
        })
        .await
    }

    /// Records the outcome of an intent and clears it, in one transaction.
    pub async fn commit(
        &self,
        mirror: MirrorId,
        intent: i64,
        effects: Vec<Effect>,
    ) -> Result<(), StoreError> {
        self.call(move |c| {
            for e in &effects {
                super::model::apply_effect(c, mirror, e)?;
            }
            c.execute("DELETE FROM journal WHERE id = ?1", [intent])?;
            Ok(())
        })
        .await
    }

    /// Notes on an open intent that its request ended without an answer (a timeout, a
    /// dropped connection, a gateway's 5xx): the server may still apply it after the
    /// mirror looked, so settling it waits before concluding "not done".
    pub async fn mark_uncertain(&self, intent: i64) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "UPDATE journal SET detail = json_set(detail, '$.uncertain', json('true')) WHERE id = ?1",
                [intent],
            )?;
            Ok(())
        })
        .await
    }

    /// Open intents of a mirror, oldest first (resolved at start-up).
    pub async fn intents(&self, mirror: MirrorId) -> Result<Vec<Intent>, StoreError> {
        self.call(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, mirror_id, op, path, detail, created_at FROM journal WHERE mirror_id = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([mirror], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                ))
            })?;
            let mut out = Vec::new();
            for r in rows {
                let (id, mirror_id, op, path, detail, opened_at) = r?;
                let detail: serde_json::Value = serde_json::from_str(&detail)
                    .map_err(|e| StoreError::Corrupt(format!("intent {id}: {e}")))?;
                let uncertain = serde_json::from_value::<Flags>(detail.clone())
                    .is_ok_and(|f| f.uncertain);
                out.push(Intent {
                    id,
                    mirror_id,
                    path,
                    op: IntentOp::from_row(&op, &detail),
                    uncertain,
                    opened_at,
                });
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, Store, MirrorId) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("state.db")).unwrap();
        let m = s.ensure_mirror("docs", "/d", "shr_1", "").await.unwrap().id;
        (dir, s, m)
    }

    fn send(replace: Option<&str>) -> SendFile {
        SendFile {
            parent_id: Some("fld_1".into()),
            name: "a.txt".into(),
            sha256: "00".into(),
            size: 2,
            inode: 7,
            mtime_ns: 9,
            replace_file_id: replace.map(str::to_string),
        }
    }

    /// The rows as the release before the typed journal wrote them (its uploader's
    /// `json!` literals, verbatim), inserted with plain SQL into a database of that
    /// schema, read back through the typed API.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn journals_written_by_the_previous_release_are_read() {
        let (_d, s, m) = store().await;
        let rows = [
            (
                "mkdir",
                "dir",
                r#"{"parent_id":null,"name":"dir","inode":11,"mtime_ns":12}"#,
            ),
            (
                "upload",
                "dir/a.txt",
                r#"{"parent_id":"fld_1","name":"a.txt","sha256":"ab","size":2,"inode":3,"mtime_ns":4,"replace_file_id":null,"uncertain":true}"#,
            ),
            (
                "replace",
                "b.txt",
                r#"{"parent_id":null,"name":"b.txt","sha256":"cd","size":5,"inode":6,"mtime_ns":7,"replace_file_id":"fil_9"}"#,
            ),
            ("move", "new/x", r#"{"from":"old/x","remote_id":"fil_2"}"#),
            ("delete", "gone", r#"{"remote_id":"fld_3"}"#),
            ("rename_all", "zzz", r#"{"what":1}"#),
        ];
        s.call(move |c| {
            for (op, path, detail) in rows {
                c.execute(
                    "INSERT INTO journal (mirror_id, op, path, detail, created_at) VALUES (?1, ?2, ?3, ?4, 0)",
                    params![m, op, path, detail],
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();
        let open = s.intents(m).await.unwrap();
        let ops: Vec<(&str, &IntentOp, bool)> = open
            .iter()
            .map(|i| (i.path.as_str(), &i.op, i.uncertain))
            .collect();
        assert_eq!(
            ops,
            vec![
                (
                    "dir",
                    &IntentOp::Mkdir(CreateFolder {
                        parent_id: None,
                        name: "dir".into(),
                        inode: 11,
                        mtime_ns: 12
                    }),
                    false
                ),
                (
                    "dir/a.txt",
                    &IntentOp::Upload(SendFile {
                        parent_id: Some("fld_1".into()),
                        name: "a.txt".into(),
                        sha256: "ab".into(),
                        size: 2,
                        inode: 3,
                        mtime_ns: 4,
                        replace_file_id: None
                    }),
                    true
                ),
                (
                    "b.txt",
                    &IntentOp::Replace(SendFile {
                        parent_id: None,
                        name: "b.txt".into(),
                        sha256: "cd".into(),
                        size: 5,
                        inode: 6,
                        mtime_ns: 7,
                        replace_file_id: Some("fil_9".into())
                    }),
                    false
                ),
                (
                    "new/x",
                    &IntentOp::Move(MoveItem {
                        from: "old/x".into(),
                        remote_id: "fil_2".into()
                    }),
                    false
                ),
                (
                    "gone",
                    &IntentOp::Delete(DeleteItem {
                        remote_id: "fld_3".into()
                    }),
                    false
                ),
                (
                    "zzz",
                    &IntentOp::Unreadable {
                        op: "rename_all".into(),
                        why: open[5].op.clone().unreadable_why()
                    },
                    false
                ),
            ]
        );
    }

    impl IntentOp {
        fn unreadable_why(self) -> String {
            match self {
                IntentOp::Unreadable { why, .. } => why,
                other => panic!("readable: {other:?}"),
            }
        }
    }

    /// What the typed API writes is the row shape the previous release wrote (so a
    /// downgrade, or a crash loop across versions, reads it too).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn typed_intents_keep_the_row_shape() {
        let (_d, s, m) = store().await;
        s.begin_intent(m, "a.txt", &IntentOp::Upload(send(None)))
            .await
            .unwrap();
        s.begin_intent(
            m,
            "b",
            &IntentOp::Move(MoveItem {
                from: "a".into(),
                remote_id: "fil_1".into(),
            }),
        )
        .await
        .unwrap();
        let rows: Vec<(String, serde_json::Value)> = s
            .call(|c| {
                let mut st = c.prepare("SELECT op, detail FROM journal ORDER BY id")?;
                let rows = st.query_map([], |r| Ok((r.get(0)?, r.get::<_, String>(1)?)))?;
                Ok(rows
                    .map(|r| r.map(|(op, d)| (op, serde_json::from_str(&d).unwrap())))
                    .collect::<Result<Vec<_>, _>>()?)
            })
            .await
            .unwrap();
        assert_eq!(
            rows,
            vec![
                (
                    "upload".to_string(),
                    serde_json::json!({ "parent_id": "fld_1", "name": "a.txt", "sha256": "00", "size": 2,
                                        "inode": 7, "mtime_ns": 9, "replace_file_id": null })
                ),
                (
                    "move".to_string(),
                    serde_json::json!({ "from": "a", "remote_id": "fil_1" })
                ),
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn intents_survive_until_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let (m, id) = {
            let s = Store::open(&path).unwrap();
            let m = s.ensure_mirror("docs", "/d", "shr_1", "").await.unwrap().id;
            let id = s
                .begin_intent(m, "a.txt", &IntentOp::Upload(send(None)))
                .await
                .unwrap();
            s.begin(
                m,
                "mkdir",
                "dir",
                serde_json::json!({ "parent_id": null, "name": "dir", "inode": 1, "mtime_ns": 0 }),
            )
            .await
            .unwrap();
            (m, id)
        };
        let s = Store::open(&path).unwrap();
        let open = s.intents(m).await.unwrap();
        assert_eq!(open.len(), 2);
        assert_eq!(open[0].op, IntentOp::Upload(send(None)));
        assert!(!open[0].uncertain);
        s.mark_uncertain(id).await.unwrap();
        let open = s.intents(m).await.unwrap();
        assert!(open[0].uncertain, "{:?}", open[0]);
        assert_eq!(
            open[0].op,
            IntentOp::Upload(send(None)),
            "the rest of the detail is kept"
        );
        let entry = super::super::Entry {
            path: "a.txt".into(),
            kind: super::super::EntryKind::File,
            remote_id: "id-a.txt".into(),
            size: 2,
            mtime_ns: 9,
            inode: 7,
            sha256: Some("00".into()),
            remote_version: Some(1),
            ctime_ns: Some(9),
        };
        s.commit(m, id, vec![Effect::Upsert(entry)]).await.unwrap();
        assert_eq!(s.intents(m).await.unwrap().len(), 1);
        assert_eq!(
            s.entry(m, "a.txt").await.unwrap().unwrap().remote_id,
            "id-a.txt"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_row_this_release_cannot_read_is_refused_as_input() {
        let (_d, s, m) = store().await;
        let e = s
            .begin(m, "upload", "a", serde_json::json!({ "name": "a" }))
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::Corrupt(_)), "{e}");
        assert!(s.intents(m).await.unwrap().is_empty());
    }
}
