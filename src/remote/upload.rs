//! Uploads and the conflict helpers built on them.
//!
//! Units, not bytes, decide how fast a mirror goes against the real service (an upload or
//! each chunk PUT costs 5, a session create or complete 2), so each file takes the
//! cheapest documented path that works:
//!
//! - New files below [`UploadConfig::session_threshold`] (default the uploads guide's
//!   100 MB): one multipart `POST /api/v1/files`, streamed from disk, with an explicit
//!   `name` field (clients encode part filenames differently; a plain field arrives
//!   unchanged). One request, 5 units, on the happy path.
//! - A multipart answered 413 is sent again at once as a session: the seed says "413
//!   PAYLOAD_TOO_LARGE — … Use Resumable Uploads for large files", and a server (or a
//!   proxy in front of it) may cap a request well below its per-file cap. The size is
//!   remembered, so files that large or larger go straight to sessions for this client's
//!   life. Only a 413 from a session is the file's failure.
//! - A multipart of a file larger than one default chunk that breaks off twice in transport
//!   goes on as a session of at least two chunks, which keeps what got through instead of
//!   sending the whole body a third time. A smaller file is simply sent again.
//! - Larger files and every content update (`replace_file_id`; the multipart endpoint has
//!   no overwrite, §9.3): a resumable session. The full-file SHA-256 (the caller's if it
//!   has one, else computed on the blocking pool) is sent for verification; chunks are PUT
//!   in parallel, each streamed from its offset in the file, so memory stays at a few read
//!   buffers however big the file. A session can be resumed from its `missing_chunks`; an
//!   expired one (410) is replaced by a new session; one that cannot be used any more is
//!   cancelled (`DELETE /api/v1/uploads/{id}`, best effort).
//! - Chunk size per file ([`choose_chunk_size`]): as large as the link allows, to cut
//!   chunk PUTs, from the server's default (4 MiB) up to [`UploadConfig::max_chunk_size`]
//!   (64 MiB), but no larger than one chunk can cross in [`UploadConfig::max_chunk_time`]
//!   at the throughput measured on recent transfers, and no larger than the file needs. The
//!   server's answer at create wins.
//! - Conflict helpers for exactly-once creates: [`Client::create_folder_or_adopt`] and
//!   [`Client::upload_or_adopt`] turn a 409 `NAME_CONFLICT` (after a lost response or a
//!   crash) into adopting what is already there, or into a new version if it differs.
//!
//! Names the API would refuse (`INVALID_PATH`) are rejected here before any request.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use reqwest::{Method, StatusCode};

use super::error::Error;
use super::types::{
    Completed, Destination, Folder, ItemKind, NewUploadSession, Placed, RemoteFile, UploadSession,
    UploadStatus,
};
use super::{Body, Call, Client, seg};

/// The documented minimum chunk size (a power of two of at least 64 KiB).
pub const MIN_CHUNK_SIZE: u64 = 64 * 1024;
/// The documented typical server default chunk size. The per-file choice never goes below
/// it: a smaller chunk than the server would pick only costs more chunk PUTs.
pub const SERVER_DEFAULT_CHUNK_SIZE: u64 = 4 * 1024 * 1024;
/// Transfers smaller than this say more about latency than about throughput; they are not
/// used to size chunks.
const MIN_SAMPLE_BYTES: u64 = 1024 * 1024;
/// Weight of the newest transfer in the throughput estimate.
const SAMPLE_WEIGHT: f64 = 0.5;

/// Upload tuning.
#[derive(Clone, Debug)]
pub struct UploadConfig {
    /// New files of at least this size go through a resumable session; smaller ones by
    /// one multipart request. Default: the uploads guide's 100 MB.
    pub session_threshold: u64,
    /// Chunk size asked for, pinned (a power of two ≥ 64 KiB); `0` = chosen per file by
    /// [`choose_chunk_size`]. The server's answer wins either way.
    pub chunk_size: u64,
    /// Largest chunk the per-file choice asks for.
    pub max_chunk_size: u64,
    /// Longest one chunk PUT should take at the recently measured throughput of one
    /// transfer stream; bounds the per-file choice (and so what a broken PUT re-sends).
    pub max_chunk_time: std::time::Duration,
    /// Chunk PUTs in flight per upload.
    pub parallel_chunks: usize,
    /// New sessions started after the current one expired (410) before giving up.
    pub max_session_restarts: u32,
    /// Complete → re-send missing chunks rounds before giving up.
    pub max_complete_rounds: u32,
    /// Transport failures of one multipart upload after which the file goes by session.
    pub multipart_transport_failures: u32,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            session_threshold: 100_000_000,
            chunk_size: 0,
            max_chunk_size: 64 * 1024 * 1024,
            max_chunk_time: std::time::Duration::from_secs(60),
            parallel_chunks: 4,
            max_session_restarts: 2,
            max_complete_rounds: 3,
            multipart_transport_failures: 2,
        }
    }
}

