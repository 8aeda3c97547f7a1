//! The `mfadmin` binary: parse the command line and hand it to the front end it names.

use clap::{CommandFactory, Parser, Subcommand};
use mfadmin::{app, cli, http, packaging, tui};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "mfadmin",
    version,
    about = "See every user's MFA status and role, and reset MFA for one user or a thousand.",
    long_about = "mfadmin keeps a small identity store (users, roles, passwords, TOTP second factors) in an \
embedded database and lets administrators look at it and reset MFA: from a full-screen console \
(`mfadmin tui`), over a local HTTP API (`mfadmin serve`), or from scripts with the commands below.\n\n\
Commands on the local store act as the console operator (audited as console:<OS user>).\n\
Exit codes: 0 success, 1 failure, 2 usage error.",
    after_help = "Start with: mfadmin demo --users 1000 && mfadmin user list --mfa locked"
)]
struct Cli {
    #[command(flatten)]
    global: app::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Cli(cli::Command),
    /// Serve the admin API over HTTP (loopback by default)
    Serve(http::ServeArgs),
    /// Open the full-screen console
    Tui(tui::TuiArgs),
    /// Print the shell completion script for bash, zsh or fish
    Completions {
        #[arg(value_enum)]
        shell: packaging::CompletionShell,
    },
    /// Write the man pages: mfadmin.1 and one per subcommand into DIR, or mfadmin.1 to standard output
    Man {
        /// Directory for the pages (created if needed) [default: mfadmin.1 to standard output]
        dir: Option<std::path::PathBuf>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        // A reader that stopped early (`mfadmin user list | head`) is not a failure.
        Err(e) if e.chain().any(is_broken_pipe) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mfadmin: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Completions and man pages come from the definitions alone, without reading a config, so a
    // package build can run them anywhere.
    let ctx = || app::Context::from_args(&cli.global);
    let remote_flag = cli.global.remote.is_some();
    match cli.command {
        Command::Cli(command) => cli::run(&ctx()?, &cli.global, command),
        Command::Serve(args) => {
            app::local_only(remote_flag, "serve")?;
            http::serve(&ctx()?, args)
        }
        Command::Tui(args) => tui::run(&ctx()?, args),
        Command::Completions { shell } => {
            packaging::completions(shell, Cli::command(), &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir: None } => {
            packaging::man_page(Cli::command(), &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir: Some(dir) } => {
            let pages = packaging::man_pages(Cli::command(), &dir)?;
            eprintln!("{pages} man pages in {}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind::BrokenPipe;
    e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == BrokenPipe)
        || e.downcast_ref::<serde_json::Error>().is_some_and(|j| j.io_error_kind() == Some(BrokenPipe))
        || e.downcast_ref::<csv::Error>().is_some_and(|c| matches!(c.kind(), csv::ErrorKind::Io(io) if io.kind() == BrokenPipe))
}
