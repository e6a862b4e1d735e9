//! Restore: a mirror's remote tree (or a subtree, or one file) as it was at a moment,
//! downloaded into a local directory that is not a mirror.
//!
//! 1. [`read_log`] reads the share's change log from position 0 (2 units a page).
//! 2. [`plan`] replays it ([`timeline`]) up to the moment and once more to the end: which
//!    folders and files existed then under which paths, the version current then per file
//!    (its content), and where that content can be read now. The API serves no content of
//!    an item in the trash (410), so a file trashed since is read from a live file holding
//!    the same content in some version if there is one, else reported not restorable.
//! 3. [`execute`] downloads (`GET /files/{id}/content?version=N`, 5 units each, through the
//!    client's pacer) into `DIR/.scaidrive-restore/` under a temporary name, verifies the
//!    SHA-256, sets the mtime from the remote `modified_at` then, and renames into place. A
//!    rerun skips files already in place with the right checksum and continues partial
//!    downloads with `Range`.
//!
//! With `--from-trash` ([`Plan::take_from_trash`]) a file whose content is only in the
//! trash is taken out of it for the download and put back ([`trash`]).

pub mod timeline;
pub mod trash;
pub mod when;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;
use time::OffsetDateTime;

use crate::remote::{Change, Client, Cursor, Error};
use timeline::{Kind, Timeline, parse_time};

/// The directory inside DIR holding partial downloads and the request they belong to.
pub const WORK_DIR: &str = ".scaidrive-restore";
/// Units of one download and of one change-log page (the documented costs).
pub const DOWNLOAD_UNITS: u64 = 5;
pub const LOG_PAGE_UNITS: u64 = 2;
/// Downloads in flight at once.
const PARALLEL: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{0}")]
    Remote(#[from] Error),
    #[error("{0}")]
    Refused(String),
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RestoreError + '_ {
    move |err| RestoreError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// The change log of a share from its beginning, and the pages it took.
pub async fn read_log(client: &Client, share_id: &str) -> Result<(Vec<Change>, u64), RestoreError> {
    let mut cursor = Cursor("0".into());
    let (mut out, mut pages) = (Vec::new(), 0u64);
    loop {
        let page = match client.changes(share_id, Some(&cursor), Some(5000)).await {
            Ok(p) => p,
            Err(e) if e.code() == Some("CURSOR_EXPIRED") => {
                return Err(RestoreError::Refused(format!(
                    "the change log of share {share_id} no longer starts at its beginning ({}); \
                     a tree as of a past moment cannot be rebuilt from it",
                    e.message()
                )));
            }
            Err(e) => return Err(e.into()),
        };
        pages += 1;
        out.extend(page.changes);
        if !page.has_more || page.cursor == cursor {
            return Ok((out, pages));
        }
        cursor = page.cursor;
    }
}

/// What to restore: the mirror's remote base folder in a share, and optionally a path
/// below it.
#[derive(Clone, Debug)]
pub struct Scope {
    pub share_id: String,
    /// The mirror's `remote_path` ("" = the share root).
    pub base: String,
    /// Relative to the mirror root ("" = all of it).
    pub sub: String,
}

impl Scope {
    fn remote_path(&self) -> String {
        let base = self.base.trim_matches('/');
        let sub = self.sub.trim_matches('/');
        match (base.is_empty(), sub.is_empty()) {
            (true, _) => sub.to_string(),
            (false, true) => base.to_string(),
            (false, false) => format!("{base}/{sub}"),
        }
    }
}

/// One file to restore.
#[derive(Clone, Debug)]
pub struct FilePlan {
    /// Relative to DIR.
    pub rel: String,
    pub id: String,
    pub version: u64,
    pub sha256: String,
    pub size: u64,
    pub mtime: Option<OffsetDateTime>,
    /// Where the content is read: (file id, version); another file's when the file
    /// itself is in the trash now.
    pub source: (String, u64),
    /// The trashed items that must come out of the trash first (`--from-trash`).
    pub untrash: Vec<String>,
}

/// An item that existed at the moment but cannot be restored, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    pub rel: String,
    pub why: String,
}

#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Folders relative to DIR ("" = DIR itself), parents first, with their mtime.
    pub folders: Vec<(String, Option<OffsetDateTime>)>,
    pub files: Vec<FilePlan>,
    pub missing: Vec<Missing>,
    /// Change-log pages read to build it.
    pub log_pages: u64,
    /// Files whose content is only in the trash (listed in `missing` too), with the items
    /// to take out of the trash for each: what [`Plan::take_from_trash`] restores.
    pub in_trash: Vec<(FilePlan, Vec<trash::Untrash>)>,
    /// Items taken out of the trash for the download and put back afterwards.
    pub untrash: std::collections::BTreeSet<trash::Untrash>,
}