/// The largest power of two not above `x` (1 for 0).
fn pow2_floor(x: u64) -> u64 {
    if x <= 1 {
        1
    } else {
        1 << (63 - x.leading_zeros())
    }
}

/// The chunk size a session for a `file_size`-byte file asks for. Pure: the client passes
/// its estimate of one transfer stream's throughput (bytes a second), `None` before it has
/// measured any.
///
/// - A pinned [`UploadConfig::chunk_size`] wins.
/// - Otherwise the largest power of two between the server default (4 MiB) and
///   [`UploadConfig::max_chunk_size`] that one stream crosses within
///   [`UploadConfig::max_chunk_time`]; unmeasured, the maximum (units first: a first big
///   file must not pay for chunks a fast link does not need).
/// - Then halved while the file still needs as many chunks, so a chunk is never larger
///   than the file calls for (a 5 MiB file asks for 8 MiB, one chunk).
pub fn choose_chunk_size(file_size: u64, cfg: &UploadConfig, per_stream_bps: Option<f64>) -> u64 {
    if cfg.chunk_size != 0 {
        return cfg.chunk_size;
    }
    let ceiling = pow2_floor(cfg.max_chunk_size.max(MIN_CHUNK_SIZE));
    let floor = SERVER_DEFAULT_CHUNK_SIZE.min(ceiling);
    let by_time = match per_stream_bps {
        // `as` saturates, so a huge estimate is simply "no bound".
        Some(bps) if bps.is_finite() && bps > 0.0 => {
            (bps * cfg.max_chunk_time.as_secs_f64()) as u64
        }
        _ => u64::MAX,
    };
    let mut chunk = pow2_floor(by_time.min(ceiling)).max(floor);
    let chunks = file_size.div_ceil(chunk).max(1);
    while chunk / 2 >= floor && file_size.div_ceil(chunk / 2).max(1) == chunks {
        chunk /= 2;
    }
    chunk
}

/// What the uploads learn about the server as they go, shared by a client's clones and
/// kept until restart: the size from which a multipart upload met 413, and an estimate of
/// one transfer stream's throughput. Atomics, no lock: every transfer updates it.
pub(crate) struct Learned {
    /// Smallest file size a multipart upload was refused with 413 (`u64::MAX`: none).
    multipart_cap: AtomicU64,
    /// Bytes a second of one stream, as `f64` bits; 0 = not measured yet.
    throughput: AtomicU64,
}

impl Default for Learned {
    fn default() -> Self {
        Learned {
            multipart_cap: AtomicU64::new(u64::MAX),
            throughput: AtomicU64::new(0),
        }
    }
}

impl Learned {
    /// Notes a body of `bytes` that took `took` from send to answer (a multipart upload or
    /// a chunk PUT). Each stream measures its own share of the link, so parallel chunks
    /// are accounted for.
    pub(crate) fn record_transfer(&self, bytes: u64, took: std::time::Duration) {
        let secs = took.as_secs_f64();
        if bytes < MIN_SAMPLE_BYTES || secs <= 0.0 {
            return;
        }
        let sample = bytes as f64 / secs;
        let _ = self
            .throughput
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                let old = f64::from_bits(old);
                let new = if old > 0.0 {
                    old + SAMPLE_WEIGHT * (sample - old)
                } else {
                    sample
                };
                Some(new.to_bits())
            });
    }

    /// One stream's recent throughput in bytes a second, if measured.
    pub(crate) fn throughput(&self) -> Option<f64> {
        let v = f64::from_bits(self.throughput.load(Ordering::Relaxed));
        (v > 0.0).then_some(v)
    }

    fn multipart_cap(&self) -> u64 {
        self.multipart_cap.load(Ordering::Relaxed)
    }

    fn note_too_large(&self, size: u64) {
        self.multipart_cap.fetch_min(size, Ordering::Relaxed);
    }
}

/// Rejects names the API refuses with `INVALID_PATH` (Folders seed: `/`, NUL, leading or
/// trailing whitespace; plus empty, `.`, `..` and over 255 bytes), before any request.
pub fn validate_name(name: &str) -> Result<(), Error> {
    let why = if name.is_empty() {
        "empty"
    } else if name == "." || name == ".." {
        "reserved name"
    } else if name.contains('/') {
        "contains '/'"
    } else if name.contains('\0') {
        "contains NUL"
    } else if name.starts_with(char::is_whitespace) || name.ends_with(char::is_whitespace) {
        "leading or trailing whitespace"
    } else if name.len() > 255 {
        "longer than 255 bytes"
    } else {
        return Ok(());
    };
    Err(Error::invalid_name(name, why))
}

