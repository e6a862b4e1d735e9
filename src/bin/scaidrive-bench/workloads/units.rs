//! W8 (issue 19, item 7): API units per change against the documented floor. A seeded
//! tree shaped like a source tree (many small files, a few large ones, 5 % duplicate
//! contents) is mirrored, then a scripted day changes it (edits, reverts, copies, renames
//! and moves, deletes, restores from a local backup), then the state database is lost and
//! the mirror rebuilt, then `verify` runs. For each phase: the units the devserver charged,
//! the floor (the cheapest documented call sequence for the same changes, from the docs'
//! costs with 64 MiB chunks), their ratio, the content bytes the daemon sent, and how long
//! the phase takes under a token's 1,000 units a minute (units are deterministic, so the
//! run itself has rate limiting off and takes minutes).
//!
//! Large files are sparse (a random head, then a hole): distinct contents that cost
//! little to write and hash.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde_json::{Value, json};

use super::{Ctx, POLL, STALL, guarded, with_count};
use crate::harness::{Daemon, MirrorOpts, Scratch, Server, ServerSetup};
use crate::{Report, Row};

/// The documented costs (`scaidrive-api.md` §5).
const UPLOAD: u64 = 5;
const WRITE: u64 = 2;
const LIST: u64 = 2;
const GET: u64 = 1;
/// The uploads guide's multipart band: below 100 MB.
const MULTIPART_BELOW: u64 = 100_000_000;
const CHUNK: u64 = 64 << 20;
/// Target: each phase within 5 % of its floor.
const TARGET_RATIO: f64 = 1.05;
/// Bytes of random head in a sparse large file.
const HEAD: usize = 64 << 10;

/// The size of a W8 run.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct W8Sizes {
    pub files: usize,
    pub folders: usize,
    /// Sizes of the large files (sparse), bytes.
    pub large: &'static [u64],
    /// Files changed per kind of change in the scripted day.
    pub changes: usize,
}

pub const W8_FULL: W8Sizes = W8Sizes {
    files: 20_000,
    folders: 1_300,
    large: &[
        300_000_000,
        150_000_000,
        99_000_000,
        64_000_000,
        40_000_000,
        17_000_000,
    ],
    changes: 200,
};

pub const W8_QUICK: W8Sizes = W8Sizes {
    files: 2_000,
    folders: 130,
    large: &[120_000_000, 40_000_000, 17_000_000],
    changes: 40,
};

/// One file of the tree: where, how big, and the seed of its content (duplicates share
/// the seed and size of the file they copy).
#[derive(Clone, Debug)]
struct FileSpec {
    rel: String,
    size: u64,
    seed: u64,
}

/// Files with equal keys have equal content (every empty file has the same).
fn content_key(f: &FileSpec) -> (u64, u64) {
    if f.size == 0 {
        (0, 0)
    } else {
        (f.seed, f.size)
    }
}

fn content(seed: u64, size: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut buf = vec![0u8; size.min(HEAD as u64) as usize];
    rng.fill_bytes(&mut buf);
    buf
}

/// Writes `f` (a large file as a random head and a hole).
fn write_file(root: &Path, f: &FileSpec) -> Result<()> {
    let path = root.join(&f.rel);
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::write(&path, content(f.seed, f.size)).with_context(|| format!("writing {}", f.rel))?;
    if f.size > HEAD as u64 {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)?
            .set_len(f.size)?;
    }
    Ok(())
}

/// What a file of `size` bytes costs to send at the floor: one multipart below the guide's
/// band, else a session (create, 64 MiB chunks, complete).
fn upload_floor(size: u64) -> u64 {
    if size < MULTIPART_BELOW {
        UPLOAD
    } else {
        WRITE + size.div_ceil(CHUNK).max(1) * UPLOAD + WRITE
    }
}

/// New content for an existing file: always a session (multipart cannot overwrite).
fn replace_floor(size: u64) -> u64 {
    WRITE + size.div_ceil(CHUNK).max(1) * UPLOAD + WRITE
}