impl Plan {
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
    /// Units the downloads cost (the log pages are already spent).
    pub fn download_units(&self) -> u64 {
        self.files.len() as u64 * DOWNLOAD_UNITS
    }

    /// Units of taking items out of the trash and putting them back.
    pub fn trash_units(&self) -> u64 {
        self.untrash.len() as u64 * (trash::UNTRASH_UNITS + trash::RETRASH_UNITS)
    }

    /// `--from-trash`: the files only the trash holds are restored too, by taking them
    /// out of the trash for the download (see [`trash`]).
    pub fn take_from_trash(&mut self) {
        for (file, chain) in std::mem::take(&mut self.in_trash) {
            self.missing.retain(|m| m.rel != file.rel);
            self.untrash.extend(chain);
            self.files.push(file);
        }
        self.files.sort_by(|a, b| a.rel.cmp(&b.rel));
    }
}

fn within(path: &str, root: &str) -> Option<String> {
    if root.is_empty() {
        return Some(path.to_string());
    }
    if path == root {
        return Some(String::new());
    }
    path.strip_prefix(root)?
        .strip_prefix('/')
        .map(str::to_string)
}

/// The tree of `scope` as of `as_of` (`None`: the latest, every row), from the whole log
/// `changes` (in log order; rows from the first one later than `as_of` on are after it).
pub fn plan(
    changes: &[Change],
    scope: &Scope,
    as_of: Option<OffsetDateTime>,
) -> Result<Plan, RestoreError> {
    let (mut then, mut now) = (Timeline::new(), Timeline::new());
    let mut past = true;
    for c in changes {
        if past
            && let Some(limit) = as_of
            && c.changed_at
                .as_deref()
                .and_then(parse_time)
                .is_some_and(|t| t > limit)
        {
            past = false;
        }
        if past {
            then.apply(c);
        }
        now.apply(c);
    }
    let root = scope.remote_path();
    let visible = then.visible();
    let top = visible.iter().find(|(_, p, _)| *p == root);
    if !root.is_empty() && top.is_none() {
        return Err(RestoreError::Refused(format!(
            "nothing at {:?} in share {} as of {}",
            format!("/{root}"),
            scope.share_id,
            fmt_moment(as_of)
        )));
    }
    let mut plan = Plan::default();
    let single_file = top.is_some_and(|(_, _, it)| it.kind == Kind::File);
    for (id, path, it) in &visible {
        let rel = if single_file {
            if path != &root {
                continue;
            }
            crate::relpath::name_of(path).to_string()
        } else {
            match within(path, &root) {
                Some(r) => r,
                None => continue,
            }
        };
        let mtime = it.modified_at.as_deref().and_then(parse_time);
        // Names come from the server: one that is not a plain name (empty, `.`, `..`, a
        // slash) would write outside DIR, so it is refused.
        if let Some(bad) = rel
            .split('/')
            .filter(|_| !rel.is_empty())
            .find(|n| crate::remote::validate_name(n).is_err())
        {
            plan.missing.push(Missing {
                rel: rel.clone(),
                why: format!("the remote name {bad:?} is not a valid local name"),
            });
            continue;
        }
        if it.kind == Kind::Folder {
            plan.folders.push((rel, mtime));
            continue;
        }
        match file_source(&now, id, it) {
            Ok(source) => plan.files.push(FilePlan {
                rel,
                id: id.clone(),
                version: it.version,
                sha256: it.sha256.clone().unwrap_or_default(),
                size: it.size,
                mtime,
                source,
                untrash: Vec::new(),
            }),
            Err(why) => {
                if let (Some(sha), Ok(chain)) = (&it.sha256, trash::chain(&now, id))
                    && !chain.is_empty()
                {
                    let file = FilePlan {
                        rel: rel.clone(),
                        id: id.clone(),
                        version: it.version,
                        sha256: sha.clone(),
                        size: it.size,
                        mtime,
                        source: (id.clone(), it.version),
                        untrash: chain.iter().map(|u| u.id.clone()).collect(),
                    };
                    plan.in_trash.push((file, chain));
                }
                plan.missing.push(Missing { rel, why })
            }
        }
    }
    if !single_file && root.is_empty() {
        plan.folders.insert(0, (String::new(), None));
    }
    Ok(plan)
}