/// How a file of `file_size` bytes splits into 0-based chunks of `chunk_size` (the last
/// one holds the remainder).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkPlan {
    pub file_size: u64,
    pub chunk_size: u64,
    pub total_chunks: u64,
}

impl ChunkPlan {
    pub fn new(file_size: u64, chunk_size: u64) -> ChunkPlan {
        let chunk_size = chunk_size.max(1);
        ChunkPlan {
            file_size,
            chunk_size,
            total_chunks: file_size.div_ceil(chunk_size),
        }
    }

    /// (offset, length) of chunk `index`, or `None` past the end.
    pub fn range(&self, index: u64) -> Option<(u64, u64)> {
        if index >= self.total_chunks {
            return None;
        }
        let offset = index * self.chunk_size;
        Some((offset, self.chunk_size.min(self.file_size - offset)))
    }

    pub fn all(&self) -> Vec<u64> {
        (0..self.total_chunks).collect()
    }
}

/// Lowercase hex SHA-256 of a file ([`crate::hash::hash_file`]) on the blocking pool
/// (hashing a big file would otherwise stall the runtime's workers).
pub async fn sha256_file(path: &Path) -> Result<String, Error> {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        crate::hash::hash_file(&p).map_err(|e| Error::local_io(&p, e))
    })
    .await
    .map_err(|e| Error::local_io(path, std::io::Error::other(e)))?
}

/// Called with each session as it is created, so the caller can journal its id and
/// resume after a crash.
pub type SessionHook = Arc<dyn Fn(&UploadSession) + Send + Sync>;

/// A resumable upload: where, from which file, and optionally which file it replaces
/// and which earlier session to resume.
#[derive(Clone)]
pub struct ResumableUpload {
    pub dest: Destination,
    pub path: PathBuf,
    /// Upload as a new version of this file.
    pub replace_file_id: Option<String>,
    /// The local SHA-256 if already known (saves hashing the file again).
    pub sha256: Option<String>,
    /// A session started earlier for the same file content.
    pub resume_session_id: Option<String>,
    /// Caps the chunk size asked for (a power of two ≥ 64 KiB): a session that must
    /// resume in pieces (after a multipart broke off) needs at least two.
    pub max_chunk_size: Option<u64>,
    pub on_session: Option<SessionHook>,
}

impl ResumableUpload {
    pub fn new(dest: Destination, path: impl Into<PathBuf>) -> ResumableUpload {
        ResumableUpload {
            dest,
            path: path.into(),
            replace_file_id: None,
            sha256: None,
            resume_session_id: None,
            max_chunk_size: None,
            on_session: None,
        }
    }
}

impl std::fmt::Debug for ResumableUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResumableUpload")
            .field("dest", &self.dest)
            .field("path", &self.path)
            .field("replace_file_id", &self.replace_file_id)
            .field("resume_session_id", &self.resume_session_id)
            .field("max_chunk_size", &self.max_chunk_size)
            .finish_non_exhaustive()
    }
}

async fn file_len(path: &Path) -> Result<u64, Error> {
    let md = tokio::fs::metadata(path)
        .await
        .map_err(|e| Error::local_io(path, e))?;
    if !md.is_file() {
        return Err(Error::local_io(
            path,
            std::io::Error::other("not a regular file"),
        ));
    }
    Ok(md.len())
}

/// Checks that the server stored what we hashed.
fn verify(file: &RemoteFile, sha256: Option<&str>) -> Result<(), Error> {
    match (sha256, file.checksum_sha256.as_deref()) {
        (Some(local), Some(remote)) if !local.eq_ignore_ascii_case(remote) => {
            Err(Error::integrity(format!(
                "{} ({}): server checksum {remote} differs from local {local} (did the file change while uploading?)",
                file.path, file.id
            )))
        }
        _ => Ok(()),
    }
}

impl Client {
    /// Whether a new file of `size` bytes goes straight to a resumable session: at or
    /// above the configured threshold, or at or above a size this server refused by
    /// multipart (413) since start-up.
    pub fn uses_session(&self, size: u64) -> bool {
        size >= self
            .upload_config()
            .session_threshold
            .min(self.learned().multipart_cap())
    }

    /// The chunk size a session for a `size`-byte file asks for now (see
    /// [`choose_chunk_size`]).
    pub fn session_chunk_size(&self, size: u64) -> u64 {
        choose_chunk_size(size, self.upload_config(), self.learned().throughput())
    }

    /// One transfer stream's recently measured throughput, bytes a second.
    pub fn measured_throughput(&self) -> Option<f64> {
        self.learned().throughput()
    }

