//! The devserver's domain model over SQLite: callers, roles and permission checks, files
//! and folders (one `nodes` table, one namespace per parent), paths, the JSON shapes the
//! docs give for each object, and the change log every mutation appends to.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::util::{self, new_id};

/// The authenticated caller, put into request extensions by the auth middleware.
#[derive(Clone, Debug)]
pub struct Caller {
    pub user_id: String,
    pub tenant_id: String,
    pub is_admin: bool,
    /// Application scopes of the token; empty means none (treated as `tenant:admin`).
    pub scopes: Vec<String>,
}

impl Caller {
    /// Whether the token's scopes allow writes (`files:write`, admin scopes, or none given).
    pub fn may_write(&self) -> bool {
        self.scopes.is_empty()
            || self.scopes.iter().any(|s| {
                matches!(
                    s.as_str(),
                    "files:write" | "tenant:admin" | "partner:admin" | "admin:*" | "*"
                )
            })
    }
}

pub const READ: u8 = 1;
pub const WRITE: u8 = 2;
pub const DELETE: u8 = 4;
pub const CREATE: u8 = 8;
pub const SHARE: u8 = 16;
pub const MANAGE: u8 = 32;

pub fn role_bits(role: &str) -> u8 {
    match role {
        "owner" | "admin" => READ | WRITE | DELETE | CREATE | SHARE | MANAGE,
        "contributor" => READ | WRITE | DELETE | CREATE,
        "reader" => READ,
        _ => 0,
    }
}

fn perm_name(p: u8) -> &'static str {
    match p {
        READ => "READ",
        WRITE => "WRITE",
        DELETE => "DELETE",
        CREATE => "CREATE",
        SHARE => "SHARE",
        _ => "MANAGE_PERMISSIONS",
    }
}

/// The caller's role on a share; `None` if the share is invisible to them.
pub fn share_role(conn: &Connection, caller: &Caller, share_id: &str) -> ApiResult<Option<String>> {
    let share: Option<(String, bool)> = conn
        .query_row(
            "SELECT tenant_id, is_deleted FROM shares WHERE id = ?1",
            [share_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((tenant, deleted)) = share else {
        return Ok(None);
    };
    if tenant != caller.tenant_id || deleted {
        return Ok(None);
    }
    if caller.is_admin {
        return Ok(Some("owner".into()));
    }
    Ok(conn
        .query_row(
            "SELECT role FROM members WHERE share_id = ?1 AND user_id = ?2",
            [share_id, &caller.user_id],
            |r| r.get(0),
        )
        .optional()?)
}

/// Checks `perm` on a share: 404 if the caller cannot see it, 403 if the role lacks `perm`
/// or a write needs a scope the token does not carry.
pub fn require(conn: &Connection, caller: &Caller, share_id: &str, perm: u8) -> ApiResult<()> {
    let Some(role) = share_role(conn, caller, share_id)? else {
        return Err(ApiError::not_found(format!("share {share_id}")));
    };
    if role_bits(&role) & READ == 0 {
        return Err(ApiError::not_found(format!("share {share_id}")));
    }
    if perm != READ && !caller.may_write() {
        return Err(ApiError::denied(format!(
            "token scopes do not allow {} on share/{share_id}",
            perm_name(perm)
        )));
    }
    if role_bits(&role) & perm == 0 {
        return Err(ApiError::denied(format!(
            "Permission denied: {} on share/{share_id} (role {role})",
            perm_name(perm)
        )));
    }
    Ok(())
}

#[derive(Clone, Debug)]
pub struct Node {
    pub id: String,
    pub tenant_id: String,
    pub share_id: String,
    /// '' for the share root.
    pub parent_id: String,
    pub name: String,
    pub kind: String,
    pub owner_id: String,
    pub created_by: String,
    pub created_at: String,
    pub modified_by: String,
    pub modified_at: String,
    pub deleted_at: Option<String>,
    pub deleted_root: Option<String>,
    pub size: i64,
    pub sha256: Option<String>,
    pub version: i64,
    pub mime_type: Option<String>,
}

pub const NODE_COLS: &str = "id, tenant_id, share_id, parent_id, name, kind, owner_id, created_by, \
    created_at, modified_by, modified_at, deleted_at, deleted_root, size, sha256, version, mime_type";

impl Node {
    pub fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Node> {
        Ok(Node {
            id: r.get(0)?,
            tenant_id: r.get(1)?,
            share_id: r.get(2)?,
            parent_id: r.get(3)?,
            name: r.get(4)?,
            kind: r.get(5)?,
            owner_id: r.get(6)?,
            created_by: r.get(7)?,
            created_at: r.get(8)?,
            modified_by: r.get(9)?,
            modified_at: r.get(10)?,
            deleted_at: r.get(11)?,
            deleted_root: r.get(12)?,
            size: r.get(13)?,
            sha256: r.get(14)?,
            version: r.get(15)?,
            mime_type: r.get(16)?,
        })
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }

    pub fn parent_json(&self) -> Value {
        if self.parent_id.is_empty() {
            Value::Null
        } else {
            json!(self.parent_id)
        }
    }
}

pub fn get_node(conn: &Connection, id: &str) -> ApiResult<Option<Node>> {
    Ok(conn
        .query_row(
            &format!("SELECT {NODE_COLS} FROM nodes WHERE id = ?1"),
            [id],
            Node::from_row,
        )
        .optional()?)
}

/// Loads a file or folder the caller may see, of the given kind, checking `perm` on its
/// share. Soft-deleted items answer 410 unless `allow_deleted`.
pub fn load_node(
    conn: &Connection,
    caller: &Caller,
    id: &str,
    kind: &str,
    perm: u8,
    allow_deleted: bool,
) -> ApiResult<Node> {
    let what = format!("{kind} {id}");
    let node = get_node(conn, id)?.ok_or_else(|| ApiError::not_found(&what))?;
    if node.kind != kind || node.tenant_id != caller.tenant_id {
        return Err(ApiError::not_found(&what));
    }
    // Visibility first (404), then deletion (410), then the specific permission (403).
    require(conn, caller, &node.share_id, READ)?;
    if node.is_deleted() && !allow_deleted {
        return Err(ApiError::deleted(&what));
    }
    if perm != READ {
        require(conn, caller, &node.share_id, perm)?;
    }
    Ok(node)
}

/// Resolves a destination folder id (`None`, `""` or `"root"` = share root) in `share_id`.
/// Returns the `parent_id` column value ('' for root).
pub fn resolve_parent(
    conn: &Connection,
    caller: &Caller,
    share_id: &str,
    folder_id: Option<&str>,
) -> ApiResult<String> {
    match folder_id {
        None | Some("") | Some("root") => Ok(String::new()),
        Some(fid) => {
            let folder = load_node(conn, caller, fid, "folder", READ, false)?;
            if folder.share_id != share_id {
                return Err(ApiError::not_found(format!(
                    "folder {fid} in share {share_id}"
                )));
            }
            Ok(folder.id)
        }
    }
}

/// The live (not soft-deleted) child of `parent_id` named `name`, if any.
pub fn live_child(
    conn: &Connection,
    share_id: &str,
    parent_id: &str,
    name: &str,
) -> ApiResult<Option<Node>> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {NODE_COLS} FROM nodes WHERE share_id = ?1 AND parent_id = ?2 AND name = ?3 \
                 AND deleted_at IS NULL"
            ),
            [share_id, parent_id, name],
            Node::from_row,
        )
        .optional()?)
}

