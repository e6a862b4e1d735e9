//! `scaidrive-bench`: the benchmark program of issue 8. It runs the real `scaidrived`
//! binary (a child process, so `/proc` figures are the daemon's alone) against the
//! devserver hosted in this process on loopback, on generated data in a scratch
//! directory, and reports workloads W1–W8 and W10: throughput, API requests per file, latency
//! from save to remote version, restart cost, rename cost, idle cost and rate-limit
//! behaviour, next to the targets of the issue; W8 (issue 19) the API units per change
//! against the documented floor; W10 (issue 21) the bandwidth limit; W9 (issue 20, only
//! with `--long`) a million files: first sync, restart and the daemon's memory. Nothing is asserted:
//! people read the
//! table (stdout) and the same figures as JSON (`--json-out`).
//!
//! Layout: `sys` (machine and process counters from `/proc`), `tree` (generated data),
//! `harness` (scratch dirs, the in-process devserver and its admin stats, the daemon
//! child and its control socket), `workloads` (W1–W8, W10), and here the command line, the
//! sizes of a full and a `--quick` run, and the report. It lives with its binary rather
//! than in the library so `scaidrived` links none of it (and the library needs no
//! `anyhow`).

mod harness;
mod sys;
mod tree;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use serde::Serialize;
use serde_json::{Value, json};

/// Command line of `scaidrive-bench`.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "scaidrive-bench",
    about = "Benchmarks scaidrived against the local devserver (issue 8 workloads W1-W7, issue 19 W8, issue 21 W10)"
)]
pub struct Args {
    /// Scale every workload down so the whole run takes under two minutes (CI).
    #[arg(long)]
    pub quick: bool,
    /// Run only these workloads, e.g. `--only W1,W4` (W4 and W6 share one setup).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Where to write the figures as JSON.
    #[arg(long, default_value = "bench-results.json")]
    pub json_out: PathBuf,
    /// Parent of the scratch directories (default: the system temp dir).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Keep the scratch directories (data, devserver state, daemon logs) after the run.
    #[arg(long)]
    pub keep: bool,
    /// Upload only the first N files of the W1 tree in the sequential baseline and
    /// extrapolate its rate to the whole tree (a full sequential run takes ~10 minutes;
    /// `--quick` defaults to 200).
    #[arg(long)]
    pub baseline_max_files: Option<usize>,
    /// Also run the long workloads: W9, a million files in 50,000 folders (about half an
    /// hour and 10 GB of scratch disk at full size; `--only W9 --long` runs it alone).
    #[arg(long)]
    pub long: bool,
    /// W9's file count (one folder per 20 files); try 200000 before the full million.
    #[arg(long, default_value_t = 1_000_000)]
    pub w9_files: usize,
}

/// The sizes of one run; `full` is the table, `quick` the CI smoke run.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Sizes {
    pub w1_files: usize,
    pub w1_folders: usize,
    pub w2_file_bytes: u64,
    pub w3_saves: usize,
    pub w3_interval_ms: u64,
    pub w4_files: usize,
    pub w4_folders: usize,
    pub w5_files: usize,
    pub w6_idle_secs: u64,
    pub w7_files: usize,
    pub w7_folders: usize,
    /// W10: bytes uploaded under the bandwidth limit.
    pub w10_bytes: u64,
}

impl Sizes {
    pub fn full() -> Sizes {
        Sizes {
            w1_files: 20_000,
            w1_folders: 500,
            w2_file_bytes: 2 << 30,
            w3_saves: 200,
            w3_interval_ms: 250,
            w4_files: 100_000,
            w4_folders: 5_000,
            w5_files: 10_000,
            w6_idle_secs: 60,
            // ~3,000 cost units: three minutes at 1000 units/min, so at least two full
            // 60 s windows fall inside the run.
            w7_files: 600,
            w7_folders: 15,
            w10_bytes: 64 << 20,
        }
    }

    pub fn quick() -> Sizes {
        Sizes {
            w1_files: 600,
            w1_folders: 20,
            w2_file_bytes: 32 << 20,
            w3_saves: 12,
            w3_interval_ms: 250,
            w4_files: 1_500,
            w4_folders: 75,
            w5_files: 500,
            w6_idle_secs: 5,
            // Just over one window's budget (~1,300 units): one full window, ~65 s.
            w7_files: 260,
            w7_folders: 5,
            w10_bytes: 32 << 20,
        }
    }
}

