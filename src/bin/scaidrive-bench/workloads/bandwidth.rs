//! W10: the bandwidth limit (issue 21). 64 MiB uploaded by the library's client (a
//! resumable session, four chunk PUTs in flight sharing the limiter) through a counting
//! TCP proxy in front of the devserver, so the rate is measured on the wire, in 100 ms
//! slots: the achieved rate over the transfer against the limit (±5 %) and the fullest
//! one-second window (≤ 1.25 × the limit). A second run uses a timetable whose boundary
//! falls in the middle of the transfer, with the wall clock injected (it starts at Monday
//! 17:59:44 local time, so the 18:00 switch comes 16 s in) and checks each phase alike.
//! The daemon binary is not used: the clock can only be injected in-process.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Ctx, MIB, guarded};
use crate::harness::{Scratch, Server, ServerSetup, TOKEN};
use crate::{Report, Row};
use scaidrive::remote::bandwidth::{Bandwidth, LocalTime, Schedule, WallClock};
use scaidrive::remote::{Client, ClientConfig, Destination, TokenPair, UploadConfig};

const SLOT: Duration = Duration::from_millis(100);

/// Local time that starts `lead` seconds before Monday 18:00 and runs with the real
/// clock from `start`.
struct LeadClock {
    start: Instant,
    lead: u64,
}

impl WallClock for LeadClock {
    fn now(&self) -> LocalTime {
        let secs = 18 * 3600 - self.lead + self.start.elapsed().as_secs();
        LocalTime {
            weekday: 0,
            minute: (secs / 60) as u16,
        }
    }
}

/// Bytes client → server per 100 ms slot since `t0`.
type Slots = Arc<Mutex<Vec<u64>>>;

/// A loopback proxy to `upstream` counting what the client sends.
async fn counting_proxy(upstream: std::net::SocketAddr, slots: Slots, t0: Instant) -> Result<u16> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = l.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut down, _)) = l.accept().await {
            let slots = slots.clone();
            tokio::spawn(async move {
                let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut dr, mut dw) = down.split();
                let (mut ur, mut uw) = up.split();
                let to_server = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match dr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let i = (t0.elapsed().as_nanos() / SLOT.as_nanos()) as usize;
                        {
                            let mut s = slots.lock().unwrap();
                            if s.len() <= i {
                                s.resize(i + 1, 0);
                            }
                            s[i] += n as u64;
                        }
                        if uw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = uw.shutdown().await;
                };
                let to_client = async {
                    let _ = tokio::io::copy(&mut ur, &mut dw).await;
                    let _ = dw.shutdown().await;
                };
                tokio::join!(to_server, to_client);
            });
        }
    });
    Ok(port)
}

/// What one transfer looked like on the wire between slots `from` and `to` (exclusive).
struct Phase {
    bytes: u64,
    secs: f64,
    max_window: u64,
}

fn phase(slots: &[u64], from: usize, to: usize) -> Phase {
    let s = &slots[from..to];
    let per_window = (Duration::from_secs(1).as_nanos() / SLOT.as_nanos()) as usize;
    let max_window = s
        .windows(per_window.min(s.len()))
        .map(|w| w.iter().sum())
        .max()
        .unwrap_or(0);
    Phase {
        bytes: s.iter().sum(),
        secs: (to - from) as f64 * SLOT.as_secs_f64(),
        max_window,
    }
}

