//! Hostile local conditions (issue 17): failures of items that are gone, names that try
//! to speak to the terminal or the log, names that are not UTF-8, edits that hide from
//! size and mtime, hard links. Each test fails without its fix.

use std::path::PathBuf;
use std::time::Duration;

use scaidrive::mirror::{MirrorCmd, MirrorState};

use crate::support::{
    Proc, ctl, eventually, signal, spawn_daemon, stderr, stdout, wait_exit, wait_socket,
};
use crate::world::{Daemon, World};

/// The paths `scaidrivectl failures` would list (the store's record).
async fn failed_paths(d: &Daemon) -> Vec<String> {
    d.handle
        .ask(MirrorCmd::Failures)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|f| f.path)
        .collect()
}

/// Issue 17 item 6: a failed item that was renamed to a valid name or deleted leaves no
/// failure behind, neither in the event batch that saw it go, nor after a rescan, a
/// retry or a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_of_renamed_or_deleted_items_are_dropped() {
    let w = World::new().await;
    w.write("good.txt", b"fine");
    // The remote rejects a trailing space: permanent failures.
    w.write("renamed later ", b"the remote rejects this name");
    w.write("deleted later ", b"so does it this one");
    w.write("ignored later ", b"and this one");
    let d = w.start().await;
    let s = d.settled().await;
    assert_eq!(s.failures, 3, "{s:?}");
    assert_eq!(failed_paths(&d).await.len(), 3);

    std::fs::rename(w.root.join("renamed later "), w.root.join("renamed.txt")).unwrap();
    std::fs::remove_file(w.root.join("deleted later ")).unwrap();
    eventually(
        "the failures of the renamed and the deleted item to go",
        Duration::from_secs(30),
        Duration::from_millis(100),
        async || failed_paths(&d).await == ["ignored later "],
    )
    .await;
    d.until("one failure counted", |s| s.in_sync() && s.failures == 1)
        .await;
    assert!(w.remote_id("renamed.txt").await.is_some());
    d.stop().await;

    // Made an ignored name while the daemon is down: the start-up pass drops it.
    std::fs::rename(
        w.root.join("ignored later "),
        w.root.join("ignored later.skipme"),
    )
    .unwrap();
    let d = w.start().await;
    let s = d.settled().await;
    assert_eq!(s.failures, 0, "{s:?}");
    assert!(
        failed_paths(&d).await.is_empty(),
        "{:?}",
        failed_paths(&d).await
    );
    d.handle.ask(MirrorCmd::Retry).await;
    let s = d.settled().await;
    assert_eq!((s.state, s.failures), (MirrorState::Idle, 0), "{s:?}");
    assert!(failed_paths(&d).await.is_empty());
    w.assert_mirrored().await;
    d.stop().await;
}

/// Runs the daemon binary on the world's config with its log in `dir/daemon.log`; returns
/// the process, the socket and the log's path.
async fn spawn_logged(w: &World) -> (Proc, PathBuf, PathBuf) {
    let cfg = w.config_file();
    let socket = cfg.run_dir().join("scaidrived.sock");
    let path = cfg.write();
    let log = w.dir.path().join("daemon.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut child = spawn_daemon(&path, file);
    wait_socket(&socket, &mut child).await;
    (child, socket, log)
}

/// Issue 17 item 7: a name cannot forge lines or drive the terminal. `scaidrivectl
/// failures` shows one line per failed item with the name's newline and escape codes
/// escaped (`--json` keeps them as JSON strings), and a symlink whose name holds a
/// newline does not start a forged `ERROR` line in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_escaped_in_failures_and_in_the_log() {
    let w = World::new().await;
    w.write("good.txt", b"fine");
    // The trailing space makes the remote reject it whatever it thinks of the rest.
    let evil = "evil\n\x1b[1;32mm: all files uploaded fine\x1b[0m ";
    w.write(evil, b"rejected");
    std::os::unix::fs::symlink(
        "/etc/hostname",
        w.root.join("link\nERROR scaidrive: forged"),
    )
    .unwrap();
    let (mut child, socket, log) = spawn_logged(&w).await;
    let waited = ctl(&socket, &["wait", "--timeout", "60"]);
    assert_eq!(waited.status.code(), Some(4), "{}", stderr(&waited));

    let out = stdout(&ctl(&socket, &["failures"]));
    assert_eq!(out.lines().count(), 1, "one line per failed item: {out:?}");
    assert!(
        !out.contains('\x1b'),
        "escape codes reach the terminal: {out:?}"
    );
    assert!(
        out.contains(r"evil\n\u{1b}[1;32mm: all files uploaded fine\u{1b}[0m "),
        "{out:?}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&ctl(&socket, &["failures", "--json"]))).unwrap();
    assert!(json.to_string().contains(r"evil\n\u001b[1;32m"), "{json}");

    signal(&child, "TERM");
    wait_exit(&mut child, Duration::from_secs(30));
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        !log.lines()
            .any(|l| l.starts_with("ERROR scaidrive: forged")),
        "a name forged a log line:\n{log}"
    );
    assert!(log.contains(r"link\nERROR scaidrive: forged"), "{log}");
}