/// Where the content of `it` (as of the moment) can be read now, or why it cannot.
fn file_source(now: &Timeline, id: &str, it: &timeline::Item) -> Result<(String, u64), String> {
    let Some(sha) = &it.sha256 else {
        return Err("the change log gives no checksum for it".into());
    };
    if now.path_of(id).is_some() {
        return Ok((id.to_string(), it.version));
    }
    if let Some(copy) = now.visible_copy(sha) {
        return Ok(copy);
    }
    let state = now.get(id);
    let when = state
        .and_then(|s| s.deleted_at.clone())
        .unwrap_or_else(|| "?".into());
    Err(if state.is_some_and(|s| s.gone) {
        format!("permanently deleted (or moved out of the share) at {when}")
    } else {
        format!(
            "in ScaiDrive's trash (deleted at {when}, it or a folder above it); the API serves no \
             content of trashed items: run this again with --from-trash (it takes the item out \
             of the trash for the download and puts it back)"
        )
    })
}

pub fn fmt_time(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A moment for messages: RFC 3339, or "now" for the latest state.
pub fn fmt_moment(t: Option<OffsetDateTime>) -> String {
    t.map_or_else(|| "now".into(), fmt_time)
}

/// Counters a progress display reads.
#[derive(Default, Debug)]
pub struct Progress {
    pub files_done: AtomicU64,
    pub bytes_done: AtomicU64,
}

#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub files: u64,
    pub bytes: u64,
    pub folders: u64,
    /// Files already in place and verified (a rerun).
    pub skipped: u64,
    /// Bytes that came over the network.
    pub downloaded: u64,
    pub downloads: u64,
    pub missing: Vec<Missing>,
    /// Items taken out of the trash for the download and put back (`--from-trash`).
    pub untrashed: u64,
    /// Items taken out of the trash that could not be put back: (id, why). They are put
    /// back by the next run into the same DIR.
    pub not_put_back: Vec<(String, String)>,
}

