//! Issue 21, item 4: the monitoring kit in `packaging/monitoring/` against a running
//! daemon. `daemon.metrics_file` is rewritten atomically; every metric the alert rules
//! and the Grafana dashboard use is one the daemon exports; promtool checks and unit-tests
//! the rules; and a real Prometheus server on loopback scrapes the daemon (through a
//! relay from TCP to the control socket, as a scraper on the host would need) and fires
//! `ScaidriveMirrorPaused` when the mirror is paused. Without the `prometheus` binary
//! (Debian: `apt-get install prometheus`; CI installs it) that last part prints SKIPPED.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Env;
use super::ops::config_with;
use crate::support::{Proc, signal, wait_exit};

fn kit(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packaging/monitoring")
        .join(name)
}

/// The `scaidrive_*` names in `text` (metric names, not the `scaidrive_` of a label).
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("scaidrive_") {
        let start = i + at;
        let before_ok =
            start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        let mut end = start + "scaidrive_".len();
        while end < b.len()
            && (b[end].is_ascii_lowercase() || b[end] == b'_' || b[end].is_ascii_digit())
        {
            end += 1;
        }
        if before_ok {
            out.insert(text[start..end].to_string());
        }
        i = end;
    }
    out
}

fn on_path(bin: &str) -> bool {
    Command::new(bin).arg("--version").output().is_ok()
}

/// Serves the daemon's `/metrics` on 127.0.0.1:0, fetched from the control socket per
/// scrape; returns the port.
async fn relay(socket: PathBuf) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let socket = socket.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body = scaidrive::control::client::metrics(&socket)
                    .await
                    .unwrap_or_default();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

async fn prom_get(http: &reqwest::Client, port: u16, path: &str) -> Value {
    match http
        .get(format!("http://127.0.0.1:{port}{path}"))
        .send()
        .await
    {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_file_rules_dashboard_and_a_real_prometheus() {
    let e = Env::new().await;
    let a = e.root("a");
    std::fs::write(a.join("x.txt"), b"x").unwrap();
    let prom_dir = e.root("textfile");
    let prom_file = prom_dir.join("scaidrive.prom");
    let cfg = config_with(&e, &a, &format!("metrics_file = {prom_file:?}"));
    let mut child = Proc(e.daemon().arg("--config").arg(&cfg).spawn().unwrap());
    e.wait_socket(&mut child).await;
    assert_eq!(e.ctl(&["wait", "--timeout", "30"]).status.code(), Some(0));

    // The metrics file: rewritten on the status tick (5 s), readable by node_exporter, no
    // temporary file left behind.
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&prom_file).unwrap_or_default();
        if text.contains("scaidrive_in_sync{mirror=\"alpha\"} 1") {
            assert!(
                text.contains("scaidrive_mirror_state{mirror=\"alpha\",state=\"idle\"} 1"),
                "{text}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "metrics file: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&prom_file).unwrap().permissions().mode() & 0o777,
        0o644
    );
    let left: Vec<_> = std::fs::read_dir(&prom_dir)
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["scaidrive.prom"]);

    // Every metric the rules and the dashboard use is exported.
    let exported = metric_names(&String::from_utf8_lossy(&e.ctl(&["metrics"]).stdout));
    for f in ["scaidrive.rules.yml", "scaidrive-dashboard.json"] {
        let text = std::fs::read_to_string(kit(f)).unwrap();
        let used = metric_names(&text);
        assert!(used.len() >= 5, "{f}: {used:?}");
        let missing: Vec<_> = used.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{f} uses {missing:?}, not exported ({exported:?})"
        );
    }
    let dash: Value =
        serde_json::from_str(&std::fs::read_to_string(kit("scaidrive-dashboard.json")).unwrap())
            .unwrap();
    assert!(dash["panels"].as_array().unwrap().len() >= 8);

    if on_path("promtool") {
        for args in [
            ["check", "rules", "scaidrive.rules.yml"],
            ["test", "rules", "scaidrive.rules.test.yml"],
        ] {
            let out = Command::new("promtool")
                .args(args)
                .current_dir(kit(""))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "promtool {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    } else {
        println!("SKIPPED: promtool not installed (apt-get install prometheus)");
    }
    if !on_path("prometheus") {
        println!(
            "SKIPPED: the real-Prometheus part (prometheus not installed; apt-get install prometheus)"
        );
        signal(&child, "TERM");
        assert!(wait_exit(&mut child, Duration::from_secs(30)).success());
        return;
    }

    // A real Prometheus on loopback: its own port, data dir and config; the shipped rules
    // with every `for:` cut to 0s so an alert fires within a scrape or two.
    let relay_port = relay(e.socket()).await;
    let web_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let work = e.root("prometheus");
    let rules = std::fs::read_to_string(kit("scaidrive.rules.yml")).unwrap();
    let quick: String = rules
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("for:") {
                format!("{}for: 0s", &l[..l.len() - l.trim_start().len()])
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(work.join("rules.yml"), quick).unwrap();
    std::fs::write(
        work.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - rules.yml\nscrape_configs:\n  - job_name: scaidrive\n    static_configs:\n      - targets: ['127.0.0.1:{relay_port}']\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(work.join("prometheus.log")).unwrap();
    let mut prom = Proc(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                work.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                work.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{web_port}"))
            .arg("--log.level=warn")
            .current_dir(&work)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    let dump = || std::fs::read_to_string(work.join("prometheus.log")).unwrap_or_default();
    let start = Instant::now();
    loop {
        let v = prom_get(&http, web_port, "/api/v1/query?query=scaidrive_in_sync").await;
        let r = &v["data"]["result"][0];
        if r["metric"]["mirror"] == "alpha" && r["value"][1] == "1" {
            assert_eq!(r["metric"]["job"], "scaidrive");
            break;
        }
        assert!(
            prom.try_wait().unwrap().is_none(),
            "prometheus exited: {}",
            dump()
        );
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no scrape: {v}\n{}",
            dump()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let firing = |v: &Value, name: &str| {
        v["data"]["alerts"].as_array().is_some_and(|a| {
            a.iter().any(|x| {
                x["labels"]["alertname"] == name
                    && x["state"] == "firing"
                    && x["labels"]["mirror"] == "alpha"
            })
        })
    };
    let v = prom_get(&http, web_port, "/api/v1/alerts").await;
    assert!(!firing(&v, "ScaidriveMirrorPaused"), "{v}");

    assert!(e.ctl(&["pause", "alpha"]).status.success());
    let start = Instant::now();
    let fired_after;
    loop {
        let v = prom_get(&http, web_port, "/api/v1/alerts").await;
        if firing(&v, "ScaidriveMirrorPaused") {
            fired_after = start.elapsed();
            for other in [
                "ScaidriveNeedsCredentials",
                "ScaidriveFailures",
                "ScaidriveNoRecentSync",
            ] {
                assert!(!firing(&v, other), "{other}: {v}");
            }
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never fired: {v}\n{}",
            dump()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Resumed: the alert goes away.
    assert!(e.ctl(&["resume", "alpha"]).status.success());
    let start = Instant::now();
    loop {
        let v = prom_get(&http, web_port, "/api/v1/alerts").await;
        if !firing(&v, "ScaidriveMirrorPaused") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "never resolved: {v}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "prometheus on 127.0.0.1:{web_port} scraped the daemon and fired ScaidriveMirrorPaused {:.1}s after the pause",
        fired_after.as_secs_f64()
    );
    signal(&prom, "TERM");
    let _ = wait_exit(&mut prom, Duration::from_secs(20));
    signal(&child, "TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(30)).success());
}
