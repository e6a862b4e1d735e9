//! `scaidrivectl restore` / `versions` (issue 22): a mirrored tree is snapshotted at three
//! moments while files are edited, renamed, moved, deleted and restored (the devserver's
//! clock advanced an hour between moments), then restored as of each moment into a new
//! directory and compared path for path and byte for byte with its snapshot. Also: one
//! file at a version, refusals (inside a mirror, not empty), a killed and resumed restore,
//! and disaster recovery with the state directory gone and no daemon.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::support::{TOKEN, scaidrivectl, stderr, stdout};
use crate::world::{World, converge};

/// A directory's tree as `World::local_tree` gives it (the restore's work dir left out).
fn tree(dir: &Path) -> BTreeMap<String, Option<String>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Option<String>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let rel = e
                .path()
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel == ".scaidrive-restore" {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                out.insert(rel, None);
                walk(base, &e.path(), out);
            } else {
                let data = std::fs::read(e.path()).unwrap();
                out.insert(rel, Some(hex::encode(Sha256::digest(&data))));
            }
        }
    }
    let mut out = BTreeMap::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out
}

fn ctl(config: &Path, args: &[&str]) -> Output {
    scaidrivectl()
        .env("SCAIDRIVE_TOKEN", TOKEN)
        .env_remove("SCAIDRIVE_SOCKET")
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("scaidrivectl runs")
}