/// The tree: folders (parents first) and files, with 5 % duplicate contents.
fn plan_tree(s: W8Sizes, seed: u64) -> (Vec<String>, Vec<FileSpec>) {
    let mut rng = StdRng::seed_from_u64(seed);
    // Source-like: a few top folders, packages under them, modules under those.
    let tops = 12.min(s.folders);
    let mut folders: Vec<String> = (0..tops).map(|i| format!("pkg{i:02}")).collect();
    let mut i = 0;
    while folders.len() < s.folders {
        let parent =
            folders[i % folders.len().min(tops + (folders.len() - tops) / 2).max(1)].clone();
        folders.push(format!("{parent}/m{:04}", folders.len()));
        i += 1;
    }
    let exts = ["rs", "c", "h", "py", "md", "json", "toml", "txt"];
    let mut files: Vec<FileSpec> = Vec::with_capacity(s.files);
    for n in 0..s.files {
        let folder = &folders[rng.random_range(0..folders.len())];
        let rel = format!("{folder}/f{n:05}.{}", exts[n % exts.len()]);
        let dup = n > 10 && rng.random_bool(0.046);
        let (size, seed) = if dup {
            let of = &files[rng.random_range(0..n)];
            (of.size, of.seed)
        } else if n < s.large.len() {
            (s.large[n], seed ^ (n as u64 + 1) << 20)
        } else {
            let r: f64 = rng.random();
            let size = match r {
                r if r < 0.005 => 0,
                r if r < 0.70 => rng.random_range(1..2048),
                r if r < 0.95 => rng.random_range(2048..16_384),
                _ => rng.random_range(16_384..131_072),
            };
            (size, seed ^ (n as u64 + 1) << 20)
        };
        files.push(FileSpec { rel, size, seed });
    }
    (folders, files)
}

/// One measured phase.
#[derive(Clone, Debug, serde::Serialize)]
struct Phase {
    name: &'static str,
    changes: usize,
    units: u64,
    floor: u64,
    bytes_sent: u64,
    requests: Value,
}

impl Phase {
    fn ratio(&self) -> f64 {
        if self.floor == 0 {
            if self.units == 0 { 1.0 } else { f64::INFINITY }
        } else {
            self.units as f64 / self.floor as f64
        }
    }
}

struct Run<'a> {
    server: &'a Server,
    daemon: Daemon,
    phases: Vec<Phase>,
}

impl Run<'_> {
    async fn bytes_done(&self) -> Result<u64> {
        Ok(self
            .daemon
            .status()
            .await?
            .and_then(|s| s["bytes_done"].as_u64())
            .unwrap_or(0))
    }

    /// Applies `change` to the disk, waits until the daemon is in sync again, and records
    /// the phase.
    async fn phase(
        &mut self,
        name: &'static str,
        changes: usize,
        floor: u64,
        change: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        eprintln!("  W8 {name}: {changes} change(s), floor {floor} units");
        self.server.reset_stats().await?;
        let before = self.bytes_done().await?;
        change()?;
        let srv = self.server;
        self.daemon
            .wait_change_settled(STALL, POLL, async || {
                srv.stats().await.map(|s| s.total() > 0).unwrap_or(false)
            })
            .await?;
        // Requests after in-sync (none expected) would be missed; a short grace period
        // catches stragglers of the last batch.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stats = self.server.stats().await?;
        let after = self.bytes_done().await?;
        self.phases.push(Phase {
            name,
            changes,
            units: stats.units(),
            floor,
            bytes_sent: after.saturating_sub(before),
            requests: stats.by_route(),
        });
        Ok(())
    }
}

