//! The daemon: wires configuration, the single-instance lock, the store, the ScaiDrive
//! client, the uploader, one task per mirror and the control socket, then runs until its
//! shutdown token is cancelled (the binary cancels it on TERM/INT; tests cancel it
//! directly, so the whole daemon runs in-process under test).
//!
//! Start-up order follows the systemd notify protocol: `READY=1` is sent once the
//! configuration is valid, the store is open and the control socket listens; `STATUS=`
//! lines summarize the mirrors afterwards, and `WATCHDOG=1` is sent only while the
//! status loop itself keeps running. A reload (HUP) re-reads the configuration and adds,
//! removes or restarts mirrors whose settings changed, without touching the others; it
//! also re-reads the credentials, puts newly provisioned tokens into the running client
//! and resumes mirrors that were waiting for them (`needs-credentials`).

pub mod credentials;
pub mod power;
pub mod process;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, ConfigError, Env, MirrorConfig};
use crate::control::{self, ControlState, DaemonInfo};
use crate::events::EventBus;
use crate::links::{self, LinkManager};
use crate::mirror::{self, MirrorDeps, MirrorHandle, MirrorState, MirrorStatus};
use crate::remote::bandwidth::{self, Bandwidth};
use crate::remote::{Client, ClientConfig, TokenPair, UploadConfig};
use crate::store::Store;
use crate::upload::Uploader;

pub use process::{InstanceLock, Notifier, Signal};

/// Exit code for configuration and credential errors (`EX_CONFIG`); systemd units use
/// `RestartPreventExitStatus=78` so a broken config does not restart in a loop.
pub const EXIT_CONFIG: i32 = 78;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Credentials(String),
    #[error(transparent)]
    Lock(#[from] process::LockError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Control(#[from] control::ControlError),
    #[error("{0}")]
    Other(String),
}

impl DaemonError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            DaemonError::Config(_) | DaemonError::Credentials(_) => EXIT_CONFIG,
            _ => 1,
        }
    }
}

/// Called once the mirrors run, with their handles.
pub type OnStarted = Box<dyn FnOnce(&[MirrorHandle]) + Send>;

/// How the daemon was asked to run.
#[derive(Default)]
pub struct RunOptions {
    /// One full pass, wait until every mirror is idle, then stop (`--once`).
    pub once: bool,
    /// Re-reads the configuration on HUP.
    pub reload: Option<Box<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>>,
    /// HUP notifications.
    pub reload_rx: Option<mpsc::Receiver<()>>,
    /// Receives the mirror handles once they run (tests and the demo use it).
    pub on_started: Option<OnStarted>,
    /// How often a `[mirror.link]` root link is checked (default: hourly).
    pub link_check_every: Option<Duration>,
}

/// What `run` reports when it ends.
#[derive(Debug)]
pub struct RunReport {
    pub mirrors: Vec<MirrorStatus>,
}

impl RunReport {
    pub fn all_in_sync(&self) -> bool {
        self.mirrors.iter().all(|m| m.in_sync() && m.failures == 0)
    }
}