    /// Uploads a new file: multipart below the session threshold (one request), a
    /// resumable session at or above it, or when multipart meets 413 or breaks off twice.
    /// If `sha256` is given, the server's checksum is verified. A taken name is a 409;
    /// see [`Client::upload_or_adopt`].
    pub async fn upload_file(
        &self,
        dest: &Destination,
        path: &Path,
        sha256: Option<&str>,
    ) -> Result<RemoteFile, Error> {
        let mut up = ResumableUpload::new(dest.clone(), path);
        up.sha256 = sha256.map(str::to_string);
        self.upload_new(&up).await
    }

    /// [`Client::upload_file`] with the session options of `up` (its hook journals any
    /// session, including one a multipart falls back to). A `replace_file_id` or a session
    /// to resume means a session whatever the size.
    pub async fn upload_new(&self, up: &ResumableUpload) -> Result<RemoteFile, Error> {
        validate_name(&up.dest.name)?;
        if up.replace_file_id.is_some() || up.resume_session_id.is_some() {
            return self.upload_resumable(up).await;
        }
        let len = file_len(&up.path).await?;
        if self.uses_session(len) {
            return self.upload_resumable(up).await;
        }
        let limit = self.upload_config().multipart_transport_failures.max(1);
        // Only a file larger than one default chunk gains from a session when transfers
        // break off (a session resumes chunk by chunk); a smaller one is simply sent again,
        // which costs fewer units.
        let resumable = len > SERVER_DEFAULT_CHUNK_SIZE;
        match self
            .send_multipart(&up.dest, &up.path, len, resumable.then_some(limit))
            .await
        {
            Ok(file) => {
                verify(&file, up.sha256.as_deref())?;
                Ok(file)
            }
            Err(e) if e.is_payload_too_large() => {
                // The seed: "413 PAYLOAD_TOO_LARGE — … Use Resumable Uploads for large
                // files". The session meets only the per-file cap; its 413 is final.
                self.learned().note_too_large(len);
                tracing::info!(name = %up.dest.name, size = len, error = %e, "multipart upload refused as too large; sending it by upload session (and files this large from now on)");
                self.upload_resumable(up).await
            }
            Err(e) if resumable && e.is_transient_transport() => {
                tracing::info!(name = %up.dest.name, size = len, error = %e, "multipart upload broke off {limit} times; sending it by upload session, which resumes");
                // At least two chunks, so that what got through is kept.
                let mut pieces = up.clone();
                pieces.max_chunk_size = Some(pow2_floor(len - 1));
                self.upload_resumable(&pieces).await
            }
            Err(e) => Err(e),
        }
    }

    /// `POST /api/v1/files` (multipart: `share_id`, `folder_id`?, `name`, `file`), the
    /// file streamed from disk and re-opened for every attempt. No fallback: a 413 is
    /// returned as is (see [`Client::upload_file`]).
    pub async fn upload_multipart(
        &self,
        dest: &Destination,
        path: &Path,
        len: u64,
    ) -> Result<RemoteFile, Error> {
        self.send_multipart(dest, path, len, None).await
    }

    async fn send_multipart(
        &self,
        dest: &Destination,
        path: &Path,
        len: u64,
        max_transport_failures: Option<u32>,
    ) -> Result<RemoteFile, Error> {
        validate_name(&dest.name)?;
        let mut fields = vec![("share_id", dest.share_id.clone())];
        if let Some(f) = &dest.folder_id {
            fields.push(("folder_id", f.clone()));
        }
        fields.push(("name", dest.name.clone()));
        let body = Body::Multipart {
            fields,
            path: path.to_path_buf(),
            file_name: dest.name.clone(),
            len,
        };
        let mut call = Call::new(Method::POST, "/api/v1/files".into()).body(body, true);
        call.max_transport_failures = max_transport_failures;
        self.call_json(call).await
    }

    /// `POST /api/v1/uploads` → a new session.
    pub async fn create_upload_session(
        &self,
        req: &NewUploadSession,
    ) -> Result<UploadSession, Error> {
        validate_name(&req.file_name)?;
        self.call_json(Call::new(Method::POST, "/api/v1/uploads".into()).json(req))
            .await
    }

    /// `PUT /api/v1/uploads/{id}/chunks/{index}` with `len` bytes of `path` at `offset`.
    /// Idempotent, so retrying a chunk is always safe.
    pub async fn put_chunk(
        &self,
        session_id: &str,
        index: u64,
        path: &Path,
        offset: u64,
        len: u64,
    ) -> Result<(), Error> {
        let body = Body::FileRange {
            path: path.to_path_buf(),
            offset,
            len,
        };
        let call = Call::new(
            Method::PUT,
            format!("/api/v1/uploads/{}/chunks/{index}", seg(session_id)),
        )
        .body(body, true);
        self.call_empty(call).await
    }

    /// `DELETE /api/v1/uploads/{id}`: cancels a session (its chunks are dropped).
    pub async fn abort_upload(&self, session_id: &str) -> Result<(), Error> {
        self.call_empty(Call::new(
            Method::DELETE,
            format!("/api/v1/uploads/{}", seg(session_id)),
        ))
        .await
    }

