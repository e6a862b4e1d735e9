//! External links (`scaidrive-api.md` §11 and the "Your First Integration" seed): the
//! management API under `/api/v1/external/links` and the public recipient URLs.

use std::collections::BTreeSet;

use reqwest::Method;
use scaidrive::devserver::model::{self, Caller};
use serde_json::{Value, json};

use crate::harness::{Harness, Resp};

/// Puts a file into the tree through the model (file upload routes are not this module's):
/// content goes through the blob store, metadata through `model::insert_file`.
pub async fn put_file(h: &Harness, folder: Option<&str>, name: &str, data: &[u8]) -> String {
    let server = h.server.running();
    let state = server.state.clone();
    let mut w = state.blobs.writer().await.expect("blob writer");
    w.write(data).await.expect("blob write");
    let (sha, size) = w.finish().await.expect("blob finish");
    let caller = Caller {
        user_id: server.info.user_id.clone(),
        tenant_id: server.info.tenant_id.clone(),
        is_admin: false,
        scopes: Vec::new(),
    };
    let (share, parent, name) = (
        h.share.clone(),
        folder.unwrap_or_default().to_string(),
        name.to_string(),
    );
    let now = model::now_iso(&state);
    state
        .db
        .tx(move |tx| {
            let mime = scaidrive::devserver::util::mime_for(&name);
            Ok(model::insert_file(
                tx,
                &caller,
                &share,
                &parent,
                &name,
                &sha,
                size as i64,
                mime,
                &now,
            )?
            .id)
        })
        .await
        .expect("insert file")
}

/// An unauthenticated GET (a recipient opening a link), with an optional password header.
async fn public_get(h: &Harness, url: &str, password: Option<&str>) -> Resp {
    let mut rb = h.http.get(url);
    if let Some(p) = password {
        rb = rb.header("X-Link-Password", p);
    }
    h.send(rb).await
}

/// A recipient's multipart upload through an UPLOAD link.
async fn public_upload(h: &Harness, url: &str, name: &str, data: &[u8]) -> Resp {
    let form = reqwest::multipart::Form::new()
        .text("name", name.to_string())
        .part(
            "file",
            reqwest::multipart::Part::bytes(data.to_vec()).file_name(name.to_string()),
        );
    h.send(h.http.post(format!("{url}/upload")).multipart(form))
        .await
}

async fn create_link(h: &Harness, body: Value) -> Resp {
    h.post("/external/links", body).await
}

fn folder_link(h: &Harness, folder: &str, link_type: &str) -> Value {
    json!({ "resource_type": "folder", "resource_id": folder, "share_id": h.share, "link_type": link_type })
}

fn file_link(h: &Harness, file: &str, link_type: &str) -> Value {
    json!({ "resource_type": "file", "resource_id": file, "share_id": h.share, "link_type": link_type })
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("{k} is not a string in {v}"))
}

const DOCUMENTED_FIELDS: [&str; 25] = [
    "id",
    "tenant_id",
    "share_id",
    "resource_type",
    "resource_id",
    "link_type",
    "token",
    "short_code",
    "url",
    "short_url",
    "status",
    "password_required",
    "max_downloads",
    "download_count",
    "max_views",
    "view_count",
    "allowed_ips",
    "allowed_emails",
    "require_email",
    "custom_name",
    "custom_message",
    "created_by",
    "created_at",
    "expires_at",
    // Not in the §11.1 example, but in the create options (echoed back).
    "upload_folder_id",
];

