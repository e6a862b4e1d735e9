//! `scaidrivectl restore` and `scaidrivectl versions`: talk to ScaiDrive directly with the
//! configuration file and the token (no daemon needed, no state database read), so they
//! work on a new machine after a disaster as well as next to a running daemon.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Args as ClapArgs;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::config::{Config, Env, MirrorConfig, process_env};
use crate::daemon::credentials;
use crate::remote::{Client, ClientConfig};
use crate::restore::{self, FilePlan, Plan, Progress, RestoreError, Scope, WORK_DIR, when};

#[derive(ClapArgs, Debug)]
pub struct RestoreArgs {
    /// A path relative to the mirror root, or an absolute local path inside one (default:
    /// the whole mirror).
    pub path: Option<String>,
    /// Where to put it: a directory that is empty or absent and not inside any mirror (with
    /// --version: the file to create).
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// The moment: RFC 3339 (2026-12-01T09:30:00Z) or relative ("2 days ago"); default now.
    #[arg(long, value_name = "TIME")]
    pub as_of: Option<String>,
    /// Fetch this version of the file at PATH (see `versions`) into the file --to.
    #[arg(long, value_name = "N")]
    pub version: Option<u64>,
    /// The mirror (its name in the configuration); needed when several are configured and
    /// PATH does not say.
    #[arg(long)]
    pub mirror: Option<String>,
    /// Print what would be restored and the units it would cost; download nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also restore files whose content is only in ScaiDrive's trash: each is taken out of
    /// the trash where it was for the download and put back afterwards (4 more units per
    /// item; the share's change log shows the round trip).
    #[arg(long)]
    pub from_trash: bool,
}

#[derive(ClapArgs, Debug)]
pub struct VersionsArgs {
    /// The file: relative to the mirror root, or an absolute local path inside one.
    pub path: String,
    #[arg(long)]
    pub mirror: Option<String>,
}

type R<T> = Result<T, String>;

/// What a partial restore in DIR was asked for; a rerun must ask for the same.
#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Request {
    share_id: String,
    base: String,
    sub: String,
    as_of_spec: String,
    as_of: Option<i64>,
}

struct Ctx {
    cfg: Config,
    env: Env,
    mirror: MirrorConfig,
    sub: String,
}

fn load(config: Option<&Path>, mirror: Option<&str>, path: Option<&str>) -> R<Ctx> {
    let env = process_env();
    let cfg = Config::load(config, &env, None).map_err(|e| format!("config: {e}"))?;
    if cfg.mirrors.is_empty() {
        return Err("config: no [[mirror]] is configured".into());
    }
    let abs = path.filter(|p| p.starts_with('/')).map(PathBuf::from);
    let chosen = match (mirror, &abs) {
        (Some(name), _) => cfg
            .mirrors
            .iter()
            .find(|m| m.display_name() == name)
            .ok_or_else(|| {
                format!("--mirror {name:?}: no mirror of that name in the configuration")
            })?,
        (None, Some(a)) => cfg
            .mirrors
            .iter()
            .find(|m| a.starts_with(&m.path) || canon(a).starts_with(canon(&m.path)))
            .ok_or_else(|| format!("{}: not inside any mirror's folder", a.display()))?,
        (None, None) if cfg.mirrors.len() == 1 => &cfg.mirrors[0],
        (None, None) => return Err("several mirrors are configured: name one with --mirror".into()),
    };
    let mirror = chosen.clone();
    let sub = match (&abs, path) {
        (Some(a), _) => {
            let rel = a
                .strip_prefix(&mirror.path)
                .ok()
                .map(Path::to_path_buf)
                .or_else(|| {
                    canon(a)
                        .strip_prefix(canon(&mirror.path))
                        .ok()
                        .map(Path::to_path_buf)
                })
                .ok_or_else(|| {
                    format!(
                        "{}: not inside mirror {}'s folder {}",
                        a.display(),
                        mirror.display_name(),
                        mirror.path.display()
                    )
                })?;
            rel.to_string_lossy().into_owned()
        }
        (None, Some(p)) => p.trim_start_matches("./").trim_matches('/').to_string(),
        (None, None) => String::new(),
    };
    if sub.split('/').any(|c| c == "..") {
        return Err(format!(
            "{sub}: a path with .. is not a path inside the mirror"
        ));
    }
    Ok(Ctx {
        cfg,
        env,
        mirror,
        sub,
    })
}