pub async fn w8(ctx: &Ctx, s: W8Sizes) -> Report {
    let report = Report::new(
        "W8",
        "API units per change against the documented floor",
        format!(
            "{} files in {} folders",
            with_count(s.files),
            with_count(s.folders)
        ),
    );
    guarded(report, async |r| {
        let scratch = Scratch::new(&ctx.work, "w8", ctx.keep)?;
        let root = scratch.path.join("root");
        let (folders, mut files) = plan_tree(s, 8);
        {
            let (root, folders, files) = (root.clone(), folders.clone(), files.clone());
            tokio::task::spawn_blocking(move || -> Result<()> {
                for f in &folders {
                    std::fs::create_dir_all(root.join(f))?;
                }
                for f in &files {
                    write_file(&root, f)?;
                }
                Ok(())
            })
            .await??;
        }
        let setup = ServerSetup::default();
        r.devserver = setup;
        let server = Server::start(&scratch.path.join("server"), setup).await?;
        let opts = MirrorOpts::default();
        let t0 = Instant::now();
        let daemon = Daemon::spawn(&ctx.daemon, &scratch.path, &server, &root, &opts)?;
        let mut run = Run {
            server: &server,
            daemon,
            phases: Vec::new(),
        };

        // 1. The first mirror: a folder create each (and the base folder), an upload per
        // content, a copy for each content already sent.
        let mut seen: HashMap<(u64, u64), ()> = HashMap::new();
        let mut floor = WRITE * (folders.len() as u64 + 1);
        for f in &files {
            floor += if seen.insert(content_key(f), ()).is_some() {
                WRITE
            } else {
                upload_floor(f.size)
            };
        }
        let dups = files.len() - seen.len();
        run.daemon.wait_in_sync(STALL, POLL).await?;
        let stats = server.stats().await?;
        let bytes = run.bytes_done().await?;
        eprintln!(
            "  W8 initial: {} files ({dups} duplicate contents) in {:.0} s",
            files.len(),
            t0.elapsed().as_secs_f64()
        );
        run.phases.push(Phase {
            name: "initial mirror",
            changes: files.len(),
            units: stats.units(),
            floor,
            bytes_sent: bytes,
            requests: stats.by_route(),
        });

        // The scripted day. Each kind of change takes its own files (small ones, so a
        // phase is about calls, not bytes), picked by a seeded shuffle.
        let mut rng = StdRng::seed_from_u64(88);
        let mut pool: Vec<usize> = (s.large.len()..files.len())
            .filter(|&i| files[i].size > 0)
            .collect();
        for i in (1..pool.len()).rev() {
            pool.swap(i, rng.random_range(0..=i));
        }
        let n = s.changes;
        let mut take = |k: usize| -> Vec<usize> { pool.drain(..k.min(pool.len())).collect() };
        let (edited, copied, renamed, moved, deleted) =
            (take(n), take(n), take(n), take(n / 2), take(n));

        // 2. Edits: new content, a new version each (a session: create, chunk, complete).
        let originals: Vec<FileSpec> = edited.iter().map(|&i| files[i].clone()).collect();
        let floor: u64 = edited.iter().map(|&i| replace_floor(files[i].size)).sum();
        {
            for &i in &edited {
                files[i].seed ^= 0xED17;
            }
            let edits: Vec<FileSpec> = edited.iter().map(|&i| files[i].clone()).collect();
            let root = root.clone();
            run.phase("edits", edits.len(), floor, move || {
                edits.iter().try_for_each(|f| write_file(&root, f))
            })
            .await?;
        }

        // 3. Reverts (an editor's undo, `git checkout`): half the edits back to the
        // content of their earlier version; a version restore each.
        let reverts: Vec<FileSpec> = originals[..originals.len() / 2].to_vec();
        {
            let root2 = root.clone();
            let rv = reverts.clone();
            run.phase("reverts", rv.len(), WRITE * rv.len() as u64, move || {
                rv.iter().try_for_each(|f| write_file(&root2, f))
            })
            .await?;
        }

        // 4. Copies: half into a new folder, half beside the original under a new name;
        // a server-side copy each (and the folder create).
        let copies: Vec<(String, String)> = copied
            .iter()
            .enumerate()
            .map(|(k, &i)| {
                let f = &files[i].rel;
                let to = if k % 2 == 0 {
                    format!("vendored/{}", f.rsplit('/').next().unwrap_or(f))
                } else {
                    let (dir, name) = f.rsplit_once('/').unwrap_or(("", f));
                    format!("{dir}/copy-of-{name}")
                };
                (f.clone(), to)
            })
            .collect();
        {
            let root2 = root.clone();
            let cp = copies.clone();
            let floor = WRITE * (cp.len() as u64 + 1);
            run.phase("copies", cp.len(), floor, move || {
                std::fs::create_dir_all(root2.join("vendored"))?;
                for (from, to) in &cp {
                    std::fs::copy(root2.join(from), root2.join(to))?;
                }
                Ok(())
            })
            .await?;
        }

        // 5. Renames in place and moves to another folder (same name): one PATCH or one
        // move each.
        let target_folder = folders[folders.len() - 1].clone();
        let renames: Vec<(String, String)> = renamed
            .iter()
            .map(|&i| {
                let f = &files[i].rel;
                let (dir, name) = f.rsplit_once('/').unwrap_or(("", f));
                (f.clone(), format!("{dir}/renamed-{name}"))
            })
            .chain(moved.iter().filter_map(|&i| {
                let f = &files[i].rel;
                let name = f.rsplit('/').next().unwrap_or(f);
                let to = format!("{target_folder}/{name}");
                (to != *f).then(|| (f.clone(), to))
            }))
            .collect();
        {
            let root2 = root.clone();
            let rn = renames.clone();
            run.phase(
                "renames and moves",
                rn.len(),
                WRITE * rn.len() as u64,
                move || {
                    for (from, to) in &rn {
                        std::fs::rename(root2.join(from), root2.join(to))?;
                    }
                    Ok(())
                },
            )
            .await?;
        }

        // 6. Deletes: one soft delete each.
        let gone: Vec<FileSpec> = deleted.iter().map(|&i| files[i].clone()).collect();
        {
            let root2 = root.clone();
            let g = gone.clone();
            run.phase("deletes", g.len(), WRITE * g.len() as u64, move || {
                for f in &g {
                    std::fs::remove_file(root2.join(&f.rel))?;
                }
                Ok(())
            })
            .await?;
        }

        // 7. Restores from a local backup: the deleted files back at their paths; a
        // restore from the remote trash each.
        {
            let root2 = root.clone();
            let g = gone.clone();
            run.phase(
                "restores from backup",
                g.len(),
                WRITE * g.len() as u64,
                move || g.iter().try_for_each(|f| write_file(&root2, f)),
            )
            .await?;
        }

        // 8. The state database is lost: the daemon starts afresh and adopts the remote
        // tree (a listing per folder, a metadata GET per file for its checksum).
        let live_files = count_files(&root)?;
        let live_folders = count_dirs(&root)?;
        let Run {
            daemon, mut phases, ..
        } = run;
        r.problems.extend(daemon.log_problems());
        daemon.stop().await?;
        std::fs::remove_dir_all(scratch.path.join("state")).context("removing the state")?;
        server.reset_stats().await?;
        let daemon = Daemon::spawn(&ctx.daemon, &scratch.path, &server, &root, &opts)?;
        phases.reserve(2);
        let mut run = Run {
            server: &server,
            daemon,
            phases,
        };
        run.daemon.wait_in_sync(STALL, POLL).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stats = server.stats().await?;
        run.phases.push(Phase {
            name: "lost state database",
            changes: live_files,
            units: stats.units(),
            floor: LIST * (live_folders as u64 + 1) + GET * live_files as u64,
            bytes_sent: run.bytes_done().await?,
            requests: stats.by_route(),
        });

        // 9. verify: the remote tree against what the mirror holds (a listing per folder).
        server.reset_stats().await?;
        let v = scaidrive::control::client::call(
            &run.daemon.socket,
            "POST",
            scaidrive::control::protocol::route::VERIFY,
            Some(&json!({})),
        )
        .await?;
        let stats = server.stats().await?;
        run.phases.push(Phase {
            name: "verify",
            changes: live_folders,
            units: stats.units(),
            floor: LIST * (live_folders as u64 + 1),
            bytes_sent: 0,
            requests: stats.by_route(),
        });
        r.problems.extend(run.daemon.log_problems());
        let Run { daemon, phases, .. } = run;
        daemon.stop().await?;
        server.shutdown().await;

        for p in &phases {
            let ratio = p.ratio();
            r.rows.push(Row::target(
                &format!(
                    "{}: units (floor {}, {:.0} s at 1,000/min, {} sent)",
                    p.name,
                    p.floor,
                    p.units as f64 * 60.0 / 1000.0,
                    human(p.bytes_sent)
                ),
                p.units as f64,
                "",
                format!(
                    "≤ {:.0} ({TARGET_RATIO} × floor)",
                    (p.floor as f64 * TARGET_RATIO).floor()
                ),
                ratio <= TARGET_RATIO,
            ));
        }
        r.details =
            json!({ "sizes": s, "duplicate_contents": dups, "phases": phases, "verify": v });
        Ok(())
    })
    .await
}

