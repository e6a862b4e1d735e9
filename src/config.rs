//! Typed daemon configuration, loaded in layers: defaults < TOML file < `SCAIDRIVE_*`
//! environment < command-line flags (applied by the caller on the returned value).
//!
//! Unknown keys are errors that name the key and the file. The seed walkthrough's
//! `SCAIDRIVE_URL`, `SCAIDRIVE_TOKEN` and `SCAIDRIVE_SHARE_ID` work without a file: with a
//! `--folder` they describe one mirror. Any other setting can come from the environment as
//! `SCAIDRIVE_<SECTION>__<KEY>` (e.g. `SCAIDRIVE_REMOTE__TIMEOUT_SECS=30`). Validation
//! checks what can be checked before starting (roots exist and are directories, mirrors do
//! not overlap, the state directory is not inside a mirror), so a bad config fails at once
//! with one line instead of at the first upload. The token is never part of the config
//! value's `Debug` output.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Every variant renders as exactly one line: control characters that a path or value
/// may carry (a file name with a newline) are shown escaped.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {}: {}", escaped(file), escaped(message))]
    Invalid { file: String, message: String },
    #[error("config: {}", escaped(.0))]
    Check(String),
    #[error("token file {}: {}", escaped(&path.display()), escaped(message))]
    Token { path: PathBuf, message: String },
}

/// `s` with control characters escaped (`\n`, `\u{1b}`), so it stays on one line.
fn escaped(s: &dyn std::fmt::Display) -> String {
    let s = s.to_string();
    if !s.chars().any(char::is_control) {
        return s;
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// What a local delete does remotely.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeleteMode {
    /// Soft delete: the remote item goes to the trash (restorable).
    #[default]
    Trash,
    /// Leave the remote item in place.
    Keep,
}

/// What a mirror does with items created remotely by others under its folder (items it
/// never uploaded and that the local root does not have).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RemoteExtras {
    /// Leave them alone; `verify` lists them as "remote only".
    #[default]
    Keep,
    /// A strict mirror: move them to the trash (a soft delete, never permanent).
    Trash,
}

/// How a mirror notices changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WatchMode {
    /// File events, plus polling for the parts of the root on filesystems whose changes
    /// made elsewhere raise no events (NFS, SMB/CIFS, FUSE, 9p, ...), found by `statfs`.
    #[default]
    Auto,
    /// File events only.
    Events,
    /// Polling only: the tree is stat'ed every `poll_interval_secs`.
    Poll,
    /// Diagnostic: events with every rename reported as an unpaired removal and creation,
    /// as macOS's FSEvents and kqueue report them (the mirror must still move, not
    /// re-upload).
    EventsUnpaired,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonSection {
    /// Where the state database lives (default `$STATE_DIRECTORY`, else the XDG state dir).
    pub state_dir: Option<PathBuf>,
    /// Where the control socket lives (default `$RUNTIME_DIRECTORY`, else XDG runtime dir).
    pub runtime_dir: Option<PathBuf>,
    pub log_format: LogFormat,
    /// `RUST_LOG`-style filter.
    pub log_level: String,
    /// Transfer streams in flight across all mirrors: a small file or folder call takes
    /// one, a chunked upload one per chunk it sends in parallel (`remote.parallel_chunks`).
    pub upload_concurrency: usize,
    /// Seconds a graceful stop waits for transfers before checkpointing them.
    pub drain_timeout_secs: u64,
    /// Upload bandwidth shared by all transfers: `"off"`, a rate (`"2MiB/s"`), or a
    /// weekly timetable in local time (`"Mon-Fri 08:00-18:00 1MiB/s, 20MiB/s"`, the last
    /// entry the default). See `remote::bandwidth`.
    pub bandwidth_limit: String,
    /// Events held for each `scaidrivectl events` reader before a slow one loses the
    /// oldest (and is told how many).
    pub event_buffer: usize,
    /// Pause uploads while the machine runs on battery power (resume on AC power).
    pub pause_on_battery: bool,
    /// Where Linux lists the power supplies (`pause_on_battery`); another directory for
    /// tests or containers.
    pub power_supply_dir: PathBuf,
    /// Also write the Prometheus metrics to this file, rewritten atomically every few
    /// seconds (for node_exporter's textfile collector: a `*.prom` file in its directory).
    pub metrics_file: Option<PathBuf>,
}

