//! What the remote-mode tests share: the `mfadmin` binary on a store in a temporary directory,
//! and `mfadmin serve` on 127.0.0.1 (port 0), killed when dropped.
#![allow(dead_code)]

#[path = "../serve_support/mod.rs"]
mod serve_support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_mfadmin");
pub const PASSWORD: &str = "correct-horse-battery-staple";

/// A data directory with a config beside it (naming only the server's socket), so no user config
/// is read.
pub struct Site {
    pub tmp: tempfile::TempDir,
    pub data: PathBuf,
    pub config: PathBuf,
    pub token_file: PathBuf,
}

impl Site {
    pub fn new() -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        // No user config is read; the server's local socket is the site's own.
        let config = tmp.path().join("site.toml");
        std::fs::write(&config, format!("[server]\nsocket = {:?}\n", tmp.path().join("mfadmin.sock"))).unwrap();
        let token_file = tmp.path().join("token");
        Site { tmp, data, config, token_file }
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config").arg(&self.config).arg("--data-dir").arg(&self.data).arg("--token-file").arg(&self.token_file);
        for var in ["RUST_LOG", "MFADMIN_REMOTE", "MFADMIN_TOKEN", "MFADMIN_TOKEN_FILE", "MFADMIN_CONFIG"] {
            cmd.env_remove(var);
        }
        cmd.env("NO_COLOR", "1");
        cmd
    }

    /// Run the binary with `stdin`; (exit success, stdout, stderr).
    pub fn run(&self, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> (bool, String, String) {
        let mut cmd = self.command();
        cmd.args(args).envs(env.iter().copied()).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// Run it and insist on success; its standard output.
    #[track_caller]
    pub fn ok(&self, args: &[&str], stdin: &str) -> String {
        let (ok, out, err) = self.run(args, stdin, &[]);
        assert!(ok, "mfadmin {args:?} failed:\n{err}\n{out}");
        out
    }

    /// `mfadmin init` of org Acme (MFA enforced) with owner alice, whose factor is confirmed;
    /// then `users` generated users. Returns alice's TOTP secret (base32).
    pub fn init(&self, users: usize) -> String {
        let out = self.ok(&["init", "--org", "Acme", "--owner", "alice", "--password-stdin"], &format!("{PASSWORD}\n"));
        let secret = out.lines().find_map(|l| l.strip_prefix("Secret:")).expect("init prints the secret").trim().to_string();
        // A code of the previous time step, so that the logins of the test can use the current one.
        // It is accepted only while the current step lasts (one step of skew), so a step about to end
        // is waited out: a confirm that crossed into the next step would be refused.
        let code = code_for(&secret, well_inside_a_step() - 30);
        self.ok(&["mfa", "confirm", "alice", &code], "");
        if users > 0 {
            self.ok(&["demo", "--users", &users.to_string()], "");
        }
        secret
    }

    /// The local socket of the site's server.
    pub fn socket(&self) -> PathBuf {
        self.tmp.path().join("mfadmin.sock")
    }

    pub fn serve(&self) -> Served {
        let deadline = Instant::now() + Duration::from_secs(60);
        let (child, addr, log) = serve_support::spawn_serve(self.command(), &[], deadline);
        Served { child, url: format!("http://{addr}"), log }
    }
}

/// A running `mfadmin serve`; killed when dropped.
pub struct Served {
    pub child: Child,
    pub url: String,
    /// Its log; kept so that the server's writes to it never meet a closed pipe.
    pub log: std::sync::mpsc::Receiver<String>,
}

impl Served {
    /// SIGKILL: the server dies at once, in the middle of whatever it does.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The time now, after waiting out the last 5 seconds of a TOTP step if it is in them, so that a code
/// made for it stays within the server's skew for at least the next 5 seconds.
pub fn well_inside_a_step() -> i64 {
    let step = mfadmin::auth::totp::STEP_SECS as i64;
    let left = step - chrono::Utc::now().timestamp().rem_euclid(step);
    if left <= 5 {
        std::thread::sleep(Duration::from_secs(left as u64) + Duration::from_millis(100));
    }
    chrono::Utc::now().timestamp()
}

/// The TOTP code an authenticator app shows at `time` for a base32 secret.
pub fn code_for(secret_base32: &str, time: i64) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret_base32).expect("a base32 secret");
    mfadmin::auth::totp::code_at(secret.as_bytes(), time as u64)
}

pub fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}
