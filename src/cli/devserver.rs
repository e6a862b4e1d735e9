//! `scaidrive-devserver`: its command line and start-up. The binary only parses the
//! arguments and calls [`main`]. Only in builds with the bundled server (feature
//! `devserver`), whose types the flags use.
#![cfg(feature = "devserver")]

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::devserver::{
    self, DEFAULT_MAX_FILE_SIZE, DEFAULT_MAX_REQUEST_SIZE, DevServerConfig, ErrorShape, Faults,
    Settings,
};
use clap::Parser;

/// A local server that speaks the ScaiDrive REST API (folders, files, upload sessions,
/// external links, sync change log, rate limits) for tests, benchmarks and demos.
///
/// The first stdout line is the bound base URL; the next lines give the token and the id
/// of the default share. Everything persists under --data, so a restart keeps the data.
/// Faults can also be changed at run time through the loopback-only admin routes under
/// /_devserver (see src/devserver/admin.rs): settings, faults, clock, stats, users,
/// tokens, shares, members and the tenant link policy.
#[derive(Parser, Debug)]
#[command(version)]
pub struct Args {
    /// Directory for the metadata database and content blobs (created if missing).
    #[arg(long, default_value = "./scaidrive-devserver-data")]
    pub data: PathBuf,
    /// Address to listen on; port 0 picks a free port (printed on the first line).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Base URL used in link `url`/`short_url` fields (default: the bound address).
    #[arg(long)]
    pub public_url: Option<String>,
    /// Static access token of the default user (repeatable). Never expires unless the
    /// admin route expires it.
    #[arg(long = "token", default_value = "dev-token")]
    pub tokens: Vec<String>,
    /// Name of the default share, created on first start.
    #[arg(long, default_value = "Demo")]
    pub share_name: String,
    /// Quota of the default share in bytes, applied on first start (507 when exceeded).
    #[arg(long)]
    pub quota_bytes: Option<u64>,
    /// Per-token rate limit in cost units per minute (documented default 1000); 0 = off.
    #[arg(long, default_value_t = 1000)]
    pub rate_limit: u64,
    /// Per-user rate limit across all the user's tokens, cost units per minute
    /// (documented default 5000); 0 = none.
    #[arg(long, default_value_t = 5000)]
    pub user_rate_limit: u64,
    /// Per-tenant rate limit across all its users, cost units per minute (documented
    /// default 50000); 0 = none.
    #[arg(long, default_value_t = 50_000)]
    pub tenant_rate_limit: u64,
    /// Per-file size cap in bytes (413 above it, for multipart uploads and upload
    /// sessions alike).
    #[arg(long, default_value_t = DEFAULT_MAX_FILE_SIZE)]
    pub max_file_size: u64,
    /// Per-request cap in bytes on a multipart upload's body (413 above it; upload
    /// sessions are bound only by --max-file-size).
    #[arg(long, default_value_t = DEFAULT_MAX_REQUEST_SIZE)]
    pub max_request_size: u64,
    /// Upload session inactivity expiry in seconds (documented: 24 h).
    #[arg(long, default_value_t = 86_400)]
    pub session_ttl: u64,
    /// Lifetime of access tokens issued by POST /api/v1/auth/token, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub access_token_ttl: u64,
    /// Error body shape: `envelope` ({"status","error":{"code",...},"meta"}) or `detail`
    /// ({"detail": ...}; 429 stays enveloped as documented).
    #[arg(long, value_enum, default_value_t = ErrorShape::Envelope)]
    pub error_shape: ErrorShape,
    /// Fault: probability (0..1) that a request fails with 503 before it is applied.
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Fault: probability that a request is applied but answered with 500.
    #[arg(long, default_value_t = 0.0)]
    pub fail_after_rate: f64,
    /// Fault: added latency per API request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Fault: probability that the connection is dropped mid-request.
    #[arg(long, default_value_t = 0.0)]
    pub drop_rate: f64,
    /// Log filter (RUST_LOG syntax).
    #[arg(long, env = "RUST_LOG", default_value = "warn")]
    pub log: String,
}

/// Runs the devserver until Ctrl-C or TERM.
pub fn main(args: Args) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(args.log.as_str())
        .with_writer(std::io::stderr)
        .init();
    let config = DevServerConfig {
        data_dir: args.data,
        listen: args.listen,
        public_url: args.public_url,
        tokens: args.tokens.clone(),
        share_name: args.share_name,
        quota_bytes: args.quota_bytes,
        settings: Settings {
            rate_limit: args.rate_limit,
            user_rate_limit: args.user_rate_limit,
            tenant_rate_limit: args.tenant_rate_limit,
            max_file_size: args.max_file_size,
            max_request_size: args.max_request_size,
            session_ttl_secs: args.session_ttl,
            access_token_ttl_secs: args.access_token_ttl,
            error_shape: args.error_shape,
            faults: Faults {
                fail_rate: args.fail_rate,
                fail_after_rate: args.fail_after_rate,
                latency_ms: args.latency_ms,
                drop_rate: args.drop_rate,
                ..Faults::default()
            },
            clock_offset_secs: 0,
        },
    };
    let server = devserver::start(config).await?;
    println!("{}", server.url());
    println!(
        "token: {}",
        args.tokens.first().map(String::as_str).unwrap_or("")
    );
    println!("share_id: {}", server.share_id());
    let stop = server.shutdown_token();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    #[cfg(unix)]
    {
        let stop = server.shutdown_token();
        tokio::spawn(async move {
            if let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                term.recv().await;
                stop.cancel();
            }
        });
    }
    server.shutdown_token().cancelled().await;
    server.shutdown().await;
    Ok(())
}
