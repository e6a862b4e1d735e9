//! The Prometheus text exposition of `GET /metrics` and of `daemon.metrics_file` (for
//! node_exporter's textfile collector on hosts without a scraper that reaches the socket).
//! The alert rules and the Grafana dashboard in `packaging/monitoring/` are written
//! against these names; a metric renamed here must be renamed there (the daemon tests
//! check that every metric they use is exported).
//!
//! Per mirror (label `mirror`): uploads and bytes, queue, in flight, entries, failures,
//! `in_sync`, a one-hot `mirror_state{state}`, the last sync time (the daemon's start
//! until the first), the rescan interval, folders not watched (the mirror then scans
//! periodically). Daemon-wide: requests answered and 429s, the bandwidth limit and the
//! current upload rate, dropped log lines.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::watch;

use crate::config::MirrorConfig;
use crate::mirror::{MirrorHandle, MirrorState, MirrorStatus};
use crate::remote::Client;
use crate::remote::bandwidth::Bandwidth;

/// Everything the exposition reads.
pub struct Metrics {
    pub mirrors: watch::Receiver<Arc<Vec<MirrorHandle>>>,
    pub configs: watch::Receiver<Arc<Vec<MirrorConfig>>>,
    pub client: Client,
    pub bandwidth: Bandwidth,
    /// The daemon's start (Unix seconds).
    pub started_at: i64,
}

const STATES: [MirrorState; 7] = [
    MirrorState::Starting,
    MirrorState::Scanning,
    MirrorState::Syncing,
    MirrorState::Idle,
    MirrorState::Paused,
    MirrorState::NeedsCredentials,
    MirrorState::Error,
];

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn head(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = write!(
        out,
        "# HELP scaidrive_{name} {help}\n# TYPE scaidrive_{name} {kind}\n"
    );
}

