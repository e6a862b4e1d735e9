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
/// paused or needs credentials, 4 idle with failed items, 5 daemon not running.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
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
                Ok(v) => {
                    if *watch && std::io::stdout().is_terminal() {
                        print!("\x1b[2J\x1b[H");
                    }
                    print_status(&v);
                }
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
        Cmd::Metrics => {
            print!("{}", call_text(&socket, "/metrics").await?);
            Ok(0)
        }
        Cmd::Config { .. } | Cmd::Service { .. } => unreachable!("handled above"),
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
        if mirrors.iter().all(|m| m["in_sync"].as_bool() == Some(true)) {
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
        c.validate(&state).map(|()| (c, state))
    });
    match result {
        Ok((c, state)) => {
            println!(
                "ok: {} mirror(s); state directory {}",
                c.mirrors.len(),
                state.display()
            );
            0
        }
        Err(e) => {
            eprintln!("{e}");
            78
        }
    }
}