struct RunningMirror {
    config: MirrorConfig,
    handle: MirrorHandle,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Runs the daemon until `shutdown` is cancelled (or, with `once`, until every mirror
/// has finished its first pass).
pub async fn run(
    config: Config,
    env: &Env,
    mut opts: RunOptions,
    shutdown: CancellationToken,
) -> Result<RunReport, DaemonError> {
    let notifier = Notifier::from_env();
    let state_dir = config.state_dir(env)?;
    config.validate(&state_dir)?;
    create_private_dir(&state_dir)?;
    let _lock = InstanceLock::acquire(&state_dir)?;
    let store = Store::open(&state_dir.join("state.db"))?;
    let (tokens, origin) = credentials::load(&config, env, &state_dir)?;
    let mut loaded_tokens = tokens.clone();
    let mut running_config = config.clone();
    let sink = Arc::new(credentials::FileTokenSink::new(&state_dir, &origin));
    let bandwidth = Bandwidth::new(
        config.bandwidth_schedule()?,
        Arc::new(bandwidth::SystemClock::new()),
    );
    let client = build_client(&config, tokens, sink.clone(), bandwidth.clone())?;
    let (configs_tx, configs_rx) = watch::channel(Arc::new(config.mirrors.clone()));
    let events = EventBus::new(config.daemon.event_buffer);
    // Pause on battery: the probe runs always (reading a few sysfs files every 2 s), so a
    // reload can turn it on or off.
    let battery_enabled = Arc::new(std::sync::atomic::AtomicBool::new(
        config.daemon.pause_on_battery,
    ));
    let (power_tx, power_rx) = watch::channel(false);
    let power_stop = CancellationToken::new();
    let power_task = tokio::spawn(power::run(
        config.daemon.power_supply_dir.clone(),
        battery_enabled.clone(),
        power_tx,
        power_stop.clone(),
    ));
    let links = LinkLane {
        manager: LinkManager::new(client.clone(), store.clone(), configs_rx)
            .with_events(events.clone()),
        check_every: opts
            .link_check_every
            .unwrap_or(links::keeper::DEFAULT_CHECK_EVERY),
    };
    let uploader = Uploader::new(
        client.clone(),
        store.clone(),
        config.daemon.upload_concurrency,
    );
    let deps = MirrorDeps {
        store: store.clone(),
        client: client.clone(),
        uploader,
        quota_recheck: Duration::from_secs(config.remote.quota_recheck_secs.max(1)),
        events: events.clone(),
        power: power_rx,
    };

    let mut running: HashMap<String, RunningMirror> = HashMap::new();
    for m in &config.mirrors {
        start_mirror(&mut running, m.clone(), &deps, &links, &shutdown);
    }
    let (mirrors_tx, mirrors_rx) = watch::channel(handles(&running));

    let runtime_dir = config.runtime_dir(env)?;
    create_private_dir(&runtime_dir)?;
    let socket = runtime_dir.join("scaidrived.sock");
    let listener = control::bind(&socket).await?;
    let info = DaemonInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        started_at: unix_now(),
        state_dir: state_dir.display().to_string(),
        socket: socket.display().to_string(),
    };
    let metrics = Arc::new(control::metrics::Metrics {
        mirrors: mirrors_rx.clone(),
        configs: configs_tx.subscribe(),
        client: client.clone(),
        bandwidth: bandwidth.clone(),
        started_at: info.started_at,
    });
    let mut metrics_file = MetricsFile::new(config.daemon.metrics_file.clone());
    metrics_file.write(&metrics);
    let control_stop = CancellationToken::new();
    let control_task = tokio::spawn(control::serve(
        listener,
        socket.clone(),
        ControlState {
            info: Arc::new(info),
            mirrors: mirrors_rx,
            links: links.manager.clone(),
            bandwidth: bandwidth.clone(),
            events: events.clone(),
            shutdown: control_stop.clone(),
            metrics: metrics.clone(),
        },
        control_stop.clone(),
    ));
    tracing::info!(
        "scaidrived {} running {} mirror(s); state {}, control socket {}",
        env!("CARGO_PKG_VERSION"),
        running.len(),
        state_dir.display(),
        socket.display()
    );
    notifier.ready(&format!("{} mirror(s) starting", running.len()));
    if let Some(f) = opts.on_started.take() {
        f(&handles(&running));
    }

    let mut status_tick = tokio::time::interval(
        notifier
            .watchdog_interval()
            .unwrap_or(Duration::from_secs(5)),
    );
    let mut reload_rx = opts.reload_rx.take();
    let once_done = CancellationToken::new();
    if opts.once {
        let hs = handles(&running);
        let done = once_done.clone();
        tokio::spawn(async move {
            for h in hs.iter() {
                h.wait_settled().await;
            }
            done.cancel();
        });
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = once_done.cancelled() => break,
            _ = status_tick.tick() => {
                notifier.status(&status_line(&handles(&running)));
                notifier.watchdog();
                metrics_file.write(&metrics);
            }
            r = async { match reload_rx.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                if r.is_none() {
                    reload_rx = None;
                    continue;
                }
                notifier.reloading();
                match opts.reload.as_ref().map(|f| f()) {
                    Some(Ok(new)) => match new.validate(&state_dir) {
                        Ok(()) => {
                            apply_reload(&mut running, &new, &deps, &links, &shutdown).await;
                            let _ = mirrors_tx.send(handles(&running));
                            let _ = configs_tx.send(Arc::new(new.mirrors.clone()));
                            // Validated above; a reload also ends a `scaidrivectl limit`.
                            if let Ok(s) = new.bandwidth_schedule() {
                                bandwidth.set_configured(s);
                            }
                            metrics_file = MetricsFile::new(new.daemon.metrics_file.clone());
                            battery_enabled.store(
                                new.daemon.pause_on_battery,
                                std::sync::atomic::Ordering::Relaxed,
                            );
                            tracing::info!("configuration reloaded: {} mirror(s)", running.len());
                            running_config = new;
                        }
                        Err(e) => tracing::error!("reload refused, keeping the running configuration: {e}"),
                    },
                    Some(Err(e)) => tracing::error!("reload refused, keeping the running configuration: {e}"),
                    None => tracing::info!("reload requested; no configuration file to re-read"),
                }
                reload_credentials(&running_config, env, &state_dir, &client, &sink, &mut loaded_tokens);
                // Mirrors waiting for credentials try again (the others ignore this).
                for h in handles(&running).iter() {
                    let h = h.clone();
                    tokio::spawn(async move {
                        let _ = h.cmd.send(mirror::MirrorCmd::CredentialsRenewed).await;
                    });
                }
                notifier.ready(&status_line(&handles(&running)));
            }
        }
    }

