//! `scaidrivectl`: queries and steers a running `scaidrived` (see `scaidrive::cli::ctl`).

use clap::Parser;

fn main() -> std::process::ExitCode {
    scaidrive::cli::ctl::main(scaidrive::cli::ctl::Args::parse())
}
