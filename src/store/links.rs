//! The `links` table: the sharing links the daemon created, so that asking again for the
//! same link returns it instead of minting a new URL, and so that renames and deletes of a
//! linked path can be followed (see [`super::model::apply_effect`]).
//!
//! A row holds what is needed to recognize and show a link — its id, mirror, path, the
//! remote resource it points to, its type, its options and URLs, expiry and last known
//! status — and never the password: the options carry only a `password_required` flag.

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::sql::like_children;
use super::{MirrorId, Store, StoreError};

/// A link's last known status. `gone` is local knowledge (the linked path was deleted);
/// `exhausted` is a link whose download cap is reached (the server reports it `disabled`).
pub const TERMINAL_STATUSES: [&str; 2] = ["revoked", "gone"];

/// The options a link was created with, as stored: everything that makes two requests
/// "the same link" except the password itself, of which only its presence is kept.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoredOptions {
    pub password_required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_downloads: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_name: Option<String>,
}

impl StoredOptions {
    /// Equal apart from the password flag: the key under which a link is reused.
    pub fn same_except_password(&self, other: &StoredOptions) -> bool {
        StoredOptions {
            password_required: false,
            ..self.clone()
        } == StoredOptions {
            password_required: false,
            ..other.clone()
        }
    }
}

/// One row of `links`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LinkRecord {
    pub id: String,
    pub mirror_id: MirrorId,
    /// Mirror-relative path (`""` = the mirror root); follows renames.
    pub path: String,
    /// `file`, `folder` or `share`.
    pub resource_type: String,
    pub resource_id: String,
    /// `VIEW`, `DOWNLOAD` or `UPLOAD`.
    pub link_type: String,
    pub options: StoredOptions,
    pub url: String,
    pub short_url: Option<String>,
    pub expires_at: Option<String>,
    /// `active`, `expired`, `revoked`, `disabled`, `exhausted` or `gone`.
    pub status: String,
    pub created_at: i64,
}

impl LinkRecord {
    /// Revoked or gone: nothing the server says can make it usable again.
    pub fn is_terminal(&self) -> bool {
        TERMINAL_STATUSES.contains(&self.status.as_str())
    }
}

const LINK_COLS: &str = "id, mirror_id, path, resource_type, resource_id, link_type, options, url, \
                         short_url, expires_at, status, created_at";

fn link_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(LinkRecord, String)> {
    Ok((
        LinkRecord {
            id: r.get(0)?,
            mirror_id: r.get(1)?,
            path: r.get(2)?,
            resource_type: r.get(3)?,
            resource_id: r.get(4)?,
            link_type: r.get(5)?,
            options: StoredOptions::default(),
            url: r.get(7)?,
            short_url: r.get(8)?,
            expires_at: r.get(9)?,
            status: r.get(10)?,
            created_at: r.get(11)?,
        },
        r.get(6)?,
    ))
}

fn finish((mut rec, options): (LinkRecord, String)) -> Result<LinkRecord, StoreError> {
    rec.options = serde_json::from_str(&options)
        .map_err(|e| StoreError::Corrupt(format!("options of link {}: {e}", rec.id)))?;
    Ok(rec)
}

fn query(
    c: &Connection,
    filter: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<LinkRecord>, StoreError> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {LINK_COLS} FROM links {filter} ORDER BY created_at, rowid"
    ))?;
    let rows = stmt.query_map(args, link_from_row)?;
    let mut out = Vec::new();
    for r in rows {
        out.push(finish(r?)?);
    }
    Ok(out)
}

