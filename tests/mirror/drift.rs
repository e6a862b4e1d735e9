//! Remote drift (issue 18): a colleague with a token of their own changes the mirror's
//! remote folder while the daemon runs and nothing changes locally; the mirror reads the
//! share's change log every `remote_poll_secs` and repairs toward the local root —
//! deleted → restored from the trash, renamed/moved → moved back, new version → the local
//! content uploaded over it (theirs stays in the history), items they created left alone
//! or trashed by `remote_extras` — and after a restart it continues from its cursor. A
//! truncated log (a cursor the server refuses) falls back to one listing.

use std::time::Duration;

use reqwest::Method;
use scaidrive::config::RemoteExtras;
use scaidrive::mirror::MirrorStatus;
use serde_json::{Value, json};

use crate::world::{Daemon, World};

/// Another user, contributor on the share, with a token: the colleague.
pub(crate) struct Colleague {
    id: String,
    token: String,
}

pub(crate) async fn colleague(w: &World) -> Colleague {
    let user = w
        .admin(Method::POST, "/users", json!({ "name": "colleague" }))
        .await;
    let id = user["id"].as_str().expect("user id").to_string();
    w.admin(
        Method::POST,
        "/members",
        json!({ "share_id": w.share, "user_id": id, "role": "contributor" }),
    )
    .await;
    let tok = w
        .admin(Method::POST, "/tokens", json!({ "user_id": id }))
        .await;
    Colleague {
        id,
        token: tok["access_token"].as_str().expect("token").to_string(),
    }
}

