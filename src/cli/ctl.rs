//! `scaidrivectl`: its command line (clap) and what each command does. The binary only
//! parses the arguments and calls [`main`]; the definitions live here so man pages and
//! shell completions are generated from them.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::config::{Config, process_env};
use crate::control::client::{CtlError, call, call_text};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};

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
        /// Let the next pass execute the deletes that paused the mirror.
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
    /// Print the Prometheus metrics.
    Metrics,
    /// Check a configuration file without starting anything.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
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

fn target(mirror: &Option<String>) -> String {
    match mirror {
        Some(m) => format!("?mirror={}", m.replace('&', "%26").replace(' ', "%20")),
        None => String::new(),
    }
}

async fn run(args: Args) -> Result<u8, CtlError> {
    if let Cmd::Config {
        cmd: ConfigCmd::Check { file },
    } = &args.cmd
    {
        return Ok(config_check(file.as_ref().or(args.config.as_ref())));
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
            match call(
                &socket,
                "GET",
                &format!("/v1/status{}", target(mirror)),
                None,
            )
            .await
            {
                Ok(v) if *json => {
                    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default())
                }
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
        Cmd::Pause { mirror } => action(&socket, "pause", json!({ "mirror": mirror })).await,
        Cmd::Resume {
            mirror,
            allow_deletes,
        } => {
            action(
                &socket,
                "resume",
                json!({ "mirror": mirror, "allow_deletes": allow_deletes }),
            )
            .await
        }
        Cmd::Rescan { mirror } => action(&socket, "rescan", json!({ "mirror": mirror })).await,
        Cmd::Retry { mirror } => action(&socket, "retry", json!({ "mirror": mirror })).await,
        Cmd::Failures { mirror, json } => {
            let v = call(
                &socket,
                "GET",
                &format!("/v1/failures{}", target(mirror)),
                None,
            )
            .await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                return Ok(0);
            }
            let mut any = false;
            for m in v["mirrors"].as_array().into_iter().flatten() {
                for f in m["failures"].as_array().into_iter().flatten() {
                    any = true;
                    println!(
                        "{}: {} — {} ({} attempt(s){})",
                        m["mirror"].as_str().unwrap_or(""),
                        f["path"].as_str().unwrap_or(""),
                        f["reason"].as_str().unwrap_or(""),
                        f["attempts"],
                        if f["permanent"].as_bool() == Some(true) {
                            ", needs a change or `retry`"
                        } else {
                            ""
                        }
                    );
                }
            }
            if !any {
                println!("no failed items");
            }
            Ok(0)
        }
        Cmd::Link(a) => link(&socket, a).await,
        Cmd::Links { mirror, json } => links(&socket, mirror, *json).await,
        Cmd::Unlink { target, json } => unlink(&socket, target, *json).await,
        Cmd::Verify {
            mirror,
            checksums,
            repair,
            json,
        } => {
            let body = json!({ "mirror": mirror, "checksums": checksums, "repair": repair });
            let v = call(&socket, "POST", "/v1/verify", Some(&body)).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            }
            let mut drift = false;
            for r in v["reports"].as_array().into_iter().flatten() {
                let name = r["mirror"].as_str().unwrap_or("");
                let list = |k: &str| r[k].as_array().cloned().unwrap_or_default();
                let (missing, extra, different) = (
                    list("missing_remotely"),
                    list("extra_remotely"),
                    list("different"),
                );
                if let Some(e) = r["error"].as_str() {
                    drift = true;
                    if !*json {
                        println!("{name}: verify failed: {e}");
                    }
                    continue;
                }
                drift |= !missing.is_empty() || !different.is_empty();
                if *json {
                    continue;
                }
                println!(
                    "{name}: {} remote items, {} known; {} missing remotely, {} different, {} extra remotely{}",
                    r["remote_items"],
                    r["known_items"],
                    missing.len(),
                    different.len(),
                    extra.len(),
                    if r["repaired"].as_u64().unwrap_or(0) > 0 {
                        format!(
                            "; {} forgotten, the next pass re-uploads them",
                            r["repaired"]
                        )
                    } else {
                        String::new()
                    }
                );
                for p in missing.iter().take(20) {
                    println!("  missing remotely: {}", p.as_str().unwrap_or(""));
                }
                for d in different.iter().take(20) {
                    println!(
                        "  different: {} ({})",
                        d[0].as_str().unwrap_or(""),
                        d[1].as_str().unwrap_or("")
                    );
                }
                for p in extra.iter().take(20) {
                    println!("  extra remotely: {}", p.as_str().unwrap_or(""));
                }
            }
            Ok(if drift { 4 } else { 0 })
        }
        Cmd::Metrics => {
            print!("{}", call_text(&socket, "/metrics").await?);
            Ok(0)
        }
        Cmd::Config { .. } | Cmd::Service { .. } => unreachable!("handled above"),
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
        let v = call(
            socket,
            "GET",
            &format!("/v1/status{}", target(mirror)),
            None,
        )
        .await?;
        for m in v["mirrors"].as_array().into_iter().flatten() {
            let name = m["name"].as_str().unwrap_or("").to_string();
            let done = m["bytes_done"].as_u64().unwrap_or(0);
            let remaining = m["bytes_remaining"].as_u64().unwrap_or(0);
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
            let mut msg = m["state"].as_str().unwrap_or("").to_string();
            if let Some(r) = m["reason"].as_str() {
                msg.push_str(&format!(" ({r})"));
            } else if m["in_sync"].as_bool() == Some(true) {
                msg.push_str(", in sync");
            }
            msg.push_str(&format!(", {} failed", m["failures"]));
            bar.set_message(msg);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn action(socket: &Path, what: &str, body: Value) -> Result<u8, CtlError> {
    let v = call(socket, "POST", &format!("/v1/{what}"), Some(&body)).await?;
    let names: Vec<&str> = v["mirrors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    println!(
        "{what}: {}",
        if names.is_empty() {
            "no mirror".to_string()
        } else {
            names.join(", ")
        }
    );
    Ok(0)
}

async fn wait(socket: &Path, timeout: Option<Duration>) -> Result<u8, CtlError> {
    let start = Instant::now();
    loop {
        let v = call(socket, "GET", "/v1/status", None).await?;
        let mirrors = v["mirrors"].as_array().cloned().unwrap_or_default();
        let state = |m: &Value| m["state"].as_str().unwrap_or("").to_string();
        if let Some(m) = mirrors
            .iter()
            .find(|m| matches!(state(m).as_str(), "paused" | "needs_credentials" | "error"))
        {
            eprintln!(
                "{}: {} ({})",
                m["name"].as_str().unwrap_or(""),
                state(m),
                m["reason"].as_str().unwrap_or("")
            );
            return Ok(3);
        }
        let retrying = mirrors
            .iter()
            .any(|m| m["retrying"].as_u64().unwrap_or(0) > 0);
        // Failures the daemon retries by itself are waited for; only those that need a
        // change (or `scaidrivectl retry`) end the wait early.
        if mirrors.iter().all(|m| m["in_sync"].as_bool() == Some(true)) && !retrying {
            if let Some(m) = mirrors
                .iter()
                .find(|m| m["failures"].as_u64().unwrap_or(0) > 0)
            {
                eprintln!(
                    "{}: idle with {} failed item(s); see `scaidrivectl failures`",
                    m["name"].as_str().unwrap_or(""),
                    m["failures"]
                );
                return Ok(4);
            }
            return Ok(0);
        }
        if timeout.is_some_and(|t| start.elapsed() >= t) {
            eprintln!("timed out waiting for the mirrors to be in sync");
            return Ok(2);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
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

fn print_status(v: &Value) {
    let d = &v["daemon"];
    println!(
        "scaidrived {} (pid {}), state {}",
        d["version"].as_str().unwrap_or("?"),
        d["pid"],
        d["state_dir"].as_str().unwrap_or("?")
    );
    for m in v["mirrors"].as_array().into_iter().flatten() {
        let state = m["state"].as_str().unwrap_or("?");
        let sync = if m["in_sync"].as_bool() == Some(true) {
            "in sync"
        } else {
            ""
        };
        println!(
            "{:<12} {:<10} {:<8} {} files ({}) uploaded, {} queued, {} in flight, {} failed, last sync {}",
            m["name"].as_str().unwrap_or(""),
            state,
            sync,
            m["files_done"],
            human_bytes(m["bytes_done"].as_u64().unwrap_or(0)),
            m["queue_depth"],
            m["in_flight"],
            m["failures"],
            ago(m["last_sync_at"].as_i64())
        );
        println!(
            "{:<12} {} → share {} /{}",
            "",
            m["root"].as_str().unwrap_or(""),
            m["share_id"].as_str().unwrap_or(""),
            m["remote_path"].as_str().unwrap_or("")
        );
        let left = m["bytes_remaining"].as_u64().unwrap_or(0);
        if left > 0 || m["files_remaining"].as_u64().unwrap_or(0) > 0 {
            let eta = m["eta_secs"]
                .as_u64()
                .map(|s| format!(", ETA {}m{:02}s", s / 60, s % 60))
                .unwrap_or_default();
            println!(
                "{:<12} uploading: {} file(s), {} left at {}/s{eta}",
                "",
                m["files_remaining"],
                human_bytes(left),
                human_bytes(m["bytes_per_sec"].as_u64().unwrap_or(0))
            );
        }
        if let Some(r) = m["reason"].as_str() {
            println!("{:<12} why: {r}", "");
        }
        let skipped = m["skipped"].as_array().map(Vec::len).unwrap_or(0);
        if skipped > 0 {
            println!(
                "{:<12} {skipped} item(s) skipped (symlinks, unreadable or unmirrorable names)",
                ""
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
                .map(|r| format!(", paused: {r}"))
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

/// `scaidrivectl link`.
///
/// Asking again with the same options prints the same URL while the link is active; an
/// expired, revoked or exhausted link is replaced by a new one. Without a password option,
/// an existing password-protected link with the same other options is reused. The daemon
/// never stores passwords, so regenerating a protected link needs the password again (or
/// `--generate-password`).
#[derive(clap::Args, Debug)]
pub struct LinkArgs {
    /// A file or folder inside a mirror root; the root itself links the whole mirror.
    pub path: PathBuf,
    /// What recipients may do.
    #[arg(long = "type", default_value = "download", value_parser = ["view", "download", "upload"])]
    pub link_type: String,
    /// Protect the link with the password in this file (its first line).
    #[arg(long, group = "password")]
    pub password_file: Option<PathBuf>,
    /// Protect the link with a password read from standard input (its first line).
    #[arg(long, group = "password")]
    pub password_stdin: bool,
    /// Protect the link with a new random password, printed once.
    #[arg(long, group = "password")]
    pub generate_password: bool,
    /// The link expires this many days after it is created.
    #[arg(long, conflicts_with = "expires_at")]
    pub expires_in_days: Option<u32>,
    /// The link expires at this RFC 3339 time (e.g. 2030-01-31T12:00:00Z).
    #[arg(long)]
    pub expires_at: Option<String>,
    /// The link stops working after this many downloads.
    #[arg(long)]
    pub max_downloads: Option<u64>,
    /// Display name shown to recipients.
    #[arg(long)]
    pub name: Option<String>,
    /// Make a new URL (and revoke the old one) even if the link is still active.
    #[arg(long)]
    pub regenerate: bool,
    /// Seconds to wait for a new path to reach the remote.
    #[arg(long, default_value_t = 60)]
    pub wait: u64,
    #[arg(long)]
    pub json: bool,
}

fn absolute(p: &Path) -> Result<PathBuf, CtlError> {
    std::path::absolute(p).map_err(|e| CtlError::Io(p.to_path_buf(), e.to_string()))
}

fn link_password(a: &LinkArgs) -> Result<Option<String>, CtlError> {
    if let Some(f) = &a.password_file {
        return crate::config::read_secret_file(f, false)
            .map(Some)
            .map_err(|e| CtlError::Io(f.clone(), e.to_string()));
    }
    if a.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| CtlError::Io(PathBuf::from("stdin"), e.to_string()))?;
        let pw = line.trim_end_matches(['\n', '\r']).to_string();
        if pw.is_empty() {
            return Err(CtlError::Io(
                PathBuf::from("stdin"),
                "no password on standard input".into(),
            ));
        }
        return Ok(Some(pw));
    }
    Ok(a.generate_password.then(crate::links::generate_password))
}

async fn link(socket: &Path, a: &LinkArgs) -> Result<u8, CtlError> {
    let path = absolute(&a.path)?;
    let password = link_password(a)?;
    let mut body = json!({
        "path": path,
        "type": a.link_type,
        "password": password,
        "expires_in_days": a.expires_in_days,
        "expires_at": a.expires_at,
        "max_downloads": a.max_downloads,
        "name": a.name,
        "regenerate": a.regenerate,
        "wait_secs": 0,
    });
    // Ask without waiting first, so the user hears why the command pauses.
    let v = match call(socket, "POST", "/v1/links", Some(&body)).await {
        Err(CtlError::Daemon { status: 409, .. }) if a.wait > 0 => {
            eprintln!(
                "{} is not on the remote yet; waiting up to {} s for the mirror to upload it...",
                path.display(),
                a.wait
            );
            body["wait_secs"] = json!(a.wait);
            call(socket, "POST", "/v1/links", Some(&body)).await?
        }
        other => other?,
    };
    let outcome = v["outcome"].as_str().unwrap_or("");
    let l = &v["link"];
    // A reused link keeps the password it was created with; a generated one went unused.
    let shown_password = password.filter(|_| a.generate_password && outcome != "reused");
    if a.json {
        let mut out = v.clone();
        out["password"] = json!(shown_password);
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(0);
    }
    println!("{}", l["url"].as_str().unwrap_or(""));
    if let Some(short) = l["short_url"].as_str() {
        println!("short:    {short}");
    }
    if let Some(pw) = &shown_password {
        println!("password: {pw}  (shown only now; the daemon does not keep it)");
    }
    println!(
        "link {} ({}, {}), expires {}",
        l["id"].as_str().unwrap_or(""),
        l["link_type"].as_str().unwrap_or("").to_lowercase(),
        if l["options"]["password_required"].as_bool() == Some(true) {
            "password-protected"
        } else {
            "no password"
        },
        l["expires_at"].as_str().unwrap_or("never")
    );
    match outcome {
        "reused" => {
            eprintln!("existing link, still active (use --regenerate for a new URL)");
            if a.generate_password {
                eprintln!(
                    "it keeps the password it was created with; --regenerate makes a new link with a new password"
                );
            }
        }
        "regenerated" => eprintln!(
            "new link: the previous one ({}) was replaced because {}",
            v["replaced"].as_str().unwrap_or("not revoked, see `links`"),
            v["reason"].as_str().unwrap_or("it was not usable")
        ),
        _ => {}
    }
    Ok(0)
}

async fn links(socket: &Path, mirror: &Option<String>, json_out: bool) -> Result<u8, CtlError> {
    let v = call(socket, "GET", &format!("/v1/links{}", target(mirror)), None).await?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(0);
    }
    let list = v["links"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no links");
        return Ok(0);
    }
    for l in &list {
        let path = match l["path"].as_str() {
            Some("") | None => "(mirror root)".to_string(),
            Some(p) => p.to_string(),
        };
        println!(
            "{:<28} {:<9} {:<8} expires {:<20} {}:{}  {}{}",
            l["id"].as_str().unwrap_or(""),
            l["status"].as_str().unwrap_or(""),
            l["link_type"].as_str().unwrap_or("").to_lowercase(),
            l["expires_at"].as_str().unwrap_or("never"),
            l["mirror"].as_str().unwrap_or(""),
            path,
            l["url"].as_str().unwrap_or(""),
            match l["download_count"].as_u64() {
                Some(n) => format!("  ({n} downloads)"),
                None => String::new(),
            }
        );
    }
    Ok(0)
}

async fn unlink(socket: &Path, target: &str, json_out: bool) -> Result<u8, CtlError> {
    let path = absolute(Path::new(target)).ok();
    let v = call(
        socket,
        "POST",
        "/v1/unlink",
        Some(&json!({ "target": target, "path": path })),
    )
    .await?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(0);
    }
    for l in v["revoked"].as_array().into_iter().flatten() {
        println!(
            "revoked {} ({})",
            l["id"].as_str().unwrap_or(""),
            l["url"].as_str().unwrap_or("")
        );
    }
    Ok(0)
}
