//! Shared server state: the metadata database, the blob store, run-time settings (faults,
//! limits, clock offset), the rate limiter and request statistics.
//!
//! The database is one SQLite connection behind a mutex; every access runs on the blocking
//! pool through [`Db::call`], so a request's reads and writes form one serialized unit and
//! races between concurrent requests (two uploads of one name) resolve deterministically.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;

use super::error::{ApiError, ApiResult, ErrorShape};

/// Fault injection knobs; all default to "no fault".
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Probability that a request fails with 503 before it is applied.
    pub fail_rate: f64,
    /// Probability that a request is applied and then answered with 500 (lost response).
    pub fail_after_rate: f64,
    /// Answer the next N requests with 500 before applying them.
    pub fail_next: u64,
    /// Added latency per request, in milliseconds.
    pub latency_ms: u64,
    /// Answer the next N authenticated requests with 429.
    pub force_429: u64,
    /// `Retry-After` seconds sent with forced 429s.
    pub retry_after_secs: u64,
    /// The budget forced 429s name in `error.details.dimension`: `token` (also when
    /// empty), `user` or `tenant`.
    pub force_429_dimension: String,
    /// Probability that the connection is dropped mid-request (before applying it).
    pub drop_rate: f64,
    /// Drop the connection of the next N requests mid-request.
    pub drop_next: u64,
    /// How many request body bytes are read before a drop (0 = drop at once).
    pub drop_after_bytes: u64,
    /// Read each request whole, then wait this long (ms) before applying it, on a task of
    /// its own: the change lands even if the client gave up or died meanwhile, as on a
    /// server that finishes a request whose connection closed.
    pub apply_delay_ms: u64,
    /// Only requests whose path starts with this prefix get faults ("" = all API requests).
    pub path_prefix: String,
}

/// Settings that tests and benchmarks may change while the server runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Settings {
    /// Per-token budget in cost units per 60 s window; 0 disables rate limiting (all
    /// three budgets).
    pub rate_limit: u64,
    /// Per-user budget across all the user's tokens, per 60 s window (documented default
    /// 5,000); 0 = none.
    #[serde(default = "default_user_rate_limit")]
    pub user_rate_limit: u64,
    /// Per-tenant budget across all its users, per 60 s window (documented default
    /// 50,000); 0 = none.
    #[serde(default = "default_tenant_rate_limit")]
    pub tenant_rate_limit: u64,
    /// Per-file size cap in bytes: a file larger than this is refused with 413 however it
    /// is sent (multipart, or at upload-session create from its `file_size`).
    pub max_file_size: u64,
    /// Per-request cap in bytes on a multipart upload's body (413 above it), as a tenant
    /// setting or a reverse proxy in front of the service imposes one. Upload sessions are
    /// not bound by it: that is what the seed's "413 … Use Resumable Uploads for large
    /// files" sends a client to.
    #[serde(default = "default_max_request_size")]
    pub max_request_size: u64,
    /// Upload session inactivity expiry, seconds.
    pub session_ttl_secs: u64,
    /// Lifetime of access tokens issued by the token endpoint, seconds.
    pub access_token_ttl_secs: u64,
    pub error_shape: ErrorShape,
    pub faults: Faults,
    /// Seconds added to the real clock (moves expiry of links, sessions and tokens).
    pub clock_offset_secs: i64,
}

pub fn default_user_rate_limit() -> u64 {
    5_000
}

pub fn default_tenant_rate_limit() -> u64 {
    50_000
}

fn default_max_request_size() -> u64 {
    super::DEFAULT_MAX_REQUEST_SIZE
}

#[derive(Clone)]
pub struct Db(Arc<Mutex<Connection>>);