    notifier.stopping();
    let report = RunReport {
        mirrors: handles(&running).iter().map(|h| h.status()).collect(),
    };
    // Drain: mirrors stop starting work and finish (or checkpoint) what runs.
    let drain = Duration::from_secs(config.daemon.drain_timeout_secs);
    for m in running.values() {
        m.stop.cancel();
    }
    for (name, m) in running.drain() {
        if tokio::time::timeout(drain, m.task).await.is_err() {
            tracing::warn!(mirror = %name, "did not stop within {}s; in-flight uploads resume next start", drain.as_secs());
        }
    }
    control_stop.cancel();
    let _ = control_task.await;
    power_stop.cancel();
    let _ = power_task.await;
    // The last figures, after the drain.
    metrics_file.write(&metrics);
    store.flush().await?;
    Ok(report)
}

/// Re-reads the credentials (same sources and precedence as at start) and, if they are
/// not what was loaded last time, puts them into the running client. Unchanged sources
/// leave the client alone: it may hold a pair rotated since, which must not be replaced
/// by the spent one it descends from.
fn reload_credentials(
    config: &Config,
    env: &Env,
    state_dir: &Path,
    client: &Client,
    sink: &credentials::FileTokenSink,
    loaded: &mut TokenPair,
) {
    let (pair, origin) = match credentials::load(config, env, state_dir) {
        Ok(x) => x,
        Err(e) => {
            tracing::error!("credentials not reloaded, keeping the current ones: {e}");
            return;
        }
    };
    let same = |a: &TokenPair, b: &TokenPair| {
        a.access_token == b.access_token && a.refresh_token == b.refresh_token
    };
    if same(&pair, loaded) {
        tracing::info!("credentials unchanged");
        return;
    }
    *loaded = pair.clone();
    sink.set_origin(&origin);
    if !same(&pair, &client.tokens()) {
        client.set_tokens(pair);
    }
    tracing::info!("credentials reloaded");
}

/// `daemon.metrics_file`: rewritten atomically on every status tick; a failure is logged
/// once until a write succeeds again.
struct MetricsFile {
    path: Option<PathBuf>,
    failing: bool,
}

impl MetricsFile {
    fn new(path: Option<PathBuf>) -> MetricsFile {
        MetricsFile {
            path,
            failing: false,
        }
    }

    fn write(&mut self, metrics: &control::metrics::Metrics) {
        let Some(p) = &self.path else { return };
        match metrics.write_file(p) {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                tracing::warn!("metrics_file {}: {e}", p.display());
            }
            Err(_) => {}
        }
    }
}

/// What the `[mirror.link]` keepers need.
struct LinkLane {
    manager: LinkManager,
    check_every: Duration,
}

fn start_mirror(
    running: &mut HashMap<String, RunningMirror>,
    cfg: MirrorConfig,
    deps: &MirrorDeps,
    links: &LinkLane,
    shutdown: &CancellationToken,
) {
    let stop = shutdown.child_token();
    let (handle, task) = mirror::spawn(cfg.clone(), deps.clone(), stop.clone());
    if cfg.link.is_some() {
        // Stops with the mirror (its token), so a reload that changes the mirror restarts it.
        tokio::spawn(links::keeper::run(
            links.manager.clone(),
            cfg.clone(),
            handle.clone(),
            links.check_every,
            stop.clone(),
        ));
    }
    running.insert(
        handle.name.clone(),
        RunningMirror {
            config: cfg,
            handle,
            stop,
            task,
        },
    );
}

