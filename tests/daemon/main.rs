//! The real binaries: `scaidrived` and `scaidrivectl` as child processes against a
//! devserver on 127.0.0.1:0 (hosted by the test process). Config errors, the single
//! mirror from the environment, several mirrors, `--once`, `--demo`, signals (TERM drain
//! and resume, HUP reload), the control socket and `scaidrivectl`, the systemd notify
//! protocol, and the single-instance lock.

#[path = "../support/mod.rs"]
mod support;

mod monitoring;
mod ops;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{ConfigFile, MirrorSection, Proc, scaidrivectl, signal, stderr, wait_exit};

/// The shared daemon harness; what only these tests need is added below.
type Env = support::DaemonEnv;

impl Env {
    async fn new() -> Env {
        Env::start().await
    }

    /// A config file with one `[[mirror]]` per (name, root), each into the remote folder
    /// of its name.
    fn config(&self, mirrors: &[(&str, &Path)]) -> PathBuf {
        let mut c = ConfigFile::new(self.dir.path(), &self.url);
        for (name, root) in mirrors {
            let mut m = MirrorSection::new(name, root, &self.share);
            m.remote_path = Some(name);
            c = c.mirror(m);
        }
        c.write()
    }

    fn daemon(&self) -> Command {
        support::scaidrived()
    }

