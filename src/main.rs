//! The `mfadmin` binary: parse the command line and hand it to the CLI.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = mfadmin::cli::Cli::parse();
    match mfadmin::cli::run(cli) {
        Ok(code) => code,
        // A reader that stopped early (`mfadmin user list | head`) is not a failure.
        Err(e) if e.chain().any(is_broken_pipe) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mfadmin: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind::BrokenPipe;
    e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == BrokenPipe)
        || e.downcast_ref::<serde_json::Error>().is_some_and(|j| j.io_error_kind() == Some(BrokenPipe))
        || e.downcast_ref::<csv::Error>().is_some_and(|c| matches!(c.kind(), csv::ErrorKind::Io(io) if io.kind() == BrokenPipe))
}
