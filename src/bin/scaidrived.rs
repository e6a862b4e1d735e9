//! `scaidrived`: the mirror daemon (see `scaidrive::cli::daemon`).

use clap::Parser;

fn main() -> std::process::ExitCode {
    scaidrive::cli::daemon::main(scaidrive::cli::daemon::Args::parse())
}
