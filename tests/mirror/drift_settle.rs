//! Settling a killed run's open creates from the change log (issue 18, item 5): the
//! mirror follows the log, so its position was stored before the run opened them; the
//! next start reads the log after that position and finds what landed (a `created` row
//! with our name under our parent, the checksum in its metadata) with no listing and no
//! metadata GET. A create that never landed is closed and the pass uploads the file.

use std::time::Duration;

use serde_json::{Value, json};

use crate::world::{TOKEN, World};

/// Creates `name` in `parent` as the killed run did (the call succeeded, its answer and
/// the commit were lost); returns the new id.
async fn create(w: &World, parent: &str, name: &str, content: Option<&[u8]>) -> String {
    let r = match content {
        None => {
            w.http
                .post(format!("{}/api/v1/folders", w.url))
                .bearer_auth(TOKEN)
                .json(&json!({ "share_id": w.share, "parent_id": parent, "name": name }))
                .send()
                .await
        }
        Some(data) => {
            let form = reqwest::multipart::Form::new()
                .text("share_id", w.share.clone())
                .text("folder_id", parent.to_string())
                .part(
                    "file",
                    reqwest::multipart::Part::bytes(data.to_vec()).file_name(name.to_string()),
                );
            w.http
                .post(format!("{}/api/v1/files", w.url))
                .bearer_auth(TOKEN)
                .multipart(form)
                .send()
                .await
        }
    }
    .unwrap();
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn sha(data: &[u8]) -> String {
    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_creates_after_a_kill_are_settled_from_the_log_without_listing() {
    let w = World::new().await;
    w.write("keep.txt", b"keep");
    w.write("a/x.txt", b"x");
    let mut m = w.mirror_config();
    m.remote_poll_secs = 1;
    let d = w.start_with(m.clone()).await;
    d.settled().await;
    d.until("a change-log read", |s| s.cursor_read_at.is_some())
        .await;
    d.stop().await;
    // The killed run starts after the last stored position (whole seconds).
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let ids = w.remote_ids().await;
    let base = w.remote_base_id().await.expect("base folder");
    let (new_txt, y_txt) = (b"new file".as_slice(), b"y in a".as_slice());
    w.write("new.txt", new_txt);
    w.write("a/y.txt", y_txt);
    w.write("new/z.txt", b"z");
    w.write("never.txt", b"never sent");
    let created = [
        ("new", create(&w, &base, "new", None).await),
        ("new.txt", create(&w, &base, "new.txt", Some(new_txt)).await),
        ("a/y.txt", create(&w, &ids["a"], "y.txt", Some(y_txt)).await),
    ];
    {
        let store = scaidrive::store::Store::open(&w.state_dir().join("state.db")).unwrap();
        let mid = store.mirrors().await.unwrap()[0].id;
        let upload = |parent: &str, name: &str, data: &[u8]| {
            json!({ "parent_id": parent, "name": name, "sha256": sha(data), "size": data.len(),
                    "inode": 1, "mtime_ns": 0, "replace_file_id": null })
        };
        let intents = [
            (
                "mkdir",
                "new",
                json!({ "parent_id": base, "name": "new", "inode": 1, "mtime_ns": 0 }),
            ),
            ("upload", "new.txt", upload(&base, "new.txt", new_txt)),
            ("upload", "a/y.txt", upload(&ids["a"], "y.txt", y_txt)),
            (
                "upload",
                "never.txt",
                upload(&base, "never.txt", b"never sent"),
            ),
        ];
        for (op, path, detail) in intents {
            store.begin(mid, op, path, detail).await.unwrap();
        }
        store.flush().await.unwrap();
    }

    w.reset_stats().await;
    let d = w.start_with(m).await;
    d.settled().await;
    let stats = w.stats().await["by_route"].clone();
    let n = |route: &str| stats[route].as_u64().unwrap_or(0);
    // Settled from the log: no listing, no metadata GET; the pass uploads what never
    // landed and what the killed run had not reached (new/z.txt), and creates nothing
    // that exists.
    assert_eq!(n("GET /api/v1/folders/{folder_id}/children"), 0, "{stats}");
    assert_eq!(n("GET /api/v1/files/{file_id}"), 0, "{stats}");
    assert_eq!(n("POST /api/v1/folders"), 0, "{stats}");
    assert_eq!(
        n("POST /api/v1/files"),
        2,
        "never.txt and new/z.txt: {stats}"
    );
    assert!(n("GET /api/v1/sync/changes") >= 1, "{stats}");
    w.assert_mirrored().await;
    w.assert_unique_names().await;
    let after = w.remote_ids().await;
    for (path, id) in &created {
        assert_eq!(&after[*path], id, "{path}: the item the killed run created");
    }
    d.stop().await;
}

/// Item 2 of issue 18: after a batch, the log is read at once when the pacer has budget to
/// spare (half or more of the token's units left) and the last read is over 5 s old, so a
/// colleague's change is repaired long before the next interval (an hour here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_read_early_after_a_batch_with_budget_to_spare() {
    use reqwest::Method;
    let w = World::new().await;
    w.write("keep.txt", b"keep");
    w.write("theirs-to-delete.txt", b"ours");
    let mut m = w.mirror_config();
    m.remote_poll_secs = 3600;
    let d = w.start_with(m).await;
    d.settled().await;
    // The first read comes right after the first pass; the next is an hour away.
    let first = d
        .until("the first change-log read", |s| s.cursor_read_at.is_some())
        .await
        .cursor_read_at;
    let ids = w.remote_ids().await;
    let c = crate::drift::colleague(&w).await;
    c.send(
        &w,
        Method::DELETE,
        &format!("/files/{}", ids["theirs-to-delete.txt"]),
        None,
    )
    .await;
    // Past the 5 s gap between early reads, nothing is read without a batch.
    tokio::time::sleep(Duration::from_millis(5500)).await;
    assert_eq!(d.handle.status().remote_repairs, 0);
    assert_eq!(d.handle.status().cursor_read_at, first);
    w.reset_stats().await;
    // A local change makes a batch; the budget is untouched (no limit spent), so the log
    // is read right after it and the delete repaired (a restore from the trash).
    w.write("new.txt", b"a batch");
    let s = d
        .until("the early read's repair", |s| {
            s.remote_repairs == 1 && s.in_sync() && s.cursor_read_at > first
        })
        .await;
    assert_eq!(s.remote_drift, 0);
    let stats = w.stats().await["by_route"].clone();
    let n = |route: &str| stats[route].as_u64().unwrap_or(0);
    assert_eq!(n("POST /api/v1/files"), 1, "{stats}");
    assert_eq!(n("PATCH /api/v1/files/{file_id}"), 1, "{stats}");
    assert_eq!(n("GET /api/v1/sync/changes"), 1, "{stats}");
    w.assert_mirrored().await;
    assert_eq!(
        w.remote_ids().await["theirs-to-delete.txt"],
        ids["theirs-to-delete.txt"]
    );
    d.stop().await;
}
