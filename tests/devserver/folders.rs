//! Folders, from the Folders seed page: metadata shape, children (incl. `root` and
//! `include_deleted`), create with `NAME_CONFLICT` / `INVALID_PATH`, rename, soft and
//! permanent delete (recursive, atomic), move (`target_parent_id` / `target_share_id`,
//! never into its own subtree).

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::Harness;

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
    k.sort();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_returns_documented_folder_shape() {
    let h = Harness::start().await;
    let r = h
        .post(
            "/folders",
            json!({ "share_id": h.share, "name": "Engineering" }),
        )
        .await
        .expect(201);
    let f = &r.json;
    for k in [
        "id",
        "name",
        "share_id",
        "parent_id",
        "path",
        "owner_id",
        "created_by",
        "created_at",
        "modified_at",
    ] {
        assert!(f.get(k).is_some(), "folder object lacks {k}: {f}");
    }
    assert!(f["id"].as_str().unwrap().starts_with("fld_"));
    assert_eq!(
        f["parent_id"],
        Value::Null,
        "root-level folder has parent_id null"
    );
    assert_eq!(f["path"], "/Engineering");
    assert_eq!(f["share_id"], h.share.as_str());
    assert!(f["created_at"].as_str().unwrap().ends_with('Z'));

    let sub = h.mkdir(Some(&r.id()), "Specs").await;
    let got = h.get(&format!("/folders/{sub}")).await.expect(200);
    assert_eq!(got.json["path"], "/Engineering/Specs");
    assert_eq!(got.json["parent_id"], r.id().as_str());
    assert_eq!(
        keys(&got.json),
        keys(f),
        "GET and POST return the same object shape"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_name_sibling_is_name_conflict() {
    let h = Harness::start().await;
    let a = h.mkdir(None, "Drafts").await;
    h.post("/folders", json!({ "share_id": h.share, "name": "Drafts" }))
        .await
        .expect_err(409, "NAME_CONFLICT");
    // Explicit null parent is the root as well.
    h.post(
        "/folders",
        json!({ "share_id": h.share, "name": "Drafts", "parent_id": null }),
    )
    .await
    .expect_err(409, "NAME_CONFLICT");
    // Same name in another parent is fine; names are case-sensitive.
    h.mkdir(Some(&a), "Drafts").await;
    h.mkdir(None, "drafts").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_names_are_invalid_path() {
    let h = Harness::start().await;
    for bad in ["a/b", "nul\u{0}x", " lead", "trail ", "", ".", ".."] {
        h.post("/folders", json!({ "share_id": h.share, "name": bad }))
            .await
            .expect_err(400, "INVALID_PATH");
    }
    // Schema failures are 422 in FastAPI's shape.
    let r = h
        .post("/folders", json!({ "share_id": h.share }))
        .await
        .expect_err(422, "VALIDATION_ERROR");
    assert!(r.json["error"]["details"][0]["loc"].is_array());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_lists_mixed_items_and_root() {
    let h = Harness::start().await;
    let eng = h.mkdir(None, "Engineering").await;
    let specs = h.mkdir(Some(&eng), "Specs").await;
    h.mkdir(Some(&eng), "Archive").await;
    h.mkdir(Some(&specs), "Deep").await;

    let r = h
        .get(&format!("/folders/{eng}/children?share_id={}", h.share))
        .await
        .expect(200);
    assert_eq!(r.json["path"], "/Engineering");
    assert_eq!(r.json["total"], 2);
    let items = r.json["items"].as_array().unwrap();
    let names: Vec<&str> = items.iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Archive", "Specs"]);
    for i in items {
        assert_eq!(i["type"], "folder");
        assert_eq!(
            keys(i),
            ["id", "name", "type"],
            "folder items carry id, name, type"
        );
    }

    let root = h
        .get(&format!("/folders/root/children?share_id={}", h.share))
        .await
        .expect(200);
    assert_eq!(root.json["total"], 1);
    assert_eq!(root.json["items"][0]["id"], eng.as_str());

    // share_id is required.
    h.get(&format!("/folders/{eng}/children"))
        .await
        .expect_err(422, "VALIDATION_ERROR");
    // A folder listed under the wrong share is not found.
    h.get(&format!("/folders/{eng}/children?share_id=shr_nope"))
        .await
        .expect_err(404, "NOT_FOUND");
    h.get("/folders/fld_missing")
        .await
        .expect_err(404, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_recomputes_descendant_paths() {
    let h = Harness::start().await;
    let a = h.mkdir(None, "A").await;
    let b = h.mkdir(Some(&a), "B").await;
    let r = h
        .patch(&format!("/folders/{a}"), json!({ "name": "Approved" }))
        .await
        .expect(200);
    assert_eq!(r.json["name"], "Approved");
    assert_eq!(r.json["path"], "/Approved");
    assert_eq!(
        h.get(&format!("/folders/{b}")).await.expect(200).json["path"],
        "/Approved/B"
    );
    // Renaming onto a sibling's name conflicts; invalid names are rejected.
    h.mkdir(None, "Other").await;
    h.patch(&format!("/folders/{a}"), json!({ "name": "Other" }))
        .await
        .expect_err(409, "NAME_CONFLICT");
    h.patch(&format!("/folders/{a}"), json!({ "name": "x/y" }))
        .await
        .expect_err(400, "INVALID_PATH");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_delete_is_recursive_and_visible_with_include_deleted() {
    let h = Harness::start().await;
    let top = h.mkdir(None, "Top").await;
    let child = h.mkdir(Some(&top), "Child").await;
    let grandchild = h.mkdir(Some(&child), "Grandchild").await;

    let r = h.delete(&format!("/folders/{top}")).await;
    assert_eq!(r.status, 204);
    for id in [&top, &child, &grandchild] {
        h.get(&format!("/folders/{id}"))
            .await
            .expect_err(410, "RESOURCE_DELETED");
    }
    // Deleting again is 410; the name is free again.
    h.delete(&format!("/folders/{top}"))
        .await
        .expect_err(410, "RESOURCE_DELETED");
    let root = h
        .get(&format!("/folders/root/children?share_id={}", h.share))
        .await
        .expect(200);
    assert_eq!(root.json["total"], 0);
    let with_deleted = h
        .get(&format!(
            "/folders/root/children?share_id={}&include_deleted=true",
            h.share
        ))
        .await
        .expect(200);
    assert_eq!(with_deleted.json["total"], 1);
    assert_eq!(with_deleted.json["items"][0]["is_deleted"], true);
    h.mkdir(None, "Top").await;

    // Trash listing of a deleted folder works with include_deleted.
    let inside = h
        .get(&format!(
            "/folders/{top}/children?share_id={}&include_deleted=true",
            h.share
        ))
        .await
        .expect(200);
    assert_eq!(inside.json["items"][0]["id"], child.as_str());
    h.get(&format!("/folders/{top}/children?share_id={}", h.share))
        .await
        .expect_err(410, "RESOURCE_DELETED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_brings_back_what_the_delete_took() {
    let h = Harness::start().await;
    let top = h.mkdir(None, "Top").await;
    let child = h.mkdir(Some(&top), "Child").await;
    h.delete(&format!("/folders/{top}")).await.expect(204);
    // A child deleted with its parent cannot be restored on its own.
    h.patch(&format!("/folders/{child}"), json!({ "restore": true }))
        .await
        .expect(409);
    let r = h
        .patch(&format!("/folders/{top}"), json!({ "restore": true }))
        .await
        .expect(200);
    assert_eq!(r.json["is_deleted"], false);
    assert_eq!(
        h.get(&format!("/folders/{child}")).await.expect(200).json["path"],
        "/Top/Child"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_delete_removes_the_subtree() {
    let h = Harness::start().await;
    let top = h.mkdir(None, "Top").await;
    let child = h.mkdir(Some(&top), "Child").await;
    h.delete(&format!("/folders/{top}?permanent=true"))
        .await
        .expect(204);
    h.get(&format!("/folders/{top}"))
        .await
        .expect_err(404, "NOT_FOUND");
    h.get(&format!("/folders/{child}"))
        .await
        .expect_err(404, "NOT_FOUND");
    let with_deleted = h
        .get(&format!(
            "/folders/root/children?share_id={}&include_deleted=true",
            h.share
        ))
        .await
        .expect(200);
    assert_eq!(with_deleted.json["total"], 0);

    // Permanent delete also purges an item already in the trash.
    let t = h.mkdir(None, "Trash me").await;
    h.delete(&format!("/folders/{t}")).await.expect(204);
    h.delete(&format!("/folders/{t}?permanent=true"))
        .await
        .expect(204);
    h.get(&format!("/folders/{t}"))
        .await
        .expect_err(404, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_within_share_and_guard_against_cycles() {
    let h = Harness::start().await;
    let a = h.mkdir(None, "A").await;
    let b = h.mkdir(None, "B").await;
    let a_sub = h.mkdir(Some(&a), "Sub").await;

    let r = h
        .post(
            &format!("/folders/{a}/move"),
            json!({ "target_parent_id": b }),
        )
        .await
        .expect(200);
    assert_eq!(r.json["parent_id"], b.as_str());
    assert_eq!(r.json["path"], "/B/A");
    assert_eq!(
        h.get(&format!("/folders/{a_sub}")).await.expect(200).json["path"],
        "/B/A/Sub"
    );

    // Into itself or its own subtree: refused.
    h.post(
        &format!("/folders/{b}/move"),
        json!({ "target_parent_id": a_sub }),
    )
    .await
    .expect_err(400, "INVALID_MOVE");
    h.post(
        &format!("/folders/{b}/move"),
        json!({ "target_parent_id": b }),
    )
    .await
    .expect_err(400, "INVALID_MOVE");

    // Back to the root with an explicit null; a name clash at the target is a conflict.
    h.post(
        &format!("/folders/{a}/move"),
        json!({ "target_parent_id": null }),
    )
    .await
    .expect(200);
    let clash = h.mkdir(Some(&b), "A").await;
    h.post(
        &format!("/folders/{a}/move"),
        json!({ "target_parent_id": b }),
    )
    .await
    .expect_err(409, "NAME_CONFLICT");
    h.delete(&format!("/folders/{clash}")).await.expect(204);

    // No target at all is a schema error; a missing target is not found.
    h.post(&format!("/folders/{a}/move"), json!({}))
        .await
        .expect_err(422, "VALIDATION_ERROR");
    h.post(
        &format!("/folders/{a}/move"),
        json!({ "target_parent_id": "fld_missing" }),
    )
    .await
    .expect_err(404, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_to_another_share() {
    let h = Harness::start().await;
    let other = h
        .admin(Method::POST, "/shares", json!({ "name": "Other" }))
        .await;
    let other_id = other["id"].as_str().unwrap().to_string();
    let a = h.mkdir(None, "A").await;
    let sub = h.mkdir(Some(&a), "Sub").await;
    let r = h
        .post(
            &format!("/folders/{a}/move"),
            json!({ "target_share_id": other_id }),
        )
        .await
        .expect(200);
    assert_eq!(r.json["share_id"], other_id.as_str());
    assert_eq!(r.json["parent_id"], Value::Null);
    let s = h.get(&format!("/folders/{sub}")).await.expect(200);
    assert_eq!(
        s.json["share_id"],
        other_id.as_str(),
        "descendants move with the folder"
    );
    let root = h
        .get(&format!("/folders/root/children?share_id={}", h.share))
        .await
        .expect(200);
    assert_eq!(root.json["total"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_follow_roles() {
    let h = Harness::start().await;
    let a = h.mkdir(None, "A").await;
    let (_, reader) = h.user_with_role("reader").await;
    let r = h.as_token(&reader);
    // A reader can read but not create, rename, delete or move.
    r.get(&format!("/folders/{a}")).await.expect(200);
    r.get(&format!("/folders/root/children?share_id={}", h.share))
        .await
        .expect(200);
    r.post("/folders", json!({ "share_id": h.share, "name": "X" }))
        .await
        .expect_err(403, "AUTHZ_PERMISSION_DENIED");
    r.patch(&format!("/folders/{a}"), json!({ "name": "Y" }))
        .await
        .expect_err(403, "AUTHZ_PERMISSION_DENIED");
    r.delete(&format!("/folders/{a}"))
        .await
        .expect_err(403, "AUTHZ_PERMISSION_DENIED");

    // A user without any role cannot even see the share: 404, not 403.
    let stranger = h
        .admin(Method::POST, "/users", json!({ "name": "stranger" }))
        .await;
    let tok = h
        .admin(
            Method::POST,
            "/tokens",
            json!({ "user_id": stranger["id"] }),
        )
        .await;
    let s = h.as_token(tok["access_token"].as_str().unwrap());
    s.get(&format!("/folders/{a}"))
        .await
        .expect_err(404, "NOT_FOUND");
    s.post("/folders", json!({ "share_id": h.share, "name": "X" }))
        .await
        .expect_err(404, "NOT_FOUND");

    // A contributor can create, rename and delete.
    let (_, contrib) = h.user_with_role("contributor").await;
    let c = h.as_token(&contrib);
    let x = c
        .post("/folders", json!({ "share_id": h.share, "name": "X" }))
        .await
        .expect(201)
        .id();
    c.patch(&format!("/folders/{x}"), json!({ "name": "X2" }))
        .await
        .expect(200);
    c.delete(&format!("/folders/{x}")).await.expect(204);

    // A read-only token scope cannot write even with a writing role.
    let scoped = h
        .admin(Method::POST, "/tokens", json!({ "scopes": "files:read" }))
        .await;
    let ro = h.as_token(scoped["access_token"].as_str().unwrap());
    ro.get(&format!("/folders/{a}")).await.expect(200);
    ro.post("/folders", json!({ "share_id": h.share, "name": "Z" }))
        .await
        .expect_err(403, "AUTHZ_PERMISSION_DENIED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_of_one_name_yield_one_folder() {
    let h = Harness::start().await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let rb = h
            .req(Method::POST, "/folders")
            .json(&json!({ "share_id": h.share, "name": "Same" }));
        tasks.push(tokio::spawn(async move {
            rb.send().await.map(|r| r.status().as_u16())
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap().unwrap());
    }
    statuses.sort();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        9,
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folders_survive_a_restart() {
    let mut h = Harness::start().await;
    let a = h.mkdir(None, "Persistent").await;
    let b = h.mkdir(Some(&a), "Inner").await;
    h.restart().await;
    assert_eq!(
        h.get(&format!("/folders/{b}")).await.expect(200).json["path"],
        "/Persistent/Inner"
    );
    h.post(
        "/folders",
        json!({ "share_id": h.share, "name": "Persistent" }),
    )
    .await
    .expect_err(409, "NAME_CONFLICT");
}