    /// Cancels a session that will not be used again (the file changed under it, or its
    /// plan no longer fits), best effort: the server drops sessions after 24 h idle
    /// anyway, so a failure is only logged (at debug) and never fails the file.
    pub async fn abandon_session(&self, session_id: &str) {
        match self.abort_upload(session_id).await {
            Ok(()) => tracing::debug!(session = session_id, "abandoned upload session cancelled"),
            Err(e) => {
                tracing::debug!(session = session_id, error = %e, "could not cancel an abandoned upload session; it expires on its own")
            }
        }
    }

    /// `GET /api/v1/uploads/{id}`: progress, `missing_chunks`.
    pub async fn upload_status(&self, session_id: &str) -> Result<UploadStatus, Error> {
        self.call_json(Call::get(format!("/api/v1/uploads/{}", seg(session_id))))
            .await
    }

    /// `POST /api/v1/uploads/{id}/complete`: turns the session into a file (or a new
    /// version). Completing a completed session again returns the same file.
    pub async fn complete_upload(&self, session_id: &str) -> Result<Completed, Error> {
        self.call_json(Call::new(
            Method::POST,
            format!("/api/v1/uploads/{}/complete", seg(session_id)),
        ))
        .await
    }

    /// Uploads through a resumable session: hash (unless given), create (or resume) the
    /// session, PUT the missing chunks in parallel, complete; re-sends what the server
    /// still misses, and starts a new session if the old one expired.
    pub async fn upload_resumable(&self, up: &ResumableUpload) -> Result<RemoteFile, Error> {
        validate_name(&up.dest.name)?;
        let size = file_len(&up.path).await?;
        let sha = match &up.sha256 {
            Some(s) => s.to_ascii_lowercase(),
            None => sha256_file(&up.path).await?,
        };
        let cfg = self.upload_config().clone();
        let mut restarts = 0;
        let mut resume = up.resume_session_id.clone();
        loop {
            let started = match resume.take() {
                Some(sid) => self.resume_state(&sid, size).await?,
                None => None,
            };
            let (session, missing) = match started {
                Some(s) => s,
                None => {
                    let req = NewUploadSession {
                        share_id: up.dest.share_id.clone(),
                        file_name: up.dest.name.clone(),
                        file_size: size,
                        folder_id: up.dest.folder_id.clone(),
                        chunk_size: Some(
                            self.session_chunk_size(size)
                                .min(up.max_chunk_size.unwrap_or(u64::MAX))
                                .max(MIN_CHUNK_SIZE),
                        ),
                        checksum_sha256: Some(sha.clone()),
                        replace_file_id: up.replace_file_id.clone(),
                    };
                    let s = self.create_upload_session(&req).await?;
                    if let Some(hook) = &up.on_session {
                        hook(&s);
                    }
                    let missing = ChunkPlan::new(size, s.chunk_size).all();
                    (s, missing)
                }
            };
            match self
                .drive_session(&session, &up.path, size, missing, &cfg)
                .await
            {
                Ok(file) => {
                    verify(&file, Some(&sha))?;
                    return Ok(file);
                }
                Err(e) if e.is_gone() && restarts < cfg.max_session_restarts => {
                    restarts += 1;
                    tracing::info!(session = %session.session_id, error = %e, "upload session expired; starting a new one");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// What is left to do for an earlier session, or `None` if it cannot be used (gone,
    /// or planned for a different size).
    async fn resume_state(
        &self,
        session_id: &str,
        size: u64,
    ) -> Result<Option<(UploadSession, Vec<u64>)>, Error> {
        let st = match self.upload_status(session_id).await {
            Ok(st) => st,
            Err(e) if e.is_gone() || e.status() == Some(StatusCode::NOT_FOUND) => return Ok(None),
            Err(e) => return Err(e),
        };
        if st.chunk_size == 0 || ChunkPlan::new(size, st.chunk_size).total_chunks != st.total_chunks
        {
            // Planned for another size: of no use to anyone now.
            self.abandon_session(session_id).await;
            return Ok(None);
        }
        let session = UploadSession {
            session_id: st.session_id.clone(),
            chunk_size: st.chunk_size,
            total_chunks: st.total_chunks,
            expires_at: st.expires_at.clone(),
            status: st.status.clone(),
        };
        Ok(Some((session, st.missing_chunks)))
    }

    /// PUTs `missing` chunks, completes, and repeats with what the server still misses.
    async fn drive_session(
        &self,
        session: &UploadSession,
        path: &Path,
        size: u64,
        mut missing: Vec<u64>,
        cfg: &super::UploadConfig,
    ) -> Result<RemoteFile, Error> {
        let plan = ChunkPlan::new(size, session.chunk_size);
        if plan.total_chunks != session.total_chunks {
            return Err(Error::decode_unplaced(format!(
                "session {} has {} chunks of {} bytes for a {size}-byte file (expected {})",
                session.session_id, session.total_chunks, session.chunk_size, plan.total_chunks
            )));
        }
        let mut rounds = 0;
        loop {
            self.send_chunks(
                &session.session_id,
                &plan,
                path,
                &missing,
                cfg.parallel_chunks,
            )
            .await?;
            match self.complete_upload(&session.session_id).await {
                Ok(done) => {
                    return match done.file {
                        Some(f) => Ok(f),
                        None => self.file(&done.file_id).await,
                    };
                }
                // 409 at complete is UPLOAD_INCOMPLETE or NAME_CONFLICT; the `detail`
                // shape does not say which, the session status does.
                Err(e)
                    if e.status() == Some(StatusCode::CONFLICT)
                        && e.code() != Some("NAME_CONFLICT") =>
                {
                    rounds += 1;
                    let st = self.upload_status(&session.session_id).await?;
                    if st.missing_chunks.is_empty() || rounds >= cfg.max_complete_rounds {
                        return Err(e);
                    }
                    tracing::info!(session = %session.session_id, missing = st.missing_chunks.len(), "re-sending chunks the server lacks");
                    missing = st.missing_chunks;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn send_chunks(
        &self,
        session_id: &str,
        plan: &ChunkPlan,
        path: &Path,
        indices: &[u64],
        parallel: usize,
    ) -> Result<(), Error> {
        // A hand-rolled window over FuturesUnordered rather than `buffer_unordered` over
        // closures: closure-made futures that borrow trip rustc's higher-ranked `Send`
        // check, and callers spawn uploads onto the runtime.
        let mut pending = indices.iter().copied();
        let mut in_flight = FuturesUnordered::new();
        loop {
            while in_flight.len() < parallel.max(1) {
                let Some(i) = pending.next() else { break };
                in_flight.push(self.put_planned_chunk(session_id, plan, path, i));
            }
            match in_flight.next().await {
                // Returning drops the other PUTs; a later resume re-sends them.
                Some(r) => r?,
                None => return Ok(()),
            }
        }
    }

    async fn put_planned_chunk(
        &self,
        session_id: &str,
        plan: &ChunkPlan,
        path: &Path,
        index: u64,
    ) -> Result<(), Error> {
        let (offset, len) = plan.range(index).ok_or_else(|| {
            Error::decode_unplaced(format!(
                "server asked for chunk {index} of {}",
                plan.total_chunks
            ))
        })?;
        self.put_chunk(session_id, index, path, offset, len).await
    }

    /// Stores the content of `path` as a new version of `existing` (a session with
    /// `replace_file_id`, whatever the size: the multipart endpoint cannot overwrite).
    pub async fn replace_content(
        &self,
        existing: &RemoteFile,
        path: &Path,
        sha256: Option<&str>,
    ) -> Result<RemoteFile, Error> {
        let dest = Destination {
            share_id: existing.share_id.clone(),
            folder_id: existing.folder_id.clone(),
            name: existing.name.clone(),
        };
        let mut up = ResumableUpload::new(dest, path);
        up.replace_file_id = Some(existing.id.clone());
        up.sha256 = sha256.map(str::to_string);
        self.upload_resumable(&up).await
    }

    /// Uploads a new file, or — if the name is taken (a retried create whose first
    /// response was lost, or a crash between upload and journal) — adopts the existing
    /// file when its checksum equals ours, else stores ours as its new version.
    pub async fn upload_or_adopt(
        &self,
        dest: &Destination,
        path: &Path,
        sha256: Option<&str>,
    ) -> Result<Placed<RemoteFile>, Error> {
        let mut up = ResumableUpload::new(dest.clone(), path);
        up.sha256 = sha256.map(str::to_string);
        self.upload_or_adopt_with(&up).await
    }

    /// [`Client::upload_or_adopt`] with the session options of `up` (a new file: its
    /// `replace_file_id` must be `None`).
    pub async fn upload_or_adopt_with(
        &self,
        up: &ResumableUpload,
    ) -> Result<Placed<RemoteFile>, Error> {
        let (dest, path, sha256) = (&up.dest, up.path.as_path(), up.sha256.as_deref());
        let conflict = match self.upload_new(up).await {
            Ok(f) => return Ok(Placed::Created(f)),
            Err(e) if e.is_name_conflict() => e,
            Err(e) => return Err(e),
        };
        if conflict.existing_type().is_some_and(|t| t != "file") {
            return Err(conflict); // a folder holds the name; never touch it
        }
        let existing_id = match conflict.existing_id() {
            Some(id) => Some(id.to_string()),
            None => self
                .children(&dest.share_id, dest.folder_id.as_deref())
                .await?
                .find(&dest.name, ItemKind::File)
                .map(|i| i.id.clone()),
        };
        // No file of that name: the sibling is a folder, which we must not touch.
        let Some(existing_id) = existing_id else {
            return Err(conflict);
        };
        let existing = match self.file(&existing_id).await {
            Ok(f) => f,
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => return Err(conflict),
            Err(e) => return Err(e),
        };
        let local = match sha256 {
            Some(s) => s.to_ascii_lowercase(),
            None => sha256_file(path).await?,
        };
        if existing
            .checksum_sha256
            .as_deref()
            .is_some_and(|r| r.eq_ignore_ascii_case(&local))
        {
            return Ok(Placed::Adopted(existing));
        }
        let replaced = self.replace_content(&existing, path, Some(&local)).await?;
        Ok(Placed::Replaced(replaced))
    }

    /// Creates a folder, or adopts the existing folder of that name in the parent (409
    /// `NAME_CONFLICT`). A *file* of that name is not adopted: the conflict is returned.
    pub async fn create_folder_or_adopt(
        &self,
        share_id: &str,
        parent_id: Option<&str>,
        name: &str,
    ) -> Result<Placed<Folder>, Error> {
        let conflict = match self.create_folder(share_id, parent_id, name).await {
            Ok(f) => return Ok(Placed::Created(f)),
            Err(e) if e.is_name_conflict() => e,
            Err(e) => return Err(e),
        };
        if conflict.existing_type().is_some_and(|t| t != "folder") {
            return Err(conflict); // a file holds the name
        }
        // The server may name the sibling; trust it only if it is the folder we mean.
        if let Some(id) = conflict.existing_id()
            && let Ok(f) = self.folder(id).await
            && f.name == name
            && f.parent_id.as_deref() == parent_id
            && !f.is_deleted
        {
            return Ok(Placed::Adopted(f));
        }
        let listing = self.children(share_id, parent_id).await?;
        let Some(item) = listing.find(name, ItemKind::Folder) else {
            return Err(conflict);
        };
        let id = item.id.clone();
        Ok(Placed::Adopted(self.folder(&id).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::ErrorKind;

    /// Compile-time check: the daemon spawns these futures onto the runtime.
    #[allow(dead_code)]
    fn client_futures_are_spawnable(c: Client, d: Destination, p: PathBuf, f: RemoteFile) {
        fn spawnable<F: std::future::Future + Send + 'static>(_: F) {}
        let (c2, d2, p2) = (c.clone(), d.clone(), p.clone());
        spawnable(async move { c2.upload_file(&d2, &p2, None).await });
        let (c2, d2, p2) = (c.clone(), d.clone(), p.clone());
        spawnable(async move { c2.upload_or_adopt(&d2, &p2, Some("x")).await });
        let (c2, p2) = (c.clone(), p.clone());
        spawnable(async move { c2.replace_content(&f, &p2, None).await });
        let c2 = c.clone();
        spawnable(async move { c2.create_folder_or_adopt("s", None, "n").await });
        let (c2, p2) = (c.clone(), p.clone());
        spawnable(async move { c2.upload_resumable(&ResumableUpload::new(d, p2)).await });
        spawnable(async move { c.download_to("fil_1", &p).await });
    }

    #[test]
    fn invalid_names_are_rejected_locally() {
        let bad = [
            "",
            ".",
            "..",
            "a/b",
            "/",
            "nul\0byte",
            " lead",
            "trail ",
            "tab\t",
            "\nx",
            &"x".repeat(256),
        ];
        for n in bad {
            let e = validate_name(n).expect_err(n);
            assert_eq!(e.kind(), ErrorKind::InvalidName, "{n:?}");
            assert!(e.to_string().starts_with("invalid name"), "{e}");
        }
        let good = [
            "a",
            "report (1).pdf",
            "...",
            ".hidden",
            "a b",
            "ünïcødé",
            "quote\"d",
            &"x".repeat(255),
        ];
        for n in good {
            validate_name(n).unwrap_or_else(|e| panic!("{n:?}: {e}"));
        }
    }

    #[test]
    fn chunk_plans() {
        let cases = [
            // (size, chunk, total, last chunk (offset, len))
            (0u64, 4u64, 0u64, None),
            (1, 4, 1, Some((0, 1))),
            (4, 4, 1, Some((0, 4))),
            (5, 4, 2, Some((4, 1))),
            (8, 4, 2, Some((4, 4))),
            (9, 4, 3, Some((8, 1))),
        ];
        for (size, chunk, total, last) in cases {
            let p = ChunkPlan::new(size, chunk);
            assert_eq!(p.total_chunks, total, "size {size}");
            assert_eq!(
                total.checked_sub(1).and_then(|i| p.range(i)),
                last,
                "size {size}"
            );
            assert_eq!(p.range(total), None);
            let covered: u64 = p.all().iter().map(|&i| p.range(i).unwrap().1).sum();
            assert_eq!(covered, size, "chunks cover the file exactly");
        }
        let big = ChunkPlan::new(4 << 30, 8 << 20);
        assert_eq!(big.total_chunks, 512);
        assert_eq!(big.range(511), Some(((4u64 << 30) - (8 << 20), 8 << 20)));
    }

    #[test]
    fn chunk_size_table() {
        const MIB: u64 = 1024 * 1024;
        let auto = UploadConfig::default();
        let secs = |s| UploadConfig {
            max_chunk_time: std::time::Duration::from_secs(s),
            ..UploadConfig::default()
        };
        let cases: [(&str, u64, &UploadConfig, Option<f64>, u64); 11] = [
            // Unmeasured: the largest, no larger than the file needs.
            ("2 GiB, unmeasured", 2048 * MIB, &auto, None, 64 * MIB),
            ("100 MB, unmeasured", 100_000_000, &auto, None, 64 * MIB),
            ("40 MiB, unmeasured", 40 * MIB, &auto, None, 64 * MIB),
            ("5 MiB, unmeasured", 5 * MIB, &auto, None, 8 * MIB),
            ("1 byte", 1, &auto, None, 4 * MIB),
            ("empty", 0, &auto, None, 4 * MIB),
            // 1 MB/s for 60 s: 60 MB, so 32 MiB chunks.
            ("2 GiB at 1 MB/s", 2048 * MIB, &auto, Some(1e6), 32 * MIB),
            // 10 MB/s: 600 MB a minute, capped at 64 MiB.
            ("2 GiB at 10 MB/s", 2048 * MIB, &auto, Some(1e7), 64 * MIB),
            // Slower than the server default allows: the server default.
            ("2 GiB at 10 kB/s", 2048 * MIB, &auto, Some(1e4), 4 * MIB),
            (
                "2 GiB at 1 MB/s, 10 s",
                2048 * MIB,
                &secs(10),
                Some(1e6),
                8 * MIB,
            ),
            (
                "bogus estimate",
                2048 * MIB,
                &auto,
                Some(f64::NAN),
                64 * MIB,
            ),
        ];
        for (what, size, cfg, bps, want) in cases {
            let got = choose_chunk_size(size, cfg, bps);
            assert_eq!(got, want, "{what}");
            assert!(got.is_power_of_two() && got >= MIN_CHUNK_SIZE, "{what}");
        }
        let pinned = UploadConfig {
            chunk_size: 256 * 1024,
            ..UploadConfig::default()
        };
        assert_eq!(
            choose_chunk_size(2048 * MIB, &pinned, Some(1e9)),
            256 * 1024
        );
        let small_max = UploadConfig {
            max_chunk_size: MIB,
            ..UploadConfig::default()
        };
        assert_eq!(
            choose_chunk_size(2048 * MIB, &small_max, None),
            MIB,
            "a ceiling under the server default wins"
        );
        let big_max = UploadConfig {
            max_chunk_size: 256 * MIB,
            ..UploadConfig::default()
        };
        assert_eq!(choose_chunk_size(2048 * MIB, &big_max, None), 256 * MIB);
    }

    #[test]
    fn throughput_estimate_follows_recent_transfers() {
        use std::time::Duration;
        let l = Learned::default();
        assert_eq!(l.throughput(), None);
        l.record_transfer(1000, Duration::from_millis(1));
        assert_eq!(
            l.throughput(),
            None,
            "small bodies measure latency, not throughput"
        );
        l.record_transfer(4_000_000, Duration::from_secs(2));
        assert_eq!(l.throughput(), Some(2e6));
        l.record_transfer(8_000_000, Duration::from_secs(2));
        assert_eq!(l.throughput(), Some(3e6), "halfway to the newest");
        assert_eq!(l.multipart_cap(), u64::MAX);
        l.note_too_large(12);
        l.note_too_large(20);
        assert_eq!(l.multipart_cap(), 12, "the smallest refused size");
    }

    #[tokio::test]
    async fn hashes_files_off_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"").unwrap();
        assert_eq!(
            sha256_file(&p).await.unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256_file(&p).await.unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let e = sha256_file(&dir.path().join("missing")).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::LocalIo);
        assert!(e.is_local());
    }

    #[test]
    fn verify_compares_case_insensitively() {
        let f = RemoteFile {
            checksum_sha256: Some("ABC".into()),
            ..Default::default()
        };
        assert!(verify(&f, Some("abc")).is_ok());
        assert!(verify(&f, None).is_ok());
        assert_eq!(
            verify(&f, Some("abd")).unwrap_err().kind(),
            ErrorKind::Integrity
        );
    }
}