impl Default for DaemonSection {
    fn default() -> Self {
        DaemonSection {
            state_dir: None,
            runtime_dir: None,
            log_format: LogFormat::Human,
            log_level: "info".into(),
            upload_concurrency: 32,
            drain_timeout_secs: 20,
            bandwidth_limit: "off".into(),
            event_buffer: crate::events::CAPACITY,
            pause_on_battery: false,
            power_supply_dir: PathBuf::from("/sys/class/power_supply"),
            metrics_file: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteSection {
    /// ScaiDrive base URL, e.g. `https://scaidrive.scailabs.ai`.
    pub url: Option<String>,
    /// File holding the access token (must not be group/world readable).
    pub token_file: Option<PathBuf>,
    /// File holding a refresh token; the daemon rewrites it when the token rotates.
    pub refresh_token_file: Option<PathBuf>,
    /// Per-request timeout.
    pub timeout_secs: u64,
    /// New files at least this large use resumable upload sessions; smaller ones one
    /// multipart request (the uploads guide's band: multipart up to 100 MB). A multipart
    /// answered 413, or broken off twice, goes by session anyway.
    pub large_file_threshold: u64,
    /// Pins the chunk size of upload sessions (a power of two ≥ 65536, e.g. to fit a
    /// proxy's request limit). Unset: chosen per file, from the server default (4 MiB) up
    /// to `max_chunk_size`, bounded by `max_chunk_secs`.
    pub chunk_size: Option<u64>,
    /// Largest chunk the per-file choice asks for (a power of two ≥ 65536).
    pub max_chunk_size: u64,
    /// Longest one chunk should take to send at the throughput measured on recent
    /// transfers; bounds the per-file chunk size (and what a broken chunk re-sends).
    pub max_chunk_secs: u64,
    /// Chunk PUTs in flight per large file.
    pub parallel_chunks: usize,
    /// Allow a plain `http://` URL to a host that is not loopback (the token then travels
    /// unencrypted). Loopback (`localhost`, 127.0.0.0/8, `::1`) is always allowed.
    pub allow_insecure_http: bool,
    /// PEM bundle of extra certificate authorities to trust (a private CA), on top of
    /// the system's roots. Certificates are always verified.
    pub ca_file: Option<PathBuf>,
    /// While a mirror is paused because the share's quota is full (507), how often it
    /// checks the share's usage (and tries again) to resume by itself once space is freed.
    pub quota_recheck_secs: u64,
}

impl Default for RemoteSection {
    fn default() -> Self {
        RemoteSection {
            url: None,
            token_file: None,
            refresh_token_file: None,
            timeout_secs: 60,
            large_file_threshold: 100_000_000,
            chunk_size: None,
            max_chunk_size: 64 * 1024 * 1024,
            max_chunk_secs: 60,
            parallel_chunks: 4,
            allow_insecure_http: false,
            ca_file: None,
            quota_recheck_secs: 60,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// Name used by `scaidrivectl` (default: the root's directory name).
    #[serde(default)]
    pub name: Option<String>,
    /// Local root directory (the source of truth).
    pub path: PathBuf,
    pub share_id: String,
    /// Base folder path inside the share (`""` = share root), created if missing.
    #[serde(default)]
    pub remote_path: String,
    /// Extra ignore globs, gitignore syntax.
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub delete: DeleteMode,
    #[serde(default = "defaults::quiet_period_ms")]
    pub quiet_period_ms: u64,
    #[serde(default = "defaults::max_delay_secs")]
    pub max_delay_secs: u64,
    #[serde(default = "defaults::rescan_interval_secs")]
    pub rescan_interval_secs: u64,
    /// `auto`, `events`, `poll` (or the diagnostic `events-unpaired`).
    #[serde(default)]
    pub watch: WatchMode,
    /// How often polled parts of the root (all of it with `watch = "poll"`) are stat'ed.
    #[serde(default = "defaults::poll_interval_secs")]
    pub poll_interval_secs: u64,
    /// A mirror holding at least `unload_min_entries` entries drops them from memory after
    /// this many seconds with nothing to do (0 = keep them loaded); they are read back from
    /// the state database when work comes.
    #[serde(default = "defaults::unload_idle_secs")]
    pub unload_idle_secs: u64,
    #[serde(default = "defaults::unload_min_entries")]
    pub unload_min_entries: usize,
    /// A pass that would delete more than this many entries AND more than
    /// `mass_delete_percent` of them pauses the mirror instead.
    #[serde(default = "defaults::mass_delete_count")]
    pub mass_delete_count: usize,
    #[serde(default = "defaults::mass_delete_percent")]
    pub mass_delete_percent: u8,
    /// Keep a sharing link to the mirror root.
    #[serde(default)]
    pub link: Option<LinkConfig>,
    /// How often the share's change log is read for other people's changes under the
    /// mirror's folder, which are then repaired toward the local root (0 = never).
    #[serde(default = "defaults::remote_poll_secs")]
    pub remote_poll_secs: u64,
    /// Items others created remotely under the mirror's folder: `keep` or `trash`.
    #[serde(default)]
    pub remote_extras: RemoteExtras,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    /// `view`, `download` or `upload`.
    #[serde(default = "defaults::link_type")]
    pub r#type: String,
    /// File holding the link password (not stored anywhere else).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

mod defaults {
    pub fn quiet_period_ms() -> u64 {
        2000
    }
    pub fn max_delay_secs() -> u64 {
        60
    }
    pub fn rescan_interval_secs() -> u64 {
        3600
    }
    pub fn poll_interval_secs() -> u64 {
        60
    }
    pub fn unload_idle_secs() -> u64 {
        30
    }
    pub fn unload_min_entries() -> usize {
        // Below this the map is under ~70 MiB, and keeping it saves the CPU of the
        // row-by-row restart and of reloading it (W4: 0.78 s with it at 100,000 entries).
        200_000
    }
    pub fn mass_delete_count() -> usize {
        500
    }
    pub fn mass_delete_percent() -> u8 {
        25
    }
    pub fn remote_poll_secs() -> u64 {
        30
    }
    pub fn link_type() -> String {
        "download".into()
    }
}

impl MirrorConfig {
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            self.path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "root".into())
        })
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub daemon: DaemonSection,
    pub remote: RemoteSection,
    #[serde(rename = "mirror")]
    pub mirrors: Vec<MirrorConfig>,
}

/// Environment variables the loader reads (passed in so tests need not mutate the
/// process environment).
pub type Env = HashMap<String, String>;

pub fn process_env() -> Env {
    std::env::vars().collect()
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Config {
    /// Loads `file` (if any) layered over defaults and under the environment. `folder`
    /// (the `--folder` flag) adds a single mirror from `SCAIDRIVE_SHARE_ID`.
    pub fn load(
        file: Option<&Path>,
        env: &Env,
        folder: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        let file_label = file
            .map(|f| f.display().to_string())
            .unwrap_or_else(|| "(environment)".into());
        let invalid = |e: config::ConfigError| ConfigError::Invalid {
            file: file_label.clone(),
            message: one_line(&e.to_string()),
        };
        let mut b = config::Config::builder();
        if let Some(f) = file {
            if !f.is_file() {
                return Err(ConfigError::Invalid {
                    file: file_label,
                    message: "no such file".into(),
                });
            }
            b = b.add_source(
                config::File::from(f)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        // Generic nested keys: SCAIDRIVE_REMOTE__TIMEOUT_SECS → remote.timeout_secs.
        let nested: HashMap<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("SCAIDRIVE_") && k.contains("__"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        b = b.add_source(
            config::Environment::with_prefix("SCAIDRIVE")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(nested)),
        );
        if let Some(url) = env.get("SCAIDRIVE_URL") {
            b = b
                .set_override("remote.url", url.as_str())
                .map_err(invalid)?;
        }
        let mut cfg: Config = b
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(invalid)?;
        if let Some(folder) = folder {
            let share_id = env.get("SCAIDRIVE_SHARE_ID").cloned().ok_or_else(|| {
                ConfigError::Check(
                    "--folder needs SCAIDRIVE_SHARE_ID (the share to mirror into)".into(),
                )
            })?;
            cfg.mirrors.push(MirrorConfig {
                name: None,
                path: folder.to_path_buf(),
                share_id,
                remote_path: String::new(),
                exclude: Vec::new(),
                delete: DeleteMode::Trash,
                quiet_period_ms: defaults::quiet_period_ms(),
                max_delay_secs: defaults::max_delay_secs(),
                rescan_interval_secs: defaults::rescan_interval_secs(),
                watch: WatchMode::Auto,
                poll_interval_secs: 60,
                unload_idle_secs: defaults::unload_idle_secs(),
                unload_min_entries: defaults::unload_min_entries(),
                mass_delete_count: defaults::mass_delete_count(),
                mass_delete_percent: defaults::mass_delete_percent(),
                link: None,
                remote_poll_secs: defaults::remote_poll_secs(),
                remote_extras: RemoteExtras::Keep,
            });
        }
        Ok(cfg)
    }

    /// The state directory: configured, else `$STATE_DIRECTORY` (systemd), else the
    /// platform's per-user state directory.
    pub fn state_dir(&self, env: &Env) -> Result<PathBuf, ConfigError> {
        if let Some(d) = &self.daemon.state_dir {
            return Ok(d.clone());
        }
        if let Some(d) = env.get("STATE_DIRECTORY").and_then(|v| v.split(':').next()) {
            return Ok(PathBuf::from(d));
        }
        platform_dir(env, "XDG_STATE_HOME", ".local/state").map(|d| d.join("scaidrive"))
    }

    /// The directory of the control socket: configured, else `$RUNTIME_DIRECTORY`, else
    /// `$XDG_RUNTIME_DIR/scaidrive`, else the state directory.
    pub fn runtime_dir(&self, env: &Env) -> Result<PathBuf, ConfigError> {
        if let Some(d) = &self.daemon.runtime_dir {
            return Ok(d.clone());
        }
        if let Some(d) = env
            .get("RUNTIME_DIRECTORY")
            .and_then(|v| v.split(':').next())
        {
            return Ok(PathBuf::from(d));
        }
        if let Some(d) = env.get("XDG_RUNTIME_DIR") {
            return Ok(PathBuf::from(d).join("scaidrive"));
        }
        self.state_dir(env)
    }

    /// Checks what must hold before the daemon starts. `state_dir` is where the state
    /// database will live.
    pub fn validate(&self, state_dir: &Path) -> Result<(), ConfigError> {
        let url = self.remote.url.as_deref().ok_or_else(|| {
            ConfigError::Check(
                "remote.url is not set (config [remote] url, or SCAIDRIVE_URL)".into(),
            )
        })?;
        check_url(url, self.remote.allow_insecure_http)?;
        if self.mirrors.is_empty() {
            return Err(ConfigError::Check("no mirror configured (add a [[mirror]] section, or use --folder with SCAIDRIVE_SHARE_ID)".into()));
        }
        self.bandwidth_schedule()?;
        if let Some(p) = &self.daemon.metrics_file {
            let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
            if p.file_name().is_none() || dir.is_some_and(|d| !d.is_dir()) {
                return Err(ConfigError::Check(format!(
                    "daemon.metrics_file {}: the directory does not exist",
                    p.display()
                )));
            }
        }
        if self.daemon.event_buffer == 0 {
            return Err(ConfigError::Check(
                "daemon.event_buffer must be at least 1".into(),
            ));
        }
        if self.remote.quota_recheck_secs == 0 {
            return Err(ConfigError::Check(
                "remote.quota_recheck_secs must be at least 1".into(),
            ));
        }
        if self.daemon.upload_concurrency == 0 || self.remote.parallel_chunks == 0 {
            return Err(ConfigError::Check(
                "daemon.upload_concurrency and remote.parallel_chunks must be at least 1".into(),
            ));
        }
        for (key, cs) in [
            ("chunk_size", self.remote.chunk_size),
            ("max_chunk_size", Some(self.remote.max_chunk_size)),
        ] {
            if let Some(cs) = cs
                && (cs < 65536 || !cs.is_power_of_two())
            {
                return Err(ConfigError::Check(format!(
                    "remote.{key} {cs} must be a power of two of at least 65536"
                )));
            }
        }
        if self.remote.max_chunk_secs == 0 {
            return Err(ConfigError::Check(
                "remote.max_chunk_secs must be at least 1".into(),
            ));
        }
        if let Some(p) = &self.remote.token_file {
            check_private("token file", p)?;
        }
        if let Some(p) = &self.remote.refresh_token_file {
            check_private("refresh token file", p)?;
        }
        for m in &self.mirrors {
            if let Some(p) = m.link.as_ref().and_then(|l| l.password_file.as_ref()) {
                check_private(
                    &format!("mirror {:?}: link password file", m.display_name()),
                    p,
                )?;
            }
        }
        for m in &self.mirrors {
            if m.poll_interval_secs == 0 {
                return Err(ConfigError::Check(format!(
                    "mirror {:?}: poll_interval_secs must be at least 1",
                    m.display_name()
                )));
            }
        }
        let state = absolute(state_dir);
        let mut names = std::collections::HashSet::new();
        let mut roots: Vec<(String, PathBuf)> = Vec::new();
        for m in &self.mirrors {
            let name = m.display_name();
            if !names.insert(name.clone()) {
                return Err(ConfigError::Check(format!(
                    "two mirrors are named {name:?}; give each a unique name"
                )));
            }
            if m.share_id.trim().is_empty() {
                return Err(ConfigError::Check(format!(
                    "mirror {name:?}: share_id is empty"
                )));
            }
            let meta = std::fs::metadata(&m.path).map_err(|e| {
                ConfigError::Check(format!("mirror {name:?}: root {}: {e}", m.path.display()))
            })?;
            if !meta.is_dir() {
                return Err(ConfigError::Check(format!(
                    "mirror {name:?}: root {} is not a directory",
                    m.path.display()
                )));
            }
            let root = std::fs::canonicalize(&m.path).map_err(|e| {
                ConfigError::Check(format!("mirror {name:?}: root {}: {e}", m.path.display()))
            })?;
            if state.starts_with(&root) || root.starts_with(&state) {
                return Err(ConfigError::Check(format!(
                    "mirror {name:?}: root {} and the state directory {} must not contain each other",
                    root.display(),
                    state.display()
                )));
            }
            for (other, r) in &roots {
                if r.starts_with(&root) || root.starts_with(r) {
                    return Err(ConfigError::Check(format!(
                        "mirrors {other:?} ({}) and {name:?} ({}) overlap",
                        r.display(),
                        root.display()
                    )));
                }
            }
            if m.remote_path
                .split('/')
                .any(|seg| seg.trim() != seg || seg == "." || seg == "..")
            {
                return Err(ConfigError::Check(format!(
                    "mirror {name:?}: remote_path {:?} has an invalid segment",
                    m.remote_path
                )));
            }
            if m.mass_delete_percent > 100 {
                return Err(ConfigError::Check(format!(
                    "mirror {name:?}: mass_delete_percent must be 0..=100"
                )));
            }
            roots.push((name, root));
        }
        Ok(())
    }
}

impl Config {
    /// `daemon.bandwidth_limit`, parsed; the error names the key.
    pub fn bandwidth_schedule(&self) -> Result<crate::remote::bandwidth::Schedule, ConfigError> {
        crate::remote::bandwidth::Schedule::parse(&self.daemon.bandwidth_limit).map_err(|e| {
            ConfigError::Check(format!(
                "daemon.bandwidth_limit {:?}: {e}",
                one_line(&self.daemon.bandwidth_limit)
            ))
        })
    }
}

/// The remote URL must be http(s) with a host; plain `http://` only to loopback unless
/// `allow_insecure_http` (the bearer token would cross the network in clear text).
fn check_url(url: &str, allow_insecure_http: bool) -> Result<(), ConfigError> {
    let shown = one_line(url);
    let parsed = reqwest::Url::parse(url.trim()).map_err(|e| {
        ConfigError::Check(format!(
            "remote.url {shown:?} is not a valid URL ({e}); expected e.g. https://scaidrive.example.com"
        ))
    })?;
    match parsed.scheme() {
        "https" => {}
        "http" => {
            if !allow_insecure_http && !is_loopback(&parsed) {
                return Err(ConfigError::Check(format!(
                    "remote.url {shown:?} uses plain http:// to a non-loopback host, which would send the token unencrypted; use https://, or set allow_insecure_http = true under [remote]"
                )));
            }
        }
        other => {
            return Err(ConfigError::Check(format!(
                "remote.url {shown:?} has scheme {other:?}; it must start with https:// (or http:// for a local server)"
            )));
        }
    }
    if parsed.host().is_none() {
        return Err(ConfigError::Check(format!(
            "remote.url {shown:?} has no host"
        )));
    }
    Ok(())
}

/// `localhost`, 127.0.0.0/8 or `::1`.
fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

/// A secret file must exist and be readable by its owner only.
fn check_private(what: &str, p: &Path) -> Result<(), ConfigError> {
    let meta = std::fs::metadata(p).map_err(|e| {
        ConfigError::Check(format!(
            "{what} {}: {}",
            p.display(),
            one_line(&e.to_string())
        ))
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(ConfigError::Check(format!(
                "{what} {} is readable by group or others (mode {:o}); run: chmod 600 {}",
                p.display(),
                mode & 0o777,
                p.display()
            )));
        }
    }
    let _ = meta;
    Ok(())
}

/// The state dir may not exist yet; canonicalize the deepest existing ancestor.
fn absolute(p: &Path) -> PathBuf {
    let mut existing = p.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent.to_path_buf();
            }
            _ => break,
        }
    }
    let mut out = std::fs::canonicalize(&existing).unwrap_or(existing);
    for r in rest.iter().rev() {
        out.push(r);
    }
    out
}

fn platform_dir(env: &Env, xdg_var: &str, home_rel: &str) -> Result<PathBuf, ConfigError> {
    if cfg!(target_os = "macos") {
        if let Some(home) = env.get("HOME") {
            return Ok(PathBuf::from(home).join("Library/Application Support"));
        }
    } else if let Some(d) = env.get(xdg_var).filter(|d| Path::new(d).is_absolute()) {
        return Ok(PathBuf::from(d));
    } else if let Some(home) = env.get("HOME") {
        return Ok(PathBuf::from(home).join(home_rel));
    }
    Err(ConfigError::Check(format!(
        "cannot find a state directory: set daemon.state_dir, STATE_DIRECTORY, {xdg_var} or HOME"
    )))
}

/// The access token, from (in order) `$CREDENTIALS_DIRECTORY/token` (systemd
/// `LoadCredential=`), `remote.token_file`, or `SCAIDRIVE_TOKEN`. A token file readable by
/// group or others is refused. Returns `None` if no source is configured.
pub fn load_token(cfg: &Config, env: &Env) -> Result<Option<String>, ConfigError> {
    if let Some(dir) = env.get("CREDENTIALS_DIRECTORY") {
        let p = PathBuf::from(dir).join("token");
        if p.exists() {
            return read_secret_file(&p, false).map(Some);
        }
    }
    if let Some(p) = &cfg.remote.token_file {
        return read_secret_file(p, true).map(Some);
    }
    Ok(env
        .get("SCAIDRIVE_TOKEN")
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty()))
}

/// The credential checks the daemon makes at start, for `scaidrivectl config check`: every
/// configured token source must be readable, private and not empty. The secrets are read
/// and dropped. `Ok(false)`: no access token is configured in this environment (the
/// service's may differ: systemd `LoadCredential=`, its own `SCAIDRIVE_TOKEN`).
pub fn check_credentials(cfg: &Config, env: &Env) -> Result<bool, ConfigError> {
    let access = load_token(cfg, env)?.is_some();
    if let Some(p) = &cfg.remote.refresh_token_file {
        read_secret_file(p, true)?;
    }
    Ok(access)
}

/// Reads a one-line secret file, refusing group/world-readable files when `check_mode`.
pub fn read_secret_file(p: &Path, check_mode: bool) -> Result<String, ConfigError> {
    let err = |message: String| ConfigError::Token {
        path: p.to_path_buf(),
        message,
    };
    let meta = std::fs::metadata(p).map_err(|e| err(e.to_string()))?;
    #[cfg(unix)]
    if check_mode {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(err(format!(
                "is readable by group or others (mode {:o}); run: chmod 600 {}",
                mode & 0o777,
                p.display()
            )));
        }
    }
    let _ = (meta, check_mode);
    let s = std::fs::read_to_string(p).map_err(|e| err(e.to_string()))?;
    let t = s.trim().to_string();
    if t.is_empty() {
        return Err(err("is empty".into()));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    #[test]
    fn upload_keys_default_pin_and_check() {
        let dir = tempfile::tempdir().unwrap();
        let d = RemoteSection::default();
        assert_eq!(
            d.large_file_threshold, 100_000_000,
            "the uploads guide's band"
        );
        assert_eq!(d.chunk_size, None, "chosen per file");
        assert_eq!((d.max_chunk_size, d.max_chunk_secs), (64 << 20, 60));
        // The example file shows the defaults.
        let example =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/scaidrived.example.toml");
        let c = Config::load(Some(&example), &Env::new(), None).unwrap();
        assert_eq!(c.remote.large_file_threshold, d.large_file_threshold);
        assert_eq!(c.remote.chunk_size, d.chunk_size);
        assert_eq!(c.remote.max_chunk_size, d.max_chunk_size);
        assert_eq!(c.remote.max_chunk_secs, d.max_chunk_secs);
        // Pinned from a file, or from the environment.
        let f = write(
            dir.path(),
            "c.toml",
            "[remote]\nurl = 'http://127.0.0.1:1'\nchunk_size = 262144\n",
        );
        let c = Config::load(Some(&f), &Env::new(), None).unwrap();
        assert_eq!(c.remote.chunk_size, Some(262144));
        let mut env = Env::new();
        env.insert("SCAIDRIVE_REMOTE__MAX_CHUNK_SECS".into(), "5".into());
        let c = Config::load(Some(&f), &env, None).unwrap();
        assert_eq!(c.remote.max_chunk_secs, 5);
        // Checked before start.
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let check = |edit: &dyn Fn(&mut RemoteSection)| {
            let mut c = Config::default();
            c.remote.url = Some("http://127.0.0.1:1".into());
            c.mirrors.push(MirrorConfig {
                name: None,
                path: root.clone(),
                share_id: "shr_1".into(),
                remote_path: String::new(),
                exclude: vec![],
                delete: DeleteMode::Trash,
                quiet_period_ms: 2000,
                max_delay_secs: 60,
                rescan_interval_secs: 3600,
                watch: WatchMode::Auto,
                poll_interval_secs: 60,
                unload_idle_secs: 30,
                unload_min_entries: 200_000,
                mass_delete_count: 500,
                mass_delete_percent: 25,
                link: None,
                remote_poll_secs: 30,
                remote_extras: RemoteExtras::Keep,
            });
            edit(&mut c.remote);
            c.validate(&dir.path().join("state"))
                .err()
                .map(|e| e.to_string())
        };
        assert_eq!(check(&|_| {}), None);
        assert!(
            check(&|r| r.chunk_size = Some(100_000))
                .unwrap()
                .contains("remote.chunk_size")
        );
        assert!(
            check(&|r| r.max_chunk_size = 1 << 10)
                .unwrap()
                .contains("remote.max_chunk_size")
        );
        assert!(
            check(&|r| r.max_chunk_secs = 0)
                .unwrap()
                .contains("remote.max_chunk_secs")
        );
    }

    #[test]
    fn layered_precedence_file_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            dir.path(),
            "c.toml",
            "[remote]\nurl = 'http://file'\ntimeout_secs = 5\n[[mirror]]\npath = '/x'\nshare_id = 'shr_1'\n",
        );
        let mut env = Env::new();
        let c = Config::load(Some(&f), &env, None).unwrap();
        assert_eq!(c.remote.url.as_deref(), Some("http://file"));
        assert_eq!(c.remote.timeout_secs, 5);
        assert_eq!(c.remote.parallel_chunks, 4, "defaults fill the rest");
        assert_eq!(c.mirrors[0].quiet_period_ms, 2000);
        env.insert("SCAIDRIVE_URL".into(), "http://env".into());
        env.insert("SCAIDRIVE_REMOTE__TIMEOUT_SECS".into(), "9".into());
        let c = Config::load(Some(&f), &env, None).unwrap();
        assert_eq!(c.remote.url.as_deref(), Some("http://env"));
        assert_eq!(c.remote.timeout_secs, 9);
    }

