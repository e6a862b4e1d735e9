//! `scaidrive-devserver`: the local ScaiDrive-compatible server (see
//! `scaidrive::cli::devserver`).

use clap::Parser;

fn main() -> anyhow::Result<()> {
    scaidrive::cli::devserver::main(scaidrive::cli::devserver::Args::parse())
}