fn human(b: u64) -> String {
    match b {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

fn walk(root: &Path, dirs: bool) -> Result<usize> {
    let mut n = 0;
    let mut stack: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_dir() {
                stack.push(e.path());
                n += usize::from(dirs);
            } else if t.is_file() {
                n += usize::from(!dirs);
            }
        }
    }
    Ok(n)
}

fn count_files(root: &Path) -> Result<usize> {
    walk(root, false)
}

fn count_dirs(root: &Path) -> Result<usize> {
    walk(root, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_has_the_shape_the_issue_asks_for() {
        let (folders, files) = plan_tree(W8_FULL, 8);
        assert!(folders.len() >= 1_300 && files.len() >= 20_000);
        let max = files.iter().map(|f| f.size).max().unwrap();
        assert_eq!(max, 300_000_000);
        assert!(files.iter().any(|f| f.size == 0));
        assert!(
            files
                .iter()
                .any(|f| (16_000_000..100_000_000).contains(&f.size))
        );
        let distinct: std::collections::HashSet<(u64, u64)> =
            files.iter().map(content_key).collect();
        let dup = 1.0 - distinct.len() as f64 / files.len() as f64;
        assert!((0.04..0.06).contains(&dup), "{dup}");
        // Parents first.
        for (i, f) in folders.iter().enumerate() {
            if let Some((p, _)) = f.rsplit_once('/') {
                assert!(folders[..i].contains(&p.to_string()), "{f}");
            }
        }
    }

    #[test]
    fn floors_follow_the_documented_costs() {
        assert_eq!(upload_floor(0), 5);
        assert_eq!(upload_floor(99_999_999), 5);
        // 300 MB in 64 MiB chunks: 5 chunks, plus create and complete.
        assert_eq!(upload_floor(300_000_000), 2 + 5 * 5 + 2);
        assert_eq!(replace_floor(10), 9);
    }
}
