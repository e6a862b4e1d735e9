//! Mirror engine integration tests: the real daemon (in-process, or as a child process
//! where a test kills it) against a real devserver on 127.0.0.1:0, with the remote tree
//! compared to the disk byte for byte after every scenario.

#[path = "../support/mod.rs"]
mod support;
mod world;

mod changes;
mod crashes;
mod drift;
mod drift_keep;
mod drift_settle;
mod economy;
mod economy_budgets;
mod economy_known;
mod faults;
mod guards;
mod hazards;
mod hostile;
mod initial;
mod links;
mod network;
mod restore;
mod sources;
mod startup;
mod unload;
