//! One API call described so that it can be sent again ([`Call`]), and its request body
//! ([`Body`]): JSON, or a stretch of a file streamed from disk in bounded reads. The
//! client's single call path (`Client::run_call` in `mod.rs`) builds every attempt from
//! these, so a retry or a refresh never needs the caller again.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use reqwest::Method;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{Error, Secret, documented_cost};

/// A request body that can be produced again for every attempt.
pub(crate) enum Body {
    Empty,
    Json(Bytes),
    Form(Vec<(&'static str, Secret)>),
    /// `len` bytes of `path` from `offset`, streamed (a resumable chunk).
    FileRange {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
    /// multipart/form-data: text fields, then `file` streamed from `path`.
    Multipart {
        fields: Vec<(&'static str, String)>,
        path: PathBuf,
        file_name: String,
        len: u64,
    },
}

/// Largest read when streaming a file into a request. Each read of a tokio file is a hop
/// to the blocking pool: in W2 (2 × 2 GiB) 64 KiB reads gave 161 MB/s and 9.8 s of daemon
/// CPU, 256 KiB 187-191 MB/s and 7.8-8.2 s, 1 MiB no better (184-189 MB/s) but a peak RSS
/// of 50-60 MiB instead of 22-26 MiB. One buffer per body in flight.
pub(super) const STREAM_BUF_MAX: usize = 256 * 1024;

/// Read size for a body of `len` bytes: no bigger than the body (small files stay cheap
/// when many are in flight), at most [`STREAM_BUF_MAX`].
pub(super) fn stream_buf(len: u64) -> usize {
    usize::try_from(len)
        .unwrap_or(STREAM_BUF_MAX)
        .clamp(4096, STREAM_BUF_MAX)
}

impl Body {
    pub(super) fn json(v: &impl Serialize) -> Body {
        Body::Json(Bytes::from(
            serde_json::to_vec(v).expect("request bodies serialize"),
        ))
    }

    /// Opens `len` bytes of `path` at `offset` as a fresh stream.
    pub(super) async fn file_stream(
        path: &Path,
        offset: u64,
        len: u64,
        bandwidth: &super::bandwidth::Bandwidth,
    ) -> Result<reqwest::Body, Error> {
        let mut f = tokio::fs::File::open(path)
            .await
            .map_err(|e| Error::local_io(path, e))?;
        let size = f
            .metadata()
            .await
            .map_err(|e| Error::local_io(path, e))?
            .len();
        if size < offset + len {
            // The file shrank under us; the server would only see a truncated body.
            let e = std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("file is {size} bytes, expected at least {}", offset + len),
            );
            return Err(Error::local_io(path, e));
        }
        f.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| Error::local_io(path, e))?;
        let reader = f.take(len);
        // Through the daemon's bandwidth limit, piece by piece as the bytes go out.
        Ok(reqwest::Body::wrap_stream(bandwidth.limit(
            tokio_util::io::ReaderStream::with_capacity(reader, stream_buf(len)),
        )))
    }

    pub(super) async fn apply(
        &self,
        rb: reqwest::RequestBuilder,
        bandwidth: &super::bandwidth::Bandwidth,
    ) -> Result<reqwest::RequestBuilder, Error> {
        Ok(match self {
            Body::Empty => rb,
            Body::Json(b) => rb
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.clone()),
            Body::Form(pairs) => {
                let exposed: Vec<(&str, &str)> =
                    pairs.iter().map(|(k, v)| (*k, v.expose())).collect();
                rb.form(&exposed)
            }
            Body::FileRange { path, offset, len } => rb
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .header(reqwest::header::CONTENT_LENGTH, *len)
                .body(Body::file_stream(path, *offset, *len, bandwidth).await?),
            Body::Multipart {
                fields,
                path,
                file_name,
                len,
            } => {
                let mut form = reqwest::multipart::Form::new();
                for (k, v) in fields {
                    form = form.text(*k, v.clone());
                }
                let part = reqwest::multipart::Part::stream_with_length(
                    Body::file_stream(path, 0, *len, bandwidth).await?,
                    *len,
                )
                .file_name(file_name.clone())
                .mime_str("application/octet-stream")
                .expect("static mime type parses");
                rb.multipart(form.part("file", part))
            }
        })
    }
}

/// One API call, described so that it can be sent again.
pub(crate) struct Call {
    pub(crate) method: Method,
    /// Path from the base URL, e.g. `/api/v1/files/fil_1`.
    pub(crate) path: String,
    pub(crate) query: Vec<(&'static str, String)>,
    pub(crate) body: Body,
    /// Documented rate-limit cost in units (0 for unauthenticated endpoints).
    pub(crate) cost: u64,
    pub(crate) auth: bool,
    /// Streams a body either way: no whole-request timeout.
    pub(crate) streaming: bool,
    /// Give up after this many transport failures (see
    /// [`RetryPolicy::max_transport_failures`]); `None` = the client's policy as is.
    pub(crate) max_transport_failures: Option<u32>,
    /// Sends `Range: bytes=N-` (a download resumed at byte N).
    pub(crate) range_from: Option<u64>,
}

impl Call {
    pub(super) fn new(method: Method, path: String) -> Call {
        let cost = documented_cost(&method, &path);
        Call {
            method,
            path,
            query: Vec::new(),
            body: Body::Empty,
            cost,
            auth: true,
            streaming: false,
            max_transport_failures: None,
            range_from: None,
        }
    }
    pub(super) fn get(path: String) -> Call {
        Call::new(Method::GET, path)
    }
    pub(super) fn query(mut self, k: &'static str, v: impl Into<String>) -> Call {
        self.query.push((k, v.into()));
        self
    }
    pub(super) fn json(mut self, v: &impl Serialize) -> Call {
        self.body = Body::json(v);
        self
    }
    pub(super) fn body(mut self, body: Body, streaming: bool) -> Call {
        self.body = body;
        self.streaming = streaming;
        self
    }
}