async fn apply_reload(
    running: &mut HashMap<String, RunningMirror>,
    new: &Config,
    deps: &MirrorDeps,
    links: &LinkLane,
    shutdown: &CancellationToken,
) {
    let wanted: HashMap<String, MirrorConfig> = new
        .mirrors
        .iter()
        .map(|m| (m.display_name(), m.clone()))
        .collect();
    let names: Vec<String> = running.keys().cloned().collect();
    for name in names {
        let keep = wanted
            .get(&name)
            .is_some_and(|c| running.get(&name).is_some_and(|r| r.config == *c));
        if !keep && let Some(m) = running.remove(&name) {
            m.stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(30), m.task).await;
        }
    }
    for (name, cfg) in wanted {
        if !running.contains_key(&name) {
            start_mirror(running, cfg, deps, links, shutdown);
        }
    }
}

fn handles(running: &HashMap<String, RunningMirror>) -> Arc<Vec<MirrorHandle>> {
    let mut v: Vec<MirrorHandle> = running.values().map(|m| m.handle.clone()).collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    Arc::new(v)
}

/// One line for systemd's `STATUS=`: each mirror's state and counts.
pub fn status_line(handles: &[MirrorHandle]) -> String {
    handles
        .iter()
        .map(|h| {
            let s = h.status();
            // Reasons carry paths: escaped, or a name could split the STATUS= line.
            let mut line = format!("{}: {}", crate::relpath::Escaped(&s.name), s.state);
            if s.state == MirrorState::Paused || s.state == MirrorState::NeedsCredentials {
                if let Some(r) = &s.reason {
                    line.push_str(&format!(" ({})", crate::relpath::Escaped(r)));
                }
            } else {
                line.push_str(&format!(
                    ", {} files uploaded, {} queued, {} failed",
                    s.files_done, s.queue_depth, s.failures
                ));
            }
            line
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn build_client(
    config: &Config,
    tokens: TokenPair,
    sink: Arc<credentials::FileTokenSink>,
    bandwidth: Bandwidth,
) -> Result<Client, DaemonError> {
    let url = config
        .remote
        .url
        .clone()
        .ok_or_else(|| ConfigError::Check("remote.url is not set".into()))?;
    let mut cc = ClientConfig::new(url, tokens);
    cc.request_timeout = Duration::from_secs(config.remote.timeout_secs);
    cc.ca_file = config.remote.ca_file.clone();
    // A streamed transfer has no total limit, but a connection silent for longer than a
    // whole request may take is dead: give up on it and retry.
    cc.idle_timeout = cc.request_timeout;
    cc.upload = UploadConfig {
        session_threshold: config.remote.large_file_threshold,
        // Unset: 0, chosen per file.
        chunk_size: config.remote.chunk_size.unwrap_or(0),
        max_chunk_size: config.remote.max_chunk_size,
        max_chunk_time: Duration::from_secs(config.remote.max_chunk_secs),
        parallel_chunks: config.remote.parallel_chunks,
        ..UploadConfig::default()
    };
    cc.token_sink = Some(sink);
    cc.bandwidth = bandwidth;
    // What can fail here is configuration (a bad `ca_file`, an unusable URL): exit 78.
    Client::new(cc).map_err(|e| {
        DaemonError::Config(ConfigError::Check(format!(
            "cannot build the HTTP client: {e}"
        )))
    })
}

fn create_private_dir(dir: &Path) -> Result<(), DaemonError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .map_err(|e| DaemonError::Other(format!("cannot create {}: {e}", dir.display())))?;
    // Best effort: a systemd-managed directory already has the mode it should have.
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    Ok(())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Loads the configuration the way `scaidrived` does (file, environment, `--folder`).
pub fn load_config(
    file: Option<&Path>,
    env: &Env,
    folder: Option<&Path>,
) -> Result<Config, ConfigError> {
    Config::load(file, env, folder)
}

/// Resolves the state directory for tools that read it without a running daemon.
pub fn state_dir_for(file: Option<&Path>, env: &Env) -> Result<PathBuf, ConfigError> {
    let cfg = Config::load(file, env, None)?;
    cfg.state_dir(env)
}

pub use config::process_env;