/// Moves the server clock on an hour and returns a moment between before and after.
async fn next_moment(w: &World) -> String {
    let v = w
        .admin(Method::POST, "/clock", json!({ "advance_secs": 3600 }))
        .await;
    let now = time::OffsetDateTime::parse(
        v["now"].as_str().expect("clock answers now"),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    (now - time::Duration::seconds(1800))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

const CONTENT: &str = "GET /api/v1/files/{file_id}/content";

/// Runs `scaidrivectl ARGS` and kills it (SIGKILL) as soon as a file is in place in `to`.
async fn kill_when_a_file_lands(config: &Path, to: &Path, args: &[&str]) {
    let mut child = scaidrivectl()
        .env("SCAIDRIVE_TOKEN", TOKEN)
        .arg("--config")
        .arg(config)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while tree(to).values().filter(|v| v.is_some()).count() == 0 {
        assert!(std::time::Instant::now() < deadline, "no file restored");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_the_tree_as_of_three_moments() {
    let w = World::new().await;
    w.write("a.txt", b"alpha");
    w.write("docs/b.txt", b"bravo");
    w.write("docs/sub/c.txt", b"charlie");
    w.write("keep.txt", b"kept through a delete");
    w.write("lost.txt", b"only copy, trashed later");
    w.write("photos/p.jpg", b"a photo");
    std::fs::create_dir_all(w.root.join("empty")).unwrap();
    let d = w.start().await;
    converge(&w, &d).await;
    let s1 = w.local_tree();
    let t1 = next_moment(&w).await;

    // Moment 2: an edit, a rename, a folder move, a delete, a file with a copy's content.
    w.write("a.txt", b"alpha two");
    std::fs::rename(w.root.join("docs/b.txt"), w.root.join("docs/b2.txt")).unwrap();
    std::fs::rename(w.root.join("docs/sub"), w.root.join("sub")).unwrap();
    std::fs::remove_file(w.root.join("keep.txt")).unwrap();
    w.write("gone.txt", b"alpha");
    std::fs::remove_dir_all(w.root.join("photos")).unwrap();
    converge(&w, &d).await;
    let s2 = w.local_tree();
    let t2 = next_moment(&w).await;

    // Moment 3: the deleted file comes back, two files go to the trash for good.
    w.write("a.txt", b"alpha three");
    w.write("keep.txt", b"kept through a delete");
    std::fs::remove_file(w.root.join("gone.txt")).unwrap();
    std::fs::remove_file(w.root.join("lost.txt")).unwrap();
    w.write("sub/new.txt", b"new at three");
    w.write("photos/p.jpg", b"a photo");
    std::fs::remove_dir(w.root.join("empty")).unwrap();
    converge(&w, &d).await;
    let s3 = w.local_tree();
    assert!(s1.contains_key("empty") && !s3.contains_key("empty"));
    assert!(s1.contains_key("photos/p.jpg") && !s2.contains_key("photos"));
    assert_eq!(w.versions("a.txt").await.len(), 3);

    let config = w.config_file().write();
    let out = w.dir.path().join("out");
    let dir = |n: &str| out.join(n);

    // As of moment 1: everything comes back but lost.txt, whose only copy is in the trash
    // now (the API serves no trashed content): reported with why, exit code 4.
    let r = ctl(
        &config,
        &[
            "restore",
            "--to",
            dir("one").to_str().unwrap(),
            "--as-of",
            &t1,
        ],
    );
    let text = stdout(&r);
    assert_eq!(r.status.code(), Some(4), "{text}\n{}", stderr(&r));
    assert!(text.contains("not restorable: 1"), "{text}");
    assert!(text.contains("lost.txt: in ScaiDrive's trash"), "{text}");
    let mut want1 = s1.clone();
    want1.remove("lost.txt");
    assert_eq!(tree(&dir("one")), want1);

    // As of moment 2: gone.txt is trashed now but a.txt's version 1 holds its bytes.
    w.reset_stats().await;
    let r = ctl(
        &config,
        &[
            "restore",
            "--to",
            dir("two").to_str().unwrap(),
            "--as-of",
            &t2,
        ],
    );
    assert_eq!(r.status.code(), Some(4), "{}", stdout(&r));
    let mut want2 = s2.clone();
    want2.remove("lost.txt");
    assert_eq!(tree(&dir("two")), want2);
    let files2 = want2.values().filter(|v| v.is_some()).count() as u64;
    assert_eq!(w.count(CONTENT).await, files2, "one download per file");
    assert!(
        stdout(&r).contains(&format!(
            "{} units ({files2} downloads, 1 change-log pages)",
            files2 * 5 + 2
        )),
        "{}",
        stdout(&r)
    );

    // Now (default): the whole current tree, nothing missing; mtimes from modified_at.
    let r = ctl(
        &config,
        &["restore", "--to", dir("three").to_str().unwrap()],
    );
    assert_eq!(r.status.code(), Some(0), "{}{}", stdout(&r), stderr(&r));
    assert_eq!(tree(&dir("three")), s3);
    assert!(!dir("three").join(".scaidrive-restore").exists());
    let m = std::fs::metadata(dir("one").join("a.txt"))
        .unwrap()
        .modified()
        .unwrap();
    let t1_sys = std::time::UNIX_EPOCH
        + Duration::from_secs(
            time::OffsetDateTime::parse(&t1, &time::format_description::well_known::Rfc3339)
                .unwrap()
                .unix_timestamp() as u64,
        );
    assert!(m <= t1_sys, "a.txt as of moment 1 has the mtime of then");

    // A subtree, relative and absolute, as of moment 1 (docs/sub was moved since).
    let r = ctl(
        &config,
        &[
            "restore",
            "docs",
            "--to",
            dir("docs").to_str().unwrap(),
            "--as-of",
            &t1,
        ],
    );
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    assert_eq!(
        tree(&dir("docs")).keys().cloned().collect::<Vec<_>>(),
        vec!["b.txt", "sub", "sub/c.txt"]
    );
    let abs = w.root.join("sub/c.txt");
    let r = ctl(
        &config,
        &[
            "restore",
            abs.to_str().unwrap(),
            "--to",
            dir("c").to_str().unwrap(),
        ],
    );
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    assert_eq!(std::fs::read(dir("c").join("c.txt")).unwrap(), b"charlie");

    // Versions, and one file at a version.
    let r = ctl(&config, &["versions", "a.txt"]);
    let text = stdout(&r);
    assert_eq!(text.lines().count(), 4, "{text}{}", stderr(&r));
    assert!(
        text.lines().nth(1).unwrap().trim_start().starts_with("3 "),
        "{text}"
    );
    let one = dir("a-v1.txt");
    let r = ctl(
        &config,
        &[
            "restore",
            "a.txt",
            "--version",
            "1",
            "--to",
            one.to_str().unwrap(),
        ],
    );
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    assert_eq!(std::fs::read(&one).unwrap(), b"alpha");
    let r = ctl(
        &config,
        &[
            "restore",
            "a.txt",
            "--version",
            "9",
            "--to",
            dir("x").to_str().unwrap(),
        ],
    );
    assert_eq!(r.status.code(), Some(1));
    assert_eq!(
        stderr(&r).trim(),
        "scaidrivectl: --version 9: a.txt has versions 3, 2, 1"
    );

    // Dry run: what and how much, nothing written.
    w.reset_stats().await;
    let r = ctl(
        &config,
        &[
            "restore",
            "--dry-run",
            "--to",
            dir("dry").to_str().unwrap(),
            "--as-of",
            &t1,
        ],
    );
    let text = stdout(&r);
    assert!(
        text.contains("would restore 5 files (45 bytes) and 4 folders"),
        "{text}"
    );
    assert!(text.contains("cost 25 units (5 downloads × 5)"), "{text}");
    assert!(!dir("dry").exists());
    assert_eq!(w.count(CONTENT).await, 0);

    // Refusals: inside a mirror, not empty, a bad time.
    let inside = w.root.join("restored");
    let r = ctl(&config, &["restore", "--to", inside.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1));
    let e = stderr(&r);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("inside mirror m's folder"), "{e}");
    assert!(!inside.exists());
    let r = ctl(
        &config,
        &["restore", "--to", dir("three").to_str().unwrap()],
    );
    assert!(stderr(&r).contains("not empty"), "{}", stderr(&r));
    let r = ctl(
        &config,
        &[
            "restore",
            "--to",
            dir("t").to_str().unwrap(),
            "--as-of",
            "last tuesday",
        ],
    );
    assert!(
        stderr(&r).contains("--as-of \"last tuesday\""),
        "{}",
        stderr(&r)
    );

    // Disaster recovery: no daemon, no state directory; the config file and the token.
    d.stop().await;
    std::fs::remove_dir_all(w.state_dir()).unwrap();
    let r = ctl(
        &config,
        &[
            "restore",
            "--mirror",
            "m",
            "--to",
            dir("dr").to_str().unwrap(),
        ],
    );
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    assert_eq!(tree(&dir("dr")), s3);
    assert!(!w.state_dir().exists(), "restore wrote no state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_restore_resumes_with_ranges_and_skips_what_is_done() {
    let w = World::new().await;
    for i in 0..12 {
        w.write(&format!("f{i:02}.bin"), &vec![i as u8; 40_000 + i * 1000]);
    }
    let d = w.start().await;
    converge(&w, &d).await;
    let want = w.local_tree();
    let config = w.config_file().write();
    let to: PathBuf = w.dir.path().join("restored");

    // Slow downloads, then kill -9 once the first file is in place.
    w.faults(json!({ "latency_ms": 700, "path_prefix": "/api/v1/files/" }))
        .await;
    kill_when_a_file_lands(&config, &to, &["restore", "--to", to.to_str().unwrap()]).await;
    w.faults(json!({})).await;
    let done = tree(&to).values().filter(|v| v.is_some()).count() as u64;
    assert!(done < 12, "killed before the end");

    // A half-downloaded file, as a kill during its body leaves it.
    let missing = (0..12)
        .map(|i| format!("f{i:02}.bin"))
        .find(|n| !to.join(n).exists())
        .unwrap();
    let id = w.remote_id(&missing).await.unwrap();
    let work = to.join(".scaidrive-restore");
    for e in std::fs::read_dir(&work).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap() != "request.json" {
            std::fs::remove_file(p).unwrap();
        }
    }
    let full = std::fs::read(w.root.join(&missing)).unwrap();
    std::fs::write(work.join(format!("{id}.v1")), &full[..full.len() / 2]).unwrap();

    w.reset_stats().await;
    let r = ctl(&config, &["restore", "--to", to.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(0), "{}{}", stdout(&r), stderr(&r));
    assert!(
        stderr(&r).contains("continuing the interrupted restore"),
        "{}",
        stderr(&r)
    );
    assert!(
        stdout(&r).contains(&format!("{done} already in place")),
        "{}",
        stdout(&r)
    );
    assert_eq!(tree(&to), want);
    assert_eq!(
        w.count(CONTENT).await,
        12 - done,
        "verified files are not fetched again"
    );
    assert_eq!(
        w.stats().await["by_status"]["206"],
        1,
        "the partial file resumed with Range"
    );
    d.stop().await;
}

const FILE_PATCH: &str = "PATCH /api/v1/files/{file_id}";
const FOLDER_PATCH: &str = "PATCH /api/v1/folders/{folder_id}";
const FILE_DELETE: &str = "DELETE /api/v1/files/{file_id}";
const FOLDER_DELETE: &str = "DELETE /api/v1/folders/{folder_id}";

/// Files whose only copy is in the trash (deleted on their own, and with their folder,
/// one of them both) come back with `--from-trash`: taken out of the trash where they
/// were, downloaded, put back; the trash and the live tree end as they were, the daemon
/// running beside it keeps the mirror as it was, and the dry run's units are the units
/// spent. A run killed between taking out and putting back is finished by the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_trash_takes_files_out_of_the_trash_and_puts_them_back() {
    let w = World::new().await;
    w.write("a.txt", b"alpha");
    w.write("lost.txt", b"only copy, trashed on its own");
    w.write("dir/x.txt", b"trashed on its own, then with its folder");
    w.write("dir/y.txt", b"trashed with its folder");
    w.write("dir/deep/z.txt", b"trashed with its folder, deeper");
    let d = w.start().await;
    converge(&w, &d).await;
    let s1 = w.local_tree();
    let t1 = next_moment(&w).await;
    std::fs::remove_file(w.root.join("lost.txt")).unwrap();
    std::fs::remove_file(w.root.join("dir/x.txt")).unwrap();
    converge(&w, &d).await;
    std::fs::remove_dir_all(w.root.join("dir")).unwrap();
    converge(&w, &d).await;
    let mut trashed_before = w.trashed().await;
    trashed_before.sort();
    assert_eq!(trashed_before, ["dir", "lost.txt"]);

    let config = w.config_file().write();
    let out = w.dir.path().join("out");
    let plain = ctl(
        &config,
        &[
            "restore",
            "--to",
            out.join("plain").to_str().unwrap(),
            "--as-of",
            &t1,
        ],
    );
    assert_eq!(plain.status.code(), Some(4), "{}", stdout(&plain));
    assert!(
        stdout(&plain).contains("not restorable: 4"),
        "{}",
        stdout(&plain)
    );
    assert!(
        stdout(&plain).contains("--from-trash"),
        "{}",
        stdout(&plain)
    );

    // The dry run prices it: 5 downloads × 5, and dir, lost.txt and x.txt (trashed on its
    // own before its folder) out and back × 4.
    let to = out.join("full");
    let dry = ctl(
        &config,
        &[
            "restore",
            "--to",
            to.to_str().unwrap(),
            "--as-of",
            &t1,
            "--from-trash",
            "--dry-run",
        ],
    );
    assert_eq!(dry.status.code(), Some(0), "{}", stdout(&dry));
    assert!(
        stdout(&dry).contains(
            "cost 37 units (5 downloads × 5, 3 item(s) taken out of the trash and put back × 4)"
        ),
        "{}",
        stdout(&dry)
    );

    w.reset_stats().await;
    let r = ctl(
        &config,
        &[
            "restore",
            "--to",
            to.to_str().unwrap(),
            "--as-of",
            &t1,
            "--from-trash",
        ],
    );
    assert_eq!(r.status.code(), Some(0), "{}{}", stdout(&r), stderr(&r));
    assert!(
        stdout(&r).contains(
            "took 3 item(s) out of ScaiDrive's trash for the download and put them back (12 units)"
        ),
        "{}",
        stdout(&r)
    );
    assert_eq!(tree(&to), s1, "the tree as of moment 1, byte for byte");
    assert!(!to.join(".scaidrive-restore").exists());
    assert_eq!(w.count(FILE_PATCH).await, 2, "lost.txt and x.txt out");
    assert_eq!(w.count(FOLDER_PATCH).await, 1, "dir out, with y and deep/z");
    assert_eq!(w.count(FILE_DELETE).await, 2);
    assert_eq!(w.count(FOLDER_DELETE).await, 1);
    assert_eq!(w.count(CONTENT).await, 5);
    let mut trashed_after = w.trashed().await;
    trashed_after.sort();
    assert_eq!(
        trashed_after, trashed_before,
        "the trash holds what it held"
    );
    converge(&w, &d).await;
    w.assert_mirrored().await;

    // Killed after taking out, before putting back: the items are live meanwhile and the
    // journal names them; the next run puts them back.
    let again = out.join("again");
    w.faults(json!({ "latency_ms": 700, "path_prefix": "/api/v1/files/" }))
        .await;
    let args = [
        "restore",
        "--to",
        again.to_str().unwrap(),
        "--as-of",
        &t1,
        "--from-trash",
    ];
    kill_when_a_file_lands(&config, &again, &args).await;
    w.faults(json!({})).await;
    assert!(again.join(".scaidrive-restore/untrashed").exists());
    assert!(
        w.trashed().await.is_empty(),
        "killed while dir and lost.txt were out of the trash: {:?}",
        w.trashed().await
    );
    let r = ctl(
        &config,
        &[
            "restore",
            "--to",
            again.to_str().unwrap(),
            "--as-of",
            &t1,
            "--from-trash",
        ],
    );
    assert_eq!(r.status.code(), Some(0), "{}{}", stdout(&r), stderr(&r));
    assert!(
        stderr(&r).contains("continuing the interrupted restore"),
        "{}",
        stderr(&r)
    );
    assert_eq!(tree(&again), s1);
    assert!(
        !again.join(".scaidrive-restore").exists(),
        "the journal went"
    );
    let mut trashed_after = w.trashed().await;
    trashed_after.sort();
    assert_eq!(trashed_after, trashed_before, "put back by the second run");
    converge(&w, &d).await;
    w.assert_mirrored().await;
    d.stop().await;
}