    #[test]
    fn unknown_keys_name_the_key_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("[remote]\nurll = 'x'\n", "urll"),
            (
                "[[mirror]]\npath = '/x'\nshare_id = 's'\nexcludes = []\n",
                "excludes",
            ),
            ("[daemon]\nlog_format = 'xml'\n", "xml"),
            ("[[mirror]\n", "TOML parse error"),
        ];
        for (body, needle) in cases {
            let f = write(dir.path(), "bad.toml", body);
            let e = Config::load(Some(&f), &Env::new(), None)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{e}");
            assert!(e.contains("bad.toml"), "{e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
        let mut env = Env::new();
        env.insert("SCAIDRIVE_REMOTE__BOGUS".into(), "1".into());
        let e = Config::load(None, &env, None).unwrap_err().to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn env_only_single_mirror() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = Env::new();
        env.insert("SCAIDRIVE_URL".into(), "http://127.0.0.1:1".into());
        let e = Config::load(None, &env, Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("SCAIDRIVE_SHARE_ID"), "{e}");
        env.insert("SCAIDRIVE_SHARE_ID".into(), "shr_x".into());
        let c = Config::load(None, &env, Some(dir.path())).unwrap();
        assert_eq!(c.mirrors.len(), 1);
        assert_eq!(c.mirrors[0].share_id, "shr_x");
        c.validate(&dir.path().parent().unwrap().join("elsewhere-state"))
            .unwrap();
    }

    #[test]
    fn validation_errors_are_specific() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::create_dir_all(a.join("inner")).unwrap();
        let file = write(dir.path(), "plain", "x");
        let state = dir.path().join("state");
        let base = |path: &Path| MirrorConfig {
            name: None,
            path: path.to_path_buf(),
            share_id: "shr_1".into(),
            remote_path: String::new(),
            exclude: vec![],
            delete: DeleteMode::Trash,
            quiet_period_ms: 2000,
            max_delay_secs: 60,
            rescan_interval_secs: 3600,
            watch: WatchMode::Auto,
            poll_interval_secs: 60,
            unload_idle_secs: 30,
            unload_min_entries: 200_000,
            mass_delete_count: 500,
            mass_delete_percent: 25,
            link: None,
            remote_poll_secs: 30,
            remote_extras: RemoteExtras::Keep,
        };
        let mut c = Config {
            remote: RemoteSection {
                url: Some("http://127.0.0.1:1".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let check = |c: &Config, st: &Path, needle: &str| {
            let e = c.validate(st).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        };
        check(&c, &state, "no mirror");
        c.mirrors = vec![base(&dir.path().join("missing"))];
        check(&c, &state, "missing");
        c.mirrors = vec![base(&file)];
        check(&c, &state, "not a directory");
        c.mirrors = vec![base(&a), {
            let mut m = base(&a.join("inner"));
            m.name = Some("b".into());
            m
        }];
        check(&c, &state, "overlap");
        c.mirrors = vec![base(&a)];
        check(&c, &a.join("state"), "must not contain each other");
        c.mirrors = vec![base(&a), base(&a)];
        check(&c, &state, "named");
        c.mirrors = vec![base(&a)];
        c.remote.url = Some("ftp://x".into());
        check(&c, &state, "https://");
        c.remote.url = Some("http://127.0.0.1:1".into());
        c.validate(&state).unwrap();
    }

    #[test]
    #[cfg(unix)]
    fn token_file_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "token", "secret-token\n");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let cfg = Config {
            remote: RemoteSection {
                token_file: Some(p.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        let e = load_token(&cfg, &Env::new()).unwrap_err().to_string();
        assert!(
            e.contains("chmod 600") && !e.contains("secret-token"),
            "{e}"
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            load_token(&cfg, &Env::new()).unwrap().as_deref(),
            Some("secret-token")
        );
        // systemd credentials win.
        let creds = tempfile::tempdir().unwrap();
        write(creds.path(), "token", "from-systemd");
        let mut env = Env::new();
        env.insert(
            "CREDENTIALS_DIRECTORY".into(),
            creds.path().display().to_string(),
        );
        assert_eq!(
            load_token(&cfg, &env).unwrap().as_deref(),
            Some("from-systemd")
        );
    }
}