/// `p` made absolute with symlinks resolved as far as it exists.
fn canon(p: &Path) -> PathBuf {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut head = abs.clone();
    let mut tail = Vec::new();
    loop {
        if let Ok(c) = head.canonicalize() {
            return tail.iter().rev().fold(c, |acc: PathBuf, n| acc.join(n));
        }
        match (head.file_name().map(|n| n.to_os_string()), head.parent()) {
            (Some(n), Some(parent)) => {
                tail.push(n);
                head = parent.to_path_buf();
            }
            _ => return abs,
        }
    }
}

fn client(ctx: &Ctx) -> R<Client> {
    let url = ctx
        .cfg
        .remote
        .url
        .clone()
        .ok_or("config: remote.url is not set")?;
    let state_dir = ctx.cfg.state_dir(&ctx.env).ok();
    let (tokens, origin) = credentials::load(
        &ctx.cfg,
        &ctx.env,
        state_dir.as_deref().unwrap_or(Path::new("/nonexistent")),
    )
    .map_err(|e| e.to_string())?;
    let mut cc = ClientConfig::new(url, tokens);
    cc.request_timeout = Duration::from_secs(ctx.cfg.remote.timeout_secs);
    cc.idle_timeout = cc.request_timeout;
    cc.ca_file = ctx.cfg.remote.ca_file.clone();
    // A refreshed pair goes where the daemon keeps it (the refresh token is single-use),
    // when that directory exists (it does not on a new machine).
    if let Some(dir) = state_dir.filter(|d| d.is_dir()) {
        cc.token_sink = Some(Arc::new(credentials::FileTokenSink::new(&dir, &origin)));
    }
    Client::new(cc).map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Refuses a destination inside any mirror's folder.
fn outside_mirrors(cfg: &Config, to: &Path) -> R<PathBuf> {
    let dest = canon(to);
    for m in &cfg.mirrors {
        let root = canon(&m.path);
        if dest.starts_with(&root) {
            return Err(format!(
                "--to {}: inside mirror {}'s folder {}; restore somewhere else (nothing in a mirrored folder is written)",
                to.display(),
                m.display_name(),
                m.path.display()
            ));
        }
    }
    Ok(dest)
}

pub async fn versions(config: Option<&Path>, a: &VersionsArgs) -> R<u8> {
    let ctx = load(config, a.mirror.as_deref(), Some(&a.path))?;
    let client = client(&ctx)?;
    let (id, _) = file_at(&client, &ctx, None).await?;
    let v = client.file_versions(&id).await.map_err(|e| e.to_string())?;
    println!("{:>7}  {:>12}  {:<20}  BY", "VERSION", "SIZE", "TIME");
    for v in &v.versions {
        println!(
            "{:>7}  {:>12}  {:<20}  {}",
            v.version_number,
            v.size,
            v.created_at.as_deref().unwrap_or("-"),
            v.created_by.as_deref().unwrap_or("-")
        );
    }
    Ok(0)
}

/// The file at the context's path at `t`: (id, its plan entry).
async fn file_at(client: &Client, ctx: &Ctx, t: Option<OffsetDateTime>) -> R<(String, FilePlan)> {
    let (plan, _) = plan_for(client, ctx, t).await?;
    match (plan.files.first(), plan.missing.first()) {
        (Some(f), _) if plan.folders.is_empty() && plan.files.len() == 1 => {
            Ok((f.id.clone(), f.clone()))
        }
        (None, Some(m)) if plan.folders.is_empty() => Err(format!("{}: {}", ctx.sub, m.why)),
        _ => Err(format!(
            "{}: not a file in mirror {}",
            ctx.sub,
            ctx.mirror.display_name()
        )),
    }
}

async fn plan_for(client: &Client, ctx: &Ctx, t: Option<OffsetDateTime>) -> R<(Plan, Scope)> {
    let scope = Scope {
        share_id: ctx.mirror.share_id.clone(),
        base: ctx.mirror.remote_path.clone(),
        sub: ctx.sub.clone(),
    };
    let (log, pages) = restore::read_log(client, &scope.share_id)
        .await
        .map_err(|e| e.to_string())?;
    let mut plan = restore::plan(&log, &scope, t).map_err(|e| e.to_string())?;
    plan.log_pages = pages;
    Ok((plan, scope))
}

pub async fn restore(config: Option<&Path>, a: &RestoreArgs) -> R<u8> {
    let ctx = load(config, a.mirror.as_deref(), a.path.as_deref())?;
    let dest = outside_mirrors(&ctx.cfg, &a.to)?;
    let spec = a.as_of.clone().unwrap_or_else(|| "now".into());
    // "now" is the latest state the log knows (no cut: the server's clock may differ).
    let mut as_of = match spec.trim() {
        "now" => None,
        s => Some(when::parse(s, OffsetDateTime::now_utc())?),
    };
    if a.version.is_some() {
        return one_version(&ctx, a, &dest, as_of).await;
    }
    // DIR: absent, empty, or the same restore interrupted.
    let request_file = dest.join(WORK_DIR).join("request.json");
    let mut request = Request {
        share_id: ctx.mirror.share_id.clone(),
        base: ctx.mirror.remote_path.clone(),
        sub: ctx.sub.clone(),
        as_of_spec: spec.clone(),
        as_of: as_of.map(|t| t.unix_timestamp()),
    };
    if dest.exists() {
        if !dest.is_dir() {
            return Err(format!(
                "--to {}: exists and is not a directory",
                a.to.display()
            ));
        }
        let earlier = std::fs::read_to_string(&request_file)
            .ok()
            .and_then(|t| serde_json::from_str::<Request>(&t).ok());
        match earlier {
            Some(e)
                if (&e.share_id, &e.base, &e.sub, &e.as_of_spec)
                    == (
                        &request.share_id,
                        &request.base,
                        &request.sub,
                        &request.as_of_spec,
                    ) =>
            {
                request.as_of = e.as_of;
                as_of = e
                    .as_of
                    .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok());
                eprintln!(
                    "continuing the interrupted restore in {} (as of {})",
                    a.to.display(),
                    restore::fmt_moment(as_of)
                );
            }
            Some(_) => {
                return Err(format!(
                    "--to {}: holds an interrupted restore of something else; finish it or use another directory",
                    a.to.display()
                ));
            }
            None if std::fs::read_dir(&dest)
                .map_err(|e| format!("--to {}: {e}", a.to.display()))?
                .next()
                .is_some() =>
            {
                return Err(format!(
                    "--to {}: not empty; restore into an empty or new directory",
                    a.to.display()
                ));
            }
            None => {}
        }
    }
    let client = client(&ctx)?;
    let (mut plan, _) = plan_for(&client, &ctx, as_of).await?;
    if a.from_trash {
        plan.take_from_trash();
    }
    if a.dry_run {
        print_plan(&plan, as_of);
        return Ok(0);
    }
    let work = dest.join(WORK_DIR);
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    std::fs::write(
        &request_file,
        serde_json::to_string(&request).unwrap_or_default(),
    )
    .map_err(|e| format!("{}: {e}", request_file.display()))?;
    let s = run_with_bar(&client, &plan, &dest)
        .await
        .map_err(|e| e.to_string())?;
    print_summary(&s, &a.to, as_of, plan.log_pages);
    Ok(if s.missing.is_empty() { 0 } else { 4 })
}

