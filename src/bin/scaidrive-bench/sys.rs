//! What the benchmark reads from `/proc`: the machine it runs on (cores, memory, kernel)
//! and the resource use of the daemon child process (CPU ticks, resident memory, context
//! switches). Linux only; on other systems the readers return errors and the figures are
//! reported as missing rather than invented.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub memory_mib: u64,
    pub kernel: String,
}

impl Machine {
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cores = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count()
            .max(std::thread::available_parallelism().map_or(0, |n| n.get()));
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_mib = kib_field(&meminfo, "MemTotal:").unwrap_or(0) / 1024;
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        Machine {
            cores,
            cpu_model,
            memory_mib,
            kernel,
        }
    }
}

/// One reading of a process's counters.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProcSample {
    /// utime + stime of all threads, live and exited, in seconds.
    pub cpu_secs: f64,
    pub rss_kib: u64,
    /// Peak resident set size since the process started (`VmHWM`).
    pub hwm_kib: u64,
    /// Voluntary + involuntary context switches summed over the live threads: each one is
    /// a time the process left the CPU, so an idle daemon's count is its wakeups.
    pub ctxt_switches: u64,
    /// The same per thread id, because a thread that exits takes its counts with it: see
    /// [`ctxt_switches_between`].
    #[serde(skip)]
    pub per_thread: std::collections::BTreeMap<u32, u64>,
}

/// Context switches between two samples: per thread alive in `b`, its count minus its
/// count in `a` (0 if it is new). Threads that exited in between are missing, so this is a
/// lower bound when the process's thread pool shrinks.
pub fn ctxt_switches_between(a: &ProcSample, b: &ProcSample) -> u64 {
    b.per_thread
        .iter()
        .map(|(tid, n)| n.saturating_sub(a.per_thread.get(tid).copied().unwrap_or(0)))
        .sum()
}

/// Clock ticks per second for `/proc/<pid>/stat`. Asked of `getconf` once because the
/// crate denies the `unsafe` a `sysconf` call would need; 100 is the Linux default.
pub fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

pub fn sample(pid: u32) -> Result<ProcSample> {
    let base = Path::new("/proc").join(pid.to_string());
    let stat = std::fs::read_to_string(base.join("stat")).context("reading /proc/<pid>/stat")?;
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0], so utime (14) and stime (15) are fields[11] and [12].
    let ticks: u64 = fields
        .get(11..13)
        .context("short /proc/<pid>/stat")?
        .iter()
        .map(|f| f.parse::<u64>().unwrap_or(0))
        .sum();
    let status =
        std::fs::read_to_string(base.join("status")).context("reading /proc/<pid>/status")?;
    // The counters in /proc/<pid>/status are the main thread's only; sum all threads.
    let mut per_thread = std::collections::BTreeMap::new();
    if let Ok(tasks) = std::fs::read_dir(base.join("task")) {
        for t in tasks.flatten() {
            let Some(tid) = t.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Ok(s) = std::fs::read_to_string(t.path().join("status")) {
                let n = plain_field(&s, "voluntary_ctxt_switches:").unwrap_or(0)
                    + plain_field(&s, "nonvoluntary_ctxt_switches:").unwrap_or(0);
                per_thread.insert(tid, n);
            }
        }
    }
    Ok(ProcSample {
        cpu_secs: ticks as f64 / clock_ticks(),
        rss_kib: kib_field(&status, "VmRSS:").unwrap_or(0),
        hwm_kib: kib_field(&status, "VmHWM:").unwrap_or(0),
        ctxt_switches: per_thread.values().sum(),
        per_thread,
    })
}

fn kib_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn plain_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().parse().ok())
}
