//! Sync protocol (`scaidrive-api.md` §12): the change log behind `/sync/changes`, cursor
//! paging, per-device cursors (`/sync/status`, `/sync/cursor`), devices and conflicts.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::Harness;
use crate::links::put_file;

/// The current head: `/sync/changes` without a cursor.
async fn head(h: &Harness) -> i64 {
    let r = h
        .get(&format!("/sync/changes?share_id={}", h.share))
        .await
        .expect(200);
    assert_eq!(r.json["changes"], json!([]), "no cursor means no changes");
    assert_eq!(r.json["has_more"], false);
    r.json["cursor"].as_i64().expect("cursor is a JSON number")
}

/// Every change after `cursor` (one call, big limit) and the new cursor.
async fn changes_since(h: &Harness, cursor: i64) -> (Vec<Value>, i64) {
    let r = h
        .get(&format!(
            "/sync/changes?share_id={}&cursor={cursor}&limit=5000",
            h.share
        ))
        .await
        .expect(200);
    assert_eq!(r.json["has_more"], false);
    assert_eq!(r.json["share_id"], json!(h.share));
    (
        r.json["changes"].as_array().expect("changes array").clone(),
        r.json["cursor"].as_i64().expect("numeric cursor"),
    )
}

/// (change_type, resource_id, old_path, new_path) of each change.
fn summary(changes: &[Value]) -> Vec<(String, String, Value, Value)> {
    changes
        .iter()
        .map(|c| {
            (
                c["change_type"].as_str().unwrap_or_default().to_string(),
                c["resource_id"].as_str().unwrap_or_default().to_string(),
                c["old_path"].clone(),
                c["new_path"].clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_mutation_appends_the_documented_changes() {
    let h = Harness::start().await;
    let info = h.admin(Method::GET, "/info", Value::Null).await;
    let c0 = head(&h).await;

    let a = h.mkdir(None, "A").await;
    let (created, c1) = changes_since(&h, c0).await;
    assert_eq!(created.len(), 1);
    let c = &created[0];
    let keys: BTreeSet<&str> = c
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let documented: BTreeSet<&str> = [
        "id",
        "tenant_id",
        "share_id",
        "resource_type",
        "resource_id",
        "change_type",
        "changed_by",
        "changed_at",
        "old_path",
        "new_path",
        "version_id",
        "metadata",
    ]
    .into();
    assert_eq!(keys, documented);
    assert!(c["id"].as_str().is_some_and(|id| id.starts_with("chg_")));
    assert_eq!(c["tenant_id"], info["tenant_id"]);
    assert_eq!(c["share_id"], json!(h.share));
    assert_eq!(c["resource_type"], "folder");
    assert_eq!(c["resource_id"], json!(a));
    assert_eq!(c["change_type"], "created");
    assert_eq!(c["changed_by"], info["user_id"]);
    assert!(c["changed_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert_eq!(c["old_path"], Value::Null);
    assert_eq!(c["new_path"], "/A");
    assert!(c["metadata"].is_object());
    assert!(c1 > c0);

    let b = h.mkdir(Some(&a), "B").await;
    let cc = h.mkdir(Some(&b), "C").await;
    let f = put_file(&h, Some(&b), "f.txt", b"12345").await;
    let (made, c2) = changes_since(&h, c1).await;
    assert_eq!(
        summary(&made),
        vec![
            ("created".into(), b.clone(), Value::Null, json!("/A/B")),
            ("created".into(), cc.clone(), Value::Null, json!("/A/B/C")),
            (
                "created".into(),
                f.clone(),
                Value::Null,
                json!("/A/B/f.txt")
            ),
        ]
    );
    assert_eq!(made[2]["resource_type"], "file");
    assert_eq!(made[2]["metadata"]["size"], 5);
    assert!(
        made[2]["version_id"]
            .as_str()
            .is_some_and(|v| v.starts_with("ver_"))
    );

    // Renaming a folder emits `renamed` for it and for each live descendant.
    h.patch(&format!("/folders/{a}"), json!({ "name": "A2" }))
        .await
        .expect(200);
    let (renamed, c3) = changes_since(&h, c2).await;
    let mut got = summary(&renamed);
    assert_eq!(
        got[0],
        ("renamed".into(), a.clone(), json!("/A"), json!("/A2")),
        "the folder itself first"
    );
    got.sort_by(|x, y| x.1.cmp(&y.1));
    let mut want = vec![
        ("renamed".to_string(), a.clone(), json!("/A"), json!("/A2")),
        (
            "renamed".to_string(),
            b.clone(),
            json!("/A/B"),
            json!("/A2/B"),
        ),
        (
            "renamed".to_string(),
            cc.clone(),
            json!("/A/B/C"),
            json!("/A2/B/C"),
        ),
        (
            "renamed".to_string(),
            f.clone(),
            json!("/A/B/f.txt"),
            json!("/A2/B/f.txt"),
        ),
    ];
    want.sort_by(|x, y| x.1.cmp(&y.1));
    assert_eq!(got, want);

    // A move is one `moved` entry.
    h.post(
        &format!("/folders/{cc}/move"),
        json!({ "target_parent_id": a }),
    )
    .await
    .expect(200);
    let (moved, c4) = changes_since(&h, c3).await;
    assert_eq!(
        summary(&moved),
        vec![("moved".into(), cc.clone(), json!("/A2/B/C"), json!("/A2/C"))]
    );

    // A (recursive) delete is one `deleted` entry for the folder.
    h.delete(&format!("/folders/{b}")).await.expect(204);
    let (deleted, c5) = changes_since(&h, c4).await;
    assert_eq!(
        summary(&deleted),
        vec![("deleted".into(), b.clone(), json!("/A2/B"), Value::Null)]
    );

    // Reading the feed is not a mutation.
    let (nothing, c6) = changes_since(&h, c5).await;
    assert!(nothing.is_empty());
    assert_eq!(c6, c5);
    assert_eq!(head(&h).await, c5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_paging_with_limit_and_has_more() {
    let h = Harness::start().await;
    let c0 = head(&h).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(h.mkdir(None, &format!("F{i}")).await);
    }
    let mut cursor = c0;
    let mut seen = Vec::new();
    let mut pages = Vec::new();
    loop {
        let r = h
            .get(&format!(
                "/sync/changes?share_id={}&cursor={cursor}&limit=2",
                h.share
            ))
            .await
            .expect(200);
        let batch = r.json["changes"].as_array().expect("changes").clone();
        let next = r.json["cursor"].as_i64().expect("numeric cursor");
        pages.push((batch.len(), r.json["has_more"].as_bool().expect("has_more")));
        seen.extend(
            batch
                .iter()
                .map(|c| c["resource_id"].as_str().unwrap_or_default().to_string()),
        );
        if batch.is_empty() {
            assert_eq!(next, cursor, "no changes: the cursor stays");
        } else {
            assert!(next > cursor);
        }
        cursor = next;
        if !r.json["has_more"].as_bool().unwrap_or(false) {
            break;
        }
    }
    assert_eq!(pages, vec![(2, true), (2, true), (1, false)]);
    assert_eq!(seen, ids, "ascending, each change once");
    assert_eq!(cursor, head(&h).await);

    for bad in ["limit=0", "limit=5001", "limit=ten"] {
        h.get(&format!(
            "/sync/changes?share_id={}&cursor={c0}&{bad}",
            h.share
        ))
        .await
        .expect_err(422, "VALIDATION_ERROR");
    }
    for bad in ["abc", "1.5", "-1", ""] {
        let r = h
            .get(&format!("/sync/changes?share_id={}&cursor={bad}", h.share))
            .await;
        assert_eq!(
            r.status,
            400,
            "cursor {bad:?}: {}",
            String::from_utf8_lossy(&r.bytes)
        );
    }
    h.get("/sync/changes")
        .await
        .expect_err(422, "VALIDATION_ERROR");
    h.get("/sync/changes?share_id=shr_unknown&cursor=0")
        .await
        .expect_err(404, "NOT_FOUND");
    let full = h
        .get(&format!("/sync/changes?share_id={}&cursor=0", h.share))
        .await
        .expect(200);
    assert_eq!(
        full.json["changes"].as_array().map(Vec::len),
        Some(5),
        "default limit covers the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn omitted_cursor_starts_at_head_and_shares_are_isolated() {
    let h = Harness::start().await;
    h.mkdir(None, "Before").await;
    let start = head(&h).await;
    assert!(start > 0);
    let other = h
        .admin(Method::POST, "/shares", json!({ "name": "Other" }))
        .await;
    let other_id = other["id"].as_str().expect("share id").to_string();
    h.post(
        "/folders",
        json!({ "share_id": other_id, "name": "Elsewhere" }),
    )
    .await
    .expect(201);
    let after = h.mkdir(None, "After").await;
    let (changes, _) = changes_since(&h, start).await;
    let ids: Vec<&str> = changes
        .iter()
        .map(|c| c["resource_id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        ids,
        vec![after.as_str()],
        "only this share's change after the head"
    );
    let r = h
        .get(&format!("/sync/changes?share_id={other_id}&cursor=0"))
        .await
        .expect(200);
    assert_eq!(r.json["share_id"], json!(other_id));
    assert_eq!(r.json["changes"][0]["new_path"], "/Elsewhere");
    assert_eq!(r.json["changes"].as_array().map(Vec::len), Some(1));
    // A reader may follow the feed.
    let (_, reader) = h.user_with_role("reader").await;
    h.as_token(&reader)
        .get(&format!(
            "/sync/changes?share_id={}&cursor={start}",
            h.share
        ))
        .await
        .expect(200);
    h.as_token(&reader)
        .get(&format!("/sync/changes?share_id={other_id}&cursor=0"))
        .await
        .expect_err(404, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_cursor_round_trip() {
    let h = Harness::start().await;
    h.mkdir(None, "Existing").await;
    let head0 = head(&h).await;
    let status_path = format!("/sync/status?share_id={}&device_id=dev_laptop", h.share);

    let st = h.get(&status_path).await.expect(200);
    assert_eq!(
        st.json,
        json!({ "cursor_position": head0, "last_sync_at": null, "pending_changes": 0, "has_conflicts": false })
    );
    h.mkdir(None, "New1").await;
    h.mkdir(None, "New2").await;
    let st = h.get(&status_path).await.expect(200);
    assert_eq!(
        st.json["cursor_position"], head0,
        "the stored cursor does not move by itself"
    );
    assert_eq!(st.json["pending_changes"], 2);

    let (_, head1) = changes_since(&h, head0).await;
    let set = h
        .send(h.req(
            Method::POST,
            &format!(
                "/sync/cursor?share_id={}&device_id=dev_laptop&position={head1}",
                h.share
            ),
        ))
        .await
        .expect(200);
    assert_eq!(set.json["cursor_position"], head1);
    let synced_at = set.json["last_sync_at"]
        .as_str()
        .expect("last_sync_at")
        .to_string();
    let st = h.get(&status_path).await.expect(200);
    assert_eq!(
        st.json,
        json!({ "cursor_position": head1, "last_sync_at": synced_at, "pending_changes": 0, "has_conflicts": false })
    );

    // Cursors are per device: a new device starts at the current head.
    let other = h
        .get(&format!(
            "/sync/status?share_id={}&device_id=dev_phone",
            h.share
        ))
        .await
        .expect(200);
    assert_eq!(other.json["cursor_position"], head1);
    // ... and per user.
    let (_, reader) = h.user_with_role("reader").await;
    let theirs = h.as_token(&reader).get(&status_path).await.expect(200);
    assert_eq!(theirs.json["last_sync_at"], Value::Null);

    let post = |q: String| h.send(h.req(Method::POST, &format!("/sync/cursor?{q}")));
    post(format!("share_id={}&device_id=dev_laptop", h.share))
        .await
        .expect_err(422, "VALIDATION_ERROR");
    post(format!(
        "share_id={}&device_id=dev_laptop&position=x",
        h.share
    ))
    .await
    .expect_err(422, "VALIDATION_ERROR");
    post(format!(
        "share_id={}&device_id=dev_laptop&position={}",
        h.share,
        head1 + 100
    ))
    .await
    .expect(400);
    post(format!(
        "share_id=shr_unknown&device_id=dev_laptop&position={head1}"
    ))
    .await
    .expect_err(404, "NOT_FOUND");
    h.get(&format!("/sync/status?share_id={}", h.share))
        .await
        .expect_err(422, "VALIDATION_ERROR");
    h.get("/sync/status?device_id=dev_laptop")
        .await
        .expect_err(422, "VALIDATION_ERROR");
    // Rewinding is allowed: the client replays from there.
    post(format!(
        "share_id={}&device_id=dev_laptop&position={head0}",
        h.share
    ))
    .await
    .expect(200);
    assert_eq!(
        h.get(&status_path).await.expect(200).json["pending_changes"],
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_register_update_and_list() {
    let h = Harness::start().await;
    assert_eq!(h.get("/sync/devices").await.expect(200).json, json!([]));
    let body = json!({ "device_id": "dev_01J3KX", "device_name": "Laptop", "platform": "linux", "client_version": "0.1.0" });
    let created = h.post("/sync/devices", body).await.expect(201);
    assert_eq!(created.json["device_id"], "dev_01J3KX");
    assert_eq!(created.json["device_name"], "Laptop");
    assert_eq!(created.json["platform"], "linux");
    assert_eq!(created.json["client_version"], "0.1.0");
    let created_at = created.json["created_at"].clone();
    assert!(created_at.as_str().is_some_and(|t| t.ends_with('Z')));

    h.admin(Method::POST, "/clock", json!({ "advance_secs": 120 }))
        .await;
    let again = json!({ "device_id": "dev_01J3KX", "device_name": "Laptop (renamed)", "platform": "linux", "client_version": "0.2.0" });
    let updated = h.post("/sync/devices", again).await.expect(200);
    assert_eq!(updated.json["device_name"], "Laptop (renamed)");
    assert_eq!(updated.json["client_version"], "0.2.0");
    assert_eq!(
        updated.json["created_at"], created_at,
        "re-registering keeps the creation time"
    );
    assert_ne!(updated.json["last_seen_at"], created_at);

    let list = h.get("/sync/devices").await.expect(200);
    let list = list.json.as_array().expect("devices array").clone();
    assert_eq!(list.len(), 1);
    let keys: BTreeSet<&str> = list[0]
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "device_id",
            "device_name",
            "platform",
            "client_version",
            "created_at",
            "last_seen_at"
        ])
    );
    assert_eq!(list[0]["device_name"], "Laptop (renamed)");

    let (_, reader) = h.user_with_role("reader").await;
    assert_eq!(
        h.as_token(&reader)
            .get("/sync/devices")
            .await
            .expect(200)
            .json,
        json!([])
    );
    h.post("/sync/devices", json!({ "device_name": "no id" }))
        .await
        .expect_err(422, "VALIDATION_ERROR");
    h.post("/sync/devices", json!({ "device_id": "" }))
        .await
        .expect_err(422, "VALIDATION_ERROR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_list_is_an_empty_array() {
    let h = Harness::start().await;
    let r = h
        .get(&format!(
            "/sync/conflicts?share_id={}&device_id=dev_x",
            h.share
        ))
        .await
        .expect(200);
    assert_eq!(r.json, json!([]));
    let r = h
        .get(&format!(
            "/sync/conflicts?share_id={}&device_id=dev_x&include_resolved=true",
            h.share
        ))
        .await;
    assert_eq!(r.expect(200).json, json!([]));
    h.get("/sync/conflicts?device_id=dev_x")
        .await
        .expect_err(422, "VALIDATION_ERROR");
    h.get("/sync/conflicts?share_id=shr_unknown&device_id=dev_x")
        .await
        .expect_err(404, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_devices_and_links_survive_a_restart() {
    let mut h = Harness::start().await;
    let folder = h.mkdir(None, "Kept").await;
    let device = json!({ "device_id": "dev_keep", "device_name": "Box", "platform": "linux", "client_version": "1" });
    h.post("/sync/devices", device).await.expect(201);
    let position = head(&h).await;
    let q = format!("share_id={}&device_id=dev_keep", h.share);
    h.send(h.req(
        Method::POST,
        &format!("/sync/cursor?{q}&position={position}"),
    ))
    .await
    .expect(200);
    let link = h
        .post(
            "/external/links",
            json!({ "resource_type": "folder", "resource_id": folder, "share_id": h.share,
                    "link_type": "VIEW", "password": "pw" }),
        )
        .await
        .expect(201);
    let token = link.json["token"].as_str().expect("token").to_string();
    let viewed = h
        .http
        .get(link.json["url"].as_str().expect("url"))
        .header("X-Link-Password", "pw");
    h.send(viewed).await.expect(200);

    h.restart().await;
    let st = h.get(&format!("/sync/status?{q}")).await.expect(200);
    assert_eq!(st.json["cursor_position"], position);
    assert!(st.json["last_sync_at"].is_string());
    let devices = h.get("/sync/devices").await.expect(200);
    assert_eq!(devices.json[0]["device_id"], "dev_keep");
    let after = h
        .get(&format!("/external/links/{}", link.id()))
        .await
        .expect(200);
    assert_eq!(after.json["view_count"], 1);
    assert_eq!(after.json["password_required"], true);
    // The URL follows the server's current base; the token stays.
    assert_eq!(after.json["url"], json!(format!("{}/share/{token}", h.url)));
    let url = format!("{}/share/{token}", h.url);
    h.send(h.http.get(&url))
        .await
        .expect_err(401, "LINK_PASSWORD_REQUIRED");
    h.send(h.http.get(&url).header("X-Link-Password", "pw"))
        .await
        .expect(200);
    let log = h
        .get(&format!("/external/links/{}/sessions", link.id()))
        .await
        .expect(200);
    assert_eq!(log.json["total"], 2);
}
