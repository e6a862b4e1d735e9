//! `scaidrivectl` operator commands: `limit` (the bandwidth limit at run time), `events`
//! (the daemon's event stream) and the bandwidth line of `status`. Kept apart from
//! `ctl.rs` so that file stays readable.

use std::path::Path;

use crate::control::client::{self, CtlError};
use crate::control::protocol::{BandwidthView, LimitRequest, LimitResponse, MirrorQuery, route};
use crate::events::{Event, EventKind};
use crate::relpath::Escaped;
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

/// `scaidrivectl events [MIRROR] [--json]`: one line per event until the daemon stops
/// (or the output is closed). `--json` prints the daemon's lines as they come.
pub async fn events(socket: &Path, mirror: Option<&str>, json: bool) -> Result<u8, CtlError> {
    use std::io::Write;
    let path = format!(
        "{}{}",
        route::EVENTS,
        MirrorQuery::new(mirror.map(str::to_string)).to_query()
    );
    let zone = crate::remote::bandwidth::system_zone();
    let mut out = std::io::stdout();
    client::stream_lines(socket, &path, |line| {
        let text = if json {
            line.to_string()
        } else {
            match serde_json::from_str::<Event>(line) {
                Ok(ev) => human_event(&ev, &zone),
                Err(_) => line.to_string(),
            }
        };
        // A closed pipe (`| head`) ends the command quietly.
        writeln!(out, "{text}").and_then(|()| out.flush()).is_ok()
    })
    .await?;
    Ok(0)
}

/// `12:00:01 docs       uploaded     a/b.txt (12 B)`: local time, mirror, what, details.
fn human_event(ev: &Event, zone: &jiff::tz::TimeZone) -> String {
    let clock = match jiff::Timestamp::from_millisecond(ev.time_ms) {
        Ok(t) => zone.to_datetime(t).strftime("%H:%M:%S").to_string(),
        Err(_) => "--:--:--".to_string(),
    };
    let detail = match &ev.kind {
        EventKind::Uploaded { path, bytes } | EventKind::NewVersion { path, bytes } => {
            format!("{} ({bytes} B)", Escaped(path))
        }
        EventKind::FolderCreated { path }
        | EventKind::Deleted { path }
        | EventKind::DriftRepaired { path } => Escaped(path).to_string(),
        EventKind::Moved { from, to } => format!("{} -> {}", Escaped(from), Escaped(to)),
        EventKind::Failed {
            path,
            reason,
            permanent,
        } => format!(
            "{}: {}{}",
            Escaped(path),
            Escaped(reason),
            if *permanent { " (permanent)" } else { "" }
        ),
        EventKind::Paused { reason } => Escaped(reason).to_string(),
        EventKind::LinkCreated {
            path,
            link_id,
            renewed,
        } => format!(
            "{} {link_id}{}",
            if path.is_empty() {
                "/".to_string()
            } else {
                Escaped(path).to_string()
            },
            if *renewed { " (renewed)" } else { "" }
        ),
        EventKind::Dropped { count } => format!("{count} events dropped (reading too slowly)"),
        EventKind::Resumed | EventKind::InSync => String::new(),
    };
    format!(
        "{clock} {:<12} {:<14} {detail}",
        Escaped(&ev.mirror).to_string(),
        ev.kind.name()
    )
    .trim_end()
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::tz::TimeZone;

    #[test]
    fn human_event_lines() {
        let ev = |kind| Event {
            // 2026-12-07 12:34:56 UTC
            time_ms: 1_796_646_896_000,
            mirror: "docs".into(),
            kind,
        };
        let cases = [
            (
                EventKind::Uploaded {
                    path: "a/b.txt".into(),
                    bytes: 12,
                },
                "12:34:56 docs         uploaded       a/b.txt (12 B)",
            ),
            (
                EventKind::Moved {
                    from: "x\ny".into(),
                    to: "z".into(),
                },
                "12:34:56 docs         moved          x\\ny -> z",
            ),
            (EventKind::InSync, "12:34:56 docs         in_sync"),
            (
                EventKind::Failed {
                    path: "big.iso".into(),
                    reason: "HTTP 413".into(),
                    permanent: true,
                },
                "12:34:56 docs         failed         big.iso: HTTP 413 (permanent)",
            ),
            (
                EventKind::LinkCreated {
                    path: String::new(),
                    link_id: "lnk_1".into(),
                    renewed: true,
                },
                "12:34:56 docs         link_created   / lnk_1 (renewed)",
            ),
        ];
        for (kind, want) in cases {
            assert_eq!(human_event(&ev(kind), &TimeZone::UTC), want);
        }
        // The clock is the zone's wall clock: UTC-05:00 is the same day's 07:34:56.
        let est = TimeZone::fixed(jiff::tz::Offset::constant(-5));
        assert_eq!(
            human_event(&ev(EventKind::InSync), &est),
            "07:34:56 docs         in_sync"
        );
        let b = BandwidthView {
            schedule: "Mon-Fri 08:00-18:00 1MiB/s, off".into(),
            source: "override".into(),
            limit_bps: Some(1 << 20),
            current_bps: 512,
        };
        assert_eq!(
            bandwidth_line(&b),
            "bandwidth limit 1MiB/s (set with scaidrivectl limit until the next reload); schedule \"Mon-Fri 08:00-18:00 1MiB/s, off\"; uploading at 512B/s"
        );
    }
}
