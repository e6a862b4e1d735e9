//! `scaidrivectl` operator commands: `limit` (the bandwidth limit at run time) and the
//! bandwidth line of `status`. Kept apart from `ctl.rs` so that file stays readable.

use std::path::Path;

use crate::control::client::{self, CtlError};
use crate::control::protocol::{BandwidthView, LimitRequest, LimitResponse, route};
use crate::remote::bandwidth::format_rate;

/// `scaidrivectl limit [RATE|off|SCHEDULE] [--json]`: sets the limit (until the next
/// reload or restart) when given one, then shows the limit in force.
pub async fn limit(socket: &Path, value: Option<&str>, json: bool) -> Result<u8, CtlError> {
    let resp: LimitResponse = match value {
        Some(v) => {
            client::post(
                socket,
                route::LIMIT,
                &LimitRequest {
                    limit: v.to_string(),
                },
            )
            .await?
        }
        None => client::get(socket, route::LIMIT).await?,
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&resp).unwrap_or_default()
        );
    } else {
        println!("{}", bandwidth_line(&resp.bandwidth));
    }
    Ok(0)
}

/// One line: the limit in force, where it comes from, and the current rate.
pub fn bandwidth_line(b: &BandwidthView) -> String {
    let source = if b.source == "override" {
        " (set with scaidrivectl limit until the next reload)"
    } else {
        ""
    };
    let schedule = if b.schedule.contains(',') {
        format!("; schedule \"{}\"", b.schedule)
    } else {
        String::new()
    };
    format!(
        "bandwidth limit {}{source}{schedule}; uploading at {}",
        format_rate(b.limit_bps),
        format_rate_now(b.current_bps)
    )
}

fn format_rate_now(bps: u64) -> String {
    if bps < 1024 {
        format!("{bps}B/s")
    } else {
        format_rate(Some(bps))
    }
}