/// Uploads `size` bytes under `schedule` with the clock starting `lead` seconds before
/// Monday 18:00; returns the slots and the slot index of the first and last byte.
async fn run_one(
    server: &Server,
    path: &std::path::Path,
    name: &str,
    schedule: &str,
    lead: u64,
) -> Result<(Vec<u64>, usize, usize, f64)> {
    let slots: Slots = Arc::new(Mutex::new(Vec::new()));
    let t0 = Instant::now();
    let upstream = reqwest::Url::parse(server.url())?
        .socket_addrs(|| None)?
        .into_iter()
        .next()
        .context("devserver address")?;
    let port = counting_proxy(upstream, slots.clone(), t0).await?;
    let start = Instant::now();
    let bw = Bandwidth::new(
        Schedule::parse(schedule).map_err(anyhow::Error::msg)?,
        Arc::new(LeadClock { start, lead }),
    );
    let mut cc = ClientConfig::new(format!("http://127.0.0.1:{port}"), TokenPair::bearer(TOKEN));
    cc.bandwidth = bw;
    cc.upload = UploadConfig {
        session_threshold: 16 << 20,
        chunk_size: 4 << 20,
        parallel_chunks: 4,
        ..UploadConfig::default()
    };
    let client = Client::new(cc)?;
    let dest = Destination::new(server.share_id(), None, name);
    // With the checksum: the server's copy is verified byte for byte.
    let sha = scaidrive::remote::sha256_file(path).await?;
    client.upload_file(&dest, path, Some(&sha)).await?;
    let slots = slots.lock().unwrap().clone();
    let first = slots.iter().position(|&b| b > 0).unwrap_or(0);
    let last = slots.iter().rposition(|&b| b > 0).unwrap_or(0) + 1;
    // The slot (from t0, fractional) in which the injected clock reached 18:00.
    let switch_slot = (start.duration_since(t0).as_secs_f64() + lead as f64) / SLOT.as_secs_f64();
    Ok((slots, first, last, switch_slot))
}

fn rate_rows(r: &mut Report, label: &str, p: &Phase, limit: f64) {
    let achieved = p.bytes as f64 / p.secs;
    r.rows.push(Row::target(
        &format!("{label}: achieved rate"),
        achieved / MIB,
        "MiB/s",
        format!("{:.2} ± 5 %", limit / MIB),
        (achieved / limit - 1.0).abs() <= 0.05,
    ));
    r.rows.push(Row::target(
        &format!("{label}: fullest 1 s window"),
        p.max_window as f64 / limit,
        "× limit",
        "≤ 1.25".into(),
        p.max_window as f64 <= 1.25 * limit,
    ));
}

pub async fn w10(ctx: &Ctx) -> Report {
    let size = ctx.sizes.w10_bytes;
    let report = Report::new(
        "W10",
        "bandwidth limit",
        format!(
            "{} MiB, 4 chunk streams, through a counting proxy",
            size >> 20
        ),
    );
    guarded(report, async |r| {
        let scratch = Scratch::new(&ctx.work, "w8", ctx.keep)?;
        let file = scratch.path.join("big.bin");
        let mut data = vec![0u8; size as usize];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for b in data.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        std::fs::write(&file, &data)?;
        drop(data);
        let server = Server::start(&scratch.path.join("server"), ServerSetup::default()).await?;

        // A fixed 2 MiB/s.
        let limit = 2.0 * MIB;
        let (slots, first, last, _) = run_one(&server, &file, "fixed.bin", "2MiB/s", 3600).await?;
        let p = phase(&slots, first, last);
        r.rows.push(Row::info("2MiB/s: transfer time", p.secs, "s"));
        rate_rows(r, "2MiB/s", &p, limit);
        r.details["fixed_slots"] = json!(slots);

        // A timetable switching from 2 MiB/s to 4 MiB/s at 18:00, half-way through the
        // bytes: 2 MiB/s for the first half's 8 s (16 MiB of 32) or 16 s (32 of 64).
        let lead = size / 2 / (2 << 20);
        let (slots, first, last, switch) = run_one(
            &server,
            &file,
            "switch.bin",
            "Mon-Fri 08:00-18:00 2MiB/s, 4MiB/s",
            lead,
        )
        .await?;
        // Whole slots on either side; the slot holding the boundary belongs to neither.
        let cut = switch.floor() as usize;
        let before = phase(&slots, first, cut.clamp(first, last));
        let after = phase(&slots, (cut + 1).clamp(first, last), last);
        r.rows.push(Row::info(
            "timetable: switch after",
            (cut - first) as f64 * SLOT.as_secs_f64(),
            "s",
        ));
        rate_rows(r, "timetable before 18:00 (2MiB/s)", &before, 2.0 * MIB);
        rate_rows(r, "timetable after 18:00 (4MiB/s)", &after, 4.0 * MIB);
        r.details["switch_slots"] = json!(slots);
        r.details["switch_slot"] = json!(switch);
        server.shutdown().await;
        Ok(())
    })
    .await
}