    /// Names of the items in a remote folder path (`a/b`), empty if it does not exist.
    async fn remote_names(&self, path: &str) -> Vec<String> {
        let Some(folder) = self.folder_id(path).await else {
            return Vec::new();
        };
        let mut names: Vec<String> = self
            .children(&folder)
            .await
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_are_one_line_and_exit_78() {
    let e = Env::new().await;
    let root = e.root("root");
    let cases: Vec<(String, &str)> = vec![
        (format!("[remote]\nurl = {:?}\nbogus = 1\n", e.url), "bogus"),
        (
            format!(
                "[remote]\nurl = {:?}\n[[mirror]]\npath = \"/nonexistent/dir\"\nshare_id = \"s\"\n",
                e.url
            ),
            "/nonexistent/dir",
        ),
        (
            format!("[remote]\nurl = \"ftp://x\"\n[[mirror]]\npath = {root:?}\nshare_id = \"s\"\n"),
            "https://",
        ),
        ("[[mirror]\n".to_string(), "TOML parse error"),
        (format!("[remote]\nurl = {:?}\n", e.url), "no mirror"),
    ];
    for (body, needle) in cases {
        let p = e.path("bad.toml");
        std::fs::write(&p, body).unwrap();
        let out = e
            .daemon()
            .arg("--config")
            .arg(&p)
            .env("STATE_DIRECTORY", e.path("state"))
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(78), "{err}");
        assert!(err.contains(needle), "{needle:?} not in {err:?}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    }
    // A missing token is a credentials error: 78 as well.
    let cfg = e.config(&[("m", &root)]);
    let out = e
        .daemon()
        .arg("--config")
        .arg(&cfg)
        .env_remove("SCAIDRIVE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("SCAIDRIVE_TOKEN"));
    // `scaidrivectl config check` agrees.
    let out = scaidrivectl()
        .args(["config", "check"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = scaidrivectl()
        .args(["config", "check"])
        .arg(e.path("bad.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_only_single_mirror_with_once() {
    let e = Env::new().await;
    let root = e.root("photos");
    std::fs::write(root.join("a.jpg"), b"jpeg").unwrap();
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/b.jpg"), b"jpeg2").unwrap();
    let out = e
        .daemon()
        .arg("--once")
        .arg("--folder")
        .arg(&root)
        .env("SCAIDRIVE_URL", &e.url)
        .env("SCAIDRIVE_SHARE_ID", &e.share)
        .env("STATE_DIRECTORY", e.path("state"))
        .env("XDG_RUNTIME_DIR", e.path("xdg-run"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("in sync"));
    assert_eq!(e.remote_names("").await, ["a.jpg", "sub"]);
    assert_eq!(e.remote_names("sub").await, ["b.jpg"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_mirrors_and_once_exit_codes() {
    let e = Env::new().await;
    let a = e.root("a");
    let b = e.root("b");
    std::fs::write(a.join("one.txt"), b"1").unwrap();
    std::fs::write(b.join("two.txt"), b"2").unwrap();
    let cfg = e.config(&[("alpha", &a), ("beta", &b)]);
    let out = e
        .daemon()
        .arg("--config")
        .arg(&cfg)
        .arg("--once")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(e.remote_names("alpha").await, ["one.txt"]);
    assert_eq!(e.remote_names("beta").await, ["two.txt"]);

    // A name the remote rejects leaves the pass not in sync: exit 2 with a summary.
    std::fs::write(b.join("bad name "), b"x").unwrap();
    let out = e
        .daemon()
        .arg("--config")
        .arg(&cfg)
        .arg("--once")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout} {}", stderr(&out));
    assert!(
        stdout.contains("beta: NOT in sync") && stdout.contains("1 failed"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_prints_a_link_that_needs_its_password() {
    let e = Env::new().await;
    let dir = e.root("my_photos");
    std::fs::write(dir.join("cat.jpg"), b"meow").unwrap();
    let mut child = Proc(
        support::scaidrived_bare()
            .arg("--demo")
            .arg(&dir)
            .arg("--state-dir")
            .arg(e.path("demo"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut link = None;
        let mut password = None;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(l) = line.strip_prefix("Share link: ") {
                link = Some(l.trim().to_string());
            }
            if let Some(p) = line.strip_prefix("Password:") {
                password = Some(p.trim().to_string());
                break;
            }
        }
        (link, password)
    });
    let (link, password) = tokio::time::timeout(Duration::from_secs(60), lines)
        .await
        .expect("demo printed a link")
        .unwrap();
    let (link, password) = (link.expect("link line"), password.expect("password line"));
    let without = e.http.get(&link).send().await.unwrap();
    assert_eq!(without.status().as_u16(), 401);
    let wrong = e
        .http
        .get(&link)
        .header("X-Link-Password", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let with: Value = e
        .http
        .get(&link)
        .header("X-Link-Password", &password)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = with["resource"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert_eq!(names, ["cat.jpg"]);
    signal(&child, "TERM");
    let status = wait_exit(&mut child, Duration::from_secs(30));
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn term_drains_and_a_restart_resumes_without_duplicates() {
    let e = Env::new().await;
    let root = e.root("bulk");
    for i in 0..300 {
        std::fs::write(root.join(format!("f{i:03}.txt")), format!("{i}")).unwrap();
    }
    e.faults(serde_json::json!({ "latency_ms": 10 })).await;
    let cfg = e.config(&[("bulk", &root)]);
    let mut child = Proc(e.daemon().arg("--config").arg(&cfg).spawn().unwrap());
    let start = Instant::now();
    while e.stats().await["by_route"]["POST /api/v1/files"]
        .as_u64()
        .unwrap_or(0)
        < 50
    {
        assert!(start.elapsed() < Duration::from_secs(60), "no uploads");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&child, "TERM");
    let status = wait_exit(&mut child, Duration::from_secs(30));
    assert!(status.success(), "graceful stop exits 0: {status}");
    assert!(!e.socket().exists(), "socket removed on stop");
    let before = e.stats().await["by_route"]["POST /api/v1/files"]
        .as_u64()
        .unwrap();
    assert!(before < 300, "the stop should land mid-run ({before})");
    e.faults(serde_json::json!({})).await;
    let out = e
        .daemon()
        .arg("--config")
        .arg(&cfg)
        .arg("--once")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let after = e.stats().await["by_route"]["POST /api/v1/files"]
        .as_u64()
        .unwrap();
    assert_eq!(
        after, 300,
        "each file uploaded exactly once across the stop"
    );
    assert_eq!(e.remote_names("bulk").await.len(), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_socket_status_wait_and_hup_reload() {
    let e = Env::new().await;
    let a = e.root("a");
    std::fs::write(a.join("x.txt"), b"x").unwrap();
    let cfg = e.config(&[("alpha", &a)]);
    let mut child = Proc(e.daemon().arg("--config").arg(&cfg).spawn().unwrap());
    e.wait_socket(&mut child).await;
    assert_eq!(
        std::fs::metadata(e.socket()).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let out = e.ctl(&["wait", "--timeout", "30"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // The --json schema: a stable set of keys.
    let out = e.ctl(&["status", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys = |o: &Value| {
        let mut k: Vec<String> = o.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&v), ["bandwidth", "daemon", "mirrors", "protocol"]);
    assert_eq!(
        keys(&v["daemon"]),
        ["pid", "socket", "started_at", "state_dir", "version"]
    );
    assert_eq!(
        keys(&v["mirrors"][0]),
        [
            "bytes_done",
            "bytes_per_sec",
            "bytes_remaining",
            "cursor_read_at",
            "entries",
            "eta_secs",
            "failures",
            "files_done",
            "files_remaining",
            "first_pass_done",
            "in_flight",
            "in_sync",
            "last_sync_at",
            "name",
            "queue_depth",
            "reason",
            "remote_drift",
            "remote_overwrites",
            "remote_path",
            "remote_repairs",
            "retrying",
            "root",
            "share_id",
            "skipped",
            "state"
        ]
    );
    assert_eq!(v["mirrors"][0]["state"], "idle");
    assert_eq!(v["mirrors"][0]["remote_drift"], 0);
    let human = String::from_utf8_lossy(&e.ctl(&["status"]).stdout).into_owned();
    assert!(
        human.contains("alpha") && human.contains("in sync"),
        "{human}"
    );

    // Paused: wait says so with exit 3.
    assert!(e.ctl(&["pause", "alpha"]).status.success());
    assert_eq!(e.ctl(&["wait", "--timeout", "5"]).status.code(), Some(3));
    assert!(e.ctl(&["resume", "alpha"]).status.success());
    assert_eq!(e.ctl(&["wait", "--timeout", "30"]).status.code(), Some(0));
    let out = e.ctl(&["pause", "nosuch"]);
    assert!(
        !out.status.success() && stderr(&out).contains("no mirror named"),
        "{}",
        stderr(&out)
    );

    // A second daemon on the same state directory refuses to start.
    let out = e.daemon().arg("--config").arg(&cfg).output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already running"), "{}", stderr(&out));

    // HUP: a mirror added to the file starts without a restart.
    let b = e.root("b");
    std::fs::write(b.join("y.txt"), b"y").unwrap();
    e.config(&[("alpha", &a), ("beta", &b)]);
    signal(&child, "HUP");
    let start = Instant::now();
    loop {
        let v: Value =
            serde_json::from_slice(&e.ctl(&["status", "--json"]).stdout).unwrap_or(Value::Null);
        if v["mirrors"].as_array().is_some_and(|m| m.len() == 2) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "beta never appeared"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(e.ctl(&["wait", "--timeout", "30"]).status.code(), Some(0));
    assert_eq!(e.remote_names("beta").await, ["y.txt"]);
    let metrics = String::from_utf8_lossy(&e.ctl(&["metrics"]).stdout).into_owned();
    assert!(
        metrics.contains("scaidrive_in_sync{mirror=\"beta\"} 1"),
        "{metrics}"
    );
    // The change-log series: nothing to repair here.
    for line in [
        "scaidrive_remote_drift{mirror=\"beta\"} 0",
        "scaidrive_remote_repairs_total{mirror=\"beta\"} 0",
        "scaidrive_remote_overwrites_total{mirror=\"beta\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    assert!(metrics.contains("# TYPE scaidrive_change_log_age_seconds gauge"));

    signal(&child, "TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(30)).success());
    // Not running: status says so and reads the state database read-only; wait exits 5.
    let out = scaidrivectl()
        .arg("--config")
        .arg(&cfg)
        .arg("status")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(5));
    assert!(
        text.contains("not running") && text.contains("alpha") && text.contains("beta"),
        "{text}"
    );
    assert_eq!(e.ctl(&["wait"]).status.code(), Some(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_socket_gets_ready_and_status() {
    let e = Env::new().await;
    let a = e.root("a");
    std::fs::write(a.join("x.txt"), b"x").unwrap();
    let cfg = e.config(&[("alpha", &a)]);
    let notify_path = e.path("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut child = Proc(
        e.daemon()
            .arg("--config")
            .arg(&cfg)
            .env("NOTIFY_SOCKET", &notify_path)
            .spawn()
            .unwrap(),
    );
    let mut got = Vec::new();
    let start = Instant::now();
    while !(got.iter().any(|m: &String| m.contains("READY=1"))
        && got.iter().any(|m| m.contains("STATUS=alpha: idle")))
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "notify messages so far: {got:?}"
        );
        let mut buf = [0u8; 4096];
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    signal(&child, "TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(30)).success());
    let mut buf = [0u8; 4096];
    let mut stopping = false;
    while let Ok(n) = sock.recv(&mut buf) {
        if String::from_utf8_lossy(&buf[..n]).contains("STOPPING=1") {
            stopping = true;
            break;
        }
    }
    assert!(stopping, "STOPPING=1 sent on TERM");
}

// The token-leak test lives in tests/security (with the link password, status, links,
// metrics, Debug output and the state database files).

/// Issue 17 item 2: `scaidrived 2>&1 | head -1`. A log sink that goes away must not stop
/// the daemon's work or its shutdown: with the server reachable the daemon used to panic
/// (exit 101, stale socket), with it unreachable it ignored TERM (its signal task had
/// panicked writing a log line).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_log_pipe_stops_neither_work_nor_shutdown() {
    let e = Env::new().await;
    let root = e.root("piped");
    std::fs::write(root.join("first.txt"), "1").unwrap();
    let cfg = e.config(&[("piped", &root)]);
    let spawn = |url: Option<&str>| {
        let mut c = e.daemon();
        c.arg("--config")
            .arg(&cfg)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(u) = url {
            c.env("SCAIDRIVE_URL", u);
        }
        let mut child = c.spawn().unwrap();
        // The reader goes away at once, as `head -1` does after its line.
        drop(child.stdout.take());
        drop(child.stderr.take());
        Proc(child)
    };

    let socket_up = |child: &mut Proc| {
        let start = Instant::now();
        while !e.socket().exists() {
            assert!(start.elapsed() < Duration::from_secs(20), "no socket");
            assert!(child.try_wait().unwrap().is_none(), "the daemon died");
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    // Reachable: it mirrors, keeps mirroring, and stops cleanly.
    let mut child = spawn(None);
    socket_up(&mut child);
    let out = e.ctl(&["wait", "--timeout", "60"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    std::fs::write(root.join("second.txt"), "2").unwrap();
    let start = Instant::now();
    while e.remote_names("piped").await != ["first.txt", "second.txt"] {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "second.txt not mirrored: {:?}",
            e.remote_names("piped").await
        );
        assert!(child.try_wait().unwrap().is_none(), "the daemon died");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = String::from_utf8_lossy(&e.ctl(&["metrics"]).stdout).into_owned();
    let dropped = metrics
        .lines()
        .find_map(|l| l.strip_prefix("scaidrive_log_lines_dropped_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no dropped-lines counter in:\n{metrics}"));
    assert!(dropped > 0, "debug lines were written to the closed pipe");
    signal(&child, "TERM");
    let status = wait_exit(&mut child, Duration::from_secs(20));
    assert!(status.success(), "graceful stop exits 0: {status}");
    assert!(!e.socket().exists(), "socket removed on stop");

    // Unreachable: TERM still stops it.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let mut child = spawn(Some(&url));
    socket_up(&mut child);
    std::thread::sleep(Duration::from_millis(1500));
    signal(&child, "TERM");
    let status = wait_exit(&mut child, Duration::from_secs(20));
    assert!(status.success(), "graceful stop exits 0: {status}");
    assert!(!e.socket().exists(), "socket removed on stop");
}

/// Issue 17 item 12: `config check` accepted an empty token file that the daemon then
/// refused with exit 78. Both now run the same credential checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_refuses_the_token_file_the_daemon_refuses() {
    let e = Env::new().await;
    let root = e.root("m");
    let token = e.path("token");
    std::fs::write(&token, "\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let base = std::fs::read_to_string(e.config(&[("m", &root)])).unwrap();
    let cfg = e.path("with-token-file.toml");
    std::fs::write(
        &cfg,
        base.replace("[remote]\n", &format!("[remote]\ntoken_file = {token:?}\n")),
    )
    .unwrap();
    let daemon = e
        .daemon()
        .arg("--config")
        .arg(&cfg)
        .env_remove("SCAIDRIVE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(daemon.status.code(), Some(78), "{}", stderr(&daemon));
    let check = Command::new(env!("CARGO_BIN_EXE_scaidrivectl"))
        .args(["config", "check"])
        .arg(&cfg)
        .env_remove("SCAIDRIVE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(78), "{}", stderr(&check));
    let line = stderr(&check);
    assert_eq!(line.trim().lines().count(), 1, "{line}");
    assert!(
        line.contains(&token.display().to_string()) && line.contains("empty"),
        "{line}"
    );

    // With a token in it, both accept it.
    std::fs::write(&token, "test-token\n").unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_scaidrivectl"))
        .args(["config", "check"])
        .arg(&cfg)
        .env_remove("SCAIDRIVE_TOKEN")
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    assert!(!String::from_utf8_lossy(&check.stdout).contains("no access token"));
}
