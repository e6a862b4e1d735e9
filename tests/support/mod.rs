//! The harness every integration-test binary shares (each pulls it in with
//! `#[path = "../support/mod.rs"] mod support;`): a devserver on 127.0.0.1:0 with its admin
//! routes and a few API reads, the real `scaidrived` and `scaidrivectl` binaries (config
//! files, commands with the test token, a kill-on-drop guard), polling helpers, and the
//! test token. What a single binary alone needs stays in that binary.

// Every binary uses a different part of this module; without this, each would warn about
// the parts it leaves alone.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output};
use std::time::{Duration, Instant};

use reqwest::Method;
use scaidrive::devserver::{self, DevServerConfig, RunningServer};
use serde_json::{Value, json};

/// The static token of the devserver's test user (`DevServerConfig::for_tests`).
pub const TOKEN: &str = "test-token";

// --- the devserver ---------------------------------------------------------------------

/// A devserver hosted by the test process on 127.0.0.1:0, with its data in `data_dir`
/// (so a restart finds it again). Stopped when dropped; derefs to the running server.
pub struct Server {
    running: Option<RunningServer>,
    data_dir: PathBuf,
    pub url: String,
    pub share: String,
    /// The token [`Server::api`] sends: the first static token it was started with.
    pub token: String,
    pub http: reqwest::Client,
}

impl Server {
    pub async fn start(data_dir: impl Into<PathBuf>) -> Server {
        Self::start_with(data_dir, |_| {}).await
    }

    /// Starts it with `f` applied to the test defaults (tokens, quota, settings...).
    pub async fn start_with(
        data_dir: impl Into<PathBuf>,
        f: impl FnOnce(&mut DevServerConfig),
    ) -> Server {
        let data_dir = data_dir.into();
        let mut config = DevServerConfig::for_tests(&data_dir);
        f(&mut config);
        let token = config.tokens.first().cloned().unwrap_or_default();
        let running = devserver::start(config).await.expect("devserver starts");
        Server {
            url: running.url().to_string(),
            share: running.share_id().to_string(),
            token,
            running: Some(running),
            data_dir,
            http: reqwest::Client::new(),
        }
    }

    pub fn running(&self) -> &RunningServer {
        self.running.as_ref().expect("server running")
    }

    /// Stops the server and starts a new one (on a new port) on the same data directory,
    /// with the test defaults again.
    pub async fn restart(&mut self) {
        if let Some(s) = self.running.take() {
            s.shutdown().await;
        }
        let config = DevServerConfig::for_tests(&self.data_dir);
        let running = devserver::start(config).await.expect("devserver restarts");
        self.url = running.url().to_string();
        assert_eq!(
            running.share_id(),
            self.share,
            "fixture share survives a restart"
        );
        self.running = Some(running);
    }

    /// Like [`Server::restart`], but on the same port, so a running daemon finds it again.
    pub async fn restart_on_same_port(&mut self) {
        let old = self.running.take().expect("server running");
        let addr: std::net::SocketAddr = self
            .url
            .trim_start_matches("http://")
            .parse()
            .expect("url is host:port");
        old.shutdown().await;
        let mut cfg = DevServerConfig::for_tests(&self.data_dir);
        cfg.listen = addr;
        let mut running = None;
        for _ in 0..50 {
            match devserver::start(cfg.clone()).await {
                Ok(s) => {
                    running = Some(s);
                    break;
                }
                // The port may linger a moment after the old listener closed.
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let running = running.expect("devserver restarts on its port");
        assert_eq!(running.url(), self.url);
        assert_eq!(running.share_id(), self.share);
        self.running = Some(running);
        // Pooled connections went with the old server.
        self.http = reqwest::Client::new();
    }

    /// The URL of an API route (`/files/...` → `<base>/api/v1/files/...`).
    pub fn api_url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.url)
    }

    /// GETs an API route with [`Server::token`]; panics unless it answers with success.
    pub async fn api(&self, path: &str) -> Value {
        self.api_live(path)
            .await
            .unwrap_or_else(|| panic!("GET {path}: not found or gone"))
    }