impl Db {
    pub fn open(path: &Path) -> anyhow::Result<Db> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let migrations = rusqlite_migration::Migrations::new(vec![rusqlite_migration::M::up(
            include_str!("schema.sql"),
        )]);
        migrations.to_latest(&mut conn)?;
        Ok(Db(Arc::new(Mutex::new(conn))))
    }

    /// Runs `f` with exclusive access to the connection on the blocking pool.
    pub async fn call<T, F>(&self, f: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> ApiResult<T> + Send + 'static,
    {
        let db = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = db.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(|e| ApiError::internal(format!("database task failed: {e}")))?
    }

    /// Runs `f` inside one transaction, committed only if `f` succeeds.
    pub async fn tx<T, F>(&self, f: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> ApiResult<T> + Send + 'static,
    {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
    }
}

/// Content-addressed blob files: `blobs/<2 hex>/<sha256>`, written through `tmp/`.
#[derive(Clone)]
pub struct Blobs {
    root: PathBuf,
}

impl Blobs {
    pub fn new(data_dir: &Path) -> std::io::Result<Blobs> {
        std::fs::create_dir_all(data_dir.join("blobs"))?;
        std::fs::create_dir_all(data_dir.join("tmp"))?;
        std::fs::create_dir_all(data_dir.join("sessions"))?;
        Ok(Blobs {
            root: data_dir.to_path_buf(),
        })
    }

    pub fn path(&self, sha256: &str) -> PathBuf {
        self.root.join("blobs").join(&sha256[..2]).join(sha256)
    }

    pub fn tmp_path(&self) -> PathBuf {
        self.root
            .join("tmp")
            .join(crate::devserver::util::new_id("tmp"))
    }

    /// Directory holding the received chunks of one upload session.
    pub fn session_dir(&self, session_id: &str) -> PathBuf {
        self.root.join("sessions").join(session_id)
    }

    pub async fn writer(&self) -> std::io::Result<BlobWriter> {
        let tmp = self.tmp_path();
        let file = SparseWriter::create(&tmp).await?;
        Ok(BlobWriter {
            blobs: self.clone(),
            tmp,
            file,
            hasher: Sha256::new(),
            size: 0,
        })
    }
}

/// Streams bytes into a temporary file while hashing; `finish` moves it to its address.
pub struct BlobWriter {
    blobs: Blobs,
    tmp: PathBuf,
    file: SparseWriter,
    hasher: Sha256,
    size: u64,
}

impl BlobWriter {
    pub async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.hasher.update(data);
        self.size += data.len() as u64;
        self.file.write(data).await
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Lowercase hex SHA-256 of what has been written so far.
    pub fn sha256(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }

    /// Flushes, hashes and stores the blob; returns (sha256 hex, size).
    pub async fn finish(mut self) -> std::io::Result<(String, u64)> {
        self.file.finish().await?.sync_all().await?;
        let sha = hex::encode(self.hasher.finalize_reset());
        let dest = self.blobs.path(&sha);
        if tokio::fs::try_exists(&dest).await? {
            tokio::fs::remove_file(&self.tmp).await?;
        } else {
            tokio::fs::create_dir_all(dest.parent().expect("blob path has a parent")).await?;
            tokio::fs::rename(&self.tmp, &dest).await?;
        }
        Ok((sha, self.size))
    }

    pub async fn abort(self) {
        let _ = tokio::fs::remove_file(&self.tmp).await;
    }
}

/// Writes a file sequentially, leaving holes where whole blocks are zero (like
/// `cp --sparse=auto`), so stored content costs disk only for the bytes that carry data. A
/// multi-gigabyte sparse upload then needs no more free space than its non-zero blocks,
/// which matters on small CI disks; readers see the same bytes either way.
pub struct SparseWriter {
    file: tokio::fs::File,
    pending: Vec<u8>,
    /// Logical length written so far (including holes and pending bytes).
    len: u64,
}

impl SparseWriter {
    const BLOCK: usize = 4096;
    const BUF: usize = 1 << 20;

    pub async fn create(path: &Path) -> std::io::Result<SparseWriter> {
        Ok(SparseWriter {
            file: tokio::fs::File::create(path).await?,
            pending: Vec::with_capacity(Self::BUF),
            len: 0,
        })
    }

    pub async fn write(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        self.len += data.len() as u64;
        while !data.is_empty() {
            let take = (Self::BUF - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() == Self::BUF {
                self.drain().await?;
            }
        }
        Ok(())
    }

    /// Writes the pending buffer: runs of non-zero blocks are written, runs of zero blocks
    /// are skipped with a seek.
    async fn drain(&mut self) -> std::io::Result<()> {
        use tokio::io::AsyncSeekExt;
        let buf = std::mem::take(&mut self.pending);
        let mut start = 0;
        while start < buf.len() {
            let zero = |i: usize| {
                buf[i..(i + Self::BLOCK).min(buf.len())]
                    .iter()
                    .all(|b| *b == 0)
            };
            let kind = zero(start);
            let mut end = start;
            while end < buf.len() && zero(end) == kind {
                end = (end + Self::BLOCK).min(buf.len());
            }
            if kind {
                self.file
                    .seek(std::io::SeekFrom::Current((end - start) as i64))
                    .await?;
            } else {
                self.file.write_all(&buf[start..end]).await?;
            }
            start = end;
        }
        self.pending = buf;
        self.pending.clear();
        Ok(())
    }

    /// Writes what is pending and fixes the length (a trailing hole is not written by the
    /// seeks alone); returns the file for syncing.
    pub async fn finish(mut self) -> std::io::Result<tokio::fs::File> {
        self.drain().await?;
        self.file.flush().await?;
        self.file.set_len(self.len).await?;
        Ok(self.file)
    }
}

/// Writes `data` into `file` at `offset` so that afterwards the range holds exactly these
/// bytes: runs of non-zero 4 KiB blocks are written, runs of zero blocks become holes
/// (punched, so they read as zero whatever an earlier failed write left there, and cost no
/// disk), as [`SparseWriter`] does for a file written front to back.
pub fn write_region(file: &std::fs::File, offset: u64, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    const BLOCK: usize = SparseWriter::BLOCK;
    let zero = |i: usize| data[i..(i + BLOCK).min(data.len())].iter().all(|b| *b == 0);
    let mut start = 0;
    while start < data.len() {
        let kind = zero(start);
        let mut end = start;
        while end < data.len() && zero(end) == kind {
            end = (end + BLOCK).min(data.len());
        }
        let at = offset + start as u64;
        if kind {
            zero_range(file, at, &data[start..end])?;
        } else {
            file.write_all_at(&data[start..end], at)?;
        }
        start = end;
    }
    Ok(())
}

/// Makes `zeros.len()` bytes at `at` read as zero: a punched hole where the file system
/// supports it, written zeros otherwise.
fn zero_range(file: &std::fs::File, at: u64, zeros: &[u8]) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::FallocateFlags;
        let punch = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
        if rustix::fs::fallocate(file, punch, at, zeros.len() as u64).is_ok() {
            return Ok(());
        }
    }
    std::os::unix::fs::FileExt::write_all_at(file, zeros, at)
}

