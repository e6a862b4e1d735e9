//! scaidrive: mirror local folders to ScaiDrive shares.
//!
//! Architecture map (see `DESIGN.md` in the shared docs):
//!
//! - [`devserver`]: the local ScaiDrive-compatible server used by tests, benchmarks and
//!   `scaidrived --demo`.

pub mod devserver;