    /// Like [`Server::api`], but `None` when the item is gone (404, or 410 for the trash):
    /// a daemon may delete it between a listing and this call.
    pub async fn api_live(&self, path: &str) -> Option<Value> {
        let r = self
            .http
            .get(self.api_url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        if matches!(r.status().as_u16(), 404 | 410) {
            return None;
        }
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        Some(r.json().await.unwrap())
    }

    /// The live items of a remote folder (`root` for the share's root).
    pub async fn children(&self, folder_id: &str) -> Vec<Value> {
        let list = self
            .api(&format!(
                "/folders/{folder_id}/children?share_id={}",
                self.share
            ))
            .await;
        list["items"].as_array().unwrap().clone()
    }

    /// The id of the remote folder at `path` (`a/b`, from the share's root), if it exists.
    pub async fn folder_id(&self, path: &str) -> Option<String> {
        let mut folder = "root".to_string();
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            folder = self
                .children(&folder)
                .await
                .iter()
                .find(|i| i["name"] == seg && i["type"] == "folder")?["id"]
                .as_str()?
                .to_string();
        }
        Some(folder)
    }

    /// Calls an admin route (`/_devserver/...`) and returns its JSON (`Null` if none).
    pub async fn admin(&self, method: Method, path: &str, body: Value) -> Value {
        let mut rb = self
            .http
            .request(method, format!("{}/_devserver{path}", self.url));
        if !body.is_null() {
            rb = rb.json(&body);
        }
        let resp = rb.send().await.expect("admin request");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "admin {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Request counts by route and by status since the last reset.
    pub async fn stats(&self) -> Value {
        self.admin(Method::GET, "/stats", Value::Null).await
    }

    pub async fn reset_stats(&self) {
        self.admin(Method::POST, "/stats/reset", Value::Null).await;
    }

    /// Requests recorded for `route` (e.g. `"POST /api/v1/files"`), any status.
    pub async fn count(&self, route: &str) -> u64 {
        self.stats().await["by_route"][route].as_u64().unwrap_or(0)
    }

    pub async fn faults(&self, faults: Value) {
        self.admin(Method::POST, "/faults", faults).await;
    }

    /// Changes settings (a partial `devserver::Settings`); returns the new ones.
    pub async fn settings(&self, patch: Value) -> Value {
        self.admin(Method::PATCH, "/settings", patch).await
    }

    /// Moves the server clock forward (expires tokens issued with a lifetime).
    pub async fn advance_clock(&self, secs: i64) {
        self.admin(Method::POST, "/clock", json!({ "advance_secs": secs }))
            .await;
    }
}

// Tests read the running server's own fields (`info`, `state`) through it.
impl std::ops::Deref for Server {
    type Target = RunningServer;
    fn deref(&self) -> &RunningServer {
        self.running()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.running.take() {
            s.shutdown_token().cancel();
        }
    }
}

// --- the daemon binaries ---------------------------------------------------------------

/// A devserver plus a temp dir for a daemon binary's files (config, `state/`, `run/`
/// with the control socket); derefs to the [`Server`].
pub struct DaemonEnv {
    pub dir: tempfile::TempDir,
    pub server: Server,
}

impl std::ops::Deref for DaemonEnv {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

impl DaemonEnv {
    pub async fn start() -> DaemonEnv {
        Self::start_with(|_| {}).await
    }

    /// With `f` applied to the devserver's test defaults.
    pub async fn start_with(f: impl FnOnce(&mut DevServerConfig)) -> DaemonEnv {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start_with(dir.path().join("server"), f).await;
        DaemonEnv { dir, server }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A folder `name` in the temp dir (created), e.g. a mirror's root.
    pub fn root(&self, name: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    pub fn run_dir(&self) -> PathBuf {
        self.path("run")
    }

    pub fn socket(&self) -> PathBuf {
        self.run_dir().join("scaidrived.sock")
    }

    /// `scaidrivectl --socket <socket> ARGS...`, to run as the test likes.
    pub fn ctl_cmd(&self, args: &[&str]) -> Command {
        let mut c = scaidrivectl();
        c.arg("--socket").arg(self.socket()).args(args);
        c
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        ctl(&self.socket(), args)
    }

    pub async fn wait_socket(&self, child: &mut Child) {
        wait_socket(&self.socket(), child).await;
    }
}

/// A `scaidrived.toml`: state in `dir/state`, the control socket in `dir/run`, written to
/// `dir/scaidrived.toml`. Fields left at [`ConfigFile::new`]'s values are the defaults the
/// tests share; `remote` holds extra lines for `[remote]`.
pub struct ConfigFile<'a> {
    pub dir: &'a Path,
    pub url: &'a str,
    pub log_level: &'a str,
    pub remote: String,
    pub mirrors: Vec<MirrorSection<'a>>,
}

/// One `[[mirror]]`; `extra` holds further lines (and sub-tables) for it.
pub struct MirrorSection<'a> {
    pub name: &'a str,
    pub path: &'a Path,
    pub share_id: &'a str,
    pub remote_path: Option<&'a str>,
    pub quiet_period_ms: u64,
    pub extra: String,
}

impl<'a> MirrorSection<'a> {
    pub fn new(name: &'a str, path: &'a Path, share_id: &'a str) -> MirrorSection<'a> {
        MirrorSection {
            name,
            path,
            share_id,
            remote_path: None,
            quiet_period_ms: 200,
            extra: String::new(),
        }
    }
}

impl<'a> ConfigFile<'a> {
    pub fn new(dir: &'a Path, url: &'a str) -> ConfigFile<'a> {
        ConfigFile {
            dir,
            url,
            log_level: "warn",
            remote: String::new(),
            mirrors: Vec::new(),
        }
    }