const ECHOED_OPTIONS: [&str; 8] = [
    "show_download_button",
    "allow_preview",
    "notify_on_access",
    "notify_on_download",
    "notify_on_upload",
    "notification_email",
    "max_file_size",
    "allowed_extensions",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_walkthrough_password_protected_folder_link() {
    let h = Harness::start().await;
    let info = h.admin(Method::GET, "/info", Value::Null).await;
    let root = h.mkdir(None, "my_photos").await;
    let sub = h.mkdir(Some(&root), "2026").await;
    let file = put_file(&h, Some(&sub), "beach.jpg", b"jpeg bytes").await;

    let link = create_link(
        &h,
        json!({
            "resource_type": "folder",
            "resource_id": root,
            "share_id": h.share,
            "link_type": "DOWNLOAD",
            "password": "hunter2",
            "expires_in_days": 14,
            "custom_name": "Shared batch",
        }),
    )
    .await
    .expect(201);
    assert!(
        !String::from_utf8_lossy(&link.bytes).contains("hunter2"),
        "password echoed: {:?}",
        link.json
    );
    let l = &link.json;
    assert!(s(l, "id").starts_with("lnk_"));
    assert_eq!(l["tenant_id"], info["tenant_id"]);
    assert_eq!(l["share_id"], json!(h.share));
    assert_eq!(l["resource_type"], "folder");
    assert_eq!(l["resource_id"], json!(root));
    assert_eq!(l["link_type"], "DOWNLOAD");
    assert_eq!(l["status"], "active");
    assert_eq!(l["password_required"], true);
    assert_eq!(l["custom_name"], "Shared batch");
    assert_eq!(l["created_by"], info["user_id"]);
    assert_eq!(l["download_count"], 0);
    assert_eq!(l["view_count"], 0);
    assert_eq!(s(l, "url"), format!("{}/share/{}", h.url, s(l, "token")));
    assert_eq!(
        s(l, "short_url"),
        format!("{}/s/{}", h.url, s(l, "short_code"))
    );
    let created = time::OffsetDateTime::parse(
        s(l, "created_at"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("created_at is ISO-8601");
    let expires = time::OffsetDateTime::parse(
        s(l, "expires_at"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("expires_at is ISO-8601");
    assert!(s(l, "expires_at").ends_with('Z'));
    assert_eq!((expires - created).whole_seconds(), 14 * 86400);

    let url = s(l, "url").to_string();
    public_get(&h, &url, None)
        .await
        .expect_err(401, "LINK_PASSWORD_REQUIRED");
    public_get(&h, &url, Some("hunter3"))
        .await
        .expect_err(401, "LINK_PASSWORD_INVALID");
    let page = public_get(&h, &url, Some("hunter2")).await.expect(200);
    assert_eq!(page.json["link"]["custom_name"], "Shared batch");
    assert_eq!(page.json["link"]["link_type"], "DOWNLOAD");
    assert_eq!(page.json["link"]["resource_type"], "folder");
    assert_eq!(page.json["link"]["expires_at"], l["expires_at"]);
    let items = page.json["resource"]["items"]
        .as_array()
        .expect("recursive listing");
    let paths: Vec<(&str, &str)> = items.iter().map(|i| (s(i, "path"), s(i, "type"))).collect();
    assert_eq!(
        paths,
        vec![("/2026", "folder"), ("/2026/beach.jpg", "file")]
    );
    assert_eq!(items[1]["id"], json!(file));
    assert_eq!(items[1]["size"], 10);
    // The query-parameter form of the password works as well.
    let by_query = h
        .send(h.http.get(format!("{url}?password=hunter2")))
        .await
        .expect(200);
    assert_eq!(by_query.json["resource"]["total"], 2);

    // A DOWNLOAD folder link serves files inside its subtree.
    let dl = h
        .send(
            h.http
                .get(format!("{url}/download?file_id={file}"))
                .header("X-Link-Password", "hunter2"),
        )
        .await;
    let dl = dl.expect(200);
    assert_eq!(dl.bytes, b"jpeg bytes");
    assert!(
        dl.header("content-disposition")
            .unwrap_or_default()
            .starts_with("attachment; filename=\"beach.jpg\"")
    );

    let after = h
        .get(&format!("/external/links/{}", s(l, "id")))
        .await
        .expect(200);
    assert_eq!(after.json["view_count"], 2);
    assert_eq!(after.json["download_count"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_object_has_exactly_the_documented_fields() {
    let h = Harness::start().await;
    let file = put_file(&h, None, "report.pdf", b"%PDF").await;
    let mut body = file_link(&h, &file, "DOWNLOAD");
    body["max_downloads"] = json!(50);
    body["custom_message"] = json!("see attached");
    let l = create_link(&h, body).await.expect(201).json;
    let keys: BTreeSet<&str> = l
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<&str> = DOCUMENTED_FIELDS
        .iter()
        .chain(ECHOED_OPTIONS.iter())
        .copied()
        .collect();
    assert_eq!(keys, expected);
    assert_eq!(l["max_downloads"], 50);
    assert_eq!(l["max_views"], Value::Null);
    assert_eq!(l["password_required"], false);
    assert_eq!(l["expires_at"], Value::Null);
    assert_eq!(l["custom_message"], "see attached");
    assert_eq!(l["require_email"], false);
    assert_eq!(l["allowed_ips"], Value::Null);
    // The same object comes back from GET and from the list.
    let got = h
        .get(&format!("/external/links/{}", s(&l, "id")))
        .await
        .expect(200)
        .json;
    assert_eq!(got, l);
    let listed = h.get("/external/links").await.expect(200).json;
    assert_eq!(listed["links"][0], l);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_never_appears_in_any_response() {
    let h = Harness::start().await;
    let folder = h.mkdir(None, "Secret").await;
    let mut body = folder_link(&h, &folder, "VIEW");
    body["password"] = json!("correct horse");
    let created = create_link(&h, body).await.expect(201);
    let id = created.id();
    let url = s(&created.json, "url").to_string();
    public_get(&h, &url, Some("correct horse"))
        .await
        .expect(200);
    let patched = h
        .patch(
            &format!("/external/links/{id}"),
            json!({ "password": "battery staple" }),
        )
        .await
        .expect(200);
    assert_eq!(patched.json["password_required"], true);
    let responses = [
        created,
        patched,
        h.get(&format!("/external/links/{id}")).await.expect(200),
        h.get("/external/links").await.expect(200),
        h.get(&format!("/external/links/{id}/sessions"))
            .await
            .expect(200),
        public_get(&h, &url, Some("battery staple"))
            .await
            .expect(200),
    ];
    for r in &responses {
        let text = String::from_utf8_lossy(&r.bytes);
        for secret in [
            "correct horse",
            "battery staple",
            "sha256$",
            "password_hash",
        ] {
            assert!(!text.contains(secret), "{secret:?} leaked in {text}");
        }
        assert!(r.json.get("password").is_none());
    }
    // The old password stopped working, the new one works.
    public_get(&h, &url, Some("correct horse"))
        .await
        .expect_err(401, "LINK_PASSWORD_INVALID");
    // null removes the password.
    let cleared = h
        .patch(
            &format!("/external/links/{id}"),
            json!({ "password": null }),
        )
        .await
        .expect(200);
    assert_eq!(cleared.json["password_required"], false);
    public_get(&h, &url, None).await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_visibility_and_paging() {
    let h = Harness::start().await;
    let a = h.mkdir(None, "A").await;
    let b = h.mkdir(None, "B").await;
    let l1 = create_link(&h, folder_link(&h, &a, "VIEW"))
        .await
        .expect(201)
        .id();
    let l2 = create_link(&h, folder_link(&h, &a, "DOWNLOAD"))
        .await
        .expect(201)
        .id();
    let l3 = create_link(&h, folder_link(&h, &b, "VIEW"))
        .await
        .expect(201)
        .id();
    h.delete(&format!("/external/links/{l2}")).await.expect(204);

    let ids = |r: &Resp| -> Vec<String> {
        r.json["links"]
            .as_array()
            .expect("links array")
            .iter()
            .map(|l| s(l, "id").to_string())
            .collect()
    };
    let all = h.get("/external/links").await.expect(200);
    assert_eq!(all.json["total"], 3);
    assert_eq!(
        ids(&all),
        vec![l3.clone(), l2.clone(), l1.clone()],
        "newest first"
    );
    let by_resource = h
        .get(&format!("/external/links?resource_id={a}"))
        .await
        .expect(200);
    assert_eq!(by_resource.json["total"], 2);
    assert_eq!(ids(&by_resource), vec![l2.clone(), l1.clone()]);
    let by_share = h
        .get(&format!("/external/links?share_id={}", h.share))
        .await
        .expect(200);
    assert_eq!(by_share.json["total"], 3);
    let none = h
        .get("/external/links?share_id=shr_nonexistent")
        .await
        .expect(200);
    assert_eq!(none.json["total"], 0);
    let revoked = h.get("/external/links?status=revoked").await.expect(200);
    assert_eq!(ids(&revoked), vec![l2.clone()]);
    let active = h.get("/external/links?status=active").await.expect(200);
    assert_eq!(ids(&active), vec![l3.clone(), l1.clone()]);

    let page1 = h.get("/external/links?limit=2").await.expect(200);
    assert_eq!(ids(&page1), vec![l3.clone(), l2.clone()]);
    assert_eq!(page1.json["total"], 3);
    let page2 = h.get("/external/links?limit=2&offset=2").await.expect(200);
    assert_eq!(ids(&page2), vec![l1.clone()]);
    assert_eq!(page2.json["total"], 3);
    for bad in [
        "limit=0",
        "limit=101",
        "limit=x",
        "offset=-1",
        "status=broken",
    ] {
        h.get(&format!("/external/links?{bad}"))
            .await
            .expect_err(422, "VALIDATION_ERROR");
    }

    // Another member sees only their own links; a tenant admin sees all.
    let (_, owner2) = h.user_with_role("owner").await;
    let other = h.as_token(&owner2);
    assert_eq!(
        other.get("/external/links").await.expect(200).json["total"],
        0
    );
    let mine = other
        .post("/external/links", folder_link(&h, &b, "VIEW"))
        .await
        .expect(201)
        .id();
    let theirs = other.get("/external/links").await.expect(200);
    assert_eq!(ids(&theirs), vec![mine.clone()]);
    assert_eq!(h.get("/external/links").await.expect(200).json["total"], 3);
    let admin = h
        .admin(
            Method::POST,
            "/users",
            json!({ "name": "Admin", "is_admin": true }),
        )
        .await;
    let tok = h
        .admin(Method::POST, "/tokens", json!({ "user_id": admin["id"] }))
        .await;
    let admin_view = h.as_token(tok["access_token"].as_str().expect("token"));
    let everything = admin_view.get("/external/links").await.expect(200);
    assert_eq!(everything.json["total"], 4);
    admin_view
        .get(&format!("/external/links/{mine}"))
        .await
        .expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_patch_and_revoke() {
    let h = Harness::start().await;
    let folder = h.mkdir(None, "Docs").await;
    let created = create_link(&h, folder_link(&h, &folder, "DOWNLOAD"))
        .await
        .expect(201);
    let id = created.id();
    let url = s(&created.json, "url").to_string();
    let path = format!("/external/links/{id}");

    // Only the creator (or a tenant admin) can see it.
    let (_, owner2) = h.user_with_role("owner").await;
    h.as_token(&owner2)
        .get(&path)
        .await
        .expect_err(404, "NOT_FOUND");
    h.as_token(&owner2)
        .patch(&path, json!({ "custom_name": "x" }))
        .await
        .expect_err(404, "NOT_FOUND");
    h.as_token(&owner2)
        .delete(&path)
        .await
        .expect_err(404, "NOT_FOUND");
    h.get("/external/links/lnk_doesnotexist")
        .await
        .expect_err(404, "NOT_FOUND");

    let patched = h
        .patch(
            &path,
            json!({ "custom_name": "Renamed", "custom_message": "hello", "max_views": 10,
                    "allowed_ips": ["127.0.0.0/8"], "expires_in_days": 3 }),
        )
        .await
        .expect(200);
    assert_eq!(patched.json["custom_name"], "Renamed");
    assert_eq!(patched.json["custom_message"], "hello");
    assert_eq!(patched.json["max_views"], 10);
    assert_eq!(patched.json["allowed_ips"], json!(["127.0.0.0/8"]));
    assert!(patched.json["expires_at"].is_string());
    assert_eq!(
        patched.json["token"], created.json["token"],
        "patch keeps the URL"
    );
    // null clears nullable options; absent fields stay.
    let cleared = h
        .patch(&path, json!({ "custom_message": null, "expires_at": null }))
        .await
        .expect(200);
    assert_eq!(cleared.json["custom_message"], Value::Null);
    assert_eq!(cleared.json["expires_at"], Value::Null);
    assert_eq!(cleared.json["custom_name"], "Renamed");

    for body in [
        json!({ "resource_id": "fld_other" }),
        json!({ "resource_type": "file" }),
        json!({ "link_type": "VIEW" }),
        json!({ "link_type": "DOWNLOAD" }),
        json!({ "share_id": "shr_other" }),
        json!({ "expires_in_days": 1, "expires_at": "2999-01-01T00:00:00Z" }),
        json!({ "max_downloads": 0 }),
        json!({ "allowed_ips": ["not-an-ip"] }),
        json!({ "require_email": null }),
        json!({ "upload_folder_id": folder }),
        json!({ "frobnicate": true }),
    ] {
        h.patch(&path, body.clone()).await.expect(422);
    }
    // Rejected patches changed nothing.
    let now = h.get(&path).await.expect(200);
    assert_eq!(now.json["link_type"], "DOWNLOAD");
    assert_eq!(now.json["resource_id"], json!(folder));

    public_get(&h, &url, None).await.expect(200);
    h.delete(&path).await.expect(204);
    assert_eq!(h.get(&path).await.expect(200).json["status"], "revoked");
    public_get(&h, &url, None)
        .await
        .expect_err(410, "LINK_REVOKED");
    let short = s(&created.json, "short_url").to_string();
    public_get(&h, &short, None)
        .await
        .expect_err(410, "LINK_REVOKED");
    // Revoking is idempotent and irreversible.
    h.delete(&path).await.expect(204);
    h.patch(&path, json!({ "expires_at": null }))
        .await
        .expect(200);
    assert_eq!(h.get(&path).await.expect(200).json["status"], "revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_follows_the_server_clock() {
    let h = Harness::start().await;
    let folder = h.mkdir(None, "Soon").await;
    let mut body = folder_link(&h, &folder, "VIEW");
    body["expires_in_days"] = json!(1);
    let l = create_link(&h, body).await.expect(201);
    let (id, url) = (l.id(), s(&l.json, "url").to_string());
    public_get(&h, &url, None).await.expect(200);
    h.admin(
        Method::POST,
        "/clock",
        json!({ "advance_secs": 86_400 - 60 }),
    )
    .await;
    public_get(&h, &url, None).await.expect(200);
    assert_eq!(
        h.get(&format!("/external/links/{id}"))
            .await
            .expect(200)
            .json["status"],
        "active"
    );
    h.admin(Method::POST, "/clock", json!({ "advance_secs": 61 }))
        .await;
    assert_eq!(
        h.get(&format!("/external/links/{id}"))
            .await
            .expect(200)
            .json["status"],
        "expired"
    );
    public_get(&h, &url, None)
        .await
        .expect_err(410, "LINK_EXPIRED");
    let expired = h.get("/external/links?status=expired").await.expect(200);
    assert_eq!(expired.json["total"], 1);
    // An explicit expires_at in the server's past is refused.
    let mut past = folder_link(&h, &folder, "VIEW");
    past["expires_at"] = json!("2020-01-01T00:00:00Z");
    create_link(&h, past)
        .await
        .expect_err(422, "VALIDATION_ERROR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_downloads_exhausts_the_link() {
    let h = Harness::start().await;
    let file = put_file(&h, None, "data.csv", b"a,b\n1,2\n").await;
    let mut body = file_link(&h, &file, "DOWNLOAD");
    body["max_downloads"] = json!(2);
    let l = create_link(&h, body).await.expect(201);
    let (id, url) = (l.id(), s(&l.json, "url").to_string());
    let meta = public_get(&h, &url, None).await.expect(200);
    assert_eq!(meta.json["resource"]["name"], "data.csv");
    assert_eq!(meta.json["resource"]["size"], 8);
    assert_eq!(meta.json["resource"]["mime_type"], "text/csv");
    assert_eq!(
        meta.json["resource"]["checksum_sha256"],
        scaidrive::devserver::util::sha256_hex(b"a,b\n1,2\n")
    );
    for _ in 0..2 {
        let dl = h
            .send(h.http.get(format!("{url}/download")))
            .await
            .expect(200);
        assert_eq!(dl.bytes, b"a,b\n1,2\n");
        assert_eq!(dl.header("content-type").as_deref(), Some("text/csv"));
        assert_eq!(dl.header("content-length").as_deref(), Some("8"));
    }
    h.send(h.http.get(format!("{url}/download")))
        .await
        .expect_err(410, "LINK_EXHAUSTED");
    public_get(&h, &url, None)
        .await
        .expect_err(410, "LINK_EXHAUSTED");
    let after = h.get(&format!("/external/links/{id}")).await.expect(200);
    assert_eq!(after.json["status"], "disabled");
    assert_eq!(after.json["download_count"], 2);
    assert_eq!(after.json["view_count"], 1);
    let log = h
        .get(&format!("/external/links/{id}/sessions"))
        .await
        .expect(200);
    assert_eq!(log.json["total"], 3);
    let actions: Vec<&str> = log.json["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|x| s(x, "action"))
        .collect();
    assert_eq!(actions, vec!["view", "download", "download"]);
    assert_eq!(log.json["sessions"][0]["ip"], "127.0.0.1");
    assert!(log.json["sessions"][0]["accessed_at"].is_string());
    // Raising the cap revives the link.
    h.patch(
        &format!("/external/links/{id}"),
        json!({ "max_downloads": 3 }),
    )
    .await
    .expect(200);
    h.send(h.http.get(format!("{url}/download")))
        .await
        .expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_links_do_not_download_and_honour_max_views() {
    let h = Harness::start().await;
    let file = put_file(&h, None, "slides.pdf", b"%PDF-1.7").await;
    let mut body = file_link(&h, &file, "VIEW");
    body["max_views"] = json!(1);
    let l = create_link(&h, body).await.expect(201);
    let url = s(&l.json, "url").to_string();
    h.send(h.http.get(format!("{url}/download")))
        .await
        .expect_err(403, "LINK_VIEW_ONLY");
    let v = public_get(&h, &url, None).await.expect(200);
    assert_eq!(v.json["resource"]["id"], json!(file));
    assert_eq!(v.json["resource"]["mime_type"], "application/pdf");
    public_get(&h, &url, None)
        .await
        .expect_err(410, "LINK_EXHAUSTED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_share_permission_creates_links() {
    let h = Harness::start().await;
    let folder = h.mkdir(None, "Team").await;
    for role in ["contributor", "reader"] {
        let (_, tok) = h.user_with_role(role).await;
        let r = h
            .as_token(&tok)
            .post("/external/links", folder_link(&h, &folder, "VIEW"))
            .await;
        r.expect_err(403, "AUTHZ_PERMISSION_DENIED");
    }
    let (_, admin_tok) = h.user_with_role("admin").await;
    h.as_token(&admin_tok)
        .post("/external/links", folder_link(&h, &folder, "VIEW"))
        .await
        .expect(201);
    // A share the caller cannot see is indistinguishable from a missing one.
    let mut elsewhere = folder_link(&h, &folder, "VIEW");
    elsewhere["share_id"] = json!("shr_unknown");
    create_link(&h, elsewhere)
        .await
        .expect_err(404, "NOT_FOUND");
    // No links were created by the refused callers.
    assert_eq!(h.get("/external/links").await.expect(200).json["total"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_validation() {
    let h = Harness::start().await;
    let folder = h.mkdir(None, "V").await;
    let file = put_file(&h, Some(&folder), "f.txt", b"x").await;
    let with = |mut base: Value, k: &str, v: Value| {
        base[k] = v;
        base
    };
    let bad = [
        with(
            folder_link(&h, &folder, "VIEW"),
            "resource_type",
            json!("drive"),
        ),
        with(
            folder_link(&h, &folder, "VIEW"),
            "link_type",
            json!("download"),
        ),
        with(
            with(
                folder_link(&h, &folder, "VIEW"),
                "expires_in_days",
                json!(3),
            ),
            "expires_at",
            json!("2999-01-01T00:00:00Z"),
        ),
        with(
            folder_link(&h, &folder, "VIEW"),
            "expires_in_days",
            json!(0),
        ),
        with(
            folder_link(&h, &folder, "VIEW"),
            "expires_at",
            json!("tomorrow"),
        ),
        folder_link(&h, &folder, "UPLOAD"),
        with(
            file_link(&h, &file, "UPLOAD"),
            "upload_folder_id",
            json!(folder),
        ),
        with(
            folder_link(&h, &folder, "VIEW"),
            "upload_folder_id",
            json!(folder),
        ),
        with(folder_link(&h, &folder, "VIEW"), "max_downloads", json!(0)),
        with(folder_link(&h, &folder, "VIEW"), "max_views", json!("many")),
        with(
            folder_link(&h, &folder, "VIEW"),
            "allowed_ips",
            json!(["10.0.0.0/33"]),
        ),
        with(
            folder_link(&h, &folder, "VIEW"),
            "allowed_emails",
            json!(["nobody"]),
        ),
        with(folder_link(&h, &folder, "VIEW"), "password", json!("")),
        with(folder_link(&h, &folder, "VIEW"), "surprise", json!(1)),
        json!({ "resource_type": "share", "resource_id": folder, "share_id": h.share, "link_type": "VIEW" }),
        json!({ "resource_type": "folder", "share_id": h.share, "link_type": "VIEW" }),
    ];
    for body in bad {
        let r = create_link(&h, body.clone()).await;
        assert_eq!(
            r.status,
            422,
            "{body} → {}",
            String::from_utf8_lossy(&r.bytes)
        );
        assert!(
            r.json["error"]["details"][0]["loc"].is_array(),
            "FastAPI-style loc for {body}"
        );
    }
    // A resource that is not in the share: 404; a type mismatch is also "not there".
    create_link(&h, folder_link(&h, "fld_missing", "VIEW"))
        .await
        .expect_err(404, "NOT_FOUND");
    create_link(&h, file_link(&h, &folder, "VIEW"))
        .await
        .expect_err(404, "NOT_FOUND");
    // A soft-deleted resource: 410.
    let gone = h.mkdir(None, "Gone").await;
    h.delete(&format!("/folders/{gone}")).await.expect(204);
    create_link(&h, folder_link(&h, &gone, "VIEW"))
        .await
        .expect_err(410, "RESOURCE_DELETED");
    // A whole-share link uses the share id as resource id.
    let share = json!({ "resource_type": "share", "resource_id": h.share, "share_id": h.share, "link_type": "VIEW" });
    let l = create_link(&h, share).await.expect(201);
    let page = public_get(&h, s(&l.json, "url"), None).await.expect(200);
    assert_eq!(page.json["resource"]["type"], "share");
    let paths: Vec<&str> = page.json["resource"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| s(i, "path"))
        .collect();
    assert_eq!(
        paths,
        vec!["/V", "/V/f.txt"],
        "soft-deleted items are not listed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_link_policy() {
    let h = Harness::start().await;
    let folder = h.mkdir(None, "Policy").await;
    let early = create_link(&h, folder_link(&h, &folder, "VIEW"))
        .await
        .expect(201);

    h.admin(Method::PATCH, "/tenant", json!({ "links_disabled": true }))
        .await;
    create_link(&h, folder_link(&h, &folder, "VIEW"))
        .await
        .expect_err(403, "EXTERNAL_SHARING_DISABLED");
    public_get(&h, s(&early.json, "url"), None)
        .await
        .expect_err(403, "EXTERNAL_SHARING_DISABLED");
    assert_eq!(
        h.get(&format!("/external/links/{}", early.id()))
            .await
            .expect(200)
            .json["status"],
        "disabled"
    );
    h.admin(Method::PATCH, "/tenant", json!({ "links_disabled": false }))
        .await;
    public_get(&h, s(&early.json, "url"), None)
        .await
        .expect(200);

    h.admin(
        Method::PATCH,
        "/tenant",
        json!({ "require_link_password": true }),
    )
    .await;
    create_link(&h, folder_link(&h, &folder, "VIEW"))
        .await
        .expect_err(422, "LINK_PASSWORD_REQUIRED");
    let mut with_pw = folder_link(&h, &folder, "VIEW");
    with_pw["password"] = json!("s3cret");
    let pw_link = create_link(&h, with_pw).await.expect(201).id();
    h.patch(
        &format!("/external/links/{pw_link}"),
        json!({ "password": null }),
    )
    .await
    .expect_err(422, "LINK_PASSWORD_REQUIRED");
    h.admin(
        Method::PATCH,
        "/tenant",
        json!({ "require_link_password": false, "max_link_expiry_days": 7 }),
    )
    .await;

    create_link(&h, folder_link(&h, &folder, "VIEW"))
        .await
        .expect_err(422, "LINK_EXPIRY_REQUIRED");
    let mut long = folder_link(&h, &folder, "VIEW");
    long["expires_in_days"] = json!(8);
    create_link(&h, long)
        .await
        .expect_err(422, "LINK_EXPIRY_TOO_LONG");
    let mut long_at = folder_link(&h, &folder, "VIEW");
    long_at["expires_at"] = json!("2999-01-01T00:00:00Z");
    create_link(&h, long_at)
        .await
        .expect_err(422, "LINK_EXPIRY_TOO_LONG");
    let mut ok = folder_link(&h, &folder, "VIEW");
    ok["expires_in_days"] = json!(7);
    let ok = create_link(&h, ok).await.expect(201).id();
    h.patch(
        &format!("/external/links/{ok}"),
        json!({ "expires_at": null }),
    )
    .await
    .expect_err(422, "LINK_EXPIRY_REQUIRED");
    h.patch(
        &format!("/external/links/{ok}"),
        json!({ "expires_in_days": 30 }),
    )
    .await
    .expect_err(422, "LINK_EXPIRY_TOO_LONG");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_links_accept_files_but_hide_contents() {
    let h = Harness::start().await;
    let inbox = h.mkdir(None, "Inbox").await;
    put_file(&h, Some(&inbox), "private.txt", b"do not show").await;
    let mut body = folder_link(&h, &inbox, "UPLOAD");
    body["upload_folder_id"] = json!(inbox);
    body["max_file_size"] = json!(10);
    body["allowed_extensions"] = json!(["txt", ".md"]);
    let l = create_link(&h, body).await.expect(201);
    assert_eq!(l.json["upload_folder_id"], json!(inbox));
    assert_eq!(l.json["max_file_size"], 10);
    let url = s(&l.json, "url").to_string();

    let page = public_get(&h, &url, None).await.expect(200);
    assert_eq!(page.json["resource"], Value::Null);
    assert!(!String::from_utf8_lossy(&page.bytes).contains("private.txt"));
    assert_eq!(page.json["link"]["link_type"], "UPLOAD");

    let head = h
        .get(&format!("/sync/changes?share_id={}", h.share))
        .await
        .expect(200)
        .json["cursor"]
        .clone();
    let up = public_upload(&h, &url, "hello.txt", b"hello")
        .await
        .expect(201);
    assert_eq!(up.json["name"], "hello.txt");
    assert_eq!(up.json["size"], 5);
    assert_eq!(
        up.json["checksum_sha256"],
        scaidrive::devserver::util::sha256_hex(b"hello")
    );
    public_upload(&h, &url, "notes.MD", b"# hi")
        .await
        .expect(201);
    public_upload(&h, &url, "big.txt", b"0123456789A")
        .await
        .expect_err(413, "PAYLOAD_TOO_LARGE");
    public_upload(&h, &url, "virus.exe", b"MZ")
        .await
        .expect(422);
    public_upload(&h, &url, "hello.txt", b"again")
        .await
        .expect_err(409, "NAME_CONFLICT");

    let listing = h
        .get(&format!("/folders/{inbox}/children?share_id={}", h.share))
        .await
        .expect(200);
    let names: BTreeSet<&str> = listing.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| s(i, "name"))
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["hello.txt", "notes.MD", "private.txt"])
    );
    // Each accepted upload is one change, made in the name of the link's creator.
    let changes = h
        .get(&format!("/sync/changes?share_id={}&cursor={head}", h.share))
        .await
        .expect(200);
    let changes = changes.json["changes"].as_array().expect("changes").clone();
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0]["change_type"], "created");
    assert_eq!(changes[0]["new_path"], "/Inbox/hello.txt");
    assert_eq!(changes[0]["changed_by"], l.json["created_by"]);

    h.send(h.http.get(format!("{url}/download")))
        .await
        .expect(403);
    // Other link types do not take uploads.
    let dl = create_link(&h, folder_link(&h, &inbox, "DOWNLOAD"))
        .await
        .expect(201);
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("x.txt"),
    );
    h.send(
        h.http
            .post(format!("{}/upload", s(&dl.json, "url")))
            .multipart(form),
    )
    .await
    .expect(403);
    let log = h
        .get(&format!("/external/links/{}/sessions", l.id()))
        .await
        .expect(200);
    let actions: Vec<&str> = log.json["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|x| s(x, "action"))
        .collect();
    assert_eq!(actions, vec!["view", "upload", "upload"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_urls_ip_ranges_and_unknown_links() {
    let h = Harness::start().await;
    let file = put_file(&h, None, "note.txt", b"note").await;
    let mut body = file_link(&h, &file, "DOWNLOAD");
    body["allowed_ips"] = json!(["10.0.0.0/8"]);
    let l = create_link(&h, body).await.expect(201);
    let short = s(&l.json, "short_url").to_string();
    public_get(&h, &short, None)
        .await
        .expect_err(403, "LINK_IP_NOT_ALLOWED");
    h.send(h.http.get(format!("{short}/download")))
        .await
        .expect_err(403, "LINK_IP_NOT_ALLOWED");
    h.patch(
        &format!("/external/links/{}", l.id()),
        json!({ "allowed_ips": ["127.0.0.1", "::1"] }),
    )
    .await
    .expect(200);
    let v = public_get(&h, &short, None).await.expect(200);
    assert_eq!(v.json["resource"]["name"], "note.txt");
    let dl = h
        .send(h.http.get(format!("{short}/download")))
        .await
        .expect(200);
    assert_eq!(dl.bytes, b"note");
    public_get(&h, &format!("{}/share/nosuchtoken", h.url), None)
        .await
        .expect_err(404, "NOT_FOUND");
    public_get(&h, &format!("{}/s/nosuch", h.url), None)
        .await
        .expect_err(404, "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_gate() {
    let h = Harness::start().await;
    let folder = h.mkdir(None, "Mail").await;
    let mut body = folder_link(&h, &folder, "VIEW");
    body["require_email"] = json!(true);
    body["allowed_emails"] = json!(["ann@example.com"]);
    let l = create_link(&h, body).await.expect(201);
    let url = s(&l.json, "url").to_string();
    public_get(&h, &url, None)
        .await
        .expect_err(401, "LINK_EMAIL_REQUIRED");
    h.send(h.http.get(&url).header("X-Link-Email", "bob@example.com"))
        .await
        .expect_err(403, "LINK_EMAIL_NOT_ALLOWED");
    h.send(h.http.get(&url).header("X-Link-Email", "Ann@Example.com"))
        .await
        .expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_resources_disable_links_and_folder_links_stay_in_their_subtree() {
    let h = Harness::start().await;
    let a = h.mkdir(None, "A").await;
    let outside = put_file(&h, None, "outside.txt", b"o").await;
    let inside = put_file(&h, Some(&a), "inside.txt", b"i").await;
    let l = create_link(&h, folder_link(&h, &a, "DOWNLOAD"))
        .await
        .expect(201);
    let url = s(&l.json, "url").to_string();
    h.send(h.http.get(format!("{url}/download?file_id={outside}")))
        .await
        .expect_err(404, "NOT_FOUND");
    h.send(h.http.get(format!("{url}/download")))
        .await
        .expect_err(422, "VALIDATION_ERROR");
    h.send(h.http.get(format!("{url}/download?file_id={inside}")))
        .await
        .expect(200);

    let file_l = create_link(&h, file_link(&h, &inside, "DOWNLOAD"))
        .await
        .expect(201);
    h.delete(&format!("/folders/{a}")).await.expect(204);
    for (link, url) in [
        (l.id(), url),
        (file_l.id(), s(&file_l.json, "url").to_string()),
    ] {
        assert_eq!(
            h.get(&format!("/external/links/{link}"))
                .await
                .expect(200)
                .json["status"],
            "disabled"
        );
        public_get(&h, &url, None)
            .await
            .expect_err(410, "RESOURCE_DELETED");
    }
    // Restoring the folder brings the links back.
    h.patch(&format!("/folders/{a}"), json!({ "restore": true }))
        .await
        .expect(200);
    assert_eq!(
        h.get(&format!("/external/links/{}", l.id()))
            .await
            .expect(200)
            .json["status"],
        "active"
    );
}