/// Downloads `plan` into `dir` (created if absent). The caller checked that `dir` is
/// empty, absent, or holds this same restore's [`WORK_DIR`].
pub async fn execute(
    client: &Client,
    plan: &Plan,
    dir: &Path,
    progress: &Progress,
) -> Result<Summary, RestoreError> {
    let work = dir.join(WORK_DIR);
    tokio::fs::create_dir_all(&work).await.map_err(io(&work))?;
    for (rel, _) in &plan.folders {
        let p = dir.join(rel);
        tokio::fs::create_dir_all(&p).await.map_err(io(&p))?;
    }
    let taken = trash::take_out(client, &plan.untrash, &work).await?;
    let refused = |f: &FilePlan| {
        taken
            .refused
            .iter()
            .find(|(id, _)| f.untrash.contains(id))
            .map(|(id, why)| Missing {
                rel: f.rel.clone(),
                why: format!("in the trash, and {id} could not be taken out of it: {why}"),
            })
    };
    let (work_ref, refused) = (&work, &refused);
    let results: Vec<Result<Outcome, RestoreError>> = futures_util::stream::iter(&plan.files)
        .map(|f| async move {
            match refused(f) {
                Some(m) => Ok(Outcome::Missing(m)),
                None => fetch_one(client, f, dir, work_ref, progress).await,
            }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let not_put_back = trash::put_back(client, &taken.to_put_back, &work).await;
    let mut s = Summary {
        folders: plan.folders.iter().filter(|(r, _)| !r.is_empty()).count() as u64,
        missing: plan.missing.clone(),
        untrashed: (taken.to_put_back.len() - not_put_back.len()) as u64,
        not_put_back,
        ..Summary::default()
    };
    for r in results {
        match r? {
            Outcome::Skipped(n) => {
                s.files += 1;
                s.skipped += 1;
                s.bytes += n;
            }
            Outcome::Fetched { size, over_wire } => {
                s.files += 1;
                s.downloads += 1;
                s.bytes += size;
                s.downloaded += over_wire;
            }
            Outcome::Missing(m) => s.missing.push(m),
        }
    }
    // Folder mtimes last (creating files inside changed them), deepest first.
    for (rel, mtime) in plan.folders.iter().rev() {
        if let Some(t) = mtime {
            let p = dir.join(rel);
            set_mtime(&p, *t).map_err(io(&p))?;
        }
    }
    if s.missing.iter().all(|m| !m.why.starts_with("checksum")) && s.not_put_back.is_empty() {
        let _ = tokio::fs::remove_dir_all(&work).await;
    }
    s.missing.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(s)
}

enum Outcome {
    Skipped(u64),
    Fetched { size: u64, over_wire: u64 },
    Missing(Missing),
}

fn set_mtime(p: &Path, t: OffsetDateTime) -> std::io::Result<()> {
    let st = std::time::SystemTime::UNIX_EPOCH
        + std::time::Duration::from_secs(t.unix_timestamp().max(0) as u64);
    std::fs::File::open(p)?.set_modified(st)
}

async fn hash(p: &Path) -> Result<String, RestoreError> {
    let p2 = p.to_path_buf();
    tokio::task::spawn_blocking(move || crate::hash::hash_file(&p2))
        .await
        .map_err(|e| RestoreError::Refused(format!("hashing {}: {e}", p.display())))?
        .map_err(io(p))
}

async fn fetch_one(
    client: &Client,
    f: &FilePlan,
    dir: &Path,
    work: &Path,
    progress: &Progress,
) -> Result<Outcome, RestoreError> {
    let dest = dir.join(&f.rel);
    let done = |n: u64| {
        progress.files_done.fetch_add(1, Ordering::Relaxed);
        progress.bytes_done.fetch_add(n, Ordering::Relaxed);
    };
    if let Ok(m) = tokio::fs::metadata(&dest).await
        && m.is_file()
        && m.len() == f.size
        && hash(&dest).await? == f.sha256
    {
        done(f.size);
        return Ok(Outcome::Skipped(f.size));
    }
    let tmp = work.join(format!("{}.v{}", f.id, f.version));
    let mut have = tokio::fs::metadata(&tmp)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    if have > f.size {
        have = 0;
    }
    // A whole file left by an interrupted run is kept only if its checksum is right.
    if have == f.size && f.size > 0 && hash(&tmp).await? != f.sha256 {
        have = 0;
    }
    let mut over_wire = 0;
    if have < f.size || f.size == 0 {
        let (src, v) = &f.source;
        let n = client.download_version_to(src, *v, &tmp, have).await?;
        over_wire = n.saturating_sub(have);
    }
    let got = hash(&tmp).await?;
    if got != f.sha256 {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Ok(Outcome::Missing(Missing {
            rel: f.rel.clone(),
            why: format!(
                "checksum mismatch: version {} of {} should be {} but the download is {got}",
                f.source.1, f.source.0, f.sha256
            ),
        }));
    }
    if let Some(t) = f.mtime {
        set_mtime(&tmp, t).map_err(io(&tmp))?;
    }
    if let Some(parent) = dest.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(io(parent))?;
    }
    tokio::fs::rename(&tmp, &dest).await.map_err(io(&dest))?;
    done(f.size);
    Ok(Outcome::Fetched {
        size: f.size,
        over_wire,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(kind: &str, id: &str, ct: &str, at: &str, meta: serde_json::Value) -> Change {
        Change {
            resource_type: kind.into(),
            resource_id: id.into(),
            change_type: ct.into(),
            changed_at: Some(at.into()),
            metadata: meta,
            ..Change::default()
        }
    }

    #[test]
    fn plan_cuts_at_the_moment_and_refuses_names_that_leave_dir() {
        let t1 = "2026-01-01T00:00:00Z";
        let t2 = "2026-01-02T00:00:00Z";
        let file = |name: &str, v: u64, sha: &str| json!({"name": name, "parent_id": "base", "version": v, "checksum_sha256": sha, "size": 3});
        let log = vec![
            row(
                "folder",
                "base",
                "created",
                t1,
                json!({"name": "m", "parent_id": null}),
            ),
            row("file", "f", "created", t1, file("a.txt", 1, "s1")),
            row("file", "evil", "created", t1, file("..", 1, "s9")),
            row("file", "f", "updated", t2, file("a.txt", 2, "s2")),
            row("file", "g", "created", t2, file("b.txt", 1, "s3")),
        ];
        let scope = Scope {
            share_id: "shr".into(),
            base: "/m/".into(),
            sub: String::new(),
        };
        let at = |s: &str| Some(parse_time(s).unwrap());
        let p = plan(&log, &scope, at("2026-01-01T12:00:00Z")).unwrap();
        let files: Vec<_> = p
            .files
            .iter()
            .map(|f| (f.rel.as_str(), f.version))
            .collect();
        assert_eq!(files, vec![("a.txt", 1)]);
        assert_eq!(p.missing.len(), 1);
        assert!(
            p.missing[0]
                .why
                .contains("\"..\" is not a valid local name"),
            "{:?}",
            p.missing
        );
        let p = plan(&log, &scope, None).unwrap();
        let files: Vec<_> = p
            .files
            .iter()
            .map(|f| (f.rel.as_str(), f.version))
            .collect();
        assert_eq!(files, vec![("a.txt", 2), ("b.txt", 1)]);
        let before = plan(&log, &scope, at("2025-01-01T00:00:00Z"));
        assert!(before.is_err_and(|e| e.to_string().contains("nothing at \"/m\"")));
    }
}
