//! API conformance tests for `scaidrive-devserver`, written from the ScaiDrive docs
//! (`scaidrive-api.md` and the seed pages). Every test starts a real server on
//! 127.0.0.1:0 and talks to it with reqwest over a real socket.

#[path = "../support/mod.rs"]
mod support;

mod harness;

mod auth_limits;
mod caps;
mod changelog;
mod economy_budgets;
mod economy_known;
mod files;
mod folders;
mod links;
mod sync;
mod uploads;
