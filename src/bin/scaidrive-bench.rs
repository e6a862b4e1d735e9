//! `scaidrive-bench`: runs the issue-8 workloads against the real daemon and the devserver
//! (see `scaidrive::bench`).

use clap::Parser;

fn main() -> std::process::ExitCode {
    scaidrive::bench::main(scaidrive::bench::Args::parse())
}