/// Issue 17 item 11: a name that is not UTF-8 is a failure with its reason, shown escaped
/// and losslessly, counted in status; the mirror is not reported in sync (`--once` and
/// `wait` go by that), and renaming the file ends the failure and mirrors it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_utf8_names_are_failures_until_renamed() {
    use std::os::unix::ffi::OsStrExt;
    let w = World::new().await;
    w.write("good.txt", b"fine");
    let bad = w.root.join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt"));
    std::fs::write(&bad, b"latin-1 name").unwrap();
    let d = w.start().await;
    let s = d.settled().await;
    assert_eq!(s.failures, 1, "{s:?}");
    assert!(s.skipped.is_empty(), "{s:?}");
    let failures = d.handle.ask(MirrorCmd::Failures).await.unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].path, r"caf\xE9.txt");
    assert!(failures[0].reason.contains("UTF-8"), "{failures:?}");
    assert!(failures[0].permanent);

    // One that appears while the daemon runs, in a directory moved in from outside.
    let outside = w.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join(std::ffi::OsStr::from_bytes(b"\xff\xfe")), b"x").unwrap();
    std::fs::rename(&outside, w.root.join("moved-in")).unwrap();
    d.until("two failures", |s| s.in_sync() && s.failures == 2)
        .await;
    let report = d.stop().await;
    assert!(
        !report.all_in_sync(),
        "--once must not report in sync: {:?}",
        report.mirrors
    );

    // Renamed to a UTF-8 name (while stopped): mirrored, and its failure is gone.
    std::fs::rename(&bad, w.root.join("café.txt")).unwrap();
    std::fs::remove_dir_all(w.root.join("moved-in")).unwrap();
    let d = w.start().await;
    let s = d.settled().await;
    assert_eq!(s.failures, 0, "{s:?}");
    assert!(failed_paths(&d).await.is_empty());
    w.assert_mirrored().await;
    assert!(d.stop().await.all_in_sync());
}

/// Writes `data` over `rel` and puts the old mtime back (`touch -d @OLD`): the size and
/// mtime say nothing changed; only the ctime (which no program can set) moved.
fn silent_edit(w: &World, rel: &str, data: &[u8]) {
    let path = w.root.join(rel);
    let old = std::fs::metadata(&path).unwrap().modified().unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), data.len() as u64);
    std::fs::write(&path, data).unwrap();
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(old).unwrap();
}

fn sha(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(data))
}

/// The remote checksum of `rel`, once it equals `want` (or a panic naming both).
async fn remote_becomes(w: &World, rel: &str, want: &[u8], what: &str) {
    let want = sha(want);
    eventually(
        what,
        Duration::from_secs(20),
        Duration::from_millis(100),
        async || {
            w.remote_tree().await.get(rel).cloned().flatten().as_deref() == Some(want.as_str())
        },
    )
    .await;
}

