//! scaidrive: mirror local folders to ScaiDrive shares.
//!
//! Architecture map, in pipeline order (see `DESIGN.md` in the shared docs):
//!
//! - [`watch`]: the input side of a mirror: [`watch::RelPath`], ignore rules, the full scan,
//!   and the notify watcher bridged into a bounded tokio channel (overflow → rescan).
//! - [`queue`]: debounce and coalescing of watch hints (quiet period, max delay, rename
//!   pairing, parent-first / creates-before-deletes order); pure, clock injected.
//! - [`plan`]: disk ↔ store comparison → remote ops, in an executable order.
//! - [`upload`]: executes ops with bounded concurrency, parents first, under the crash rule.
//! - [`remote`]: the ScaiDrive client: auth and refresh, retries, pacing, streaming and
//!   resumable uploads, conflict helpers.
//! - [`store`]: the daemon state (SQLite, one owning thread, group commit): entries,
//!   intent journal, upload sessions, failures.
//! - [`mirror`]: one task per mirror tying the stages together; status and commands.
//! - [`daemon`]: the process: config, instance lock, signals, systemd notify, logging,
//!   wiring of mirrors and the control socket; [`demo`] is `scaidrived --demo`.
//! - [`links`]: sharing links for mirrored paths (create, reuse, regenerate, revoke) and
//!   the keeper of a mirror's `[mirror.link]` root link.
//! - [`control`]: the control API on a Unix socket and its client (`scaidrivectl`).
//! - [`cli`]: the command lines of `scaidrived`, `scaidrivectl` and `scaidrive-devserver`.
//! - [`service`]: `scaidrivectl service install|uninstall` (systemd user unit, launchd
//!   agent).
//! - [`config`]: layered TOML/env configuration, validation, token sources.
//! - [`devserver`]: the local ScaiDrive-compatible server used by tests, benchmarks and
//!   the demo.

pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
#[cfg(feature = "devserver")]
pub mod demo;
#[cfg(feature = "devserver")]
pub mod devserver;
pub mod hash;
pub mod links;
pub mod mirror;
pub mod plan;
pub mod queue;
pub mod relpath;
pub mod remote;
pub mod service;
pub mod store;
pub mod upload;
pub mod watch;
