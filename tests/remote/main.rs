//! Integration tests for the ScaiDrive client (`scaidrive::remote`) against the real
//! devserver on 127.0.0.1:0: every typed call, auth refresh, retries under injected
//! faults (5xx bursts, forced 429s, dropped connections), both error body shapes,
//! rate-limit pacing, uploads and the conflict helpers.

#[path = "../support/mod.rs"]
mod support;

mod harness;

mod auth;
mod basics;
mod economy;
mod economy_budgets;
mod faults;
mod files;
mod links_sync;
mod memory;
