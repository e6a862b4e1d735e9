//! Sharing links through the control API, as `scaidrivectl link`, `links` and `unlink`
//! use it: create for a file, a folder and the mirror root; reuse; regeneration after
//! expiry, exhaustion and on request; revoke; renames and deletes of a linked path; the
//! `[mirror.link]` keeper's renewal; the public URL with and without the password; the
//! errors a user sees; and that the password never reaches the logs, the control API's
//! answers or the state database.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use reqwest::Method;
use scaidrive::config::{LinkConfig, MirrorConfig};
use scaidrive::control::client::{CtlError, call};
use scaidrive::daemon::{self, RunOptions};
use scaidrive::mirror::MirrorHandle;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::world::{Daemon, World};

/// Everything the library logs, from every test in this binary (the subscriber is
/// global). Each test uses its own random password, so grepping the whole buffer for it
/// is a stricter check than grepping one test's share.
fn log_buffer() -> Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("scaidrive=trace")
            .with_ansi(false)
            .with_writer(move || LogSink(sink.clone()))
            .try_init();
        buf
    })
    .clone()
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned()
}

/// A test's view of the control socket: every answer (and error) is kept so the test can
/// check that no password ever came back.
struct Ctl {
    socket: PathBuf,
    seen: Mutex<String>,
}