async fn one_version(
    ctx: &Ctx,
    a: &RestoreArgs,
    dest: &Path,
    as_of: Option<OffsetDateTime>,
) -> R<u8> {
    let n = a.version.unwrap_or_default();
    if dest.exists() {
        return Err(format!(
            "--to {}: already exists; name a new file",
            a.to.display()
        ));
    }
    let (Some(dir), Some(name)) = (dest.parent(), dest.file_name()) else {
        return Err(format!("--to {}: not a file path", a.to.display()));
    };
    let client = client(ctx)?;
    let (id, _) = file_at(&client, ctx, as_of).await?;
    let versions = client.file_versions(&id).await.map_err(|e| e.to_string())?;
    let Some(v) = versions.versions.iter().find(|v| v.version_number == n) else {
        let have: Vec<String> = versions
            .versions
            .iter()
            .map(|v| v.version_number.to_string())
            .collect();
        return Err(format!(
            "--version {n}: {} has versions {}",
            ctx.sub,
            have.join(", ")
        ));
    };
    let plan = Plan {
        files: vec![FilePlan {
            rel: name.to_string_lossy().into_owned(),
            id: id.clone(),
            version: n,
            sha256: v.checksum_sha256.clone().unwrap_or_default(),
            size: v.size,
            mtime: v
                .created_at
                .as_deref()
                .and_then(restore::timeline::parse_time),
            source: (id, n),
            untrash: Vec::new(),
        }],
        ..Plan::default()
    };
    if a.dry_run {
        print_plan(&plan, as_of);
        return Ok(0);
    }
    let s = run_with_bar(&client, &plan, dir)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(m) = s.missing.first() {
        return Err(format!("{}: {}", m.rel, m.why));
    }
    println!(
        "restored version {n} of {} ({} bytes) to {}",
        ctx.sub,
        v.size,
        a.to.display()
    );
    Ok(0)
}

