//! Process-level plumbing for `scaidrived`: the single-instance lock on the state
//! directory, signals bridged into tokio, the systemd notify protocol, and logging setup.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;

/// Holds an exclusive lock on `<state_dir>/scaidrived.lock` for the process lifetime, so
/// a second daemon on the same state directory refuses to start instead of corrupting
/// the mirror state.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another scaidrived is already running with state directory {0} (lock file {1})")]
    Held(PathBuf, PathBuf),
    #[error("lock file {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

impl InstanceLock {
    pub fn acquire(state_dir: &Path) -> Result<InstanceLock, LockError> {
        let path = state_dir.join("scaidrived.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| LockError::Io(path.clone(), e))?;
        match file.try_lock() {
            Ok(()) => Ok(InstanceLock { _file: file, path }),
            Err(std::fs::TryLockError::WouldBlock) => {
                Err(LockError::Held(state_dir.to_path_buf(), path))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(LockError::Io(path, e)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// TERM or INT: drain and stop.
    Stop,
    /// HUP: reload the configuration.
    Reload,
}

/// Forwards TERM/INT/HUP to a tokio channel from a dedicated thread (signal-hook's
/// iterator), so handlers never run async code in signal context.
pub fn signals() -> std::io::Result<mpsc::Receiver<Signal>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut it = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let (tx, rx) = mpsc::channel(8);
    std::thread::Builder::new()
        .name("scaidrive-signals".into())
        .spawn(move || {
            for sig in it.forever() {
                let s = if sig == SIGHUP {
                    Signal::Reload
                } else {
                    Signal::Stop
                };
                if tx.blocking_send(s).is_err() {
                    break;
                }
            }
        })?;
    Ok(rx)
}

/// The systemd notify protocol; every call is a no-op when not started by systemd
/// (`NOTIFY_SOCKET` unset).
#[derive(Clone, Debug, Default)]
pub struct Notifier {
    enabled: bool,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        Notifier {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
        }
    }

    fn send(&self, state: &[sd_notify::NotifyState<'_>]) {
        if self.enabled
            && let Err(e) = sd_notify::notify(state)
        {
            tracing::debug!("sd_notify failed: {e}");
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(status),
        ]);
    }

    pub fn status(&self, status: &str) {
        self.send(&[sd_notify::NotifyState::Status(status)]);
    }

    pub fn watchdog(&self) {
        self.send(&[sd_notify::NotifyState::Watchdog]);
    }

    pub fn reloading(&self) {
        self.send(&[sd_notify::NotifyState::Reloading]);
    }

    pub fn stopping(&self) {
        self.send(&[sd_notify::NotifyState::Stopping]);
    }

    /// Half the watchdog interval systemd asked for, if it asked.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        if !self.enabled {
            return None;
        }
        sd_notify::watchdog_enabled().map(|d| d / 2)
    }
}

/// Log lines that could not be written (stderr closed: a `| head`, a log shipper that went
/// away). Exported as `scaidrive_log_lines_dropped_total`.
pub static LOG_LINES_DROPPED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The daemon's log sink: stderr, but a line that cannot be written is counted and dropped.
/// A dead sink must never stop the daemon's work or its shutdown: `tracing-subscriber`
/// reports a failed write with `eprintln!`, which panics on a closed stderr, in whatever
/// task was logging (the signal task among them).
#[derive(Clone, Copy, Debug, Default)]
pub struct LossyStderr;

impl std::io::Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if std::io::stderr().lock().write_all(buf).is_err() {
            LOG_LINES_DROPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LossyStderr {
    type Writer = LossyStderr;
    fn make_writer(&'a self) -> Self::Writer {
        LossyStderr
    }
}

/// `println!` that never panics: a daemon's report to a closed stdout is dropped.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprintln!` that never panics (the last words of a daemon whose stderr is gone).
pub fn say_err(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Initializes `tracing`: human lines on stderr (without timestamps under systemd, whose
/// journal adds its own; coloured only on a terminal), or JSON lines. Lines that cannot be
/// written are dropped and counted ([`LOG_LINES_DROPPED`]). `filter` uses `RUST_LOG`
/// syntax; `RUST_LOG` overrides it when set.
pub fn init_logging(filter: &str, json: bool) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|f| !f.is_empty())
        .unwrap_or_else(|| filter.to_string());
    let env_filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .log_internal_errors(false)
        .with_writer(LossyStderr);
    let result = if json {
        builder.json().try_init()
    } else if under_journal {
        builder.without_time().with_ansi(false).try_init()
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
    // A second init (tests running the daemon in-process) keeps the first subscriber.
    let _ = result;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_the_same_state_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = InstanceLock::acquire(dir.path()).unwrap();
        let e = InstanceLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(e.contains("another scaidrived is already running"), "{e}");
        drop(first);
        InstanceLock::acquire(dir.path()).expect("free again after the holder ends");
    }
}
