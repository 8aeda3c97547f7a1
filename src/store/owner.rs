//! Who holds a sled store: the process that opens one writes its PID and command (and, for a
//! server, its local socket) into `mfadmin.owner` in the store's directory, so a second process
//! that finds the store locked can say what holds it and what to do, and the CLI can find the
//! server's socket.

use crate::error::Error;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The owner file's name, in the store's directory.
pub const FILE: &str = "mfadmin.owner";

/// What the owner file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub pid: u32,
    /// The mfadmin command that holds it (`serve`, `tui`, `user import`).
    pub command: String,
    /// The local socket a server listens on.
    #[serde(default)]
    pub socket: Option<PathBuf>,
}

impl Owner {
    /// This process, with its command read from its arguments.
    pub fn this_process(socket: Option<&Path>) -> Owner {
        // Another program that opened the store (a test, a tool linking the library) has no
        // mfadmin command.
        let is_mfadmin = std::env::current_exe().ok().and_then(|p| p.file_name().map(|n| n == "mfadmin")).unwrap_or(false);
        let command = if is_mfadmin { command_of(std::env::args().skip(1)) } else { String::new() };
        Owner { pid: std::process::id(), command, socket: socket.map(Path::to_path_buf) }
    }

    pub fn is_server(&self) -> bool {
        self.command == "serve"
    }

    /// What holds the store, for the "in use" message: `: mfadmin serve (PID 812)`.
    fn holder(&self) -> String {
        let what = match self.command.as_str() {
            "serve" => "the server `mfadmin serve`".to_string(),
            "tui" => "the console `mfadmin tui`".to_string(),
            "" => return format!(" (PID {})", self.pid),
            other => format!("`mfadmin {other}`"),
        };
        format!(": {what} (PID {})", self.pid)
    }

    /// What to do about it.
    fn advice(&self) -> String {
        match self.command.as_str() {
            "serve" => {
                let socket = self.socket.as_ref().map_or(String::new(), |s| format!(" ({})", s.display()));
                format!(
                    "The user, mfa, org, audit, backup and check commands and the console reach the running server \
                     through its local socket{socket} by themselves, for root, the server's user and members of its \
                     socket group; others log in to it (mfadmin login --remote URL). To work on the store itself, \
                     stop the server first (systemctl stop mfadmin, or end PID {})",
                    self.pid
                )
            }
            "tui" => format!("Quit that console (q), or ask whoever runs it to (PID {}), then try again", self.pid),
            _ => "Wait for it to finish, then try again".to_string(),
        }
    }
}

/// The command words of mfadmin's arguments (`user import` of `--data-dir D user import f.csv`):
/// the first two that are not flags or flag values.
fn command_of(args: impl Iterator<Item = String>) -> String {
    const TAKES_VALUE: [&str; 6] = ["--data-dir", "--config", "--key-file", "--remote", "--remote-ca-file", "--token-file"];
    let mut words = Vec::new();
    let mut skip_next = false;
    for arg in args {
        if std::mem::take(&mut skip_next) {
            continue;
        }
        if arg.starts_with('-') {
            skip_next = TAKES_VALUE.contains(&arg.as_str());
            continue;
        }
        words.push(arg);
        // Only the commands with subcommands take a second word.
        if words.len() == 2 || !["user", "mfa", "org", "audit", "apikey"].contains(&words[0].as_str()) {
            break;
        }
    }
    words.join(" ")
}

/// Record this process as the holder of the store in `store_dir` (best effort: a store that
/// opened is not refused for want of the note).
pub fn record(store_dir: &Path, socket: Option<&Path>) {
    let owner = Owner::this_process(socket);
    let path = store_dir.join(FILE);
    let Ok(text) = serde_json::to_string(&owner) else {
        return;
    };
    let partial = store_dir.join(format!("{FILE}.{}", owner.pid));
    if std::fs::write(&partial, text).and_then(|_| std::fs::rename(&partial, &path)).is_err() {
        let _ = std::fs::remove_file(&partial);
        tracing::debug!(file = %path.display(), "could not write the owner file");
    }
}

/// The holder recorded for the store in `store_dir`, if that process still runs.
pub fn read(store_dir: &Path) -> Option<Owner> {
    let text = std::fs::read_to_string(store_dir.join(FILE)).ok()?;
    let owner: Owner = serde_json::from_str(&text).ok()?;
    alive(owner.pid).then_some(owner)
}

/// Does a process with this PID run (whoever's it is)?
fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The error for a store in `store_dir` that another process holds, naming it when it can.
pub fn locked(store_dir: &Path) -> Error {
    let dir = store_dir.to_path_buf();
    match read(store_dir) {
        Some(owner) if owner.pid != std::process::id() => Error::StoreLocked { dir, holder: owner.holder(), advice: owner.advice() },
        _ => Error::StoreLocked {
            dir,
            holder: " (probably `mfadmin serve`)".into(),
            advice: "Stop that process first, or work through the running server's HTTP API (see `mfadmin serve --help`).".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(args: &[&str]) -> String {
        command_of(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn the_command_is_read_past_the_flags_and_their_values() {
        assert_eq!(words(&["--data-dir", "/x", "serve", "--listen", "127.0.0.1:0"]), "serve");
        assert_eq!(words(&["user", "import", "users.csv"]), "user import");
        assert_eq!(words(&["--config=/etc/c.toml", "tui", "--demo"]), "tui");
        assert_eq!(words(&[]), "");
    }

    #[test]
    fn a_live_holder_is_named_and_a_dead_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let me = Owner { pid: std::process::id(), command: "serve".into(), socket: Some("/run/mfadmin/mfadmin.sock".into()) };
        std::fs::write(dir.path().join(FILE), serde_json::to_string(&me).unwrap()).unwrap();
        assert_eq!(read(dir.path()), Some(me.clone()));
        assert!(me.holder().contains(&format!("PID {}", std::process::id())));
        assert!(me.advice().contains("/run/mfadmin/mfadmin.sock"));
        // A PID far above any pid_max: no such process.
        let gone = Owner { pid: 0x7fff_fff0, ..me };
        std::fs::write(dir.path().join(FILE), serde_json::to_string(&gone).unwrap()).unwrap();
        assert_eq!(read(dir.path()), None);
    }
}