/// 409 `NAME_CONFLICT` if a live sibling already has `name`.
pub fn ensure_free(
    conn: &Connection,
    share_id: &str,
    parent_id: &str,
    name: &str,
) -> ApiResult<()> {
    if let Some(existing) = live_child(conn, share_id, parent_id, name)? {
        let mut e = ApiError::conflict(format!(
            "an item named {name:?} already exists in this folder"
        ));
        e.details = Some(json!({ "existing_id": existing.id, "existing_type": existing.kind }));
        return Err(e);
    }
    Ok(())
}

/// Absolute path from the share root: `/Top/Sub/name`.
pub fn node_path(conn: &Connection, node: &Node) -> ApiResult<String> {
    let mut parts = vec![node.name.clone()];
    let mut parent = node.parent_id.clone();
    let mut guard = 0;
    while !parent.is_empty() {
        let (name, next): (String, String) = conn.query_row(
            "SELECT name, parent_id FROM nodes WHERE id = ?1",
            [&parent],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        parts.push(name);
        parent = next;
        guard += 1;
        if guard > 10_000 {
            return Err(ApiError::internal("folder cycle"));
        }
    }
    parts.reverse();
    Ok(format!("/{}", parts.join("/")))
}

/// Path of a folder id ('' = share root → "/").
pub fn folder_path(conn: &Connection, parent_id: &str) -> ApiResult<String> {
    if parent_id.is_empty() {
        return Ok("/".into());
    }
    let node = get_node(conn, parent_id)?
        .ok_or_else(|| ApiError::not_found(format!("folder {parent_id}")))?;
    node_path(conn, &node)
}

/// Whether `candidate` is `ancestor` or lies below it.
pub fn is_within(conn: &Connection, candidate: &str, ancestor: &str) -> ApiResult<bool> {
    let mut cur = candidate.to_string();
    while !cur.is_empty() {
        if cur == ancestor {
            return Ok(true);
        }
        cur = conn.query_row("SELECT parent_id FROM nodes WHERE id = ?1", [&cur], |r| {
            r.get(0)
        })?;
    }
    Ok(false)
}

/// Ids of every descendant of `folder_id` (not including it), any depth, deleted or not.
pub fn descendants(conn: &Connection, folder_id: &str) -> ApiResult<Vec<Node>> {
    let mut stmt = conn.prepare(&format!(
        "WITH RECURSIVE sub(id) AS (SELECT id FROM nodes WHERE parent_id = ?1 \
         UNION ALL SELECT n.id FROM nodes n JOIN sub ON n.parent_id = sub.id) \
         SELECT {NODE_COLS} FROM nodes WHERE id IN (SELECT id FROM sub)"
    ))?;
    let rows = stmt
        .query_map([folder_id], Node::from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn folder_json(conn: &Connection, n: &Node) -> ApiResult<Value> {
    Ok(json!({
        "id": n.id,
        "tenant_id": n.tenant_id,
        "share_id": n.share_id,
        "parent_id": n.parent_json(),
        "name": n.name,
        "path": node_path(conn, n)?,
        "owner_id": n.owner_id,
        "created_by": n.created_by,
        "created_at": n.created_at,
        "modified_at": n.modified_at,
        "is_deleted": n.is_deleted(),
    }))
}

pub fn file_json(conn: &Connection, n: &Node) -> ApiResult<Value> {
    Ok(json!({
        "id": n.id,
        "tenant_id": n.tenant_id,
        "share_id": n.share_id,
        "folder_id": n.parent_json(),
        "name": n.name,
        "path": node_path(conn, n)?,
        "mime_type": n.mime_type,
        "size": n.size,
        "checksum_sha256": n.sha256,
        "version": n.version,
        "owner_id": n.owner_id,
        "created_by": n.created_by,
        "created_at": n.created_at,
        "modified_by": n.modified_by,
        "modified_at": n.modified_at,
        "is_deleted": n.is_deleted(),
        "vectorized_at": Value::Null,
    }))
}

pub fn node_json(conn: &Connection, n: &Node) -> ApiResult<Value> {
    if n.kind == "file" {
        file_json(conn, n)
    } else {
        folder_json(conn, n)
    }
}

/// One entry in the change log.
pub struct Change<'a> {
    pub tenant_id: &'a str,
    pub share_id: &'a str,
    pub resource_type: &'a str,
    pub resource_id: &'a str,
    pub change_type: &'a str,
    pub changed_by: &'a str,
    pub changed_at: &'a str,
    pub old_path: Option<&'a str>,
    pub new_path: Option<&'a str>,
    pub version_id: Option<&'a str>,
    pub metadata: Value,
}

pub fn record_change(conn: &Connection, c: Change<'_>) -> ApiResult<i64> {
    // Cached: a folder rename records one change per item below it.
    conn.prepare_cached(
        "INSERT INTO changes (id, tenant_id, share_id, resource_type, resource_id, change_type, \
         changed_by, changed_at, old_path, new_path, version_id, metadata) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        new_id("chg"),
        c.tenant_id,
        c.share_id,
        c.resource_type,
        c.resource_id,
        c.change_type,
        c.changed_by,
        c.changed_at,
        c.old_path,
        c.new_path,
        c.version_id,
        c.metadata.to_string(),
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Records one change for `node` with its current path as `new_path` (and `old_path`).
pub fn record_node_change(
    conn: &Connection,
    node: &Node,
    change_type: &str,
    by: &str,
    at: &str,
    old_path: Option<&str>,
    version_id: Option<&str>,
) -> ApiResult<i64> {
    let new_path = if change_type == "deleted" {
        None
    } else {
        Some(node_path(conn, node)?)
    };
    record_node_change_at(
        conn,
        node,
        (change_type, by, at),
        old_path,
        new_path.as_deref(),
        version_id,
    )
}

/// [`record_node_change`] with `new_path` given by a caller that already knows it;
/// `what` is (change type, changed by, changed at).
pub fn record_node_change_at(
    conn: &Connection,
    node: &Node,
    (change_type, by, at): (&str, &str, &str),
    old_path: Option<&str>,
    new_path: Option<&str>,
    version_id: Option<&str>,
) -> ApiResult<i64> {
    let metadata = if node.kind == "file" {
        json!({ "size": node.size, "mime_type": node.mime_type, "checksum_sha256": node.sha256,
                "version": node.version, "name": node.name, "parent_id": node.parent_json() })
    } else {
        json!({ "name": node.name, "parent_id": node.parent_json() })
    };
    record_change(
        conn,
        Change {
            tenant_id: &node.tenant_id,
            share_id: &node.share_id,
            resource_type: &node.kind,
            resource_id: &node.id,
            change_type,
            changed_by: by,
            changed_at: at,
            old_path,
            new_path,
            version_id,
            metadata,
        },
    )
}

/// Bytes used in a share: current sizes of all files not permanently deleted.
pub fn share_used_bytes(conn: &Connection, share_id: &str) -> ApiResult<i64> {
    Ok(conn.query_row(
        "SELECT COALESCE(SUM(size), 0) FROM nodes WHERE share_id = ?1 AND kind = 'file'",
        [share_id],
        |r| r.get(0),
    )?)
}

/// 507 `QUOTA_EXCEEDED` if adding `incoming` bytes would exceed the share's quota.
pub fn check_quota(conn: &Connection, share_id: &str, incoming: i64) -> ApiResult<()> {
    let quota: Option<i64> = conn.query_row(
        "SELECT quota_bytes FROM shares WHERE id = ?1",
        [share_id],
        |r| r.get(0),
    )?;
    if let Some(q) = quota {
        let used = share_used_bytes(conn, share_id)?;
        if used + incoming > q {
            return Err(ApiError::new(
                axum::http::StatusCode::INSUFFICIENT_STORAGE,
                "QUOTA_EXCEEDED",
                format!(
                    "share quota exceeded: {used} of {q} bytes used, {incoming} more requested"
                ),
            )
            .with_details(json!({ "level": "share", "limit_bytes": q, "used_bytes": used })));
        }
    }
    Ok(())
}

/// Creates a new file row (version 1) with its first version. Caller checked permissions,
/// name rules, conflicts and quota.
#[allow(clippy::too_many_arguments)]
pub fn insert_file(
    conn: &Connection,
    caller: &Caller,
    share_id: &str,
    parent_id: &str,
    name: &str,
    sha256: &str,
    size: i64,
    mime: &str,
    now: &str,
) -> ApiResult<Node> {
    let id = new_id("fil");
    conn.execute(
        "INSERT INTO nodes (id, tenant_id, share_id, parent_id, name, kind, owner_id, created_by, \
         created_at, modified_by, modified_at, size, sha256, version, mime_type) \
         VALUES (?1, ?2, ?3, ?4, ?5, 'file', ?6, ?6, ?7, ?6, ?7, ?8, ?9, 1, ?10)",
        params![
            id,
            caller.tenant_id,
            share_id,
            parent_id,
            name,
            caller.user_id,
            now,
            size,
            sha256,
            mime
        ],
    )?;
    let ver = new_id("ver");
    conn.execute(
        "INSERT INTO versions (id, file_id, version_number, size, sha256, created_by, created_at) \
         VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6)",
        params![ver, id, size, sha256, caller.user_id, now],
    )?;
    let node = get_node(conn, &id)?.ok_or_else(|| ApiError::internal("inserted file vanished"))?;
    record_node_change(
        conn,
        &node,
        "created",
        &caller.user_id,
        now,
        None,
        Some(&ver),
    )?;
    Ok(node)
}

/// Appends a new version with the given content to an existing file.
pub fn add_version(
    conn: &Connection,
    caller: &Caller,
    file: &Node,
    sha256: &str,
    size: i64,
    now: &str,
) -> ApiResult<Node> {
    let next = file.version + 1;
    let ver = new_id("ver");
    conn.execute(
        "INSERT INTO versions (id, file_id, version_number, size, sha256, created_by, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![ver, file.id, next, size, sha256, caller.user_id, now],
    )?;
    conn.execute(
        "UPDATE nodes SET version = ?2, size = ?3, sha256 = ?4, modified_by = ?5, modified_at = ?6 \
         WHERE id = ?1",
        params![file.id, next, size, sha256, caller.user_id, now],
    )?;
    let node = get_node(conn, &file.id)?.ok_or_else(|| ApiError::internal("file vanished"))?;
    let path = node_path(conn, &node)?;
    record_node_change(
        conn,
        &node,
        "updated",
        &caller.user_id,
        now,
        Some(&path),
        Some(&ver),
    )?;
    Ok(node)
}

/// Current version id of a file.
pub fn current_version_id(conn: &Connection, file: &Node) -> ApiResult<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT id FROM versions WHERE file_id = ?1 AND version_number = ?2",
            params![file.id, file.version],
            |r| r.get(0),
        )
        .optional()?)
}

pub fn now_iso(state: &super::state::AppState) -> String {
    util::iso(state.now())
}