fn insert(c: &Connection, l: &LinkRecord) -> Result<(), StoreError> {
    let options = serde_json::to_string(&l.options)
        .map_err(|e| StoreError::Corrupt(format!("options of link {}: {e}", l.id)))?;
    c.execute(
        &format!(
            "INSERT INTO links ({LINK_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        ),
        params![
            l.id,
            l.mirror_id,
            l.path,
            l.resource_type,
            l.resource_id,
            l.link_type,
            options,
            l.url,
            l.short_url,
            l.expires_at,
            l.status,
            l.created_at
        ],
    )?;
    Ok(())
}

/// Marks the links at `path` (and below it, with `tree`) as `gone`; used by
/// `apply_effect` in the same transaction that forgets the entries.
pub(crate) fn mark_gone(
    c: &Connection,
    mirror: MirrorId,
    path: &str,
    tree: bool,
) -> Result<(), StoreError> {
    if tree {
        c.execute(
            "UPDATE links SET status = 'gone' WHERE mirror_id = ?1 AND status NOT IN ('revoked', 'gone') \
             AND (path = ?2 OR path LIKE ?3 ESCAPE '\\')",
            params![mirror, path, like_children(path)],
        )?;
    } else {
        c.execute(
            "UPDATE links SET status = 'gone' WHERE mirror_id = ?1 AND status NOT IN ('revoked', 'gone') \
             AND path = ?2",
            params![mirror, path],
        )?;
    }
    Ok(())
}

/// Re-keys the links at `from` and below to `to`: the remote item moved with its id, so
/// its links still work and only the local name changed.
pub(crate) fn move_tree(
    c: &Connection,
    mirror: MirrorId,
    from: &str,
    to: &str,
) -> Result<(), StoreError> {
    c.execute(
        "UPDATE links SET path = ?3 || substr(path, ?4) WHERE mirror_id = ?1 \
         AND (path = ?2 OR path LIKE ?5 ESCAPE '\\')",
        params![mirror, from, to, from.len() as i64 + 1, like_children(from)],
    )?;
    Ok(())
}

impl Store {
    pub async fn insert_link(&self, link: LinkRecord) -> Result<(), StoreError> {
        self.call(move |c| insert(c, &link)).await
    }

    /// Records `new` and marks `old` revoked in one transaction (a regeneration).
    pub async fn replace_link(&self, old: &str, new: LinkRecord) -> Result<(), StoreError> {
        let old = old.to_string();
        self.call(move |c| {
            insert(c, &new)?;
            c.execute("UPDATE links SET status = 'revoked' WHERE id = ?1", [old])?;
            Ok(())
        })
        .await
    }

    pub async fn link(&self, id: &str) -> Result<Option<LinkRecord>, StoreError> {
        let id = id.to_string();
        self.call(move |c| {
            c.query_row(
                &format!("SELECT {LINK_COLS} FROM links WHERE id = ?1"),
                [id],
                link_from_row,
            )
            .optional()?
            .map(finish)
            .transpose()
        })
        .await
    }

    /// Every link (of one mirror), oldest first.
    pub async fn links(&self, mirror: Option<MirrorId>) -> Result<Vec<LinkRecord>, StoreError> {
        self.call(move |c| match mirror {
            Some(m) => query(c, "WHERE mirror_id = ?1", [m]),
            None => query(c, "", []),
        })
        .await
    }

    /// The links of one path that are not revoked or gone, newest first.
    pub async fn live_links_at(
        &self,
        mirror: MirrorId,
        path: &str,
    ) -> Result<Vec<LinkRecord>, StoreError> {
        let path = path.to_string();
        self.call(move |c| {
            let mut v = query(
                c,
                "WHERE mirror_id = ?1 AND path = ?2 AND status NOT IN ('revoked', 'gone')",
                params![mirror, path],
            )?;
            v.reverse();
            Ok(v)
        })
        .await
    }

    /// Updates what the server last said about a link.
    pub async fn set_link_state(
        &self,
        id: &str,
        status: &str,
        expires_at: Option<String>,
    ) -> Result<(), StoreError> {
        let (id, status) = (id.to_string(), status.to_string());
        self.call(move |c| {
            c.execute(
                "UPDATE links SET status = ?2, expires_at = ?3 WHERE id = ?1",
                params![id, status, expires_at],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn set_link_status(&self, id: &str, status: &str) -> Result<(), StoreError> {
        let (id, status) = (id.to_string(), status.to_string());
        self.call(move |c| {
            c.execute(
                "UPDATE links SET status = ?2 WHERE id = ?1",
                params![id, status],
            )?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Effect, Entry, EntryKind};

    fn link(id: &str, m: MirrorId, path: &str) -> LinkRecord {
        LinkRecord {
            id: id.into(),
            mirror_id: m,
            path: path.into(),
            resource_type: "folder".into(),
            resource_id: format!("fld_{id}"),
            link_type: "DOWNLOAD".into(),
            options: StoredOptions {
                password_required: true,
                expires_in_days: Some(7),
                ..StoredOptions::default()
            },
            url: format!("http://x/share/{id}"),
            short_url: None,
            expires_at: Some("2030-01-01T00:00:00Z".into()),
            status: "active".into(),
            created_at: 1,
        }
    }

    fn dir(path: &str) -> Effect {
        Effect::Upsert(Entry {
            path: path.into(),
            kind: EntryKind::Dir,
            remote_id: format!("id-{path}"),
            size: 0,
            mtime_ns: 0,
            inode: 0,
            sha256: None,
            remote_version: None,
            ctime_ns: None,
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn links_follow_moves_and_deletes() {
        let d = tempfile::tempdir().unwrap();
        let s = Store::open(&d.path().join("state.db")).unwrap();
        let m = s.ensure_mirror("m", "/r", "shr", "").await.unwrap().id;
        s.apply(m, vec![dir("a"), dir("a/b"), dir("a_x"), dir("c")])
            .await
            .unwrap();
        for (id, p) in [("l1", "a"), ("l2", "a/b"), ("l3", "a_x"), ("l4", "c")] {
            s.insert_link(link(id, m, p)).await.unwrap();
        }
        s.apply(
            m,
            vec![Effect::MoveTree {
                from: "a".into(),
                to: "z/a".into(),
            }],
        )
        .await
        .unwrap();
        let paths = |v: Vec<LinkRecord>| {
            v.into_iter()
                .map(|l| format!("{}={}:{}", l.id, l.path, l.status))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            paths(s.links(Some(m)).await.unwrap()),
            [
                "l1=z/a:active",
                "l2=z/a/b:active",
                "l3=a_x:active",
                "l4=c:active"
            ],
            "a move rewrites the moved subtree only ('_' is not a wildcard)"
        );
        s.apply(m, vec![Effect::RemoveTree("z".into())])
            .await
            .unwrap();
        s.apply(
            m,
            vec![Effect::MoveTree {
                from: "a_x".into(),
                to: "c".into(),
            }],
        )
        .await
        .unwrap();
        assert_eq!(
            paths(s.links(Some(m)).await.unwrap()),
            ["l1=z/a:gone", "l2=z/a/b:gone", "l3=c:active", "l4=c:gone"],
            "a delete marks the subtree's links gone; a move over a path replaces its item"
        );
        let stored = s.link("l3").await.unwrap().unwrap();
        assert!(stored.options.password_required);
        assert_eq!(stored.options.expires_in_days, Some(7));
        assert_eq!(s.live_links_at(m, "c").await.unwrap().len(), 1);
    }

    #[test]
    fn options_key_ignores_only_the_password_flag() {
        let a = StoredOptions {
            password_required: true,
            expires_in_days: Some(3),
            ..StoredOptions::default()
        };
        let b = StoredOptions {
            password_required: false,
            ..a.clone()
        };
        assert!(a.same_except_password(&b));
        let c = StoredOptions {
            max_downloads: Some(1),
            ..a.clone()
        };
        assert!(!a.same_except_password(&c));
        assert_eq!(
            serde_json::to_value(&b).unwrap(),
            serde_json::json!({"password_required": false, "expires_in_days": 3})
        );
    }
}
