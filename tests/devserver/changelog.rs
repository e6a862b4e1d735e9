//! Change-log fidelity (`scaidrive-api.md` §12.1–12.4 and the Folders seed): every mutation
//! appends exactly one row per documented rule, with the right `change_type`, paths,
//! `changed_by` and `version_id`; no-ops and refused requests append nothing; folder
//! renames emit `renamed` for every live descendant; `has_more` paging yields each row
//! once; cursors are kept per (share, device) and `pending_changes` counts the share's
//! rows after the cursor; a truncated log refuses older cursors (410 `CURSOR_EXPIRED`).

use reqwest::Method;
use serde_json::{Value, json};

use crate::files::{put_version, sha};
use crate::harness::Harness;
use crate::links::put_file;

/// The current head (no cursor: start at "now").
async fn head(h: &Harness) -> i64 {
    h.get(&format!("/sync/changes?share_id={}", h.share))
        .await
        .expect(200)
        .json["cursor"]
        .as_i64()
        .expect("numeric cursor")
}

/// Every change of `share` after `cursor`, paging with `limit`; returns the rows, the
/// final cursor and the number of pages read.
async fn follow(h: &Harness, share: &str, cursor: i64, limit: u32) -> (Vec<Value>, i64, usize) {
    let (mut rows, mut cursor, mut pages) = (Vec::new(), cursor, 0);
    loop {
        let r = h
            .get(&format!(
                "/sync/changes?share_id={share}&cursor={cursor}&limit={limit}"
            ))
            .await
            .expect(200);
        pages += 1;
        let batch = r.json["changes"].as_array().expect("changes").clone();
        assert!(batch.len() <= limit as usize);
        rows.extend(batch);
        cursor = r.json["cursor"].as_i64().expect("numeric cursor");
        if !r.json["has_more"].as_bool().expect("has_more") {
            return (rows, cursor, pages);
        }
    }
}

/// The rows appended by one step: reads after `*at` and moves `*at` on.
async fn step(h: &Harness, at: &mut i64) -> Vec<Value> {
    let (rows, next, _) = follow(h, &h.share, *at, 5000).await;
    *at = next;
    rows
}

/// (change_type, resource_id, old_path, new_path).
fn row(c: &Value) -> (String, String, Value, Value) {
    (
        c["change_type"].as_str().unwrap_or_default().into(),
        c["resource_id"].as_str().unwrap_or_default().into(),
        c["old_path"].clone(),
        c["new_path"].clone(),
    )
}

fn expect_row(c: &Value, kind: &str, id: &str, old: Value, new: Value) {
    assert_eq!(row(c), (kind.into(), id.into(), old, new), "{c}");
}

