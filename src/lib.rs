//! scaidrive: mirror local folders to ScaiDrive shares.
//!
//! Architecture map (see `DESIGN.md` in the shared docs):
//!
//! - [`devserver`]: the local ScaiDrive-compatible server used by tests, benchmarks and
//!   `scaidrived --demo`.
//! - [`store`]: the daemon state (SQLite, one owning thread, group commit): entries,
//!   intent journal, upload sessions, failures.
//! - [`daemon`]: the process: instance lock, signals, systemd notify, logging, wiring.
//! - [`config`]: layered TOML/env configuration, validation, token sources.
//! - [`plan`]: disk ↔ store comparison → remote ops, in an executable order.

pub mod config;
pub mod daemon;
pub mod devserver;
pub mod plan;
pub mod store;
