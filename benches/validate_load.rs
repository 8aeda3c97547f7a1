//! Load for `/validate/check` as a RADIUS or PAM plugin sends it: distinct users, each with the
//! current code of their own factor, over keep-alive connections, each check durable before it is
//! answered. Driven by `bench/validate.sh`, which builds the store the way a site does (`init`,
//! `user import`), then:
//!
//!   validate_load enroll DATA_DIR FIRST LAST SECRETS   enroll userFIRST..userLAST, secrets to a file
//!   validate_load enroll-names DATA_DIR NAMES SECRETS  enroll each user named in the file (one a line)
//!   validate_load load ADDR KEY SECRETS CONNECTIONS    one check per user; prints one JSON line

use mfadmin::app::Context;
use mfadmin::auth::totp;
use mfadmin::config::Config;
use mfadmin::service::Actor;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["enroll", dir, first, last, out] => {
            enroll(dir, (first.parse::<u64>().unwrap()..=last.parse().unwrap()).map(|i| format!("user{i}")), out)
        }
        ["enroll-names", dir, names, out] => {
            let names = std::fs::read_to_string(names).expect("the names file");
            enroll(dir, names.lines().map(str::trim).filter(|n| !n.is_empty()).map(str::to_string), out)
        }
        ["load", addr, key, secrets, conns] => load(addr, key, secrets, conns.parse().unwrap()),
        _ => {
            eprintln!(
                "usage: validate_load enroll DATA_DIR FIRST LAST SECRETS | enroll-names DATA_DIR NAMES SECRETS | load ADDR KEY SECRETS CONNECTIONS"
            );
            std::process::exit(2);
        }
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// Enroll each user as the console does (`mfa enroll` + `mfa confirm`), keeping the secrets.
fn enroll(dir: &str, names: impl Iterator<Item = String>, out: &str) {
    let ctx = Context { config: Config { data_dir: Some(dir.into()), ..Config::load(None).unwrap_or_default() } };
    let service = ctx.open_service().expect("the store");
    let console = Actor::console("bench");
    let mut file = std::io::BufWriter::new(std::fs::File::create(out).expect("the secrets file"));
    for name in names {
        let t = now() as i64;
        let e = service.begin_enrollment(&console, &name, "bench", t).expect("begin");
        let secret = totp_rs::Secret::try_from_base32(&e.secret_base32).unwrap().to_vec();
        service.confirm_enrollment(&console, &name, &totp::code_at(&secret, t as u64), t).expect("confirm");
        writeln!(file, "{name} {}", e.secret_base32).unwrap();
    }
}

/// One check per user in the file, split over `conns` connections; the codes are of the step
/// after the enrollment's (the run waits for it when needed).
fn load(addr: &str, key: &str, secrets: &str, conns: usize) {
    let users: Vec<(String, Vec<u8>)> = BufReader::new(std::fs::File::open(secrets).expect("the secrets file"))
        .lines()
        .map(|l| {
            let l = l.unwrap();
            let (name, b32) = l.split_once(' ').unwrap();
            (name.to_string(), totp_rs::Secret::try_from_base32(b32).unwrap().to_vec())
        })
        .collect();
    // Every factor was confirmed (or last checked) with a code of an earlier step: start at the
    // next step, with the whole run inside it or the one after (the server accepts either side).
    std::thread::sleep(Duration::from_millis((30 - now() % 30) * 1000 + 50));
    let step_time = now();
    let requests: Vec<Vec<u8>> = users
        .iter()
        .map(|(name, secret)| {
            let body = format!("user={name}&pass={}", totp::code_at(secret, step_time));
            format!(
                "POST /validate/check HTTP/1.1\r\nhost: {addr}\r\nPI-Authorization: {key}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        })
        .collect();
    let started = Instant::now();
    let shares: Vec<&[Vec<u8>]> = requests.chunks(requests.len().div_ceil(conns)).collect();
    let results: Vec<(Vec<Duration>, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|share| {
                scope.spawn(move || {
                    let mut stream = TcpStream::connect(addr).expect("connect");
                    stream.set_nodelay(true).unwrap();
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let (mut times, mut accepted) = (Vec::with_capacity(share.len()), 0);
                    for req in share {
                        let t0 = Instant::now();
                        stream.write_all(req).unwrap();
                        let body = read_response(&mut reader);
                        times.push(t0.elapsed());
                        if body.contains("\"value\":true") {
                            accepted += 1;
                        }
                    }
                    (times, accepted)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let secs = started.elapsed().as_secs_f64();
    let accepted: usize = results.iter().map(|r| r.1).sum();
    let mut times: Vec<Duration> = results.into_iter().flat_map(|r| r.0).collect();
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)].as_secs_f64() * 1000.0;
    println!(
        "{{\"checks\":{},\"accepted\":{accepted},\"connections\":{conns},\"seconds\":{secs:.2},\"per_second\":{:.0},\"p50_ms\":{:.2},\"p99_ms\":{:.2},\"max_ms\":{:.2}}}",
        times.len(),
        times.len() as f64 / secs,
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
}

/// Read one response (headers and a Content-Length body); return the body.
fn read_response(reader: &mut BufReader<TcpStream>) -> String {
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("a response");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    String::from_utf8_lossy(&body).into_owned()
}