async fn run_with_bar(
    client: &Client,
    plan: &Plan,
    dir: &Path,
) -> Result<restore::Summary, RestoreError> {
    let progress = Progress::default();
    if !std::io::stderr().is_terminal() {
        return restore::execute(client, plan, dir, &progress).await;
    }
    let bar = indicatif::ProgressBar::new(plan.bytes());
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let total = plan.files.len();
    let work = restore::execute(client, plan, dir, &progress);
    tokio::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let out = loop {
        tokio::select! {
            r = &mut work => break r,
            _ = tick.tick() => {
                bar.set_position(progress.bytes_done.load(Ordering::Relaxed));
                bar.set_message(budget_message(client, &progress, total));
            }
        }
    };
    bar.finish_and_clear();
    out
}

/// "N/M files", plus how long the rate budget alone makes the rest take when the pacer
/// knows the budget and it is shorter than what the remaining downloads cost.
fn budget_message(client: &Client, progress: &Progress, total: usize) -> String {
    let done = progress.files_done.load(Ordering::Relaxed);
    let mut msg = format!("{done}/{total} files");
    let need = (total as u64).saturating_sub(done) * restore::DOWNLOAD_UNITS;
    if let (Some(limit), remaining) = client.rate_budget()
        && limit > 0
        && need > remaining
    {
        // The budget refills per 60 s window (rate-limiting page).
        let windows = (need - remaining).div_ceil(limit);
        msg.push_str(&format!(", rate budget: ≥{} s more", windows * 60));
    }
    msg
}

fn print_plan(plan: &Plan, as_of: Option<OffsetDateTime>) {
    for (rel, _) in plan.folders.iter().filter(|(r, _)| !r.is_empty()) {
        println!("folder  {rel}/");
    }
    for f in &plan.files {
        println!(
            "file    {}  ({} bytes, version {})",
            f.rel, f.size, f.version
        );
    }
    for m in &plan.missing {
        println!("cannot  {}: {}", m.rel, m.why);
    }
    let trash = if plan.untrash.is_empty() {
        String::new()
    } else {
        format!(
            ", {} item(s) taken out of the trash and put back × {}",
            plan.untrash.len(),
            restore::trash::UNTRASH_UNITS + restore::trash::RETRASH_UNITS
        )
    };
    println!(
        "would restore {} files ({} bytes) and {} folders as of {}; cost {} units ({} downloads × {}{trash}), the change log took {} units",
        plan.files.len(),
        plan.bytes(),
        plan.folders.iter().filter(|(r, _)| !r.is_empty()).count(),
        restore::fmt_moment(as_of),
        plan.download_units() + plan.trash_units(),
        plan.files.len(),
        restore::DOWNLOAD_UNITS,
        plan.log_pages * restore::LOG_PAGE_UNITS
    );
}

fn print_summary(s: &restore::Summary, to: &Path, as_of: Option<OffsetDateTime>, log_pages: u64) {
    println!(
        "restored {} files ({} bytes) and {} folders into {} as of {}; {} already in place; {} units ({} downloads, {} change-log pages)",
        s.files,
        s.bytes,
        s.folders,
        to.display(),
        restore::fmt_moment(as_of),
        s.skipped,
        s.downloads * restore::DOWNLOAD_UNITS + log_pages * restore::LOG_PAGE_UNITS,
        s.downloads,
        log_pages
    );
    if s.untrashed > 0 {
        println!(
            "took {} item(s) out of ScaiDrive's trash for the download and put them back ({} units)",
            s.untrashed,
            s.untrashed * (restore::trash::UNTRASH_UNITS + restore::trash::RETRASH_UNITS)
        );
    }
    for (id, why) in &s.not_put_back {
        println!(
            "could not put {id} back in the trash ({why}); running this restore again puts it back"
        );
    }
    if !s.missing.is_empty() {
        println!("not restorable: {}", s.missing.len());
        for m in &s.missing {
            println!("  {}: {}", m.rel, m.why);
        }
    }
}