/// Locks of the upload sessions being written. Chunk PUTs write into the session's file
/// in place: one PUT of a chunk at a time (per-chunk lock), and no PUT while `complete`
/// hashes and stores the file (PUTs hold the file lock shared, `complete` exclusively).
#[derive(Default)]
pub struct SessionLocks(Mutex<HashMap<String, Arc<SessionLock>>>);

#[derive(Default)]
pub struct SessionLock {
    pub file: tokio::sync::RwLock<()>,
    chunks: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>,
}

impl SessionLocks {
    pub fn of(&self, session_id: &str) -> Arc<SessionLock> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(session_id.to_string())
            .or_default()
            .clone()
    }

    /// Drops a finished session's locks (requests still holding them finish on their own).
    pub fn forget(&self, session_id: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(session_id);
    }
}

impl SessionLock {
    pub fn chunk(&self, idx: u64) -> Arc<tokio::sync::Mutex<()>> {
        self.chunks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(idx)
            .or_default()
            .clone()
    }
}

/// Sliding-window cost accounting per access token.
#[derive(Default)]
pub struct RateLimiter {
    windows: HashMap<String, VecDeque<(Instant, u64)>>,
}

pub struct RateDecision {
    pub limit: u64,
    pub remaining: u64,
    /// Unix seconds at which the oldest counted request leaves the window.
    pub reset_unix: i64,
    /// Some(seconds to wait) when the request is refused.
    pub retry_after: Option<u64>,
}

pub const RATE_WINDOW: Duration = Duration::from_secs(60);

impl RateLimiter {
    /// Charges `cost` to the window of `key` if it fits under `limit`.
    pub fn check(
        &mut self,
        key: &str,
        cost: u64,
        limit: u64,
        now: Instant,
        now_unix: i64,
    ) -> RateDecision {
        let d = self.peek(key, cost, limit, now, now_unix);
        if d.retry_after.is_none() {
            self.charge(key, cost, now);
        }
        d
    }

