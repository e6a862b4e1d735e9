//! `scaidrivectl`: its command line (clap) and what each command does. The binary only
//! parses the arguments and calls [`main`]; the definitions live here so man pages and
//! shell completions are generated from them.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::ctl_links;
pub use super::ctl_links::LinkArgs;
use crate::config::{Config, process_env};
use crate::control::client::{self, CtlError};
use crate::control::protocol::{
    ActionRequest, ActionResponse, FailuresResponse, MirrorQuery, MirrorState, MirrorView,
    ResumeRequest, StatusResponse, VerifyRequest, VerifyResponse, route,
};
use crate::relpath::Escaped;
use clap::{Parser, Subcommand};
use serde::Serialize;

/// Query and steer scaidrived.
///
/// Exit codes of `wait`: 0 every mirror idle and in sync, 2 timeout, 3 a mirror is
/// paused or needs credentials, 4 idle with items that need a change or `retry` (failures
/// the daemon retries by itself are waited for), 5 daemon not running.
#[derive(Parser, Debug)]
#[command(version)]
pub struct Args {
    /// The daemon's control socket (default: from the configuration's runtime directory).
    #[arg(long, global = true, env = "SCAIDRIVE_SOCKET")]
    pub socket: Option<PathBuf>,
    /// The daemon's configuration file (to find its socket and state directory).
    #[arg(long, short = 'c', global = true, env = "SCAIDRIVE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Show each mirror's state, progress and failures.
    Status {
        mirror: Option<String>,
        #[arg(long)]
        json: bool,
        /// Refresh every second until interrupted.
        #[arg(long)]
        watch: bool,
    },
    /// Wait until every mirror is idle and in sync.
    Wait {
        /// Give up after this many seconds (exit 2).
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// Stop uploading (events are still collected).
    Pause { mirror: Option<String> },
    /// Resume a paused mirror.
    Resume {
        mirror: Option<String>,
        /// Let the next pass execute the deletes that paused the mirror, and forget the
        /// mount points below the root that are no longer mounted (their folders are then
        /// mirrored as they are).
        #[arg(long)]
        allow_deletes: bool,
    },
    /// Run a full scan now.
    Rescan { mirror: Option<String> },
    /// Retry failed items now.
    Retry { mirror: Option<String> },
    /// List failed items and why they failed.
    Failures {
        mirror: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Create (or show) a sharing link for a mirrored file or folder and print its URL.
    Link(LinkArgs),
    /// List sharing links with their status and expiry (refreshed from the server).
    Links {
        mirror: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a sharing link: by link id, or every live link of a path.
    Unlink {
        /// A link id (`lnk_...`) or a path inside a mirror.
        target: String,
        #[arg(long)]
        json: bool,
    },
    /// Walk the remote and report drift from what the mirror believes it holds.
    /// Exit 0 in sync, 4 drift found.
    Verify {
        mirror: Option<String>,
        /// Also compare every file's SHA-256 (one request per file).
        #[arg(long)]
        checksums: bool,
        /// Forget drifted items so the next pass uploads them again.
        #[arg(long)]
        repair: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show the upload bandwidth limit, or set it until the next reload or restart:
    /// a rate ("2MiB/s", "500KiB/s"), "off", or a weekly timetable in local time
    /// ("Mon-Fri 08:00-18:00 1MiB/s, 20MiB/s", the last entry the default).
    Limit {
        /// The new limit; without it the limit in force is shown.
        limit: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Stream what the daemon does, one line per event (uploaded, new_version, moved,
    /// deleted, drift_repaired, failed, paused, resumed, link_created, in_sync), until it
    /// stops. A reader too slow to keep up gets a "dropped N events" line.
    Events {
        mirror: Option<String>,
        /// Newline-delimited JSON, as GET /v1/events sends it.
        #[arg(long)]
        json: bool,
    },
    /// Print the Prometheus metrics.
    Metrics,
    /// Check a configuration file without starting anything.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Download a mirror's remote tree, a subtree or a file as it was at a moment (no
    /// daemon needed: reads the configuration and the token and talks to ScaiDrive).
    Restore(super::restore::RestoreArgs),
    /// List the remote versions of a mirrored file (number, size, time, who).
    Versions(super::restore::VersionsArgs),
    /// Run scaidrived as a per-user service: a systemd user unit on Linux, a launchd
    /// agent on macOS.
    Service {
        #[command(subcommand)]
        cmd: crate::service::ServiceCmd,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Load and validate a configuration file (default: --config).
    Check { file: Option<PathBuf> },
}

/// Runs `scaidrivectl` with parsed arguments; returns the process exit code.
pub fn main(args: Args) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("scaidrivectl: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(args)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("scaidrivectl: {e}");
            ExitCode::from(if matches!(e, CtlError::NotRunning(_)) {
                5
            } else {
                1
            })
        }
    }
}

fn socket_path(args: &Args) -> Result<PathBuf, CtlError> {
    if let Some(s) = &args.socket {
        return Ok(s.clone());
    }
    let env = process_env();
    let cfg = Config::load(args.config.as_deref(), &env, None)
        .map_err(|e| CtlError::Io(PathBuf::from("config"), e.to_string()))?;
    let dir = cfg
        .runtime_dir(&env)
        .map_err(|e| CtlError::Io(PathBuf::from("runtime dir"), e.to_string()))?;
    Ok(dir.join("scaidrived.sock"))
}

fn status_path(mirror: &Option<String>) -> String {
    format!(
        "{}{}",
        route::STATUS,
        MirrorQuery::new(mirror.clone()).to_query()
    )
}

/// `--json` output: the response as the daemon's protocol types write it.
pub(super) fn print_json<T: Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

async fn run(args: Args) -> Result<u8, CtlError> {
    if let Cmd::Config {
        cmd: ConfigCmd::Check { file },
    } = &args.cmd
    {
        return Ok(config_check(file.as_ref().or(args.config.as_ref())));
    }
    // Direct to ScaiDrive, no daemon: see src/cli/restore.rs.
    let direct = match &args.cmd {
        Cmd::Restore(a) => Some(super::restore::restore(args.config.as_deref(), a).await),
        Cmd::Versions(a) => Some(super::restore::versions(args.config.as_deref(), a).await),
        _ => None,
    };
    if let Some(r) = direct {
        return Ok(r.unwrap_or_else(|e| {
            eprintln!("scaidrivectl: {e}");
            1
        }));
    }
    if let Cmd::Service { cmd } = &args.cmd {
        return Ok(crate::service::main(*cmd, args.config.as_deref()));
    }
    let socket = socket_path(&args)?;
    match &args.cmd {
        Cmd::Status {
            mirror,
            json: false,
            watch: true,
        } if std::io::stdout().is_terminal() => watch_bars(&socket, mirror).await,
        Cmd::Status {
            mirror,
            json,
            watch,
        } => loop {
            match client::get::<StatusResponse>(&socket, &status_path(mirror)).await {
                Ok(v) if *json => print_json(&v),
                Ok(v) => print_status(&v),
                Err(CtlError::NotRunning(p)) => {
                    println!(
                        "scaidrived is not running (no control socket at {}).",
                        p.display()
                    );
                    offline_status(&args);
                    return Ok(5);
                }
                Err(e) => return Err(e),
            }
            if !*watch {
                return Ok(0);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        },
        Cmd::Wait { timeout } => wait(&socket, timeout.map(Duration::from_secs)).await,
        Cmd::Pause { mirror } => {
            let body = ActionRequest {
                mirror: mirror.clone(),
            };
            action(&socket, "pause", route::PAUSE, &body).await
        }
        Cmd::Resume {
            mirror,
            allow_deletes,
        } => {
            let body = ResumeRequest {
                mirror: mirror.clone(),
                allow_deletes: *allow_deletes,
            };
            action(&socket, "resume", route::RESUME, &body).await
        }
        Cmd::Rescan { mirror } => {
            let body = ActionRequest {
                mirror: mirror.clone(),
            };
            action(&socket, "rescan", route::RESCAN, &body).await
        }
        Cmd::Retry { mirror } => {
            let body = ActionRequest {
                mirror: mirror.clone(),
            };
            action(&socket, "retry", route::RETRY, &body).await
        }
        Cmd::Failures { mirror, json } => {
            let path = format!(
                "{}{}",
                route::FAILURES,
                MirrorQuery::new(mirror.clone()).to_query()
            );
            let v: FailuresResponse = client::get(&socket, &path).await?;
            if *json {
                print_json(&v);
                return Ok(0);
            }
            print!("{}", failure_lines(&v));
            Ok(0)
        }
        Cmd::Link(a) => ctl_links::link(&socket, a).await,
        Cmd::Links { mirror, json } => ctl_links::links(&socket, mirror, *json).await,
        Cmd::Unlink { target, json } => ctl_links::unlink(&socket, target, *json).await,
        Cmd::Verify {
            mirror,
            checksums,
            repair,
            json,
        } => {
            let body = VerifyRequest {
                mirror: mirror.clone(),
                checksums: *checksums,
                repair: *repair,
            };
            let v: VerifyResponse = client::post(&socket, route::VERIFY, &body).await?;
            if *json {
                print_json(&v);
            }
            let mut drift = false;
            for r in &v.reports {
                let name = &r.mirror;
                let (missing, extra, different) =
                    (&r.missing_remotely, &r.extra_remotely, &r.different);
                if let Some(e) = &r.error {
                    drift = true;
                    if !*json {
                        println!("{name}: verify failed: {}", Escaped(e));
                    }
                    continue;
                }
                drift |= !r.in_sync();
                if *json {
                    continue;
                }
                println!(
                    "{name}: {} remote items, {} known; {} missing remotely, {} different, {} extra remotely{}",
                    r.remote_items,
                    r.known_items,
                    missing.len(),
                    different.len(),
                    extra.len(),
                    if r.repaired > 0 {
                        format!("; {} forgotten, the next pass re-uploads them", r.repaired)
                    } else {
                        String::new()
                    }
                );
                for p in missing.iter().take(20) {
                    println!("  missing remotely: {}", Escaped(p));
                }
                for (path, what) in different.iter().take(20) {
                    println!("  different: {} ({})", Escaped(path), Escaped(what));
                }
                for p in extra.iter().take(20) {
                    println!("  extra remotely: {}", Escaped(p));
                }
            }
            Ok(if drift { 4 } else { 0 })
        }
        Cmd::Metrics => {
            print!("{}", client::metrics(&socket).await?);
            Ok(0)
        }
        Cmd::Events { mirror, json } => {
            super::ctl_ops::events(&socket, mirror.as_deref(), *json).await
        }
        Cmd::Limit { limit, json } => super::ctl_ops::limit(&socket, limit.as_deref(), *json).await,
        Cmd::Config { .. } | Cmd::Service { .. } | Cmd::Restore(_) | Cmd::Versions(_) => {
            unreachable!("handled above")
        }
    }
}

/// `status --watch` on a terminal: one progress bar per mirror for the running batch
/// (bytes uploaded of the batch, rate, ETA), its state as the message. Until Ctrl-C.
async fn watch_bars(socket: &Path, mirror: &Option<String>) -> Result<u8, CtlError> {
    use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
    let style = ProgressStyle::with_template(
        "{prefix:12} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} eta {eta:>4}  {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let multi = MultiProgress::new();
    // Per mirror: its bar and the bytes-done figure when the current batch began.
    let mut bars: std::collections::HashMap<String, (ProgressBar, u64)> =
        std::collections::HashMap::new();
    loop {
        let v: StatusResponse = client::get(socket, &status_path(mirror)).await?;
        for m in &v.mirrors {
            let s = &m.status;
            let name = s.name.clone();
            let done = s.bytes_done;
            let remaining = s.bytes_remaining;
            let (bar, base) = bars.entry(name.clone()).or_insert_with(|| {
                let b = multi.add(ProgressBar::new(0));
                b.set_style(style.clone());
                b.set_prefix(name.clone());
                (b, done)
            });
            if remaining == 0 {
                *base = done;
            }
            let pos = done.saturating_sub(*base);
            bar.set_length(pos + remaining);
            bar.set_position(pos);
            let mut msg = s.state.wire_name().to_string();
            if let Some(r) = &s.reason {
                msg.push_str(&format!(" ({})", Escaped(r)));
            } else if m.in_sync {
                msg.push_str(", in sync");
            }
            msg.push_str(&format!(", {} failed", s.failures));
            bar.set_message(msg);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `scaidrivectl failures` for people: one line per failed item. Names and reasons are
/// escaped (a name may hold a newline or escape codes, and would otherwise forge lines or
/// drive the terminal); `--json` prints them raw, JSON escapes by itself.
fn failure_lines(v: &FailuresResponse) -> String {
    let mut out = String::new();
    for m in &v.mirrors {
        for f in &m.failures {
            out.push_str(&format!(
                "{}: {} — {} ({} attempt(s){})\n",
                Escaped(&m.mirror),
                Escaped(&f.path),
                Escaped(&f.reason),
                f.attempts,
                if f.permanent {
                    ", needs a change or `retry`"
                } else {
                    ""
                }
            ));
        }
    }
    if out.is_empty() {
        out.push_str("no failed items\n");
    }
    out
}

async fn action<B: Serialize>(
    socket: &Path,
    what: &str,
    path: &str,
    body: &B,
) -> Result<u8, CtlError> {
    let v: ActionResponse = client::post(socket, path, body).await?;
    println!(
        "{what}: {}",
        if v.mirrors.is_empty() {
            "no mirror".to_string()
        } else {
            v.mirrors.join(", ")
        }
    );
    Ok(0)
}

async fn wait(socket: &Path, timeout: Option<Duration>) -> Result<u8, CtlError> {
    // A long first pass must not look like a hang: on a terminal, one line that says what
    // the mirrors are doing, redrawn in place and cleared before the verdict.
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.enable_steady_tick(Duration::from_millis(120));
        b
    });
    let verdict = wait_for_verdict(socket, timeout, bar.as_ref()).await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let (code, message) = verdict?;
    if let Some(m) = message {
        eprintln!("{m}");
    }
    Ok(code)
}

/// Polls the status until every mirror is in sync, one needs attention, or the timeout:
/// the exit code and what to say.
async fn wait_for_verdict(
    socket: &Path,
    timeout: Option<Duration>,
    bar: Option<&indicatif::ProgressBar>,
) -> Result<(u8, Option<String>), CtlError> {
    let start = Instant::now();
    loop {
        let v: StatusResponse = client::get(socket, route::STATUS).await?;
        let mirrors = &v.mirrors;
        if let Some(s) = mirrors.iter().map(|m| &m.status).find(|s| {
            matches!(
                s.state,
                MirrorState::Paused | MirrorState::NeedsCredentials | MirrorState::Error
            )
        }) {
            let m = format!(
                "{}: {} ({})",
                s.name,
                s.state.wire_name(),
                Escaped(s.reason.as_deref().unwrap_or(""))
            );
            return Ok((3, Some(m)));
        }
        let retrying = mirrors.iter().any(|m| m.status.retrying > 0);
        // Failures the daemon retries by itself are waited for; only those that need a
        // change (or `scaidrivectl retry`) end the wait early.
        if mirrors.iter().all(|m| m.in_sync) && !retrying {
            if let Some(s) = mirrors.iter().map(|m| &m.status).find(|s| s.failures > 0) {
                let m = format!(
                    "{}: idle with {} failed item(s); see `scaidrivectl failures`",
                    s.name, s.failures
                );
                return Ok((4, Some(m)));
            }
            return Ok((0, None));
        }
        if timeout.is_some_and(|t| start.elapsed() >= t) {
            let m = "timed out waiting for the mirrors to be in sync".to_string();
            return Ok((2, Some(m)));
        }
        if let Some(b) = bar {
            b.set_message(wait_progress(mirrors));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What `wait` shows on a terminal while it waits: each mirror not yet in sync, its state
/// and the work left (uploads with rate and ETA, or what is queued), and what is done.
fn wait_progress(mirrors: &[MirrorView]) -> String {
    mirrors
        .iter()
        .filter(|m| !m.in_sync)
        .map(|m| {
            let s = &m.status;
            let mut line = format!("{}: {}", Escaped(&s.name), s.state.wire_name());
            if s.files_remaining > 0 || s.bytes_remaining > 0 {
                line.push_str(&format!(
                    ", uploading {} file(s), {} left",
                    s.files_remaining,
                    human_bytes(s.bytes_remaining)
                ));
                if s.bytes_per_sec > 0 {
                    line.push_str(&format!(" at {}/s", human_bytes(s.bytes_per_sec)));
                }
                if let Some(eta) = s.eta_secs {
                    line.push_str(&format!(", ETA {}m{:02}s", eta / 60, eta % 60));
                }
            } else if s.queue_depth > 0 {
                line.push_str(&format!(", {} queued", s.queue_depth));
            }
            line.push_str(&format!(", {} file(s) uploaded", s.files_done));
            line
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn ago(t: Option<i64>) -> String {
    let Some(t) = t else { return "never".into() };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(t);
    let s = (now - t).max(0);
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        _ => format!("{}h ago", s / 3600),
    }
}

fn print_status(v: &StatusResponse) {
    let d = &v.daemon;
    println!(
        "scaidrived {} (pid {}), state {}",
        d.version, d.pid, d.state_dir
    );
    if let Some(b) = &v.bandwidth {
        println!("{}", super::ctl_ops::bandwidth_line(b));
    }
    for m in &v.mirrors {
        let s = &m.status;
        let sync = if m.in_sync { "in sync" } else { "" };
        println!(
            "{:<12} {:<10} {:<8} {} files ({}) uploaded, {} queued, {} in flight, {} failed, last sync {}",
            s.name,
            s.state.wire_name(),
            sync,
            s.files_done,
            human_bytes(s.bytes_done),
            s.queue_depth,
            s.in_flight,
            s.failures,
            ago(s.last_sync_at)
        );
        if s.cursor_read_at.is_some() || s.remote_drift > 0 {
            println!(
                "{:<12} remote changes: log read {}, {} repaired ({} overwritten), {} pending",
                "",
                ago(s.cursor_read_at),
                s.remote_repairs,
                s.remote_overwrites,
                s.remote_drift
            );
        }
        println!(
            "{:<12} {} → share {} /{}",
            "",
            Escaped(&s.root),
            s.share_id,
            Escaped(&s.remote_path)
        );
        let left = s.bytes_remaining;
        if left > 0 || s.files_remaining > 0 {
            let eta = s
                .eta_secs
                .map(|s| format!(", ETA {}m{:02}s", s / 60, s % 60))
                .unwrap_or_default();
            println!(
                "{:<12} uploading: {} file(s), {} left at {}/s{eta}",
                "",
                s.files_remaining,
                human_bytes(left),
                human_bytes(s.bytes_per_sec)
            );
        }
        if let Some(r) = &s.reason {
            println!("{:<12} why: {}", "", Escaped(r));
        }
        if let Some(d) = s.budget_spent {
            println!("{:<12} waiting: the {d} API budget is spent (429)", "");
        }
        let skipped = s.skipped.len();
        if skipped > 0 {
            println!(
                "{:<12} {skipped} item(s) skipped (symlinks, unreadable or unmirrorable names)",
                ""
            );
        }
        for p in &s.polled {
            println!("{:<12} polled: {}", "", Escaped(p));
        }
        for m in &s.unmounted {
            println!(
                "{:<12} not mounted (its remote copy is kept): {}",
                "",
                Escaped(m)
            );
        }
        for u in &s.unwatched {
            println!(
                "{:<12} not watched (changes wait for the next try): {}",
                "",
                Escaped(u)
            );
        }
    }
}

/// What the state database says while the daemon is down (read-only).
fn offline_status(args: &Args) {
    let env = process_env();
    let Ok(cfg) = Config::load(args.config.as_deref(), &env, None) else {
        return;
    };
    let Ok(dir) = cfg.state_dir(&env) else { return };
    let db = dir.join("state.db");
    let conn = match crate::store::open_read_only(&db) {
        Ok(Some(c)) => c,
        Ok(None) => {
            println!("No state database at {} yet.", db.display());
            return;
        }
        Err(e) => {
            println!("{e}");
            return;
        }
    };
    println!("Last known state ({}):", db.display());
    let Ok(mirrors) = crate::store::all_mirrors(&conn) else {
        return;
    };
    for m in mirrors {
        let entries: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM entries WHERE mirror_id = ?1",
                [m.id],
                |r| r.get(0),
            )
            .unwrap_or(0);
        let failures = crate::store::failures(&conn, m.id)
            .map(|f| f.len())
            .unwrap_or(0);
        println!(
            "{:<12} {} items mirrored, {} failed{}{}",
            m.name,
            entries,
            failures,
            if m.first_pass_done {
                ""
            } else {
                ", first pass not finished"
            },
            m.paused_reason
                .map(|r| format!(", paused: {}", Escaped(&r)))
                .unwrap_or_default()
        );
    }
}

fn config_check(file: Option<&PathBuf>) -> u8 {
    let env = process_env();
    let result = Config::load(file.map(PathBuf::as_path), &env, None).and_then(|c| {
        let state = c.state_dir(&env)?;
        c.validate(&state)?;
        let token = crate::config::check_credentials(&c, &env)?;
        Ok((c, state, token))
    });
    match result {
        Ok((c, state, token)) => {
            println!(
                "ok: {} mirror(s); state directory {}{}",
                c.mirrors.len(),
                state.display(),
                if token {
                    ""
                } else {
                    "; no access token here (the daemon needs SCAIDRIVE_TOKEN, remote.token_file or LoadCredential=token)"
                }
            );
            0
        }
        Err(e) => {
            eprintln!("{e}");
            78
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(
        state: &str,
        queued: usize,
        files_left: u64,
        bytes_left: u64,
        eta: Option<u64>,
    ) -> MirrorView {
        serde_json::from_value(serde_json::json!({
            "name": "docs", "root": "/r", "share_id": "shr", "remote_path": "",
            "state": state, "reason": null, "queue_depth": queued, "in_flight": 0,
            "files_done": 12, "bytes_done": 0, "files_remaining": files_left,
            "bytes_remaining": bytes_left, "bytes_per_sec": if bytes_left > 0 { 2048 } else { 0 },
            "eta_secs": eta, "entries": 0, "failures": 0, "retrying": 0, "skipped": [],
            "first_pass_done": false, "last_sync_at": null, "in_sync": false,
        }))
        .expect("a status view")
    }

    #[test]
    fn wait_progress_says_what_is_left() {
        let table = [
            (
                view("scanning", 0, 0, 0, None),
                "docs: scanning, 12 file(s) uploaded",
            ),
            (
                view("syncing", 40, 0, 0, None),
                "docs: syncing, 40 queued, 12 file(s) uploaded",
            ),
            (
                view("syncing", 40, 3, 3 * 1024 * 1024, Some(75)),
                "docs: syncing, uploading 3 file(s), 3.0 MiB left at 2.0 KiB/s, ETA 1m15s, 12 file(s) uploaded",
            ),
        ];
        for (v, want) in table {
            assert_eq!(wait_progress(&[v]), want);
        }
        let mut done = view("idle", 0, 0, 0, None);
        done.in_sync = true;
        assert_eq!(wait_progress(&[done]), "");
    }
}
