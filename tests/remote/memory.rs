//! Memory stays flat on the large-file path: a sparse file of several GiB goes through a
//! resumable session while a sampler thread reads this process's RSS from /proc. The
//! devserver runs as a separate process here, so the figure is the client's alone.
//! `SCAIDRIVE_MEMTEST_GIB` changes the size (default 2).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use scaidrive::remote::{Client, ClientConfig, Destination, TokenPair, UploadConfig};

/// VmRSS of this process in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Kills the devserver we started when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_sparse_file_upload_keeps_rss_flat() -> anyhow::Result<()> {
    let gib: u64 = std::env::var("SCAIDRIVE_MEMTEST_GIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let size = gib << 30;
    let dir = tempfile::tempdir()?;
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_scaidrive-devserver"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--token",
                "test-token",
                "--rate-limit",
                "0",
                "--data",
            ])
            .arg(dir.path().join("data"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let mut lines = BufReader::new(child.0.stdout.take().expect("piped stdout")).lines();
    let url = lines.next().expect("url line")?;
    let _token = lines.next().expect("token line")?;
    let share = lines
        .next()
        .expect("share line")?
        .trim_start_matches("share_id: ")
        .to_string();

    let path = dir.path().join("sparse.bin");
    std::fs::File::create(&path)?.set_len(size)?;

    let upload = UploadConfig::default();
    let mut cfg = ClientConfig::new(url, TokenPair::bearer("test-token"));
    cfg.upload = upload;
    let c = Client::new(cfg)?;
    // Warm up: connection pool, TLS-free HTTP stack, runtime threads.
    c.me().await?;
    let small = dir.path().join("small.bin");
    std::fs::write(&small, vec![1u8; 4096])?;
    c.upload_file(&Destination::new(&share, None, "warmup.bin"), &small, None)
        .await?;

    // The chunk size this file gets (chosen per file since chunk sizes adapt; the
    // warm-up is too small to be measured, so the largest).
    let chunk = c.session_chunk_size(size);
    // The bound this test always had: four chunks of the former fixed 8 MiB. Chunks are
    // streamed from disk, so memory must not grow with their size.
    let bound: u64 = 4 * (8 << 20);
    let baseline = rss();
    let peak = Arc::new(AtomicU64::new(baseline));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = std::thread::spawn({
        let (peak, stop) = (peak.clone(), stop.clone());
        move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    });
    let started = Instant::now();
    let result = c
        .upload_file(&Destination::new(&share, None, "sparse.bin"), &path, None)
        .await;
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    sampler.join().expect("sampler thread");
    let f = result?;
    assert_eq!(f.size, size);
    let growth = peak.load(Ordering::Relaxed).saturating_sub(baseline);
    eprintln!(
        "memory test: {gib} GiB sparse file via session (chunk {} MiB x 4 in flight) in {:.1} s; \
         RSS baseline {:.1} MiB, peak growth {:.1} MiB",
        chunk >> 20,
        took.as_secs_f64(),
        baseline as f64 / 1048576.0,
        growth as f64 / 1048576.0
    );
    assert!(
        growth < bound,
        "RSS grew by {growth} bytes (> {bound}; chunks of {chunk} bytes)"
    );
    Ok(())
}
