//! The `mfadmin` binary: parse the command line and hand it to the CLI.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = mfadmin::cli::Cli::parse();
    match mfadmin::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mfadmin: {e:#}");
            ExitCode::FAILURE
        }
    }
}