impl Metrics {
    pub fn render(&self) -> String {
        let mirrors = self.mirrors.borrow().clone();
        let configs = self.configs.borrow().clone();
        let statuses: Vec<MirrorStatus> = mirrors.iter().map(|m| m.status()).collect();
        let mut out = String::new();
        type Series = (
            &'static str,
            &'static str,
            &'static str,
            fn(&MirrorStatus) -> f64,
        );
        let series: [Series; 12] = [
            (
                "files_uploaded_total",
                "Files uploaded since start.",
                "counter",
                |s| s.files_done as f64,
            ),
            (
                "bytes_uploaded_total",
                "Bytes uploaded since start.",
                "counter",
                |s| s.bytes_done as f64,
            ),
            (
                "queue_depth",
                "Paths waiting to settle or be executed.",
                "gauge",
                |s| s.queue_depth as f64,
            ),
            ("in_flight", "Operations in flight.", "gauge", |s| {
                s.in_flight as f64
            }),
            ("entries", "Items known to be mirrored.", "gauge", |s| {
                s.entries as f64
            }),
            (
                "failures",
                "Items that failed and wait for a retry.",
                "gauge",
                |s| s.failures as f64,
            ),
            (
                "in_sync",
                "1 when the mirror is idle and in sync.",
                "gauge",
                |s| f64::from(u8::from(s.in_sync())),
            ),
            (
                "unwatched_folders",
                "Folders the file watcher cannot watch (the mirror scans them periodically instead).",
                "gauge",
                |s| s.unwatched.len() as f64,
            ),
            (
                "remote_drift",
                "Remote changes by others known and not yet repaired.",
                "gauge",
                |s| s.remote_drift as f64,
            ),
            (
                "remote_repairs_total",
                "Remote changes by others repaired toward the local root.",
                "counter",
                |s| s.remote_repairs as f64,
            ),
            (
                "remote_overwrites_total",
                "Remote edits by others superseded by a new version from local.",
                "counter",
                |s| s.remote_overwrites as f64,
            ),
            (
                "change_log_age_seconds",
                "Seconds since the share's change log was last read (-1 = not followed).",
                "gauge",
                |s| {
                    s.cursor_read_at.map_or(-1.0, |t| {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(t, |d| d.as_secs() as i64);
                        (now - t).max(0) as f64
                    })
                },
            ),
        ];
        for (name, help, kind, f) in series {
            head(&mut out, name, help, kind);
            for s in &statuses {
                let _ = writeln!(
                    out,
                    "scaidrive_{name}{{mirror=\"{}\"}} {}",
                    label(&s.name),
                    f(s)
                );
            }
        }
        head(
            &mut out,
            "mirror_state",
            "1 for the state the mirror is in (starting, scanning, syncing, idle, paused, needs_credentials, error).",
            "gauge",
        );
        for s in &statuses {
            for st in STATES {
                let _ = writeln!(
                    out,
                    "scaidrive_mirror_state{{mirror=\"{}\",state=\"{}\"}} {}",
                    label(&s.name),
                    st.wire_name(),
                    u8::from(s.state == st)
                );
            }
        }
        head(
            &mut out,
            "last_sync_timestamp_seconds",
            "When the mirror was last idle and in sync (Unix time; the daemon's start until the first time).",
            "gauge",
        );
        for s in &statuses {
            let _ = writeln!(
                out,
                "scaidrive_last_sync_timestamp_seconds{{mirror=\"{}\"}} {}",
                label(&s.name),
                s.last_sync_at.unwrap_or(self.started_at)
            );
        }
        head(
            &mut out,
            "rescan_interval_seconds",
            "The mirror's configured full-rescan interval.",
            "gauge",
        );
        for s in &statuses {
            if let Some(c) = configs.iter().find(|c| c.display_name() == s.name) {
                let _ = writeln!(
                    out,
                    "scaidrive_rescan_interval_seconds{{mirror=\"{}\"}} {}",
                    label(&s.name),
                    c.rescan_interval_secs.max(60)
                );
            }
        }
        head(
            &mut out,
            "rate_limited_total",
            "429s met since start, by the API budget they named (token, user, tenant).",
            "counter",
        );
        for s in &statuses {
            let r = s.rate_limited;
            for (dim, n) in [("token", r.token), ("user", r.user), ("tenant", r.tenant)] {
                let _ = writeln!(
                    out,
                    "scaidrive_rate_limited_total{{mirror=\"{}\",dimension=\"{dim}\"}} {n}",
                    label(&s.name)
                );
            }
        }
        let (answered, limited) = self.client.request_counts();
        head(
            &mut out,
            "requests_total",
            "API requests the server answered.",
            "counter",
        );
        let _ = writeln!(out, "scaidrive_requests_total {answered}");
        head(
            &mut out,
            "requests_rate_limited_total",
            "API requests answered 429 (rate limited).",
            "counter",
        );
        let _ = writeln!(out, "scaidrive_requests_rate_limited_total {limited}");
        let bw = self.bandwidth.snapshot();
        head(
            &mut out,
            "bandwidth_limit_bytes_per_second",
            "The upload bandwidth limit in force (0 = no limit).",
            "gauge",
        );
        let _ = writeln!(
            out,
            "scaidrive_bandwidth_limit_bytes_per_second {}",
            bw.limit.unwrap_or(0)
        );
        head(
            &mut out,
            "upload_rate_bytes_per_second",
            "Upload body bytes a second over the last two seconds.",
            "gauge",
        );
        let _ = writeln!(
            out,
            "scaidrive_upload_rate_bytes_per_second {}",
            bw.current_bps
        );
        head(
            &mut out,
            "log_lines_dropped_total",
            "Log lines that could not be written (the log sink was closed).",
            "counter",
        );
        let _ = writeln!(
            out,
            "scaidrive_log_lines_dropped_total {}",
            crate::daemon::process::LOG_LINES_DROPPED.load(std::sync::atomic::Ordering::Relaxed)
        );
        out
    }

    /// Writes the exposition to `path` atomically (a temporary file in the same directory,
    /// renamed over it), mode 0644 so node_exporter may read it.
    pub fn write_file(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // node_exporter reads only `*.prom`: a temporary name without that suffix is never
        // read half-written.
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(self.render().as_bytes())?;
        f.sync_all()?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
        std::fs::rename(&tmp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }
}
