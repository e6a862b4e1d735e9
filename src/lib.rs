//! scaidrive: mirror local folders to ScaiDrive shares.
//!
//! Architecture map (see `DESIGN.md` in the shared docs):
//!
//! - [`devserver`]: the local ScaiDrive-compatible server used by tests, benchmarks and
//!   `scaidrived --demo`.
//! - [`watch`]: the input side of a mirror: [`watch::RelPath`], ignore rules, the full scan,
//!   and the notify watcher bridged into a bounded tokio channel (overflow → rescan).
//! - [`queue`]: debounce and coalescing of watch hints (quiet period, max delay, rename
//!   pairing, parent-first / creates-before-deletes order); pure, clock injected.

pub mod devserver;
pub mod queue;
pub mod watch;
