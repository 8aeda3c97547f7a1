//! Start the real `mfadmin serve` on 127.0.0.1:0 and learn its address from its log: one way for
//! every test that needs a live server.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Instant;

/// Run `mfadmin` (`cmd`, with its data directory and environment already set) as
/// `serve --listen 127.0.0.1:0 <extra>`, and wait until `deadline` for the line that says where it
/// listens. Returns the process, its address and the rest of its log, a line at a time. A server
/// that never says is killed before the test fails.
pub fn spawn_serve(mut cmd: Command, extra: &[&str], deadline: Instant) -> (Child, SocketAddr, Receiver<String>) {
    let mut child = cmd
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mfadmin serve starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mfadmin serve did not say where it listens");
        };
        if let Some(rest) = line.split("listening on http://").nth(1) {
            let addr = rest.split(|c: char| c.is_whitespace() || c == '"' || c == ')').next().unwrap();
            return (child, addr.parse().expect("an address after 'listening on'"), lines);
        }
    }
}
