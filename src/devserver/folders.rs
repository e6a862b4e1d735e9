//! Folder routes (the Folders seed page): get, children (with `root` and
//! `include_deleted`), create, rename/restore, soft and permanent delete, move.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Router};
use rusqlite::{Connection, params};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult, Json, Path, Query};
use super::model::{self, CREATE, Caller, DELETE, Node, READ, WRITE};
use super::state::AppState;
use super::util::{check_name, new_id};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/folders", post(create))
        .route(
            "/api/v1/folders/{folder_id}",
            get(get_folder).patch(patch).delete(delete),
        )
        .route("/api/v1/folders/{folder_id}/children", get(children))
        .route("/api/v1/folders/{folder_id}/move", post(move_folder))
}

async fn get_folder(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    state
        .db
        .call(move |conn| {
            let n = model::load_node(conn, &caller, &id, "folder", READ, false)?;
            Ok(Json(model::folder_json(conn, &n)?))
        })
        .await
}

#[derive(Deserialize)]
struct ChildrenQuery {
    share_id: String,
    #[serde(default)]
    include_deleted: bool,
    limit: Option<usize>,
    #[serde(default)]
    offset: usize,
}

async fn children(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<ChildrenQuery>,
) -> ApiResult<Json<Value>> {
    state
        .db
        .call(move |conn| {
            let (parent_key, path) = if id == "root" {
                model::require(conn, &caller, &q.share_id, READ)?;
                (String::new(), "/".to_string())
            } else {
                let n = model::load_node(conn, &caller, &id, "folder", READ, q.include_deleted)?;
                if n.share_id != q.share_id {
                    return Err(ApiError::not_found(format!(
                        "folder {id} in share {}",
                        q.share_id
                    )));
                }
                let p = model::node_path(conn, &n)?;
                (n.id, p)
            };
            let deleted_filter = if q.include_deleted {
                ""
            } else {
                "AND deleted_at IS NULL"
            };
            let mut stmt = conn.prepare(&format!(
                "SELECT {} FROM nodes WHERE share_id = ?1 AND parent_id = ?2 {deleted_filter} \
                 ORDER BY kind DESC, name",
                model::NODE_COLS
            ))?;
            let nodes = stmt
                .query_map(params![q.share_id, parent_key], Node::from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            let total = nodes.len();
            let limit = q.limit.unwrap_or(usize::MAX);
            let items: Vec<Value> = nodes
                .iter()
                .skip(q.offset)
                .take(limit)
                .map(|n| {
                    let mut item = if n.kind == "folder" {
                        json!({ "id": n.id, "name": n.name, "type": "folder" })
                    } else {
                        json!({ "id": n.id, "name": n.name, "type": "file", "size": n.size,
                                "mime_type": n.mime_type, "modified_at": n.modified_at })
                    };
                    if q.include_deleted {
                        item["is_deleted"] = json!(n.is_deleted());
                    }
                    item
                })
                .collect();
            Ok(Json(
                json!({ "items": items, "path": path, "total": total }),
            ))
        })
        .await
}

#[derive(Deserialize)]
struct CreateBody {
    share_id: String,
    name: String,
    #[serde(default)]
    parent_id: Option<String>,
}

async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<CreateBody>,
) -> ApiResult<impl IntoResponse> {
    let now = model::now_iso(&state);
    state
        .db
        .tx(move |tx| {
            model::require(tx, &caller, &body.share_id, CREATE)?;
            check_name(&body.name)?;
            let parent = model::resolve_parent(tx, &caller, &body.share_id, body.parent_id.as_deref())?;
            model::ensure_free(tx, &body.share_id, &parent, &body.name)?;
            let id = new_id("fld");
            tx.execute(
                "INSERT INTO nodes (id, tenant_id, share_id, parent_id, name, kind, owner_id, created_by, \
                 created_at, modified_by, modified_at) VALUES (?1, ?2, ?3, ?4, ?5, 'folder', ?6, ?6, ?7, ?6, ?7)",
                params![id, caller.tenant_id, body.share_id, parent, body.name, caller.user_id, now],
            )?;
            let node = model::get_node(tx, &id)?.ok_or_else(|| ApiError::internal("folder vanished"))?;
            model::record_node_change(tx, &node, "created", &caller.user_id, &now, None, None)?;
            Ok((StatusCode::CREATED, Json(model::folder_json(tx, &node)?)))
        })
        .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    name: Option<String>,
    #[serde(default)]
    restore: bool,
}

