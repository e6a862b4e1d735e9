//! W4's extra rows (issue 18, item 5): the API units `verify` and the rebuild after a lost
//! state database spend on W4's tree, read from the change log and by listing — measured
//! by the devserver's unit counter, not computed. Order matters: the log is read first;
//! then the server's log is truncated, so both must list.

use std::path::Path;

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use super::{Ctx, POLL, STALL};
use crate::harness::{Daemon, MirrorOpts, Server};
use crate::{Report, Row};

async fn verify_units(d: &Daemon, server: &Server) -> Result<(u64, Value)> {
    server.reset_stats().await?;
    let body = json!({ "checksums": false, "repair": false });
    let v = scaidrive::control::client::call(&d.socket, "POST", "/v1/verify", Some(&body))
        .await
        .context("verify")?;
    let report = &v["reports"][0];
    if report["error"].is_string()
        || !report["missing_remotely"]
            .as_array()
            .is_some_and(Vec::is_empty)
    {
        bail!("verify did not find the tree in sync: {report}");
    }
    let stats = server.stats().await?;
    Ok((stats.units(), stats.by_route()))
}

async fn rebuild_units(
    ctx: &Ctx,
    dir: &Path,
    server: &Server,
    root: &Path,
) -> Result<(Daemon, u64, f64, Value)> {
    std::fs::remove_dir_all(dir.join("state")).context("removing the state database")?;
    server.reset_stats().await?;
    let mut d = Daemon::spawn(&ctx.daemon, dir, server, root, &MirrorOpts::default())?;
    let done = d.wait_in_sync(STALL, POLL).await?;
    let secs = done.duration_since(d.started).as_secs_f64();
    let stats = server.stats().await?;
    if stats.uploads() > 0 {
        bail!("the rebuild uploaded {} files", stats.uploads());
    }
    Ok((d, stats.units(), secs, stats.by_route()))
}

/// Runs the four measurements with `d` (in sync on W4's tree); returns the daemon left
/// running.
pub async fn rows(
    ctx: &Ctx,
    dir: &Path,
    server: &Server,
    root: &Path,
    d: Daemon,
    w4: &mut Report,
) -> Result<Daemon> {
    let (verify_log, verify_log_routes) = verify_units(&d, server).await?;
    d.stop().await?;
    let (d, rebuild_log, rebuild_log_secs, rebuild_log_routes) =
        rebuild_units(ctx, dir, server, root).await?;
    server
        .http
        .post(format!("{}/_devserver/changelog/truncate", server.url()))
        .json(&json!({}))
        .send()
        .await?
        .error_for_status()?;
    let (verify_list, verify_list_routes) = verify_units(&d, server).await?;
    d.stop().await?;
    let (d, rebuild_list, rebuild_list_secs, rebuild_list_routes) =
        rebuild_units(ctx, dir, server, root).await?;
    for (what, units) in [
        ("verify units, by listing", verify_list),
        ("verify units, from the log", verify_log),
        ("rebuild units, by listing", rebuild_list),
        ("rebuild units, from the log", rebuild_log),
    ] {
        w4.rows.push(Row::info(what, units as f64, ""));
    }
    w4.rows.push(Row::info(
        "rebuild time, by listing",
        rebuild_list_secs,
        "s",
    ));
    w4.rows.push(Row::info(
        "rebuild time, from the log",
        rebuild_log_secs,
        "s",
    ));
    w4.details["log_units"] = json!({
        "verify_log": verify_log_routes, "verify_list": verify_list_routes,
        "rebuild_log": rebuild_log_routes, "rebuild_list": rebuild_list_routes,
    });
    Ok(d)
}
