//! The three programs' command lines and start-up code. The binaries in `src/bin/` only
//! parse arguments and call `main` here, so tests can drive the same code and the man
//! pages and shell completions are generated from these definitions.

pub mod ctl;
mod ctl_links;
mod ctl_ops;
pub mod daemon;
pub mod devserver;
pub mod restore;
