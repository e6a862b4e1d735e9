//! Issue 21: operator controls through the real binaries: the bandwidth limit
//! (`bandwidth_limit`, `scaidrivectl limit`, `status`, HUP), and the event stream
//! (`scaidrivectl events`, `GET /v1/events`, a slow reader's drop marker).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Env;
use crate::support::{ConfigFile, MirrorSection, Proc, signal, stderr, wait_exit};

/// A config with one mirror `alpha` and extra `[daemon]` lines.
pub(crate) fn config_with(e: &Env, root: &Path, daemon_lines: &str) -> PathBuf {
    let mut m = MirrorSection::new("alpha", root, &e.share);
    m.remote_path = Some("alpha");
    let c = ConfigFile::new(e.dir.path(), &e.url).mirror(m);
    let text = c
        .text()
        .replacen("[remote]\n", &format!("{daemon_lines}\n[remote]\n"), 1);
    let p = e.dir.path().join("scaidrived.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn status_json(e: &Env) -> Value {
    serde_json::from_slice(&e.ctl(&["status", "--json"]).stdout).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_limit_config_ctl_status_and_hup() {
    let e = Env::new().await;
    let a = e.root("a");
    // A bad value: exit 78, one line naming the key.
    let cfg = config_with(
        &e,
        &a,
        "bandwidth_limit = \"Mon-Fri 08:00-18:00 fast, off\"",
    );
    let out = e.daemon().arg("--config").arg(&cfg).output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("daemon.bandwidth_limit") && err.contains("\"fast\" is not a rate"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    std::fs::write(a.join("x.txt"), vec![7u8; 300 * 1024]).unwrap();
    let cfg = config_with(&e, &a, "bandwidth_limit = \"2MiB/s\"");
    let mut child = Proc(e.daemon().arg("--config").arg(&cfg).spawn().unwrap());
    e.wait_socket(&mut child).await;
    assert_eq!(e.ctl(&["wait", "--timeout", "30"]).status.code(), Some(0));
    let v = status_json(&e);
    assert_eq!(v["bandwidth"]["schedule"], "2MiB/s", "{v}");
    assert_eq!(v["bandwidth"]["limit_bps"], 2 << 20);
    assert_eq!(v["bandwidth"]["source"], "config");
    let human = String::from_utf8_lossy(&e.ctl(&["status"]).stdout).into_owned();
    assert!(human.contains("bandwidth limit 2MiB/s"), "{human}");

    // Set at run time; a bad value changes nothing and says why in one line.
    let out = e.ctl(&["limit", "500KiB/s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("bandwidth limit 500KiB/s"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = e.ctl(&["limit", "lots"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("limit: \"lots\" is not a rate") && stderr(&out).lines().count() == 1,
        "{}",
        stderr(&out)
    );
    let v = status_json(&e);
    assert_eq!(
        (&v["bandwidth"]["limit_bps"], &v["bandwidth"]["source"]),
        (&Value::from(500 << 10), &Value::from("override"))
    );

    // The limit holds on the wire: 300 KiB more at 500 KiB/s take at least 0.35 s
    // (0.6 s less the quarter second of burst).
    let t = Instant::now();
    std::fs::write(a.join("y.txt"), vec![8u8; 300 * 1024]).unwrap();
    assert_eq!(e.ctl(&["wait", "--timeout", "30"]).status.code(), Some(0));
    assert!(
        t.elapsed() >= Duration::from_millis(350),
        "{:?}",
        t.elapsed()
    );

    // HUP goes back to the file, which now says "off".
    config_with(&e, &a, "bandwidth_limit = \"off\"");
    signal(&child, "HUP");
    let start = Instant::now();
    loop {
        let v = status_json(&e);
        if v["bandwidth"]["source"] == "config" {
            assert_eq!(v["bandwidth"]["schedule"], "off");
            assert_eq!(v["bandwidth"]["limit_bps"], Value::Null);
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no reload: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    signal(&child, "TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(30)).success());
}

/// The lines of a child's stdout, read on a thread.
fn lines_of(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Takes `scaidrivectl events --json` lines until `until` holds for the lines so far (or
/// 30 s pass).
fn collect_until(
    rx: &std::sync::mpsc::Receiver<String>,
    until: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let mut got = Vec::new();
    let start = Instant::now();
    while !until(&got) {
        let left = Duration::from_secs(30).saturating_sub(start.elapsed());
        assert!(!left.is_zero(), "events so far: {got:#?}");
        if let Ok(line) = rx.recv_timeout(left) {
            got.push(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}")));
        }
    }
    got
}

fn has(evs: &[Value], event: &str, key: &str, val: &str) -> bool {
    evs.iter().any(|v| v["event"] == event && v[key] == val)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_creates_renames_deletes_and_pauses() {
    let e = Env::new().await;
    let a = e.root("a");
    let cfg = config_with(&e, &a, "");
    let mut child = Proc(e.daemon().arg("--config").arg(&cfg).spawn().unwrap());
    e.wait_socket(&mut child).await;
    assert_eq!(e.ctl(&["wait", "--timeout", "30"]).status.code(), Some(0));

    let out = e.ctl(&["events", "nosuch"]);
    assert!(
        !out.status.success() && stderr(&out).contains("no mirror named \"nosuch\""),
        "{}",
        stderr(&out)
    );

    let mut reader = Proc(
        e.ctl_cmd(&["events", "alpha", "--json"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let rx = lines_of(&mut reader);
    // Connected once it shows a pause or resume: both, until one arrives (a busy machine
    // may take a while to start scaidrivectl), then let the resumed mirror settle.
    let start = Instant::now();
    let first = loop {
        assert!(e.ctl(&["pause", "alpha"]).status.success());
        assert!(e.ctl(&["resume", "alpha"]).status.success());
        if let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) {
            break serde_json::from_str::<Value>(&line).unwrap();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the stream never opened"
        );
    };
    assert!(
        ["paused", "resumed", "in_sync"].contains(&first["event"].as_str().unwrap()),
        "{first}"
    );
    if first["event"] != "in_sync" {
        collect_until(&rx, |g| g.iter().any(|v| v["event"] == "in_sync"));
    }
    std::fs::create_dir(a.join("d")).unwrap();
    std::fs::write(a.join("d/one.txt"), b"hello").unwrap();
    let got = collect_until(&rx, |g| {
        has(g, "uploaded", "path", "d/one.txt") && g.iter().any(|v| v["event"] == "in_sync")
    });
    assert!(has(&got, "folder_created", "path", "d"), "{got:#?}");
    let up = got.iter().find(|v| v["event"] == "uploaded").unwrap();
    assert_eq!(
        (up["mirror"].as_str(), up["bytes"].as_u64()),
        (Some("alpha"), Some(5))
    );

    let mut all = got;

    // A sharing link, then a new URL for it.
    let one = a.join("d/one.txt");
    for (args, renewed) in [(vec!["link"], false), (vec!["link", "--regenerate"], true)] {
        let mut args: Vec<&str> = args;
        args.push(one.to_str().unwrap());
        let out = e.ctl(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        let more = collect_until(&rx, |g| g.iter().any(|v| v["event"] == "link_created"));
        let l = more.last().unwrap();
        assert_eq!(
            (&l["path"], &l["renewed"]),
            (&Value::from("d/one.txt"), &Value::from(renewed)),
            "{l}"
        );
        assert!(l["link_id"].as_str().unwrap().starts_with("lnk_"), "{l}");
        assert!(!l.to_string().contains("http"), "no URL in events: {l}");
        all.extend(more);
    }

    // Someone deletes it remotely; verify --repair finds the drift and it goes up again.
    let folder = e.folder_id("alpha/d").await.unwrap();
    let id = e.children(&folder).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = reqwest::Client::new()
        .delete(e.api_url(&format!("/files/{id}?permanent=true")))
        .bearer_auth(crate::support::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let out = e.ctl(&["verify", "alpha", "--repair"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let more = collect_until(&rx, |g| {
        has(g, "drift_repaired", "path", "d/one.txt") && has(g, "uploaded", "path", "d/one.txt")
    });
    all.extend(more);

    // An edit and a rename in one quiet period: a remote move (and the new content as a
    // new version of the moved file), not a delete and an upload.
    std::fs::write(a.join("d/one.txt"), b"hello again").unwrap();
    std::fs::rename(a.join("d/one.txt"), a.join("d/two.txt")).unwrap();
    let more = collect_until(&rx, |g| {
        has(g, "moved", "to", "d/two.txt") || has(g, "uploaded", "path", "d/two.txt")
    });
    assert!(has(&more, "moved", "to", "d/two.txt"), "{more:#?}");
    all.extend(more);
    std::fs::remove_file(a.join("d/two.txt")).unwrap();
    all.extend(collect_until(&rx, |g| {
        has(g, "deleted", "path", "d/two.txt")
    }));

    // A name the API does not take (a trailing space): failed, with the reason.
    std::fs::write(a.join("bad "), b"x").unwrap();
    let more = collect_until(&rx, |g| has(g, "failed", "path", "bad "));
    let f = more.iter().find(|v| v["event"] == "failed").unwrap();
    assert_eq!(
        (&f["reason"], &f["permanent"]),
        (
            &Value::from("invalid name \"bad \": leading or trailing whitespace"),
            &Value::from(true)
        ),
        "{f}"
    );
    all.extend(more);
    std::fs::remove_file(a.join("bad ")).unwrap();

    assert!(e.ctl(&["pause", "alpha"]).status.success());
    let more = collect_until(&rx, |g| g.iter().any(|v| v["event"] == "paused"));
    assert_eq!(more.last().unwrap()["reason"], "paused by user");
    all.extend(more);
    assert!(e.ctl(&["resume", "alpha"]).status.success());
    all.extend(collect_until(&rx, |g| {
        g.iter().any(|v| v["event"] == "resumed")
    }));
    // Only alpha's events, and never the token.
    assert!(all.iter().all(|v| v["mirror"] == "alpha"), "{all:#?}");
    assert!(
        all.iter()
            .all(|v| !v.to_string().contains(crate::support::TOKEN))
    );

    // The stream ends when the daemon stops, and scaidrivectl with it.
    signal(&child, "TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(30)).success());
    assert!(wait_exit(&mut reader, Duration::from_secs(10)).success());
}

/// A reader that stops reading: the daemon keeps mirroring, holds at most `event_buffer`
/// events for it, and when it reads again it is told how many it lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_event_reader_gets_a_drop_marker_and_blocks_nothing() {
    let e = Env::new().await;
    let a = e.root("a");
    let cfg = config_with(&e, &a, "event_buffer = 16");
    let mut child = Proc(e.daemon().arg("--config").arg(&cfg).spawn().unwrap());
    e.wait_socket(&mut child).await;
    assert_eq!(e.ctl(&["wait", "--timeout", "30"]).status.code(), Some(0));

    // Like `curl --unix-socket`: a plain HTTP/1.1 request, then no reads for a while.
    let mut s = tokio::net::UnixStream::connect(e.socket()).await.unwrap();
    s.write_all(b"GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let files = 1500;
    for i in 0..files {
        std::fs::write(a.join(format!("f{i:04}.txt")), i.to_string()).unwrap();
    }
    let out = e.ctl(&["wait", "--timeout", "120"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the mirror kept going: {}",
        stderr(&out)
    );
    let names = e.remote_names("alpha").await;
    assert_eq!(names.len(), files, "nothing lost remotely");

    // Now read everything that is there.
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => panic!("read: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "{}",
        &text[..text.len().min(300)]
    );
    // Chunked encoding: every event is one chunk; keep the JSON lines.
    let evs: Vec<Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let dropped: u64 = evs
        .iter()
        .filter(|v| v["event"] == "dropped")
        .map(|v| v["count"].as_u64().unwrap())
        .sum();
    let uploaded = evs.iter().filter(|v| v["event"] == "uploaded").count() as u64;
    assert!(dropped > 0, "no drop marker in {} events", evs.len());
    // Every upload is either seen or counted as dropped (in_sync events may be too).
    assert!(
        uploaded + dropped >= files as u64,
        "uploaded {uploaded} + dropped {dropped} < {files}"
    );
    assert!(
        evs.last().is_some_and(|v| v["event"] == "in_sync"),
        "the newest events survive: {:?}",
        evs.last()
    );
    println!(
        "slow reader: {} events read, {dropped} dropped, {uploaded} uploads seen",
        evs.len()
    );
    signal(&child, "TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(30)).success());
}

/// A fake `/sys/class/power_supply`: a laptop's AC adapter and battery.
fn set_power(dir: &Path, on_ac: bool) {
    for (name, files) in [
        (
            "AC",
            vec![("type", "Mains"), ("online", if on_ac { "1" } else { "0" })],
        ),
        (
            "BAT0",
            vec![
                ("type", "Battery"),
                ("status", if on_ac { "Charging" } else { "Discharging" }),
            ],
        ),
    ] {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        for (f, v) in files {
            std::fs::write(dir.join(name).join(f), format!("{v}\n")).unwrap();
        }
    }
}

async fn wait_state(e: &Env, state: &str) -> Value {
    let start = Instant::now();
    loop {
        let v = status_json(e);
        if v["mirrors"][0]["state"] == state {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never {state}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// AC → battery → AC: uploads pause with the reason in status and resume on AC power,
/// with every file made meanwhile uploaded exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_on_battery_and_resume_on_ac() {
    let e = Env::new().await;
    let a = e.root("a");
    let power = e.path("power_supply");
    set_power(&power, true);
    std::fs::write(a.join("before.txt"), b"on ac").unwrap();
    let cfg = config_with(
        &e,
        &a,
        &format!("pause_on_battery = true\npower_supply_dir = {power:?}"),
    );
    let mut child = Proc(e.daemon().arg("--config").arg(&cfg).spawn().unwrap());
    e.wait_socket(&mut child).await;
    assert_eq!(e.ctl(&["wait", "--timeout", "30"]).status.code(), Some(0));
    assert_eq!(e.remote_names("alpha").await, ["before.txt"]);

    set_power(&power, false);
    let v = wait_state(&e, "paused").await;
    assert!(
        v["mirrors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("on battery power"),
        "{v}"
    );
    e.reset_stats().await;
    for i in 0..20 {
        std::fs::write(
            a.join(format!("bat{i:02}.txt")),
            format!("made on battery {i}"),
        )
        .unwrap();
    }
    std::fs::remove_file(a.join("before.txt")).unwrap();
    // Well past the quiet period (200 ms): nothing goes up, wait says paused (3).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(e.ctl(&["wait", "--timeout", "1"]).status.code(), Some(3));
    assert_eq!(e.remote_names("alpha").await, ["before.txt"]);
    assert_eq!(
        e.count("POST /api/v1/files").await,
        0,
        "{}",
        e.stats().await
    );

    set_power(&power, true);
    wait_state(&e, "idle").await;
    assert_eq!(e.ctl(&["wait", "--timeout", "30"]).status.code(), Some(0));
    let names = e.remote_names("alpha").await;
    let want: Vec<String> = (0..20).map(|i| format!("bat{i:02}.txt")).collect();
    assert_eq!(names, want, "the battery-time changes, deletes included");
    assert_eq!(
        e.count("POST /api/v1/files").await,
        20,
        "each uploaded once: {}",
        e.stats().await
    );
    signal(&child, "TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(30)).success());
}