/// Issue 17 item 4: an edit that keeps the size and restores the mtime is uploaded, on
/// its event and after a restart (the ctime gives it away), and `verify --checksums`
/// hashes the local file, reports it as different, and `--repair` uploads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_edits_that_keep_size_and_mtime_are_uploaded() {
    let w = World::new().await;
    w.write("a.txt", b"AAAA");
    w.write("b.txt", b"1111");
    let d = w.start().await;
    d.settled().await;

    silent_edit(&w, "a.txt", b"BBBB");
    remote_becomes(
        &w,
        "a.txt",
        b"BBBB",
        "the silent edit uploaded on its event",
    )
    .await;
    d.settled().await;
    d.stop().await;

    silent_edit(&w, "a.txt", b"CCCC");
    let d = w.start().await;
    d.settled().await;
    remote_becomes(
        &w,
        "a.txt",
        b"CCCC",
        "the silent edit uploaded after a restart",
    )
    .await;

    // Paused, so that only verify looks: the store and the remote agree, the disk not.
    d.handle.ask(MirrorCmd::Pause).await;
    silent_edit(&w, "b.txt", b"2222");
    let verify = |repair| {
        d.handle.ask(move |reply| MirrorCmd::Verify {
            checksums: true,
            repair,
            reply,
        })
    };
    let report = verify(false).await.unwrap();
    assert_eq!(report.different.len(), 1, "{report:?}");
    assert_eq!(report.different[0].0, "b.txt", "{report:?}");
    assert!(!report.in_sync());
    let report = verify(true).await.unwrap();
    assert_eq!(report.repaired, 1, "{report:?}");
    d.handle
        .ask(|reply| MirrorCmd::Resume {
            allow_deletes: false,
            reply,
        })
        .await;
    remote_becomes(&w, "b.txt", b"2222", "the repair uploaded b.txt").await;
    d.until("in sync", |s| s.in_sync()).await;
    w.assert_mirrored().await;
    assert!(verify(false).await.unwrap().in_sync());
    d.stop().await;
}

/// Issue 17 item 4, the upgrade: entries stored before the ctime was (NULL) are filled in
/// by the next pass without uploading anything, and from then on a silent edit is seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_without_a_ctime_are_filled_without_uploads() {
    let w = World::new().await;
    for i in 0..5 {
        w.write(&format!("f{i}.txt"), format!("file {i}").as_bytes());
    }
    let d = w.start().await;
    d.settled().await;
    d.stop().await;
    let db = w.state_dir().join("state.db");
    let unknown = |sql: &str| {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch(sql).unwrap();
        c.query_row(
            "SELECT COUNT(*) FROM entries WHERE kind = 'file' AND ctime_ns IS NULL",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
    };
    // As a database migrated from before the column existed.
    assert_eq!(unknown("UPDATE entries SET ctime_ns = NULL"), 5);
    w.reset_stats().await;
    let d = w.start().await;
    d.settled().await;
    d.stop().await;
    assert_eq!(unknown(""), 0, "the pass records every ctime");
    assert_eq!(w.count("POST /api/v1/files").await, 0);
    assert_eq!(w.count("POST /api/v1/uploads").await, 0);
    assert_eq!(w.versions("f0.txt").await.len(), 1);

    silent_edit(&w, "f0.txt", b"FILE 0");
    let d = w.start().await;
    d.settled().await;
    remote_becomes(&w, "f0.txt", b"FILE 0", "the silent edit after the fill").await;
    d.stop().await;
}

/// Issue 17 item 8: two names for one inode. An edit through one name (the only one the
/// kernel reports) brings the other's remote copy up to date too, without a rescan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_through_one_hard_link_updates_the_other() {
    let w = World::new().await;
    w.write("a.txt", b"first version");
    std::fs::create_dir(w.root.join("sub")).unwrap();
    std::fs::hard_link(w.root.join("a.txt"), w.root.join("sub/b.txt")).unwrap();
    let d = w.start().await;
    d.settled().await;
    w.assert_mirrored().await;

    std::fs::write(w.root.join("a.txt"), b"second version, longer").unwrap();
    remote_becomes(&w, "a.txt", b"second version, longer", "a.txt updated").await;
    remote_becomes(
        &w,
        "sub/b.txt",
        b"second version, longer",
        "the other name of the inode updated",
    )
    .await;
    d.until("in sync", |s| s.in_sync()).await;
    w.assert_mirrored().await;
    d.stop().await;
}