/// The id of version `n` of a file, from its documented version list.
async fn version_id(h: &Harness, file: &str, n: i64) -> String {
    let v = h.get(&format!("/files/{file}/versions")).await.expect(200);
    v.json["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .find(|v| v["version_number"] == n)
        .and_then(|v| v["id"].as_str())
        .unwrap_or_else(|| panic!("no version {n} in {}", v.json))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_mutations_append_one_row_each_with_their_version() {
    let h = Harness::start().await;
    let me = h.admin(Method::GET, "/info", Value::Null).await["user_id"].clone();
    let (colleague, ctoken) = h.user_with_role("contributor").await;
    let a = h.mkdir(None, "A").await;
    let b = h.mkdir(None, "B").await;
    let mut at = head(&h).await;

    let f = put_file(&h, Some(&a), "doc.txt", b"one").await;
    let rows = step(&h, &mut at).await;
    assert_eq!(rows.len(), 1);
    expect_row(&rows[0], "created", &f, Value::Null, json!("/A/doc.txt"));
    assert_eq!(rows[0]["resource_type"], "file");
    assert_eq!(rows[0]["changed_by"], me);
    assert_eq!(rows[0]["version_id"], json!(version_id(&h, &f, 1).await));
    assert_eq!(rows[0]["metadata"]["checksum_sha256"], json!(sha(b"one")));
    assert_eq!(rows[0]["metadata"]["size"], 3);

    // Rename (PATCH name), by the colleague: `renamed`, changed_by is who did it.
    h.as_token(&ctoken)
        .patch(&format!("/files/{f}"), json!({ "name": "doc2.txt" }))
        .await
        .expect(200);
    let rows = step(&h, &mut at).await;
    assert_eq!(rows.len(), 1);
    expect_row(
        &rows[0],
        "renamed",
        &f,
        json!("/A/doc.txt"),
        json!("/A/doc2.txt"),
    );
    assert_eq!(rows[0]["changed_by"], json!(colleague));
    assert_eq!(rows[0]["version_id"], Value::Null);

    // Move (POST /move) and move-with-rename (PATCH folder_id + name): one `moved` each.
    h.post(
        &format!("/files/{f}/move"),
        json!({ "target_folder_id": b }),
    )
    .await
    .expect(200);
    h.patch(
        &format!("/files/{f}"),
        json!({ "folder_id": a, "name": "doc3.txt" }),
    )
    .await
    .expect(200);
    let rows = step(&h, &mut at).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    expect_row(
        &rows[0],
        "moved",
        &f,
        json!("/A/doc2.txt"),
        json!("/B/doc2.txt"),
    );
    expect_row(
        &rows[1],
        "moved",
        &f,
        json!("/B/doc2.txt"),
        json!("/A/doc3.txt"),
    );

    // New content (upload session with replace_file_id) and a version restore: one
    // `updated` each, with the id of the version it made.
    put_version(&h, &f, "doc3.txt", b"two!").await;
    h.post(&format!("/files/{f}/versions/1/restore"), json!({}))
        .await
        .expect(200);
    let rows = step(&h, &mut at).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    let path = json!("/A/doc3.txt");
    expect_row(&rows[0], "updated", &f, path.clone(), path.clone());
    assert_eq!(rows[0]["version_id"], json!(version_id(&h, &f, 2).await));
    assert_eq!(rows[0]["metadata"]["version"], 2);
    assert_eq!(rows[0]["metadata"]["checksum_sha256"], json!(sha(b"two!")));
    expect_row(&rows[1], "updated", &f, path.clone(), path.clone());
    assert_eq!(rows[1]["version_id"], json!(version_id(&h, &f, 3).await));
    assert_eq!(rows[1]["metadata"]["checksum_sha256"], json!(sha(b"one")));

    // No-ops and refused requests append nothing.
    put_file(&h, Some(&a), "other.txt", b"x").await;
    step(&h, &mut at).await;
    h.patch(&format!("/files/{f}"), json!({ "name": "doc3.txt" }))
        .await
        .expect(200);
    h.post(
        &format!("/files/{f}/move"),
        json!({ "target_folder_id": a }),
    )
    .await
    .expect(200);
    h.patch(&format!("/files/{f}"), json!({ "name": "other.txt" }))
        .await
        .expect_err(409, "NAME_CONFLICT");
    h.upload(Some(&a), "other.txt", b"y".to_vec())
        .await
        .expect_err(409, "NAME_CONFLICT");
    let (reader_id, reader) = h.user_with_role("reader").await;
    assert!(!reader_id.is_empty());
    h.as_token(&reader)
        .delete(&format!("/files/{f}"))
        .await
        .expect(403);
    assert!(step(&h, &mut at).await.is_empty(), "no-ops append no row");

    // Soft delete, restore (by the colleague), copy, permanent delete.
    h.delete(&format!("/files/{f}")).await.expect(204);
    h.as_token(&ctoken)
        .patch(&format!("/files/{f}"), json!({ "restore": true }))
        .await
        .expect(200);
    let copy = h
        .post(
            &format!("/files/{f}/copy"),
            json!({ "target_folder_id": b }),
        )
        .await
        .expect(201)
        .id();
    h.delete(&format!("/files/{copy}?permanent=true"))
        .await
        .expect(204);
    let rows = step(&h, &mut at).await;
    assert_eq!(rows.len(), 4, "{rows:?}");
    expect_row(&rows[0], "deleted", &f, path.clone(), Value::Null);
    assert_eq!(rows[0]["metadata"]["permanent"], false);
    expect_row(&rows[1], "created", &f, Value::Null, path.clone());
    assert_eq!(rows[1]["changed_by"], json!(colleague));
    assert_eq!(
        rows[1]["version_id"],
        json!(version_id(&h, &f, 3).await),
        "a restored file names its current version"
    );
    expect_row(
        &rows[2],
        "created",
        &copy,
        Value::Null,
        json!("/B/doc3.txt"),
    );
    assert!(
        rows[2]["version_id"]
            .as_str()
            .is_some_and(|v| v.starts_with("ver_"))
    );
    expect_row(
        &rows[3],
        "deleted",
        &copy,
        json!("/B/doc3.txt"),
        Value::Null,
    );
    assert_eq!(rows[3]["metadata"]["permanent"], true);
    let ids: Vec<&str> = rows
        .iter()
        .map(|r| r["id"].as_str().unwrap_or(""))
        .collect();
    assert!(ids.iter().all(|id| id.starts_with("chg_")));
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "change ids are unique");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_rename_covers_live_descendants_and_pages_once() {
    let h = Harness::start().await;
    let top = h.mkdir(None, "Top").await;
    let sub = h.mkdir(Some(&top), "Sub").await;
    let mut files = Vec::new();
    for i in 0..6 {
        files.push(put_file(&h, Some(&sub), &format!("f{i}.txt"), b"d").await);
    }
    let gone = put_file(&h, Some(&top), "gone.txt", b"g").await;
    h.delete(&format!("/files/{gone}")).await.expect(204);
    let at = head(&h).await;

    h.patch(&format!("/folders/{top}"), json!({ "name": "Top2" }))
        .await
        .expect(200);
    // 1 (folder) + 1 (Sub) + 6 files = 8 rows, read 3 at a time: pages 3, 3, 2.
    let (rows, end, pages) = follow(&h, &h.share, at, 3).await;
    assert_eq!(pages, 3);
    assert_eq!(end, head(&h).await);
    assert_eq!(rows.len(), 8, "{rows:?}");
    expect_row(&rows[0], "renamed", &top, json!("/Top"), json!("/Top2"));
    let mut got: Vec<_> = rows[1..].iter().map(row).collect();
    got.sort_by(|x, y| x.1.cmp(&y.1));
    let mut want = vec![(
        "renamed".to_string(),
        sub.clone(),
        json!("/Top/Sub"),
        json!("/Top2/Sub"),
    )];
    for (i, f) in files.iter().enumerate() {
        want.push((
            "renamed".into(),
            f.clone(),
            json!(format!("/Top/Sub/f{i}.txt")),
            json!(format!("/Top2/Sub/f{i}.txt")),
        ));
    }
    want.sort_by(|x, y| x.1.cmp(&y.1));
    assert_eq!(
        got, want,
        "every live descendant once, the trashed file not"
    );

    // A folder move is one row (the docs document per-descendant rows only for renames);
    // a recursive delete and its restore are one row each.
    let other = h.mkdir(None, "Other").await;
    let mut at = head(&h).await;
    h.post(
        &format!("/folders/{sub}/move"),
        json!({ "target_parent_id": other }),
    )
    .await
    .expect(200);
    h.delete(&format!("/folders/{other}")).await.expect(204);
    h.patch(&format!("/folders/{other}"), json!({ "restore": true }))
        .await
        .expect(200);
    let rows = step(&h, &mut at).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    expect_row(
        &rows[0],
        "moved",
        &sub,
        json!("/Top2/Sub"),
        json!("/Other/Sub"),
    );
    expect_row(&rows[1], "deleted", &other, json!("/Other"), Value::Null);
    expect_row(&rows[2], "created", &other, Value::Null, json!("/Other"));
    assert_eq!(rows[2]["resource_type"], "folder");
    // The restore brought the subtree back with it.
    h.get(&format!("/files/{}", files[0])).await.expect(200);

    // Moving to another share: the source share's log says `deleted`, the target's
    // says `moved`; each share sees exactly one row.
    let dest = h
        .admin(Method::POST, "/shares", json!({ "name": "Dest" }))
        .await["id"]
        .as_str()
        .expect("share id")
        .to_string();
    let dest_at = head(&h).await;
    h.post(
        &format!("/folders/{sub}/move"),
        json!({ "target_share_id": dest }),
    )
    .await
    .expect(200);
    let rows = step(&h, &mut at).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    expect_row(&rows[0], "deleted", &sub, json!("/Other/Sub"), Value::Null);
    assert_eq!(rows[0]["metadata"]["moved_to_share"], json!(dest));
    let (theirs, _, _) = follow(&h, &dest, dest_at, 5000).await;
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    expect_row(
        &theirs[0],
        "moved",
        &sub,
        json!("/Other/Sub"),
        json!("/Sub"),
    );
    assert_eq!(theirs[0]["share_id"], json!(dest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_are_kept_per_share_and_device() {
    let h = Harness::start().await;
    let other = h
        .admin(Method::POST, "/shares", json!({ "name": "Second" }))
        .await["id"]
        .as_str()
        .expect("share id")
        .to_string();
    let h = &h;
    let status = |share: &str, dev: &str| {
        let path = format!("/sync/status?share_id={share}&device_id={dev}");
        async move { h.get(&path).await.expect(200).json }
    };
    let start = status(&h.share, "dev_a").await["cursor_position"].clone();
    status(&other, "dev_a").await;
    status(&h.share, "dev_b").await;

    h.mkdir(None, "One").await;
    h.mkdir(None, "Two").await;
    h.post(
        "/folders",
        json!({ "share_id": other, "name": "Elsewhere" }),
    )
    .await
    .expect(201);
    assert_eq!(status(&h.share, "dev_a").await["pending_changes"], 2);
    assert_eq!(status(&other, "dev_a").await["pending_changes"], 1);
    assert_eq!(status(&h.share, "dev_b").await["pending_changes"], 2);

    // Advancing dev_a on the default share moves only that (share, device) cursor.
    let now = head(h).await;
    h.send(h.req(
        Method::POST,
        &format!(
            "/sync/cursor?share_id={}&device_id=dev_a&position={now}",
            h.share
        ),
    ))
    .await
    .expect(200);
    let a = status(&h.share, "dev_a").await;
    assert_eq!(a["cursor_position"], now);
    assert_eq!(a["pending_changes"], 0);
    assert!(a["last_sync_at"].is_string());
    let a2 = status(&other, "dev_a").await;
    assert_eq!(a2["cursor_position"], start);
    assert_eq!(a2["pending_changes"], 1);
    assert_eq!(a2["last_sync_at"], Value::Null);
    let b = status(&h.share, "dev_b").await;
    assert_eq!(b["cursor_position"], start);
    assert_eq!(b["pending_changes"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_log_refuses_older_cursors() {
    let h = Harness::start().await;
    let c0 = head(&h).await;
    h.mkdir(None, "Old").await;
    let c1 = head(&h).await;
    let cut = h
        .admin(
            Method::POST,
            "/changelog/truncate",
            json!({ "through": c1 }),
        )
        .await;
    assert_eq!(cut["floor"], c1);
    assert_eq!(head(&h).await, c1, "positions survive the truncation");
    let r = h
        .get(&format!("/sync/changes?share_id={}&cursor={c0}", h.share))
        .await
        .expect_err(410, "CURSOR_EXPIRED");
    let msg = String::from_utf8_lossy(&r.bytes).to_string();
    assert!(msg.contains(&c0.to_string()), "{msg}");
    h.get(&format!("/sync/changes?share_id={}&cursor=0", h.share))
        .await
        .expect_err(410, "CURSOR_EXPIRED");
    // The floor itself is a valid cursor; new changes follow it.
    let new = h.mkdir(None, "New").await;
    let (rows, _, _) = follow(&h, &h.share, c1, 5000).await;
    assert_eq!(rows.len(), 1);
    expect_row(&rows[0], "created", &new, Value::Null, json!("/New"));
    // Truncating everything keeps the head.
    let all = h
        .admin(Method::POST, "/changelog/truncate", json!({}))
        .await;
    let c2 = all["floor"].as_i64().expect("floor");
    assert!(c2 > c1);
    assert_eq!(head(&h).await, c2);
    let r = h
        .get(&format!("/sync/changes?share_id={}&cursor={c2}", h.share))
        .await
        .expect(200);
    assert_eq!(r.json["changes"], json!([]));
    assert_eq!(r.json["cursor"], c2);
}
