//! The daemon: wires config, store, client, mirrors and the control socket together and
//! runs until its shutdown token is cancelled.

pub mod process;
