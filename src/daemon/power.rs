//! Pause on battery (`[daemon] pause_on_battery`): whether the machine runs on battery,
//! polled every [`POLL`], published on a watch channel the mirrors follow (they pause with
//! the reason "on battery power" and resume on AC power; see `mirror::pause`).
//!
//! Linux: the power supplies under `/sys/class/power_supply` (the directory is
//! `daemon.power_supply_dir`, so tests and containers can point it elsewhere), judged like
//! systemd's `on_ac_power`: on battery when some external supply (`Mains`, `USB`, ...)
//! exists and none is `online`, or, with no external supply listed, when a `Battery`
//! reports `Discharging`. A machine with no supplies at all (a desktop, a server) is on AC.
//! macOS: `pmset -g batt` names the power source ("'Battery Power'" or "'AC Power'").
//! Anything unreadable counts as AC: a probe that cannot tell never stops the uploads.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often the power source is looked at.
pub const POLL: Duration = Duration::from_secs(2);

/// Whether the supplies under `dir` say the machine runs on battery (`None`: cannot tell).
pub fn on_battery_sysfs(dir: &Path) -> Option<bool> {
    let read = |p: PathBuf| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    let mut external = false;
    let mut external_online = false;
    let mut discharging = false;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        let Some(kind) = read(p.join("type")) else {
            continue;
        };
        if kind == "Battery" {
            // A peripheral's battery (a mouse) has scope Device: not the machine's.
            if read(p.join("scope")).as_deref() == Some("Device") {
                continue;
            }
            discharging |= read(p.join("status")).as_deref() == Some("Discharging");
        } else {
            external = true;
            external_online |= read(p.join("online")).as_deref() == Some("1");
        }
    }
    Some(if external {
        !external_online
    } else {
        discharging
    })
}

#[cfg(target_os = "macos")]
fn on_battery_system(_dir: &Path) -> Option<bool> {
    let out = std::process::Command::new("pmset")
        .args(["-g", "batt"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("'Battery Power'") {
        Some(true)
    } else if text.contains("'AC Power'") {
        Some(false)
    } else {
        None
    }
}

#[cfg(not(target_os = "macos"))]
fn on_battery_system(dir: &Path) -> Option<bool> {
    on_battery_sysfs(dir)
}

/// The probe task: publishes `enabled && on battery` on `tx` when it changes, until `stop`.
/// `enabled` follows `pause_on_battery` across reloads.
pub async fn run(
    dir: PathBuf,
    enabled: Arc<AtomicBool>,
    tx: watch::Sender<bool>,
    stop: CancellationToken,
) {
    loop {
        let want = enabled.load(Ordering::Relaxed) && {
            let d = dir.clone();
            tokio::task::spawn_blocking(move || on_battery_system(&d))
                .await
                .ok()
                .flatten()
                .unwrap_or(false)
        };
        tx.send_if_modified(|v| {
            if *v == want {
                return false;
            }
            if want {
                tracing::info!("running on battery power: uploads pause (pause_on_battery)");
            } else {
                tracing::info!("on AC power (or pause_on_battery off): uploads resume");
            }
            *v = want;
            true
        });
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supply(dir: &Path, name: &str, files: &[(&str, &str)]) {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        for (f, v) in files {
            std::fs::write(d.join(f), format!("{v}\n")).unwrap();
        }
    }

    #[test]
    fn power_supply_table() {
        type Case = (
            &'static str,
            &'static [(&'static str, &'static [(&'static str, &'static str)])],
            Option<bool>,
        );
        let cases: &[Case] = &[
            ("no supplies: a desktop", &[], Some(false)),
            (
                "laptop on AC",
                &[
                    ("AC", &[("type", "Mains"), ("online", "1")]),
                    ("BAT0", &[("type", "Battery"), ("status", "Charging")]),
                ],
                Some(false),
            ),
            (
                "laptop unplugged",
                &[
                    ("AC", &[("type", "Mains"), ("online", "0")]),
                    ("BAT0", &[("type", "Battery"), ("status", "Discharging")]),
                ],
                Some(true),
            ),
            (
                "USB-C power",
                &[
                    ("AC", &[("type", "Mains"), ("online", "0")]),
                    ("ucsi", &[("type", "USB"), ("online", "1")]),
                ],
                Some(false),
            ),
            (
                "battery only, discharging",
                &[("BAT0", &[("type", "Battery"), ("status", "Discharging")])],
                Some(true),
            ),
            (
                "battery only, full",
                &[("BAT0", &[("type", "Battery"), ("status", "Full")])],
                Some(false),
            ),
            (
                "a mouse's battery",
                &[(
                    "hidpp",
                    &[
                        ("type", "Battery"),
                        ("scope", "Device"),
                        ("status", "Discharging"),
                    ],
                )],
                Some(false),
            ),
        ];
        for (what, supplies, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            for (name, files) in *supplies {
                supply(dir.path(), name, files);
            }
            assert_eq!(on_battery_sysfs(dir.path()), *want, "{what}");
        }
        assert_eq!(on_battery_sysfs(Path::new("/nonexistent/power")), None);
    }
}