async fn patch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Json(body): Json<PatchBody>,
) -> ApiResult<Json<Value>> {
    let now = model::now_iso(&state);
    state
        .db
        .tx(move |tx| {
            let mut node = model::load_node(tx, &caller, &id, "folder", WRITE, body.restore)?;
            if body.restore && node.is_deleted() {
                restore_tree(tx, &caller, &node, &now)?;
                node = model::get_node(tx, &id)?.ok_or_else(|| ApiError::not_found(&id))?;
            }
            if let Some(name) = body.name.filter(|n| *n != node.name) {
                check_name(&name)?;
                model::ensure_free(tx, &node.share_id, &node.parent_id, &name)?;
                rename_tree(tx, &caller, &node, &name, &now)?;
                node = model::get_node(tx, &id)?.ok_or_else(|| ApiError::not_found(&id))?;
            }
            Ok(Json(model::folder_json(tx, &node)?))
        })
        .await
}

/// Renames a folder and records `renamed` for it and for every live descendant (the
/// documented change-log behaviour).
fn rename_tree(
    conn: &Connection,
    caller: &Caller,
    node: &Node,
    name: &str,
    now: &str,
) -> ApiResult<()> {
    let old_path = model::node_path(conn, node)?;
    conn.execute(
        "UPDATE nodes SET name = ?2, modified_by = ?3, modified_at = ?4 WHERE id = ?1",
        params![node.id, name, caller.user_id, now],
    )?;
    let renamed =
        model::get_node(conn, &node.id)?.ok_or_else(|| ApiError::internal("folder vanished"))?;
    let new_path = model::node_path(conn, &renamed)?;
    model::record_node_change(
        conn,
        &renamed,
        "renamed",
        &caller.user_id,
        now,
        Some(&old_path),
        None,
    )?;
    // Descendants' paths are built top-down from the folder's (one pass over the subtree,
    // not a walk up the parent chain per item).
    let subtree = model::descendants(conn, &node.id)?;
    let by_id: HashMap<&str, &Node> = subtree.iter().map(|d| (d.id.as_str(), d)).collect();
    let mut paths: HashMap<&str, String> = HashMap::from([(node.id.as_str(), new_path.clone())]);
    for d in subtree.iter().filter(|d| !d.is_deleted()) {
        let d_new = subtree_path(d, &by_id, &mut paths)?;
        let d_old = format!("{old_path}{}", &d_new[new_path.len()..]);
        model::record_node_change_at(
            conn,
            d,
            ("renamed", &caller.user_id, now),
            Some(&d_old),
            Some(&d_new),
            None,
        )?;
    }
    Ok(())
}

/// The path of `d`, a node of a subtree whose top's path is already in `paths`; fills in
/// the paths of the folders passed on the way.
fn subtree_path<'a>(
    d: &'a Node,
    by_id: &HashMap<&str, &'a Node>,
    paths: &mut HashMap<&'a str, String>,
) -> ApiResult<String> {
    let mut chain = vec![d];
    let mut base = loop {
        let up = chain
            .last()
            .expect("chain starts non-empty")
            .parent_id
            .as_str();
        if let Some(p) = paths.get(up) {
            break p.clone();
        }
        match by_id.get(up) {
            Some(n) if chain.len() <= by_id.len() => chain.push(n),
            _ => return Err(ApiError::internal("folder outside its subtree")),
        }
    };
    for n in chain.into_iter().rev() {
        base = format!("{base}/{}", n.name);
        if n.kind == "folder" {
            paths.insert(n.id.as_str(), base.clone());
        }
    }
    Ok(base)
}

/// Restores a soft-deleted folder and what its delete took with it.
fn restore_tree(conn: &Connection, caller: &Caller, node: &Node, now: &str) -> ApiResult<()> {
    if let Some(root) = &node.deleted_root
        && *root != node.id
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "PARENT_DELETED",
            format!(
                "folder {} was deleted with its parent; restore the parent",
                node.id
            ),
        ));
    }
    if !node.parent_id.is_empty() {
        let parent = model::get_node(conn, &node.parent_id)?
            .ok_or_else(|| ApiError::not_found(&node.parent_id))?;
        if parent.is_deleted() {
            return Err(ApiError::deleted(format!("parent folder {}", parent.id)));
        }
    }
    model::ensure_free(conn, &node.share_id, &node.parent_id, &node.name)?;
    conn.execute(
        "UPDATE nodes SET deleted_at = NULL, deleted_root = NULL WHERE deleted_root = ?1",
        [&node.id],
    )?;
    let restored =
        model::get_node(conn, &node.id)?.ok_or_else(|| ApiError::internal("folder vanished"))?;
    model::record_node_change(conn, &restored, "created", &caller.user_id, now, None, None)?;
    Ok(())
}

#[derive(Deserialize)]
struct DeleteQuery {
    #[serde(default)]
    permanent: bool,
}

async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<StatusCode> {
    let now = model::now_iso(&state);
    state
        .db
        .tx(move |tx| {
            let node = model::load_node(tx, &caller, &id, "folder", DELETE, q.permanent)?;
            delete_node(tx, &caller, &node, q.permanent, &now)?;
            Ok(StatusCode::NO_CONTENT)
        })
        .await
}