impl Colleague {
    pub(crate) async fn send(
        &self,
        w: &World,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let mut rb = w
            .http
            .request(method.clone(), format!("{}/api/v1{path}", w.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.expect("colleague request");
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Saves `data` as a new version of file `id` (upload session with replace_file_id).
    async fn new_version(&self, w: &World, id: &str, name: &str, data: &[u8]) {
        let s = self
            .send(
                w,
                Method::POST,
                "/uploads",
                Some(json!({ "share_id": w.share, "file_name": name, "file_size": data.len(), "replace_file_id": id })),
            )
            .await;
        let sid = s["session_id"].as_str().expect("session").to_string();
        let r = w
            .http
            .put(format!("{}/api/v1/uploads/{sid}/chunks/0", w.url))
            .bearer_auth(&self.token)
            .body(data.to_vec())
            .send()
            .await
            .expect("chunk");
        assert!(r.status().is_success(), "chunk: {}", r.status());
        self.send(
            w,
            Method::POST,
            &format!("/uploads/{sid}/complete"),
            Some(json!({})),
        )
        .await;
    }

    pub(crate) async fn upload(&self, w: &World, folder: &str, name: &str, data: &[u8]) -> String {
        let form = reqwest::multipart::Form::new()
            .text("share_id", w.share.clone())
            .text("folder_id", folder.to_string())
            .text("name", name.to_string())
            .part(
                "file",
                reqwest::multipart::Part::bytes(data.to_vec()).file_name(name.to_string()),
            );
        let r = w
            .http
            .post(format!("{}/api/v1/files", w.url))
            .bearer_auth(&self.token)
            .multipart(form)
            .send()
            .await
            .expect("upload");
        assert_eq!(r.status().as_u16(), 201);
        r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

async fn start(w: &World, extras: RemoteExtras) -> Daemon {
    let mut m = w.mirror_config();
    m.remote_poll_secs = 1;
    m.remote_extras = extras;
    w.start_with(m).await
}

/// Waits until the mirror has made `repairs` repairs and is in sync again.
async fn repaired(d: &Daemon, repairs: u64) -> MirrorStatus {
    d.until(&format!("{repairs} remote repairs, in sync"), |s| {
        s.remote_repairs >= repairs && s.in_sync()
    })
    .await
}

fn seed(w: &World) {
    w.write("a/x.txt", b"x in a");
    w.write("a/sub/y.txt", b"y in a/sub");
    w.write("top.txt", b"top");
    w.write("edit.txt", b"local truth");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn others_changes_are_repaired_while_idle_and_after_a_restart() {
    let w = World::new().await;
    seed(&w);
    let d = start(&w, RemoteExtras::Keep).await;
    d.settled().await;
    w.assert_mirrored().await;
    let ids = w.remote_ids().await;
    let base = w.remote_base_id().await.unwrap();
    let c = colleague(&w).await;
    w.reset_stats().await;

    // Four remote changes by the colleague, none locally.
    c.send(
        &w,
        Method::DELETE,
        &format!("/files/{}", ids["top.txt"]),
        None,
    )
    .await;
    c.send(
        &w,
        Method::PATCH,
        &format!("/folders/{}", ids["a"]),
        Some(json!({ "name": "renamed-a" })),
    )
    .await;
    c.new_version(&w, &ids["edit.txt"], "edit.txt", b"their edit")
        .await;
    let theirs = c.upload(&w, &base, "theirs.txt", b"mine").await;

    let s = repaired(&d, 3).await;
    // Theirs: a rename, a session, an upload. Ours: one restore (PATCH file), one rename
    // back (PATCH folder), one new version (session): no listing, no other upload.
    let stats = w.stats().await["by_route"].clone();
    let n = |route: &str| stats[route].as_u64().unwrap_or(0);
    assert_eq!(n("PATCH /api/v1/files/{file_id}"), 1, "{stats}");
    assert_eq!(n("PATCH /api/v1/folders/{folder_id}"), 2, "{stats}");
    assert_eq!(n("POST /api/v1/uploads"), 2, "{stats}");
    assert_eq!(n("POST /api/v1/files"), 1, "{stats}");
    assert_eq!(n("GET /api/v1/folders/{folder_id}/children"), 0, "{stats}");
    assert_eq!(s.remote_overwrites, 1);
    assert_eq!(s.remote_drift, 0);
    assert!(s.cursor_read_at.is_some());
    // The remote equals the local root again, plus the colleague's own file (kept).
    let mut remote = w.remote_tree().await;
    assert!(remote.remove("theirs.txt").is_some(), "their file is kept");
    assert_eq!(remote, w.local_tree());
    w.assert_unique_names().await;
    // Same items, put back by id: no re-upload of a restored or moved-back item.
    let after = w.remote_ids().await;
    for p in ["top.txt", "a", "a/x.txt", "a/sub/y.txt", "edit.txt"] {
        assert_eq!(after[p], ids[p], "{p} keeps its id");
    }
    assert_eq!(after["theirs.txt"], theirs);
    // Their version stays in the history under ours.
    let v = w.versions("edit.txt").await;
    assert_eq!(v.len(), 3, "{v:?}");
    assert_eq!(v[1]["created_by"], json!(c.id));

    // One device for the daemon's share, seen by the server, with its cursor stored.
    let devices = w.api("/sync/devices").await;
    let devices = devices.as_array().expect("devices");
    assert_eq!(devices.len(), 1, "{devices:?}");
    assert_eq!(devices[0]["platform"], json!(std::env::consts::OS));
    let dev = devices[0]["device_id"].as_str().unwrap().to_string();
    let st = w
        .api(&format!(
            "/sync/status?share_id={}&device_id={dev}",
            w.share
        ))
        .await;
    assert!(st["last_sync_at"].is_string(), "{st}");
    d.stop().await;

    // While it is down, the colleague moves a file out of its folder; the restarted
    // daemon continues from its stored cursor and moves it back.
    let outside = w.server.folder_id("backup").await.expect("backup folder");
    c.send(
        &w,
        Method::POST,
        &format!("/files/{}/move", ids["a/x.txt"]),
        Some(json!({ "target_folder_id": outside })),
    )
    .await;
    let d = start(&w, RemoteExtras::Keep).await;
    let s = repaired(&d, 4).await;
    assert_eq!(s.remote_repairs, 4, "counters survive the restart");
    let mut remote = w.remote_tree().await;
    remote.remove("theirs.txt");
    assert_eq!(remote, w.local_tree());
    assert_eq!(w.remote_ids().await["a/x.txt"], ids["a/x.txt"]);
    assert_eq!(
        w.api("/sync/devices").await.as_array().map(Vec::len),
        Some(1),
        "the same device after a restart"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mirror_trashes_extras_and_a_log_gap_lists_once() {
    let w = World::new().await;
    seed(&w);
    let d = start(&w, RemoteExtras::Trash).await;
    d.settled().await;
    let ids = w.remote_ids().await;
    let c = colleague(&w).await;
    let base = w.remote_base_id().await.unwrap();

    let theirs = c.upload(&w, &base, "theirs.txt", b"extra").await;
    let s = repaired(&d, 1).await;
    assert_eq!(s.remote_overwrites, 0);
    w.assert_mirrored().await;
    assert!(w.trashed().await.contains(&"theirs.txt".to_string()));
    assert_eq!(
        w.api_live(&format!("/files/{theirs}")).await,
        None,
        "trashed (a soft delete), not there"
    );

    // A log gap: while the daemon is down the colleague deletes a folder and the server
    // forgets the log under the daemon's cursor. The restarted mirror is refused its
    // cursor, lists its folder once and restores the folder.
    d.stop().await;
    c.send(&w, Method::DELETE, &format!("/folders/{}", ids["a"]), None)
        .await;
    w.admin(Method::POST, "/changelog/truncate", json!({}))
        .await;
    w.reset_stats().await;
    let d = start(&w, RemoteExtras::Trash).await;
    let s = repaired(&d, 2).await;
    let stats = w.stats().await["by_route"].clone();
    let n = |route: &str| stats[route].as_u64().unwrap_or(0);
    // One listing per live remote folder (the base only: `a` is in the trash), one
    // metadata GET that finds `a` deleted, one restore, no upload; the log read twice
    // (refused, then the current position) and the new cursor stored.
    assert_eq!(n("GET /api/v1/folders/{folder_id}/children"), 1, "{stats}");
    assert_eq!(n("GET /api/v1/folders/{folder_id}"), 1, "{stats}");
    assert_eq!(n("PATCH /api/v1/folders/{folder_id}"), 1, "{stats}");
    assert_eq!(n("GET /api/v1/sync/changes"), 2, "{stats}");
    assert_eq!(n("POST /api/v1/files"), 0, "{stats}");
    assert_eq!(s.remote_drift, 0);
    w.assert_mirrored().await;
    assert_eq!(w.remote_ids().await["a/sub/y.txt"], ids["a/sub/y.txt"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        d.handle.status().remote_repairs,
        2,
        "nothing more to repair"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_repair_moves_a_renamed_folder_back() {
    use scaidrive::mirror::MirrorCmd;
    let w = World::new().await;
    seed(&w);
    // Not following the log: verify alone finds and repairs the drift.
    let d = w.start().await;
    d.settled().await;
    let ids = w.remote_ids().await;
    let c = colleague(&w).await;
    c.send(
        &w,
        Method::PATCH,
        &format!("/folders/{}", ids["a"]),
        Some(json!({ "name": "renamed-a" })),
    )
    .await;
    w.reset_stats().await;
    let report = d
        .handle
        .ask(|reply| MirrorCmd::Verify {
            checksums: false,
            repair: true,
            reply,
        })
        .await
        .expect("verify report");
    assert_eq!(
        report.missing_remotely,
        ["a", "a/sub", "a/sub/y.txt", "a/x.txt"]
    );
    assert_eq!(report.repaired, 1, "{report:?}");
    d.settled().await;
    let stats = w.stats().await["by_route"].clone();
    let n = |route: &str| stats[route].as_u64().unwrap_or(0);
    // The listing (base, renamed-a, sub), one GET of the folder, one rename back; no
    // folder created, nothing uploaded.
    assert_eq!(n("GET /api/v1/folders/{folder_id}/children"), 3, "{stats}");
    assert_eq!(n("GET /api/v1/folders/{folder_id}"), 1, "{stats}");
    assert_eq!(n("PATCH /api/v1/folders/{folder_id}"), 1, "{stats}");
    assert_eq!(n("POST /api/v1/folders"), 0, "{stats}");
    assert_eq!(n("POST /api/v1/files"), 0, "{stats}");
    w.assert_mirrored().await;
    assert_eq!(w.remote_ids().await, ids, "the same items, put back");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reads_the_remote_tree_from_the_log_when_cheaper() {
    use scaidrive::mirror::{MirrorCmd, VerifyReport};
    let w = World::new().await;
    // Eight folders known (listing: 9 × 2 units), a short log (one page, 2 units).
    for d in ["p/q", "p/r", "s/t/u", "v/w"] {
        w.write(&format!("{d}/f.txt"), d.as_bytes());
    }
    w.write("top.txt", b"top");
    let d = w.start().await;
    d.settled().await;
    let verify = |repair: bool| {
        let h = d.handle.clone();
        async move {
            h.ask(|reply| MirrorCmd::Verify {
                checksums: false,
                repair,
                reply,
            })
            .await
            .expect("verify report")
        }
    };
    w.reset_stats().await;
    let clean: VerifyReport = verify(false).await;
    assert!(clean.in_sync(), "{clean:?}");
    assert_eq!((clean.remote_items, clean.known_items), (13, 13));
    let stats = w.stats().await["by_route"].clone();
    let n = |route: &str| stats[route].as_u64().unwrap_or(0);
    assert_eq!(n("GET /api/v1/sync/changes"), 1, "{stats}");
    assert_eq!(n("GET /api/v1/folders/{folder_id}/children"), 0, "{stats}");

    // The colleague moves a folder (one row: its subtree follows), trashes a folder and
    // restores it, deletes a file for good and adds one of their own.
    let ids = w.remote_ids().await;
    let c = colleague(&w).await;
    c.send(
        &w,
        Method::POST,
        &format!("/folders/{}/move", ids["s/t"]),
        Some(json!({ "target_parent_id": ids["v"] })),
    )
    .await;
    c.send(&w, Method::DELETE, &format!("/folders/{}", ids["p"]), None)
        .await;
    c.send(
        &w,
        Method::PATCH,
        &format!("/folders/{}", ids["p"]),
        Some(json!({ "restore": true })),
    )
    .await;
    c.send(
        &w,
        Method::DELETE,
        &format!("/files/{}?permanent=true", ids["top.txt"]),
        None,
    )
    .await;
    c.upload(&w, &ids["v/w"], "theirs.txt", b"theirs").await;
    w.reset_stats().await;
    let drift = verify(false).await;
    assert_eq!(
        drift.missing_remotely,
        ["s/t", "s/t/u", "s/t/u/f.txt", "top.txt"],
        "{drift:?}"
    );
    assert_eq!(
        drift.extra_remotely,
        ["v/t", "v/t/u", "v/t/u/f.txt", "v/w/theirs.txt"]
    );
    assert!(drift.different.is_empty(), "{drift:?}");
    let stats = w.stats().await["by_route"].clone();
    let n = |route: &str| stats[route].as_u64().unwrap_or(0);
    assert_eq!(n("GET /api/v1/sync/changes"), 1, "{stats}");
    assert_eq!(n("GET /api/v1/folders/{folder_id}/children"), 0, "{stats}");

    // Repaired: the folder moved back by id, the deleted file uploaded again.
    let fixed = verify(true).await;
    assert_eq!(fixed.repaired, 2, "{fixed:?}");
    d.settled().await;
    let mut remote = w.remote_tree().await;
    assert!(remote.remove("v/w/theirs.txt").is_some());
    assert_eq!(remote, w.local_tree());
    assert_eq!(w.remote_ids().await["s/t/u/f.txt"], ids["s/t/u/f.txt"]);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirrors_own_folder_trashed_or_moved_is_put_back() {
    let w = World::new().await;
    seed(&w);
    let d = start(&w, RemoteExtras::Keep).await;
    d.settled().await;
    let ids = w.remote_ids().await;
    let base = w.remote_base_id().await.expect("base folder");
    let c = colleague(&w).await;

    // Trashed with everything in it: one restore brings the whole tree back.
    c.send(&w, Method::DELETE, &format!("/folders/{base}"), None)
        .await;
    repaired(&d, 1).await;
    w.assert_mirrored().await;
    assert_eq!(w.remote_ids().await, ids);

    // Renamed, then moved elsewhere: renamed back and moved back under `backup`.
    c.send(
        &w,
        Method::PATCH,
        &format!("/folders/{base}"),
        Some(json!({ "name": "not-m" })),
    )
    .await;
    let s = repaired(&d, 2).await;
    assert_eq!(
        s.remote_repairs, 2,
        "one rename back; its subtree came along"
    );
    w.assert_mirrored().await;
    let elsewhere = c
        .send(
            &w,
            Method::POST,
            "/folders",
            Some(json!({ "share_id": w.share, "name": "elsewhere" })),
        )
        .await["id"]
        .as_str()
        .expect("folder id")
        .to_string();
    c.send(
        &w,
        Method::POST,
        &format!("/folders/{base}/move"),
        Some(json!({ "target_parent_id": elsewhere })),
    )
    .await;
    let s = repaired(&d, 3).await;
    assert_eq!(s.remote_repairs, 3);
    assert_eq!(w.remote_base_id().await.as_deref(), Some(base.as_str()));
    w.assert_mirrored().await;
    assert_eq!(w.remote_ids().await, ids);
    w.assert_unique_names().await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_state_database_is_rebuilt_and_the_log_followed_again() {
    let w = World::new().await;
    // Six folders below the base.
    for d in ["p/q", "p/r", "s/t", "v"] {
        w.write(&format!("{d}/f.txt"), d.as_bytes());
    }
    let d = start(&w, RemoteExtras::Keep).await;
    d.settled().await;
    let ids = w.remote_ids().await;
    d.stop().await;
    std::fs::remove_dir_all(w.state_dir()).expect("state directory removed");

    w.reset_stats().await;
    let d = start(&w, RemoteExtras::Keep).await;
    d.settled().await;
    // Rebuilt from the change log read from its start (seven folders to list would cost
    // 14 units; the log is one page, 2 units): no listing, no metadata GET (the rows carry
    // each file's checksum and version), nothing uploaded or created. The follower
    // continues from where that read ended: no listing and no second read from the start.
    let s = d
        .until("a change-log read", |s| {
            s.cursor_read_at.is_some() && s.in_sync()
        })
        .await;
    assert_eq!(s.remote_drift, 0);
    let stats = w.stats().await["by_route"].clone();
    let n = |route: &str| stats[route].as_u64().unwrap_or(0);
    assert_eq!(n("GET /api/v1/folders/{folder_id}/children"), 0, "{stats}");
    assert_eq!(n("GET /api/v1/files/{file_id}"), 0, "{stats}");
    assert_eq!(n("POST /api/v1/files"), 0, "{stats}");
    assert_eq!(
        n("POST /api/v1/folders"),
        2,
        "the base path's create-or-adopt (2 segments): {stats}"
    );
    assert_eq!(n("GET /api/v1/sync/status"), 0, "{stats}");
    let reads = n("GET /api/v1/sync/changes");
    assert!(
        (1..=3).contains(&reads),
        "one read from the start, then polls: {stats}"
    );
    assert_eq!(n("POST /api/v1/sync/devices"), 1, "a new device: {stats}");
    // A new device, and the log is followed: a colleague's trash is restored.
    let c = colleague(&w).await;
    c.send(
        &w,
        Method::DELETE,
        &format!("/files/{}", ids["s/t/f.txt"]),
        None,
    )
    .await;
    repaired(&d, 1).await;
    w.assert_mirrored().await;
    assert_eq!(w.remote_ids().await, ids);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_log_falls_back_to_one_listing() {
    let w = World::new().await;
    seed(&w);
    let d = start(&w, RemoteExtras::Keep).await;
    d.settled().await;
    let ids = w.remote_ids().await;
    // Every read of the log fails (503, retried by the client, then given up); three polls
    // in a row that cannot read it make one listing, which finds and restores the file.
    w.faults(json!({ "fail_rate": 1.0, "path_prefix": "/api/v1/sync/changes" }))
        .await;
    let c = colleague(&w).await;
    c.send(
        &w,
        Method::DELETE,
        &format!("/files/{}", ids["top.txt"]),
        None,
    )
    .await;
    let s = tokio::time::timeout(Duration::from_secs(120), repaired(&d, 1))
        .await
        .expect("repaired by a listing while the log is unreadable");
    assert_eq!(s.remote_drift, 0);
    w.assert_mirrored().await;
    assert_eq!(w.remote_ids().await["top.txt"], ids["top.txt"]);
    // The log answers again: its rows agree with the store, nothing more is done.
    w.faults(json!({})).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(d.handle.status().remote_repairs, 1);
    d.stop().await;
}
