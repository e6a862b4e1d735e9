//! `scaidrived`: its command line (clap) and start-up: logging, signals, configuration,
//! then [`crate::daemon::run`] (or the demo). The binary only parses the arguments.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{Config, LogFormat, process_env};
use crate::daemon::{self, DaemonError, RunOptions, Signal, process};
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// Mirrors local folders to ScaiDrive shares, in the foreground (it never forks).
///
/// Without --config, the seed walkthrough's variables describe one mirror:
/// SCAIDRIVE_URL, SCAIDRIVE_TOKEN and SCAIDRIVE_SHARE_ID, with --folder DIR.
/// TERM/INT drain and stop; HUP reloads the configuration file and the credentials
/// (token_file, refresh_token_file), resuming mirrors that needed new credentials.
/// Exit codes: 0 ok, 1 runtime error, 78 configuration or credential error;
/// with --once, 2 when the pass ended with items not in sync.
#[derive(Parser, Debug)]
#[command(version)]
pub struct Args {
    /// Configuration file (TOML); see packaging/scaidrived.example.toml.
    #[arg(long, short = 'c', env = "SCAIDRIVE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Mirror this folder into SCAIDRIVE_SHARE_ID (no config file needed).
    #[arg(long)]
    pub folder: Option<PathBuf>,
    /// Run one full pass, wait until everything is uploaded, print a summary and exit.
    #[arg(long)]
    pub once: bool,
    /// Start the bundled local ScaiDrive server, mirror DIR (a sample folder if omitted),
    /// print a password-protected share link after the first pass, keep mirroring.
    #[arg(long, value_name = "DIR", num_args = 0..=1)]
    pub demo: Option<Option<PathBuf>>,
    /// State directory (overrides daemon.state_dir and $STATE_DIRECTORY).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Log format: human or json.
    #[arg(long, value_parser = ["human", "json"])]
    pub log_format: Option<String>,
}

/// Runs `scaidrived` with parsed arguments; returns the process exit code.
pub fn main(args: Args) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            process::say_err(format_args!("scaidrived: cannot start the runtime: {e}"));
            return ExitCode::from(1);
        }
    };
    match rt.block_on(real_main(args)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            process::say_err(format_args!("scaidrived: {e}"));
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

async fn real_main(args: Args) -> Result<u8, DaemonError> {
    let env = process_env();
    if let Some(dir) = args.demo.clone() {
        return demo(dir, args.state_dir.clone(), &env).await;
    }
    let load = {
        let (file, folder, state_dir) = (
            args.config.clone(),
            args.folder.clone(),
            args.state_dir.clone(),
        );
        let env = env.clone();
        move || -> Result<Config, crate::config::ConfigError> {
            let mut c = Config::load(file.as_deref(), &env, folder.as_deref())?;
            if let Some(d) = &state_dir {
                c.daemon.state_dir = Some(d.clone());
            }
            Ok(c)
        }
    };
    let mut config = load()?;
    if let Some(f) = &args.log_format {
        config.daemon.log_format = if f == "json" {
            LogFormat::Json
        } else {
            LogFormat::Human
        };
    }
    process::init_logging(
        &config.daemon.log_level,
        config.daemon.log_format == LogFormat::Json,
    );

    let shutdown = CancellationToken::new();
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    let mut signals = process::signals()
        .map_err(|e| DaemonError::Other(format!("cannot install signal handlers: {e}")))?;
    let stop = shutdown.clone();
    tokio::spawn(async move {
        while let Some(sig) = signals.recv().await {
            match sig {
                Signal::Stop => {
                    tracing::info!("stop requested; draining");
                    stop.cancel();
                }
                Signal::Reload => {
                    let _ = reload_tx.try_send(());
                }
            }
        }
    });
    let opts = RunOptions {
        once: args.once,
        // Without a file this re-reads the environment and --folder (unchanged); the
        // point of a HUP then is the credentials, which the daemon re-reads either way.
        reload: Some(Box::new(load)),
        reload_rx: Some(reload_rx),
        on_started: None,
        link_check_every: None,
    };
    let report = daemon::run(config, &env, opts, shutdown).await?;
    if args.once {
        for m in &report.mirrors {
            crate::say!(
                "{}: {} — {} files uploaded ({} bytes), {} failed, {} skipped{}",
                m.name,
                if m.in_sync() && m.failures == 0 {
                    "in sync"
                } else {
                    "NOT in sync"
                },
                m.files_done,
                m.bytes_done,
                m.failures,
                m.skipped.len(),
                m.reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            );
        }
        return Ok(if report.all_in_sync() { 0 } else { 2 });
    }
    Ok(0)
}

#[cfg(feature = "devserver")]
async fn demo(
    dir: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    env: &crate::config::Env,
) -> Result<u8, DaemonError> {
    process::init_logging("warn,scaidrive=info", false);
    crate::demo::run(dir, state_dir, env).await.map(|()| 0)
}

// The flag stays in every build so the command line (and its man page) does not depend
// on how the binary was built; a daemon-only build just cannot honour it.
#[cfg(not(feature = "devserver"))]
async fn demo(
    _dir: Option<PathBuf>,
    _state_dir: Option<PathBuf>,
    _env: &crate::config::Env,
) -> Result<u8, DaemonError> {
    Err(DaemonError::Config(crate::config::ConfigError::Check(
        "--demo: this build has no bundled server (built without the `devserver` feature)".into(),
    )))
}