/// Issue 17 item 9: for a daemon that is not root, one folder it may not read costs the
/// watch of that folder only. The rest of the tree is watched live (the rescan here is
/// hourly, so a new file shows within seconds only through an event), status names the
/// folder, and once it is readable again the next try watches and mirrors it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_folder_is_watched_around() {
    use crate::hazards::{NOBODY, chown_tree, ctl, skip_unless_root};
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if skip_unless_root("an_unreadable_folder_is_watched_around") {
        return;
    }
    let w = World::new().await;
    std::fs::set_permissions(w.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    w.write("ok/a.txt", b"readable");
    w.write("closed/inside.txt", b"behind a mode 000 folder");
    let (state, run_dir) = (w.state_dir(), w.dir.path().join("run"));
    for d in [&state, &run_dir] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
        chown_tree(d, NOBODY);
    }
    chown_tree(&w.root, NOBODY);
    let closed = w.root.join("closed");
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o000)).unwrap();
    let config = w.config_file().write();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let log = w.dir.path().join("daemon.log");
    let _child = Proc(
        crate::support::scaidrived()
            .arg("--config")
            .arg(&config)
            .uid(NOBODY)
            .gid(NOBODY)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("scaidrived starts"),
    );
    let dump = || std::fs::read_to_string(&log).unwrap_or_default();
    eventually(
        "the readable file",
        Duration::from_secs(60),
        Duration::from_millis(100),
        async || w.remote_id("ok/a.txt").await.is_some(),
    )
    .await;
    let status = ctl(&config, &["status", "--json"]);
    let unwatched = &status["mirrors"][0]["unwatched"];
    assert!(
        unwatched.to_string().contains("closed"),
        "status names the folder: {status}\n{}",
        dump()
    );

    // Watched live around the folder: no scan is due for an hour.
    w.write("ok/live.txt", b"seen by the watcher");
    let start = std::time::Instant::now();
    while w.remote_id("ok/live.txt").await.is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "a new file next to the unreadable folder is not seen live:\n{}",
            dump()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Readable again: the next try (every 60 s here) watches and mirrors it.
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o755)).unwrap();
    eventually(
        "the folder watched and mirrored",
        Duration::from_secs(90),
        Duration::from_millis(250),
        async || {
            w.remote_id("closed/inside.txt").await.is_some()
                && ctl(&config, &["status", "--json"])["mirrors"][0]["unwatched"]
                    .as_array()
                    .is_none_or(Vec::is_empty)
        },
    )
    .await;
    w.write("closed/later.txt", b"now watched");
    eventually(
        "a file in the folder now watched",
        Duration::from_secs(15),
        Duration::from_millis(100),
        async || w.remote_id("closed/later.txt").await.is_some(),
    )
    .await;
}

/// Issue 17 item 13 (progress): `scaidrivectl wait` on a terminal says what a long first
/// pass is doing instead of sitting silent; the line is cleared before the verdict. (Run
/// under `script`, which gives it a terminal.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_on_a_terminal_shows_the_first_pass_progress() {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("SKIPPED wait_on_a_terminal_shows_the_first_pass_progress: no `script` here");
        return;
    }
    let w = World::new().await;
    for i in 0..40 {
        w.write(&format!("f{i:02}.txt"), format!("file {i}").as_bytes());
    }
    // Slow enough that the first pass outlasts a few of wait's polls.
    w.faults(serde_json::json!({ "latency_ms": 100 })).await;
    let (_child, socket, _log) = spawn_logged(&w).await;
    let line = format!(
        "{} --socket {} wait --timeout 120",
        env!("CARGO_BIN_EXE_scaidrivectl"),
        socket.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wait: {:?}\n{shown}", out.status);
    assert!(
        shown.contains("m: syncing") || shown.contains("m: scanning"),
        "no progress while waiting: {shown:?}"
    );
    assert!(shown.contains("file(s) uploaded"), "{shown:?}");
    w.faults(serde_json::json!({})).await;
    w.assert_mirrored().await;
}