    /// Charges `cost` to the window of `key` (after [`RateLimiter::peek`] allowed it).
    pub fn charge(&mut self, key: &str, cost: u64, now: Instant) {
        self.windows
            .entry(key.to_string())
            .or_default()
            .push_back((now, cost));
    }

    /// What charging `cost` to the window of `key` would decide, without charging it:
    /// a request is charged to its token's, user's and tenant's windows only if all
    /// three allow it.
    pub fn peek(
        &mut self,
        key: &str,
        cost: u64,
        limit: u64,
        now: Instant,
        now_unix: i64,
    ) -> RateDecision {
        let q = self.windows.entry(key.to_string()).or_default();
        while let Some((t, _)) = q.front() {
            if now.duration_since(*t) >= RATE_WINDOW {
                q.pop_front();
            } else {
                break;
            }
        }
        let used: u64 = q.iter().map(|(_, c)| c).sum();
        let reset_in = |t: Instant| RATE_WINDOW.saturating_sub(now.duration_since(t));
        if used + cost > limit {
            // Wait until enough of the oldest entries leave the window.
            let mut freed = 0;
            let mut wait = RATE_WINDOW;
            for (t, c) in q.iter() {
                freed += c;
                if used - freed + cost <= limit {
                    wait = reset_in(*t);
                    break;
                }
            }
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let reset = q.front().map(|(t, _)| reset_in(*t)).unwrap_or_default();
            return RateDecision {
                limit,
                remaining: limit.saturating_sub(used),
                reset_unix: now_unix + reset.as_secs() as i64 + 1,
                retry_after: Some(secs.max(1)),
            };
        }
        let reset = q.front().map(|(t, _)| reset_in(*t)).unwrap_or(RATE_WINDOW);
        RateDecision {
            limit,
            remaining: limit - used - cost,
            reset_unix: now_unix + reset.as_secs() as i64 + 1,
            retry_after: None,
        }
    }
}

/// Request counters, readable through the admin route; benchmarks and tests use them to
/// count calls per route.
#[derive(Default)]
pub struct Stats {
    pub total: AtomicU64,
    pub rate_limited: AtomicU64,
    pub units: AtomicU64,
    pub by_route: Mutex<BTreeMap<String, u64>>,
    pub by_status: Mutex<BTreeMap<u16, u64>>,
}

impl Stats {
    pub fn record(&self, route: &str, status: u16) {
        self.total.fetch_add(1, Ordering::Relaxed);
        if status == 429 {
            self.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
        *self
            .by_route
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(route.to_string())
            .or_default() += 1;
        *self
            .by_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(status)
            .or_default() += 1;
    }

    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "requests_total": self.total.load(Ordering::Relaxed),
            "rate_limited_total": self.rate_limited.load(Ordering::Relaxed),
            "units_total": self.units.load(Ordering::Relaxed),
            "by_route": *self.by_route.lock().unwrap_or_else(|e| e.into_inner()),
            "by_status": *self.by_status.lock().unwrap_or_else(|e| e.into_inner()),
        })
    }

    pub fn reset(&self) {
        self.total.store(0, Ordering::Relaxed);
        self.rate_limited.store(0, Ordering::Relaxed);
        self.units.store(0, Ordering::Relaxed);
        self.by_route
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.by_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

pub struct Inner {
    pub db: Db,
    pub blobs: Blobs,
    pub settings: RwLock<Settings>,
    pub limiter: Mutex<RateLimiter>,
    pub stats: Stats,
    pub sessions: SessionLocks,
    /// Base of public link URLs, e.g. `http://127.0.0.1:8080`.
    pub public_url: String,
}

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn settings(&self) -> Settings {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn update_settings(&self, f: impl FnOnce(&mut Settings)) {
        f(&mut self.settings.write().unwrap_or_else(|e| e.into_inner()));
    }

    /// The server's clock: real time plus the test offset.
    pub fn now(&self) -> OffsetDateTime {
        let offset = self
            .settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clock_offset_secs;
        OffsetDateTime::now_utc() + time::Duration::seconds(offset)
    }

    pub fn now_unix(&self) -> i64 {
        self.now().unix_timestamp()
    }
}
