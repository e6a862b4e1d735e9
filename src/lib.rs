//! scaidrive: mirror local folders to ScaiDrive shares.
//!
//! Architecture map (see `DESIGN.md` in the shared docs):
//!
//! - [`devserver`]: the local ScaiDrive-compatible server used by tests, benchmarks and
//!   `scaidrived --demo`.
//! - [`remote`]: the ScaiDrive API client: auth and token refresh, retries, rate-limit
//!   pacing, streamed and resumable uploads, conflict helpers.

pub mod devserver;
pub mod remote;