    pub fn mirror(mut self, m: MirrorSection<'a>) -> ConfigFile<'a> {
        self.mirrors.push(m);
        self
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    pub fn text(&self) -> String {
        let mut s = format!(
            "[daemon]\nstate_dir = {:?}\nruntime_dir = {:?}\nlog_level = {:?}\n[remote]\nurl = {:?}\n{}\n",
            self.state_dir(),
            self.run_dir(),
            self.log_level,
            self.url,
            self.remote
        );
        for m in &self.mirrors {
            write!(
                s,
                "[[mirror]]\nname = {:?}\npath = {:?}\nshare_id = {:?}\nquiet_period_ms = {}\n",
                m.name, m.path, m.share_id, m.quiet_period_ms
            )
            .unwrap();
            if let Some(r) = m.remote_path {
                writeln!(s, "remote_path = {r:?}").unwrap();
            }
            writeln!(s, "{}", m.extra).unwrap();
        }
        s
    }

    /// Writes it to `dir/scaidrived.toml` and returns that path.
    pub fn write(&self) -> PathBuf {
        let p = self.dir.join("scaidrived.toml");
        std::fs::write(&p, self.text()).unwrap();
        p
    }
}

/// `scaidrived` with no credentials or systemd hand-offs from the test's environment.
pub fn scaidrived_bare() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_scaidrived"));
    c.env_remove("NOTIFY_SOCKET")
        .env_remove("STATE_DIRECTORY")
        .env_remove("RUNTIME_DIRECTORY")
        .env_remove("SCAIDRIVE_TOKEN")
        .env_remove("SCAIDRIVE_REFRESH_TOKEN")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("RUST_LOG");
    c
}

/// `scaidrived` with the test token in `SCAIDRIVE_TOKEN`.
pub fn scaidrived() -> Command {
    let mut c = scaidrived_bare();
    c.env("SCAIDRIVE_TOKEN", TOKEN);
    c
}

/// `scaidrived --config CONFIG` started in the background, stdout discarded, stderr to
/// `stderr` (a log file, or inherited).
pub fn spawn_daemon(config: &Path, stderr: impl Into<std::process::Stdio>) -> Proc {
    Proc(
        scaidrived()
            .arg("--config")
            .arg(config)
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("scaidrived starts"),
    )
}

pub fn scaidrivectl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_scaidrivectl"))
}

/// `scaidrivectl --socket SOCKET ARGS...`, run to completion.
pub fn ctl(socket: &Path, args: &[&str]) -> Output {
    scaidrivectl()
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap()
}

/// A child process (a daemon binary, scaidrivectl) killed with SIGKILL when dropped, so a
/// failing test never leaves one behind to hold the test runner's output pipe open.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Proc {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Proc {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// Sends `sig` (`TERM`, `HUP`, ...) to the process.
pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Waits for the process to exit; panics after `within`.
pub fn wait_exit(child: &mut Child, within: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            start.elapsed() < within,
            "process did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the daemon's control socket exists; panics if the daemon exits first or
/// the socket takes more than 30 s.
pub async fn wait_socket(socket: &Path, child: &mut Child) {
    let start = Instant::now();
    while !socket.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("daemon exited early: {status}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "control socket never appeared"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

// --- waiting and small helpers ---------------------------------------------------------

/// Polls `f` every `every` until it is true; panics naming `what` after `within`.
pub async fn eventually(
    what: &str,
    within: Duration,
    every: Duration,
    mut f: impl AsyncFnMut() -> bool,
) {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(every).await;
    }
}

/// Whether the tests run as root (some need it, and print SKIPPED otherwise).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Writes `data` to `root/rel`, creating the parent folders.
pub fn write_file(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}