/// One line of the table.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub metric: String,
    pub value: Option<f64>,
    pub unit: String,
    /// Human-readable target ("" when the issue sets none).
    pub target: String,
    pub met: Option<bool>,
}

impl Row {
    pub fn info(metric: &str, value: f64, unit: &str) -> Row {
        Row {
            metric: metric.into(),
            value: Some(value),
            unit: unit.into(),
            target: String::new(),
            met: None,
        }
    }
    pub fn target(metric: &str, value: f64, unit: &str, target: String, met: bool) -> Row {
        Row {
            metric: metric.into(),
            value: Some(value),
            unit: unit.into(),
            target,
            met: Some(met),
        }
    }
    pub fn missing(metric: &str, target: String) -> Row {
        Row {
            metric: metric.into(),
            value: None,
            unit: String::new(),
            target,
            met: None,
        }
    }
}

/// What one workload reports.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub id: &'static str,
    pub title: String,
    /// The size actually run.
    pub scale: String,
    pub devserver: harness::ServerSetup,
    pub rows: Vec<Row>,
    /// Raw figures behind the rows (request counts by route, samples, timings).
    pub details: Value,
    /// WARN/ERROR lines of the daemon's log, and anything odd the harness saw.
    pub problems: Vec<String>,
    pub error: Option<String>,
    pub wall_secs: f64,
}

impl Report {
    pub fn new(id: &'static str, title: impl Into<String>, scale: impl Into<String>) -> Report {
        Report {
            id,
            title: title.into(),
            scale: scale.into(),
            devserver: harness::ServerSetup::default(),
            rows: Vec::new(),
            details: json!({}),
            problems: Vec::new(),
            error: None,
            wall_secs: 0.0,
        }
    }
}

