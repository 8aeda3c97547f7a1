//! Shell completions and man pages, generated from the same clap definitions that parse the command line.

use anyhow::Context as _;
use std::io::Write;
use std::path::Path;

/// The shells `mfadmin completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// Write the completion script of the command line `cmd` for `shell` to `out`.
pub fn completions(shell: CompletionShell, mut cmd: clap::Command, out: &mut dyn Write) -> anyhow::Result<()> {
    let shell = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    cmd.set_bin_name("mfadmin");
    cmd.build();
    // The fallible form: a closed pipe (`mfadmin completions bash | head`) is an error, not a panic.
    clap_complete::Generator::try_generate(&shell, &cmd, out)?;
    Ok(())
}

/// `mfadmin.1` alone, for standard output.
pub fn man_page(cmd: clap::Command, out: &mut dyn Write) -> anyhow::Result<()> {
    clap_mangen::Man::new(cmd).render(out).context("writing the man page")
}

/// `mfadmin.1` and one page per subcommand (`mfadmin-user-list.1`, …) into `dir`, created if needed.
/// Returns the number of `mfadmin*.1` pages the directory then holds.
pub fn man_pages(cmd: clap::Command, dir: &Path) -> anyhow::Result<usize> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create the directory {}", dir.display()))?;
    clap_mangen::generate_to(cmd, dir)
        .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot read the directory {}", dir.display()))?;
    Ok(entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with("mfadmin") && n.ends_with(".1")))
        .count())
}