impl Ctl {
    fn new(w: &World) -> Ctl {
        Ctl {
            socket: w.dir.path().join("run/scaidrived.sock"),
            seen: Mutex::new(String::new()),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, CtlError> {
        let r = call(&self.socket, method, path, body.as_ref()).await;
        let text = match &r {
            Ok(v) => v.to_string(),
            Err(e) => e.to_string(),
        };
        self.seen.lock().unwrap().push_str(&text);
        r
    }

    async fn link(&self, body: Value) -> Result<Value, CtlError> {
        self.call("POST", "/v1/links", Some(body)).await
    }

    async fn ok_link(&self, body: Value) -> Value {
        self.link(body.clone())
            .await
            .unwrap_or_else(|e| panic!("link {body}: {e}"))
    }

    async fn list(&self) -> Vec<Value> {
        self.call("GET", "/v1/links", None).await.unwrap()["links"]
            .as_array()
            .unwrap()
            .clone()
    }

    fn seen(&self) -> String {
        self.seen.lock().unwrap().clone()
    }
}

fn err_code(e: CtlError) -> (u16, String) {
    match e {
        CtlError::Daemon { status, message } => (status, message),
        other => panic!("expected a daemon error, got {other}"),
    }
}

/// Starts the daemon like `World::start_with`, with a fast `[mirror.link]` check.
async fn start_fast(w: &World, m: MirrorConfig, env: scaidrive::config::Env) -> Daemon {
    log_buffer();
    let config = w.config_with(m);
    let stop = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let opts = RunOptions {
        on_started: Some(Box::new(move |h: &[MirrorHandle]| {
            let _ = tx.send(h[0].clone());
        })),
        link_check_every: Some(Duration::from_millis(300)),
        ..RunOptions::default()
    };
    let s = stop.clone();
    let task = tokio::spawn(async move { daemon::run(config, &env, opts, s).await });
    let handle = match tokio::time::timeout(Duration::from_secs(30), rx).await {
        Ok(Ok(h)) => h,
        _ => panic!("daemon did not start: {:?}", task.await),
    };
    Daemon { stop, task, handle }
}

async fn start(w: &World) -> Daemon {
    start_fast(w, w.mirror_config(), w.env()).await
}

fn abs(w: &World, rel: &str) -> String {
    w.root.join(rel).display().to_string()
}

/// GET the public URL; returns the HTTP status.
async fn open(w: &World, url: &str, password: Option<&str>) -> u16 {
    let mut r = w.http.get(url);
    if let Some(p) = password {
        r = r.header("X-Link-Password", p);
    }
    r.send().await.unwrap().status().as_u16()
}

async fn advance_clock(w: &World, secs: i64) {
    w.admin(Method::POST, "/clock", json!({ "advance_secs": secs }))
        .await;
}

fn state_db_bytes(w: &World) -> Vec<u8> {
    let mut all = Vec::new();
    for f in ["state.db", "state.db-wal"] {
        if let Ok(b) = std::fs::read(w.state_dir().join(f)) {
            all.extend(b);
        }
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn assert_secret_kept(w: &World, ctl: &Ctl, password: &str) {
    assert!(
        !ctl.seen().contains(password),
        "the control API returned the password"
    );
    assert!(!logs().contains(password), "the password is in the logs");
    assert!(
        !contains(&state_db_bytes(w), password),
        "the password is in the state database"
    );
}

fn unique_password(tag: &str) -> String {
    format!("pw-{tag}-{}", scaidrive::links::generate_password())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_for_a_file_a_folder_and_the_root_are_created_then_reused() {
    let w = World::new().await;
    w.write("docs/report.txt", b"quarterly numbers");
    w.write("docs/notes.txt", b"notes");
    let d = start(&w).await;
    assert!(d.settled().await.in_sync());
    let ctl = Ctl::new(&w);
    let pw = unique_password("create");

    let file = ctl
        .ok_link(json!({ "path": abs(&w, "docs/report.txt"), "password": pw,
                         "expires_in_days": 14, "name": "Shared batch" }))
        .await;
    assert_eq!(file["outcome"], "created", "{file}");
    let l = &file["link"];
    assert_eq!(l["resource_type"], "file");
    assert_eq!(
        l["resource_id"].as_str(),
        w.remote_id("docs/report.txt").await.as_deref()
    );
    assert_eq!(l["link_type"], "DOWNLOAD");
    assert_eq!(l["options"]["password_required"], true);
    assert_eq!(l["path"], "docs/report.txt");
    let url = l["url"].as_str().unwrap().to_string();
    assert_eq!(open(&w, &url, None).await, 401, "no password, no access");
    assert_eq!(open(&w, &url, Some("wrong")).await, 401);
    assert_eq!(open(&w, &url, Some(&pw)).await, 200);

    let folder = ctl
        .ok_link(json!({ "path": abs(&w, "docs"), "type": "view" }))
        .await;
    assert_eq!(folder["link"]["resource_type"], "folder");
    assert_eq!(folder["link"]["link_type"], "VIEW");
    assert_eq!(
        open(&w, folder["link"]["url"].as_str().unwrap(), None).await,
        200
    );
    let root = ctl.ok_link(json!({ "path": abs(&w, "") })).await;
    assert_eq!(root["link"]["resource_type"], "folder");
    assert_eq!(root["link"]["path"], "");

    // Asking again: the same link, one GET to check it, no create.
    w.reset_stats().await;
    let again = ctl
        .ok_link(json!({ "path": abs(&w, "docs/report.txt"), "password": pw,
                         "expires_in_days": 14, "name": "Shared batch" }))
        .await;
    assert_eq!(again["outcome"], "reused");
    assert_eq!(again["link"]["id"], l["id"]);
    // Without a password option, the protected link of the path is still "the link".
    let plain = ctl
        .ok_link(json!({ "path": abs(&w, "docs/report.txt"),
                         "expires_in_days": 14, "name": "Shared batch" }))
        .await;
    assert_eq!(plain["link"]["id"], l["id"]);
    let stats = w.stats().await;
    assert_eq!(
        stats["by_route"]["POST /api/v1/external/links"].as_u64(),
        None,
        "no new link was created: {stats}"
    );
    // Different options are a different link.
    let capped = ctl
        .ok_link(json!({ "path": abs(&w, "docs/report.txt"), "max_downloads": 3 }))
        .await;
    assert_eq!(capped["outcome"], "created");
    assert_ne!(capped["link"]["id"], l["id"]);

    let listed = ctl.list().await;
    assert_eq!(listed.len(), 4, "{listed:?}");
    assert!(listed.iter().all(|x| x["status"] == "active"), "{listed:?}");
    assert!(listed.iter().all(|x| x["mirror"] == "m"));
    assert_secret_kept(&w, &ctl, &pw);
    d.stop().await;
    assert_secret_kept(&w, &ctl, &pw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_exhausted_and_forced_links_are_regenerated() {
    let w = World::new().await;
    w.write("a.txt", b"alpha");
    w.write("b.txt", b"beta");
    let d = start(&w).await;
    d.settled().await;
    let ctl = Ctl::new(&w);
    let pw = unique_password("regen");
    let ask = json!({ "path": abs(&w, "a.txt"), "password": pw, "expires_in_days": 1 });

    let first = ctl.ok_link(ask.clone()).await;
    let old_url = first["link"]["url"].as_str().unwrap().to_string();
    advance_clock(&w, 2 * 86_400).await;
    assert_eq!(open(&w, &old_url, Some(&pw)).await, 410, "expired");

    // Without the password the protected link cannot be made again, and the user is told.
    let (status, msg) = err_code(
        ctl.link(json!({ "path": abs(&w, "a.txt"), "expires_in_days": 1 }))
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 422, "{msg}");
    assert!(msg.contains("password") && msg.contains("expired"), "{msg}");

    let second = ctl.ok_link(ask.clone()).await;
    assert_eq!(second["outcome"], "regenerated", "{second}");
    assert_eq!(second["replaced"], first["link"]["id"]);
    assert_ne!(second["link"]["id"], first["link"]["id"]);
    let new_url = second["link"]["url"].as_str().unwrap().to_string();
    assert_eq!(open(&w, &new_url, Some(&pw)).await, 200);

    // --regenerate: a new URL even though the link is active; the old one stops working.
    let mut forced = ask.clone();
    forced["regenerate"] = json!(true);
    let third = ctl.ok_link(forced).await;
    assert_eq!(third["outcome"], "regenerated");
    assert_ne!(third["link"]["id"], second["link"]["id"]);
    assert_eq!(
        open(&w, &new_url, Some(&pw)).await,
        410,
        "replaced = revoked"
    );
    assert_eq!(
        open(&w, third["link"]["url"].as_str().unwrap(), Some(&pw)).await,
        200
    );

    // A link whose download cap is reached is exhausted and replaced too.
    let capped = json!({ "path": abs(&w, "b.txt"), "max_downloads": 1 });
    let c1 = ctl.ok_link(capped.clone()).await;
    let c1_url = c1["link"]["url"].as_str().unwrap().to_string();
    let dl = w
        .http
        .get(format!("{c1_url}/download"))
        .send()
        .await
        .unwrap();
    assert_eq!(dl.status().as_u16(), 200);
    assert_eq!(dl.bytes().await.unwrap().as_ref(), b"beta");
    let c2 = ctl.ok_link(capped).await;
    assert_eq!(c2["outcome"], "regenerated", "{c2}");
    assert!(c2["reason"].as_str().unwrap().contains("exhausted"), "{c2}");

    let listed = ctl.list().await;
    let status_of = |id: &Value| {
        listed
            .iter()
            .find(|x| x["id"] == *id)
            .map(|x| x["status"].as_str().unwrap().to_string())
    };
    assert_eq!(status_of(&first["link"]["id"]).as_deref(), Some("revoked"));
    assert_eq!(status_of(&second["link"]["id"]).as_deref(), Some("revoked"));
    assert_eq!(status_of(&third["link"]["id"]).as_deref(), Some("active"));
    assert_eq!(status_of(&c1["link"]["id"]).as_deref(), Some("revoked"));
    assert_secret_kept(&w, &ctl, &pw);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlink_revokes_by_id_and_by_path() {
    let w = World::new().await;
    w.write("one.txt", b"1");
    w.write("two.txt", b"2");
    let d = start(&w).await;
    d.settled().await;
    let ctl = Ctl::new(&w);
    let one = ctl.ok_link(json!({ "path": abs(&w, "one.txt") })).await;
    let two_a = ctl.ok_link(json!({ "path": abs(&w, "two.txt") })).await;
    let two_b = ctl
        .ok_link(json!({ "path": abs(&w, "two.txt"), "type": "view" }))
        .await;
    let id = one["link"]["id"].as_str().unwrap();
    let url = one["link"]["url"].as_str().unwrap();
    assert_eq!(open(&w, url, None).await, 200);

    w.reset_stats().await;
    let r = ctl
        .call("POST", "/v1/unlink", Some(json!({ "target": id })))
        .await
        .unwrap();
    assert_eq!(r["revoked"][0]["id"], id);
    assert_eq!(
        w.count("DELETE /api/v1/external/links/{link_id}").await,
        1,
        "one DELETE"
    );
    assert_eq!(open(&w, url, None).await, 410, "refused after revoke");

    let r = ctl
        .call(
            "POST",
            "/v1/unlink",
            Some(json!({ "target": "two.txt", "path": abs(&w, "two.txt") })),
        )
        .await
        .unwrap();
    assert_eq!(r["revoked"].as_array().unwrap().len(), 2, "{r}");
    for l in [&two_a, &two_b] {
        assert_eq!(
            open(&w, l["link"]["url"].as_str().unwrap(), None).await,
            410
        );
    }
    let listed = ctl.list().await;
    assert!(
        listed.iter().all(|x| x["status"] == "revoked"),
        "{listed:?}"
    );
    let (status, msg) = err_code(
        ctl.call("POST", "/v1/unlink", Some(json!({ "target": "lnk_nope" })))
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 404, "{msg}");
    // Asking again after a revoke makes a new link.
    let again = ctl.ok_link(json!({ "path": abs(&w, "one.txt") })).await;
    assert_eq!(again["outcome"], "created");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_path_keeps_its_link_and_a_deleted_one_marks_it_gone() {
    let w = World::new().await;
    w.write("docs/r.txt", b"report");
    w.write("keep.txt", b"stays");
    let d = start(&w).await;
    d.settled().await;
    let ctl = Ctl::new(&w);
    let dir = ctl.ok_link(json!({ "path": abs(&w, "docs") })).await;
    let file = ctl.ok_link(json!({ "path": abs(&w, "docs/r.txt") })).await;
    let keep = ctl.ok_link(json!({ "path": abs(&w, "keep.txt") })).await;
    let file_url = file["link"]["url"].as_str().unwrap().to_string();

    std::fs::rename(w.root.join("docs"), w.root.join("papers")).unwrap();
    d.settled().await;
    w.assert_mirrored().await;
    let listed = ctl.list().await;
    let path_of = |v: &Value| {
        listed
            .iter()
            .find(|x| x["id"] == v["link"]["id"])
            .map(|x| (x["path"].clone(), x["status"].clone()))
            .unwrap()
    };
    assert_eq!(path_of(&dir), (json!("papers"), json!("active")));
    assert_eq!(path_of(&file), (json!("papers/r.txt"), json!("active")));
    let dl = w
        .http
        .get(format!("{file_url}/download"))
        .send()
        .await
        .unwrap();
    assert_eq!(dl.status().as_u16(), 200, "the same link still works");
    assert_eq!(dl.bytes().await.unwrap().as_ref(), b"report");
    let again = ctl
        .ok_link(json!({ "path": abs(&w, "papers/r.txt") }))
        .await;
    assert_eq!(again["outcome"], "reused");
    assert_eq!(again["link"]["id"], file["link"]["id"]);

    std::fs::remove_dir_all(w.root.join("papers")).unwrap();
    d.settled().await;
    let listed = ctl.list().await;
    let status_of = |v: &Value| {
        listed
            .iter()
            .find(|x| x["id"] == v["link"]["id"])
            .map(|x| x["status"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(status_of(&dir), "gone");
    assert_eq!(status_of(&file), "gone");
    assert_eq!(status_of(&keep), "active", "other links are untouched");
    assert_eq!(open(&w, &file_url, None).await, 410);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_root_link_is_created_after_the_first_pass_and_renewed() {
    let w = World::new().await;
    w.write("site/index.html", b"<h1>hi</h1>");
    let pw = unique_password("keeper");
    let pw_file = w.dir.path().join("link-password");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&pw_file)
            .unwrap();
        writeln!(f, "{pw}").unwrap();
    }
    let mut m = w.mirror_config();
    m.link = Some(LinkConfig {
        r#type: "download".into(),
        password_file: Some(pw_file.clone()),
        expires_in_days: Some(1),
    });
    let d = start_fast(&w, m, w.env()).await;
    d.settled().await;
    let ctl = Ctl::new(&w);
    let active_root = |listed: &[Value]| {
        listed
            .iter()
            .filter(|x| x["path"] == "" && x["status"] == "active")
            .cloned()
            .collect::<Vec<_>>()
    };
    let first = wait_for(&ctl, "the root link", |l| active_root(l).len() == 1).await;
    let first = active_root(&first).remove(0);
    assert_eq!(first["resource_type"], "folder");
    assert_eq!(first["options"]["password_required"], true);
    assert_eq!(first["options"]["expires_in_days"], 1);
    let url = first["url"].as_str().unwrap().to_string();
    assert_eq!(open(&w, &url, None).await, 401);
    assert_eq!(open(&w, &url, Some(&pw)).await, 200);
    assert!(logs().contains(&url), "the URL is logged");

    // The link expires (server clock): the keeper replaces it without being asked.
    advance_clock(&w, 86_400 + 60).await;
    let renewed = wait_for(&ctl, "a renewed root link", |l| {
        active_root(l).iter().any(|x| x["id"] != first["id"])
    })
    .await;
    let second = active_root(&renewed).remove(0);
    let second_url = second["url"].as_str().unwrap().to_string();
    assert_eq!(open(&w, &second_url, Some(&pw)).await, 200);
    assert_eq!(open(&w, &url, Some(&pw)).await, 410);
    let now = ctl.list().await;
    let old = now.iter().find(|x| x["id"] == first["id"]).unwrap();
    assert_eq!(old["status"], "revoked", "the expired link was revoked");
    tokio::time::timeout(Duration::from_secs(10), async {
        while !logs().contains(&second_url) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the renewed URL is logged");
    // Steady state: the keeper keeps the one link and makes no new ones.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(active_root(&ctl.list().await).len(), 1);
    d.stop().await;
    assert_secret_kept(&w, &ctl, &pw);
}

/// Polls the link list (refreshed from the server) until `f` holds.
async fn wait_for(ctl: &Ctl, what: &str, f: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut last = Vec::new();
    let ok = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            last = ctl.list().await;
            if f(&last) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    if ok.is_err() {
        panic!(
            "timed out waiting for {what}; links: {last:#?}\nlogs:\n{}",
            logs()
        );
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_say_what_is_wrong() {
    let w = World::new().await;
    w.write("ok.txt", b"ok");
    w.write("x.skipme", b"ignored");
    let d = start(&w).await;
    d.settled().await;
    let ctl = Ctl::new(&w);
    let expect = |r: Result<Value, CtlError>, status: u16, words: &[&str]| {
        let (s, msg) = err_code(r.unwrap_err());
        assert_eq!(s, status, "{msg}");
        for word in words {
            assert!(msg.contains(word), "{msg:?} should mention {word:?}");
        }
        assert!(!msg.contains('\n'), "one line: {msg:?}");
    };
    let outside = w.dir.path().join("elsewhere.txt");
    std::fs::write(&outside, b"x").unwrap();
    expect(
        ctl.link(json!({ "path": outside })).await,
        404,
        &["not inside any mirror", "m at"],
    );
    expect(
        ctl.link(json!({ "path": abs(&w, "x.skipme") })).await,
        400,
        &["ignored"],
    );
    expect(
        ctl.link(json!({ "path": abs(&w, "missing.txt") })).await,
        404,
        &["does not exist"],
    );
    expect(
        ctl.link(json!({ "path": abs(&w, "ok.txt"), "type": "upload" }))
            .await,
        400,
        &["UPLOAD links need a folder"],
    );

    w.admin(
        Method::PATCH,
        "/tenant",
        json!({ "require_link_password": true }),
    )
    .await;
    expect(
        ctl.link(json!({ "path": abs(&w, "ok.txt") })).await,
        422,
        &["requires a password", "--generate-password"],
    );
    w.admin(Method::PATCH, "/tenant", json!({ "links_disabled": true }))
        .await;
    expect(
        ctl.link(json!({ "path": abs(&w, "ok.txt"), "password": "pw-x" }))
            .await,
        403,
        &["disabled by the tenant's sharing policy"],
    );
    w.admin(
        Method::PATCH,
        "/tenant",
        json!({ "links_disabled": false, "require_link_password": false }),
    )
    .await;

    // A path that has not reached the remote yet: the call waits for the mirror.
    w.write("new/fresh.txt", b"just written");
    let r = ctl
        .ok_link(json!({ "path": abs(&w, "new/fresh.txt"), "wait_secs": 30 }))
        .await;
    assert_eq!(r["outcome"], "created");
    assert_eq!(
        r["link"]["resource_id"].as_str(),
        w.remote_id("new/fresh.txt").await.as_deref()
    );
    // Without waiting, a path not uploaded yet is a 409 the CLI turns into a wait.
    d.handle
        .ask(scaidrive::mirror::MirrorCmd::Pause)
        .await
        .unwrap();
    w.write("later.txt", b"not yet");
    expect(
        ctl.link(json!({ "path": abs(&w, "later.txt"), "wait_secs": 5 }))
            .await,
        409,
        &["not on the remote yet", "paused"],
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contributor_token_gets_a_clear_permission_error_and_a_share_root_mirror_links_the_share()
{
    let w = World::new().await;
    w.write("f.txt", b"data");
    let user = w
        .admin(Method::POST, "/users", json!({ "name": "Contributor" }))
        .await;
    let uid = user["id"].as_str().unwrap();
    w.admin(
        Method::POST,
        "/members",
        json!({ "share_id": w.share, "user_id": uid, "role": "contributor" }),
    )
    .await;
    let tok = w
        .admin(Method::POST, "/tokens", json!({ "user_id": uid }))
        .await;
    let mut env = w.env();
    env.insert(
        "SCAIDRIVE_TOKEN".into(),
        tok["access_token"].as_str().unwrap().into(),
    );
    let d = start_fast(&w, w.mirror_config(), env).await;
    assert!(d.settled().await.in_sync(), "a contributor can mirror");
    let ctl = Ctl::new(&w);
    let (status, msg) = err_code(
        ctl.link(json!({ "path": abs(&w, "f.txt") }))
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 403, "{msg}");
    assert!(
        msg.contains("no SHARE permission") && msg.contains("admin or owner"),
        "{msg}"
    );
    d.stop().await;

    // The same tree mirrored to the share root: the root link is a share link.
    let mut m = w.mirror_config();
    m.name = Some("top".into());
    m.remote_path = String::new();
    let d = start_fast(&w, m, w.env()).await;
    d.settled().await;
    let root = ctl.ok_link(json!({ "path": abs(&w, "") })).await;
    assert_eq!(root["link"]["resource_type"], "share");
    assert_eq!(root["link"]["resource_id"], w.share.as_str());
    assert_eq!(
        open(&w, root["link"]["url"].as_str().unwrap(), None).await,
        200
    );
    d.stop().await;
}