/// Soft- or permanently deletes a file or folder (recursively). Runs inside the caller's
/// transaction, so a failure leaves nothing half-deleted.
pub fn delete_node(
    conn: &Connection,
    caller: &Caller,
    node: &Node,
    permanent: bool,
    now: &str,
) -> ApiResult<()> {
    let path = model::node_path(conn, node)?;
    let subtree: Vec<Node> = if node.kind == "folder" {
        model::descendants(conn, &node.id)?
    } else {
        Vec::new()
    };
    if permanent {
        for n in subtree.iter().chain(std::iter::once(node)) {
            conn.execute("DELETE FROM nodes WHERE id = ?1", [&n.id])?;
        }
    } else {
        conn.execute(
            "UPDATE nodes SET deleted_at = ?2, deleted_root = ?1 WHERE id = ?1",
            params![node.id, now],
        )?;
        for n in subtree.iter().filter(|n| !n.is_deleted()) {
            conn.execute(
                "UPDATE nodes SET deleted_at = ?2, deleted_root = ?3 WHERE id = ?1",
                params![n.id, now, node.id],
            )?;
        }
    }
    model::record_change(
        conn,
        model::Change {
            tenant_id: &node.tenant_id,
            share_id: &node.share_id,
            resource_type: &node.kind,
            resource_id: &node.id,
            change_type: "deleted",
            changed_by: &caller.user_id,
            changed_at: now,
            old_path: Some(&path),
            new_path: None,
            version_id: None,
            metadata: json!({ "permanent": permanent, "name": node.name }),
        },
    )?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveBody {
    #[serde(default, deserialize_with = "super::util::present")]
    target_parent_id: Option<Option<String>>,
    target_share_id: Option<String>,
}

async fn move_folder(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Json(body): Json<MoveBody>,
) -> ApiResult<Json<Value>> {
    if body.target_parent_id.is_none() && body.target_share_id.is_none() {
        return Err(ApiError::validation(
            &["body", "target_parent_id"],
            "target_parent_id or target_share_id is required",
        ));
    }
    let now = model::now_iso(&state);
    state
        .db
        .tx(move |tx| {
            let node = model::load_node(tx, &caller, &id, "folder", DELETE, false)?;
            let target_share = body
                .target_share_id
                .clone()
                .unwrap_or_else(|| node.share_id.clone());
            let parent_arg = body.target_parent_id.clone().flatten();
            let moved = move_node(
                tx,
                &caller,
                &node,
                &target_share,
                parent_arg.as_deref(),
                &now,
            )?;
            Ok(Json(model::folder_json(tx, &moved)?))
        })
        .await
}

/// Moves a file or folder under `target_parent` (None/"root" = share root) of
/// `target_share`; checks permissions, cycles and name conflicts. One `moved` change.
pub fn move_node(
    conn: &Connection,
    caller: &Caller,
    node: &Node,
    target_share: &str,
    target_parent: Option<&str>,
    now: &str,
) -> ApiResult<Node> {
    model::require(conn, caller, target_share, CREATE)?;
    let parent = model::resolve_parent(conn, caller, target_share, target_parent)?;
    if node.kind == "folder" && !parent.is_empty() && model::is_within(conn, &parent, &node.id)? {
        return Err(ApiError::bad_request(
            "INVALID_MOVE",
            format!(
                "cannot move folder {} into itself or its own subtree",
                node.id
            ),
        ));
    }
    if parent == node.parent_id && target_share == node.share_id {
        return Ok(node.clone());
    }
    model::ensure_free(conn, target_share, &parent, &node.name)?;
    let old_path = model::node_path(conn, node)?;
    conn.execute(
        "UPDATE nodes SET parent_id = ?2, share_id = ?3, modified_by = ?4, modified_at = ?5 WHERE id = ?1",
        params![node.id, parent, target_share, caller.user_id, now],
    )?;
    if target_share != node.share_id {
        if node.kind == "folder" {
            for d in model::descendants(conn, &node.id)? {
                conn.execute(
                    "UPDATE nodes SET share_id = ?2 WHERE id = ?1",
                    params![d.id, target_share],
                )?;
            }
        }
        // Clients syncing the source share learn that the subtree left it.
        model::record_change(
            conn,
            model::Change {
                tenant_id: &node.tenant_id,
                share_id: &node.share_id,
                resource_type: &node.kind,
                resource_id: &node.id,
                change_type: "deleted",
                changed_by: &caller.user_id,
                changed_at: now,
                old_path: Some(&old_path),
                new_path: None,
                version_id: None,
                metadata: json!({ "moved_to_share": target_share }),
            },
        )?;
    }
    let moved = model::get_node(conn, &node.id)?
        .ok_or_else(|| ApiError::internal("moved item vanished"))?;
    model::record_node_change(
        conn,
        &moved,
        "moved",
        &caller.user_id,
        now,
        Some(&old_path),
        None,
    )?;
    Ok(moved)
}
