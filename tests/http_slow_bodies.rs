//! Slow bodies against the real `mfadmin serve` with few file descriptors (issue #20, item 2): one
//! address trickling request bodies on many connections cannot hold the server's descriptors, a
//! trickled body is cut off after the body-read timeout, and `/healthz` keeps answering.

mod figures;
mod http_support;
mod serve_support;

use http_support::parse_response;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Open fewer descriptors than the attack needs.
const FD_LIMIT: u32 = 64;
const ATTACK_CONNECTIONS: usize = 100;

async fn connect_from(source: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source.parse().unwrap(), 0))?;
    socket.connect(to).await
}

/// A login whose body promises 1,000 bytes and sends one.
async fn trickle(to: SocketAddr) -> Option<TcpStream> {
    let mut stream = connect_from("127.0.0.1", to).await.ok()?;
    let head = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nhost: {to}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{"
    );
    stream.write_all(head.as_bytes()).await.ok()?;
    Some(stream)
}

/// `/healthz` from another loopback address, and how long the answer took (`None`: no answer).
async fn healthz_from(source: &str, to: SocketAddr, wait: Duration) -> Option<(u16, Duration)> {
    let started = Instant::now();
    let exchange = async {
        let mut stream = connect_from(source, to).await.ok()?;
        let req = format!("GET /healthz HTTP/1.1\r\nhost: {to}\r\nconnection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.ok()?;
        (!raw.is_empty()).then(|| parse_response(&raw).status.as_u16())
    };
    let status = tokio::time::timeout(wait, exchange).await.ok().flatten()?;
    Some((status, started.elapsed()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_slow_bodies_from_one_address_neither_exhaust_descriptors_nor_stop_healthz() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_mfadmin");
    let prepare = |args: &[&str]| {
        let mut cmd = Command::new(bin);
        cmd.arg("--data-dir").arg(dir.path()).env_remove("RUST_LOG").env_remove("MFADMIN_CONFIG").env("NO_COLOR", "1");
        cmd.args(args);
        cmd
    };
    let demo = prepare(&["demo", "--users", "5"]).output().unwrap();
    assert!(demo.status.success(), "{}", String::from_utf8_lossy(&demo.stderr));

    // `serve` under a small descriptor limit (soft and hard), with small settings.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -n {FD_LIMIT} && exec \"$0\" \"$@\""))
        .arg(bin)
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("RUST_LOG")
        .env_remove("MFADMIN_CONFIG")
        .env("NO_COLOR", "1")
        .env("MFADMIN_BODY_READ_TIMEOUT_SECONDS", "2")
        .env("MFADMIN_MAX_CONNECTIONS_PER_CLIENT", "8");
    let (mut child, addr, _log) = serve_support::spawn_serve(cmd, &[], Instant::now() + Duration::from_secs(30));
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _kill = Kill(&mut child);

    assert!(healthz_from("127.0.0.2", addr, Duration::from_secs(5)).await.is_some(), "the server answers before the attack");
    let started = Instant::now();
    let mut held = Vec::new();
    for _ in 0..ATTACK_CONNECTIONS {
        if let Some(s) = trickle(addr).await {
            held.push(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let health = healthz_from("127.0.0.2", addr, Duration::from_secs(1)).await;
    let (status, took) = health.expect("/healthz answers within 1 s while one address holds 100 slow bodies");
    assert_eq!(status, 200);

    // The slow bodies that were let in are answered 408 once the body-read timeout passes.
    let mut timed_out = 0;
    for mut stream in held {
        let mut raw = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw)).await;
        if read.is_ok() && raw.starts_with(b"HTTP/1.1 408") {
            timed_out += 1;
        }
    }
    let cut_off = started.elapsed();
    assert!((1..=8).contains(&timed_out), "{timed_out} slow bodies were answered 408 (at most 8 were let in)");
    assert!(cut_off < Duration::from_secs(10), "the slow bodies were cut off after {cut_off:?}");
    figures::report(&format!(
        "hardening: {ATTACK_CONNECTIONS} slow bodies from 127.0.0.1 with {FD_LIMIT} descriptors: /healthz 200 in {} ms; \
         {timed_out} let in, answered 408 after the 2 s body timeout; all gone after {:.1} s",
        took.as_millis(),
        cut_off.as_secs_f64()
    ));
}
