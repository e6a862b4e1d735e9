//! scaidrive: mirror local folders to ScaiDrive shares.
//!
//! Architecture map, in pipeline order (see `DESIGN.md` in the shared docs). One line per
//! module, saying what it owns:
//!
//! - [`watch`]: the input side of a mirror: ignore rules, the full scan (and the one way
//!   an mtime is read, [`watch::mtime_ns`]), and the watcher (on Linux our own inotify
//!   backend, `watch::inotify`, one watch per folder added by the scan; `notify`
//!   elsewhere) bridged into a bounded tokio channel (overflow → rescan).
//! - [`queue`]: debounce and coalescing of watch hints (quiet period, max delay, rename
//!   pairing, parent-first / creates-before-deletes order); [`queue::gate`] holds deletes
//!   for two quiet periods and while removals keep coming in, so the mass-delete guard
//!   judges a removal whole. Both pure, clock injected.
//! - [`plan`]: disk ↔ store comparison → remote ops ([`upload::Op`]), in an executable
//!   order; the hash it takes travels in the op.
//! - [`upload`]: owns [`upload::Op`]; executes ops with bounded concurrency, parents
//!   first, under the crash rule (typed intents through the store), re-stat before send;
//!   `upload::known` places content the remote already holds without its bytes (copy,
//!   version restore, restore from trash).
//! - [`remote`]: the ScaiDrive client: auth and refresh, retries, pacing, streaming and
//!   resumable uploads, conflict helpers; [`remote::bandwidth`] the daemon's bandwidth
//!   limit (token bucket over file bodies, weekly timetable in the local zone, read with
//!   `jiff`).
//! - [`store`]: the daemon state (SQLite, one owning thread, group commit): entries, the
//!   typed intent journal ([`store::journal`]), upload sessions, failures, links, the
//!   root's identity, the content the remote holds ([`store::known`]: versions the
//!   mirror uploaded, files it trashed), and the engine's packed in-memory view of the
//!   entries and the row-by-row reads that stand in for it (`store::view`).
//! - [`mirror`]: the conductor, one task per mirror: its run loop (commands, watcher
//!   hints, the deadlines of queue, gate, retries, rescans, root and quota checks) and
//!   commands. Its rooms: `recovery` (start-up, base folder, adoption, settling crash
//!   intents), `pass` (full pass, batch, scope; plan → gate → run), `outcomes` (apply:
//!   what the ops' results change), `known` (the entries in memory, unloaded while a big
//!   mirror is idle; its first sync in slices; a rescan compared row by row), `pause` (the
//!   one `Pause` enum, what lifts each, the root's identity), `failures`, `verify`,
//!   `progress`, `status`, `error` (`MirrorError`), `mounts` (mount points below the root,
//!   remembered: an unmounted one keeps its remote copy), `memory` (free pages back to
//!   the kernel after a big pass).
//! - [`daemon`]: the process: config, instance lock, signals, systemd notify, logging (a
//!   log sink that drops what it cannot write), wiring of mirrors and the control socket;
//!   [`demo`] is `scaidrived --demo` (feature `devserver`).
//! - [`events`]: the event bus (bounded broadcast) the mirrors and links publish to and
//!   `scaidrivectl events` reads; a slow reader is told how many it lost.
//! - [`links`]: sharing links for mirrored paths (create, reuse, regenerate, revoke) and
//!   the keeper of a mirror's `[mirror.link]` root link.
//! - [`control`]: the control API on a Unix socket, its typed protocol
//!   ([`control::protocol`]: a request and a response type per route, shared with
//!   `scaidrivectl`) and its client.
//! - [`cli`]: the command lines of `scaidrived`, `scaidrivectl` and `scaidrive-devserver`.
//! - [`restore`]: a mirror's remote tree (or a subtree, or a file) as of a moment, rebuilt
//!   from the share's change log ([`restore::timeline`]) and downloaded by version into a
//!   directory outside every mirror, verified, resumable; `scaidrivectl restore`.
//! - [`service`]: `scaidrivectl service install|uninstall` (systemd user unit, launchd
//!   agent).
//! - [`config`]: layered TOML/env configuration, validation, token sources and the
//!   credential checks `config check` shares with the daemon.
//! - [`devserver`] (feature `devserver`, on by default): the local ScaiDrive-compatible
//!   server used by tests, benchmarks and the demo; `scaidrived` links it only for
//!   `--demo`.
//!
//! Leaves, used by every stage and importing none: [`relpath`] (validated relative paths
//! and the string helpers over them), [`hash`] (streaming SHA-256 of files).
//! `scaidrive-bench` lives with its binary (`src/bin/scaidrive-bench/`).

pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
#[cfg(feature = "devserver")]
pub mod demo;
#[cfg(feature = "devserver")]
pub mod devserver;
pub mod events;
pub mod hash;
pub mod links;
pub mod mirror;
pub mod plan;
pub mod queue;
pub mod relpath;
pub mod remote;
pub mod restore;
pub mod service;
pub mod store;
pub mod upload;
pub mod watch;
