//! The pieces every workload uses: a scratch directory, the devserver hosted in this
//! process (so the daemon child's `/proc` counters are the daemon's alone), its admin
//! routes (request statistics), and the real `scaidrived` binary run as a child process
//! with a generated config, watched through its control socket.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::sys::{self, ProcSample};
use scaidrive::devserver::{self, DevServerConfig, RunningServer};

/// The access token of the devserver's default user (`DevServerConfig::for_tests`).
pub const TOKEN: &str = "test-token";
/// Remote base folder of every mirror the benchmark starts.
pub const REMOTE_BASE: &str = "bench";

/// A directory removed on drop unless the run asked to keep it.
pub struct Scratch {
    pub path: PathBuf,
    keep: bool,
}

impl Scratch {
    pub fn new(parent: &Path, name: &str, keep: bool) -> Result<Scratch> {
        let path = parent.join(format!("scaidrive-bench-{}-{name}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Scratch { path, keep })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// How a workload wants the devserver set up.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct ServerSetup {
    pub latency_ms: u64,
    /// Cost units per minute and token; 0 = off.
    pub rate_limit: u64,
}

pub struct Server {
    pub running: RunningServer,
    pub http: reqwest::Client,
}

impl Server {
    pub async fn start(dir: &Path, setup: ServerSetup) -> Result<Server> {
        let mut cfg = DevServerConfig::for_tests(dir);
        cfg.settings.rate_limit = setup.rate_limit;
        cfg.settings.faults.latency_ms = setup.latency_ms;
        let running = devserver::start(cfg).await?;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(4)
            .build()?;
        Ok(Server { running, http })
    }

    pub fn url(&self) -> &str {
        self.running.url()
    }

    pub fn share_id(&self) -> &str {
        self.running.share_id()
    }

    /// `GET /_devserver/stats`: counts since the last reset.
    pub async fn stats(&self) -> Result<Stats> {
        let v: Value = self
            .http
            .get(format!("{}/_devserver/stats", self.url()))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(Stats(v))
    }

    pub async fn reset_stats(&self) -> Result<()> {
        self.http
            .post(format!("{}/_devserver/stats/reset", self.url()))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// `GET /api/v1/sync/changes` with the benchmark's own bearer token (W3 only, where
    /// the rate limit is off, so polling costs the daemon nothing).
    pub async fn changes(&self, cursor: Option<&str>) -> Result<Value> {
        let mut q = vec![("share_id", self.share_id().to_string())];
        if let Some(c) = cursor {
            q.push(("cursor", c.to_string()));
            q.push(("limit", "500".into()));
        }
        Ok(self
            .http
            .get(format!("{}/api/v1/sync/changes", self.url()))
            .bearer_auth(TOKEN)
            .query(&q)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    pub async fn shutdown(self) {
        self.running.shutdown().await;
    }
}

/// A snapshot of the devserver's request statistics.
#[derive(Clone, Debug)]
pub struct Stats(pub Value);

impl Stats {
    pub fn total(&self) -> u64 {
        self.0["requests_total"].as_u64().unwrap_or(0)
    }
    pub fn rate_limited(&self) -> u64 {
        self.0["rate_limited_total"].as_u64().unwrap_or(0)
    }
    pub fn units(&self) -> u64 {
        self.0["units_total"].as_u64().unwrap_or(0)
    }
    /// Requests whose route tag (`METHOD /matched/path`) satisfies `f`.
    pub fn routes(&self, f: impl Fn(&str) -> bool) -> u64 {
        self.0["by_route"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| f(k))
                    .map(|(_, v)| v.as_u64().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0)
    }
    /// Requests that start an upload: plain multipart uploads and upload sessions.
    pub fn uploads(&self) -> u64 {
        self.routes(|r| r == "POST /api/v1/files" || r == "POST /api/v1/uploads")
    }
    pub fn by_route(&self) -> Value {
        self.0["by_route"].clone()
    }
}

/// Where the daemon binary is and whether it is older than the library it should contain.
pub fn daemon_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the benchmark binary")?;
    let dir = exe.parent().context("benchmark binary has no parent dir")?;
    let daemon = dir.join("scaidrived");
    if !daemon.is_file() {
        bail!(
            "{} not found: build it first (cargo build --release --bins)",
            daemon.display()
        );
    }
    // `cargo run --bin scaidrive-bench` rebuilds the library and this binary but not
    // scaidrived; measuring a stale daemon would report the wrong code's numbers.
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(lib), Some(d)) = (mtime(&dir.join("libscaidrive.rlib")), mtime(&daemon))
        && lib > d
    {
        bail!(
            "{} is older than the library it is built from: rebuild it (cargo build {}--bins)",
            daemon.display(),
            if cfg!(debug_assertions) {
                ""
            } else {
                "--release "
            }
        );
    }
    Ok(daemon)
}

/// Mirror options a workload may set; everything else is the daemon's default.
#[derive(Clone, Debug, Default)]
pub struct MirrorOpts {
    pub quiet_period_ms: Option<u64>,
}

pub struct Daemon {
    child: tokio::process::Child,
    pub pid: u32,
    pub socket: PathBuf,
    pub log: PathBuf,
    pub started: Instant,
}

impl Daemon {
    /// Writes `dir/scaidrived.toml` (state and socket under `dir`) and starts the daemon
    /// mirroring `root` to `REMOTE_BASE` in the default share. Its log goes to
    /// `dir/scaidrived-N.log` (level warn, so logging costs nothing measurable).
    pub fn spawn(
        exe: &Path,
        dir: &Path,
        server: &Server,
        root: &Path,
        opts: &MirrorOpts,
    ) -> Result<Daemon> {
        let run = dir.join("run");
        // `SCAIDRIVE_BENCH_LOG_LEVEL=debug` shows the daemon's phase timings in its log (at
        // some cost: the figures are then not the ones to report).
        let level = std::env::var("SCAIDRIVE_BENCH_LOG_LEVEL").unwrap_or_else(|_| "warn".into());
        let mut cfg = format!(
            "[daemon]\nstate_dir = {state:?}\nruntime_dir = {run:?}\nlog_level = {level:?}\n\n\
             [remote]\nurl = {url:?}\n\n\
             [[mirror]]\nname = \"bench\"\npath = {root:?}\nshare_id = {share:?}\nremote_path = {base:?}\n",
            state = dir.join("state"),
            url = server.url(),
            share = server.share_id(),
            base = REMOTE_BASE,
        );
        if let Some(q) = opts.quiet_period_ms {
            cfg.push_str(&format!("quiet_period_ms = {q}\n"));
        }
        let cfg_path = dir.join("scaidrived.toml");
        std::fs::write(&cfg_path, cfg)?;
        // One log per start, so a restart's problems are not the first run's.
        let log = (1..)
            .map(|n| dir.join(format!("scaidrived-{n}.log")))
            .find(|p| !p.exists())
            .context("no free log name")?;
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let started = Instant::now();
        let child = tokio::process::Command::new(exe)
            .arg("--config")
            .arg(&cfg_path)
            .env("SCAIDRIVE_TOKEN", TOKEN)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let pid = child.id().context("daemon exited at once")?;
        Ok(Daemon {
            child,
            pid,
            socket: run.join("scaidrived.sock"),
            log,
            started,
        })
    }

    pub fn sample(&self) -> Result<ProcSample> {
        sys::sample(self.pid)
    }

    /// The one mirror's status, or `None` while the socket is not up yet.
    pub async fn status(&self) -> Result<Option<Value>> {
        match scaidrive::control::client::call(&self.socket, "GET", "/v1/status", None).await {
            Ok(v) => Ok(v["mirrors"].as_array().and_then(|m| m.first()).cloned()),
            Err(scaidrive::control::client::CtlError::NotRunning(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Fails if the daemon process is gone or its mirror stopped in a state that needs a
    /// person; this is what the benchmark reports as misbehaviour.
    async fn check(&mut self, status: Option<&Value>) -> Result<()> {
        if let Some(code) = self.child.try_wait()? {
            bail!(
                "scaidrived exited ({code}); last log lines:\n{}",
                self.log_tail(20)
            );
        }
        if let Some(s) = status {
            let state = s["state"].as_str().unwrap_or("");
            if matches!(state, "paused" | "needs_credentials" | "error") {
                bail!(
                    "mirror went {state}: {}; last log lines:\n{}",
                    s["reason"].as_str().unwrap_or("no reason given"),
                    self.log_tail(20)
                );
            }
        }
        Ok(())
    }

    /// Polls the control socket every `poll` until the mirror is idle and in sync; returns
    /// the time of the first in-sync reading.
    pub async fn wait_in_sync(&mut self, timeout: Duration, poll: Duration) -> Result<Instant> {
        let start = Instant::now();
        loop {
            let s = self.status().await?;
            self.check(s.as_ref()).await?;
            if s.as_ref()
                .is_some_and(|s| s["in_sync"].as_bool() == Some(true))
            {
                return Ok(Instant::now());
            }
            if start.elapsed() > timeout {
                bail!(
                    "not in sync after {timeout:?}; status: {}; last log lines:\n{}",
                    s.map(|s| s.to_string())
                        .unwrap_or_else(|| "no socket".into()),
                    self.log_tail(20)
                );
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// After a change on disk: waits until the daemon shows it noticed (not in sync, or
    /// `noticed()` says the server saw requests), then until it is in sync again.
    pub async fn wait_change_settled(
        &mut self,
        timeout: Duration,
        poll: Duration,
        mut noticed: impl AsyncFnMut() -> bool,
    ) -> Result<Instant> {
        let start = Instant::now();
        loop {
            let s = self.status().await?;
            self.check(s.as_ref()).await?;
            let in_sync = s
                .as_ref()
                .is_some_and(|s| s["in_sync"].as_bool() == Some(true));
            if !in_sync || noticed().await {
                break;
            }
            if start.elapsed() > timeout {
                bail!("the daemon did not react to the change within {timeout:?}");
            }
            tokio::time::sleep(poll).await;
        }
        self.wait_in_sync(timeout.saturating_sub(start.elapsed()), poll)
            .await
    }

    /// Lines of the daemon's log at WARN or ERROR (it logs nothing else at level warn).
    pub fn log_problems(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .map(str::to_string)
            .collect()
    }

    fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// SIGTERM (graceful drain), then SIGKILL if it has not exited after 30 s.
    pub async fn stop(mut self) -> Result<()> {
        // `kill(1)` because the crate denies the unsafe a direct kill(2) would need.
        let _ = tokio::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .await;
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(r) => {
                r?;
            }
            Err(_) => {
                self.child.kill().await?;
                bail!("scaidrived did not exit within 30 s of SIGTERM");
            }
        }
        Ok(())
    }
}