/// Runs the benchmark; exit code 0 unless the harness itself could not run (a workload
/// that fails is reported in the table, not by the exit code, except that any workload
/// error makes the exit code 1 so CI notices a broken daemon).
fn main() -> ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("scaidrive-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("scaidrive-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let started = Instant::now();
    let sizes = if args.quick {
        Sizes::quick()
    } else {
        Sizes::full()
    };
    let selected =
        |id: &str| args.only.is_empty() || args.only.iter().any(|o| o.eq_ignore_ascii_case(id));
    for o in &args.only {
        if ![
            "W1", "W2", "W3", "W4", "W5", "W6", "W7", "W8", "W9", "W10", "W11",
        ]
        .iter()
        .any(|w| w.eq_ignore_ascii_case(o))
        {
            anyhow::bail!("unknown workload {o:?} (W1..W11)");
        }
    }
    let machine = sys::Machine::read();
    let daemon = harness::daemon_binary()?;
    let work = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    println!(
        "scaidrive-bench {} ({} build), {} run",
        env!("CARGO_PKG_VERSION"),
        profile(),
        if args.quick { "quick" } else { "full" }
    );
    println!(
        "machine: {} cores ({}), {} MiB memory, Linux {}",
        machine.cores, machine.cpu_model, machine.memory_mib, machine.kernel
    );
    println!(
        "daemon: {} (default config except state/socket dirs; log level warn)",
        daemon.display()
    );
    println!(
        "devserver: in this process on 127.0.0.1, SQLite + blob files in {}, token {:?}; \
         rate limit off except W7 (1000 units/min, documented costs); 20 ms added latency in W1 and W7, none elsewhere",
        work.display(),
        harness::TOKEN
    );
    println!();

    let ctx = workloads::Ctx {
        daemon,
        work,
        keep: args.keep,
        sizes,
        baseline_max_files: args
            .baseline_max_files
            .or(if args.quick { Some(200) } else { None }),
    };
    let mut reports: Vec<Report> = Vec::new();
    type Job = (&'static str, &'static [&'static str]);
    let jobs: [Job; 10] = [
        ("W1", &["W1"]),
        ("W2", &["W2"]),
        ("W3", &["W3"]),
        ("W4", &["W4", "W6"]),
        ("W5", &["W5"]),
        ("W7", &["W7"]),
        ("W8", &["W8"]),
        ("W9", &["W9"]),
        ("W10", &["W10"]),
        ("W11", &["W11"]),
    ];
    for (first, ids) in jobs {
        let mut wanted: Vec<&str> = ids.iter().copied().filter(|i| selected(i)).collect();
        // The long workloads run only when asked for with `--long`.
        if first == "W9" && !args.long {
            wanted.clear();
        }
        if wanted.is_empty() {
            continue;
        }
        eprintln!(
            "[{:>6.1}s] running {}",
            started.elapsed().as_secs_f64(),
            wanted.join("+")
        );
        let out = match first {
            "W1" => vec![workloads::w1(&ctx).await],
            "W2" => vec![workloads::w2(&ctx).await],
            "W3" => vec![workloads::w3(&ctx).await],
            "W4" => workloads::w4_w6(&ctx, selected("W4"), selected("W6")).await,
            "W5" => vec![workloads::w5(&ctx).await],
            "W7" => vec![workloads::w7(&ctx).await],
            "W8" => {
                let w8 = if args.quick {
                    workloads::W8_QUICK
                } else {
                    workloads::W8_FULL
                };
                vec![workloads::w8(&ctx, w8).await]
            }
            "W11" => vec![workloads::w11(&ctx).await],
            "W9" => vec![workloads::w9(&ctx, args.w9_files).await],
            _ => vec![workloads::w10(&ctx).await],
        };
        for r in &out {
            if let Some(e) = &r.error {
                eprintln!("{}: FAILED: {e}", r.id);
            }
        }
        reports.extend(out);
    }

    print_table(&reports);
    let json = json!({
        "tool": "scaidrive-bench",
        "version": env!("CARGO_PKG_VERSION"),
        "mode": if args.quick { "quick" } else { "full" },
        "profile": profile(),
        "machine": machine,
        "sizes": sizes,
        "baseline_max_files": ctx.baseline_max_files,
        "total_secs": started.elapsed().as_secs_f64(),
        "workloads": reports,
    });
    std::fs::write(&args.json_out, serde_json::to_string_pretty(&json)? + "\n")?;
    println!(
        "\nfigures written to {}; total {:.0} s",
        args.json_out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(reports.iter().all(|r| r.error.is_none()))
}

fn fmt_value(r: &Row) -> String {
    match r.value {
        None => "n/a".into(),
        Some(v) => {
            // Whole numbers and large values without decimals, small ones with a few.
            let n = if (v.fract() == 0.0 && v.abs() < 1e15) || v.abs() >= 100.0 {
                format!("{v:.0}")
            } else if v.abs() >= 1.0 {
                format!("{v:.2}")
            } else {
                format!("{v:.3}")
            };
            if r.unit.is_empty() {
                n
            } else {
                format!("{n} {}", r.unit)
            }
        }
    }
}

/// The table: one line per metric; a failed workload gets one line with its error.
pub fn print_table(reports: &[Report]) {
    let mut lines: Vec<[String; 5]> = vec![[
        "workload".into(),
        "metric".into(),
        "value".into(),
        "target".into(),
        "met?".into(),
    ]];
    for r in reports {
        let name = format!("{} ({})", r.id, r.scale);
        for (i, row) in r.rows.iter().enumerate() {
            lines.push([
                if i == 0 { name.clone() } else { String::new() },
                row.metric.clone(),
                fmt_value(row),
                row.target.clone(),
                match row.met {
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                    None => "".into(),
                },
            ]);
        }
        if let Some(e) = &r.error {
            let first = e.lines().next().unwrap_or("").to_string();
            lines.push([
                if r.rows.is_empty() {
                    name
                } else {
                    String::new()
                },
                "ERROR".into(),
                first,
                String::new(),
                "NO".into(),
            ]);
        }
    }
    let widths: Vec<usize> = (0..5)
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (i, l) in lines.iter().enumerate() {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("| {} |", cells.join(" | "));
        if i == 0 {
            let seps: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            println!("| {} |", seps.join(" | "));
        }
    }
    for r in reports {
        if !r.problems.is_empty() {
            println!(
                "\n{}: {} problem line(s) from the daemon log / harness, first ones:",
                r.id,
                r.problems.len()
            );
            for p in r.problems.iter().take(5) {
                println!("  {p}");
            }
        }
    }
}
