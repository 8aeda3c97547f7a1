//! `mfadmin backup` and `mfadmin restore`: who may take a backup, its audit event, and the commands
//! (in-process on a free store, or through a running server's `GET /api/v1/backup`).
//!
//! The file format and the consistent snapshot are in [`crate::store::backup`].

use crate::auth::seal::Sealer;
use crate::cli::Context;
use crate::domain::audit::{AuditDraft, Outcome};
use crate::domain::role::Role;
use crate::domain::Timestamp;
use crate::error::{Error, Result};
use crate::service::{Actor, Principal, Service};
use crate::store::backup::{self as format, Snapshot};
use crate::store::Change;
use anyhow::{bail, Context as _};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Take a consistent snapshot of the whole store for `actor`, recording who took it (the event is
/// in the snapshot). The console may; over HTTP, an Owner may when the store holds only the Owner's
/// org (a backup holds every org, and nobody but the console sees other orgs).
pub fn take(service: &Service, actor: &Actor, now: Timestamp) -> Result<Snapshot> {
    let store = service.store();
    if !matches!(actor.principal, Principal::Console { .. }) {
        if actor.role() != Role::Owner {
            return Err(Error::Forbidden(format!("{} cannot take a backup: only an Owner can", actor.role().with_article())));
        }
        if store.orgs()?.iter().any(|o| Some(o.key.as_str()) != actor.org()) {
            return Err(Error::Forbidden(
                "this store holds other orgs too, and a backup holds all of them: back it up at the console \
                 (stop the server, then `mfadmin backup FILE`)"
                    .into(),
            ));
        }
    }
    let event = AuditDraft {
        at: now,
        actor: actor.audit_name(),
        action: "store.backup".into(),
        target_id: None,
        target: None,
        org: actor.org().map(str::to_string),
        outcome: Outcome::Success,
        reason: None,
        detail: None,
        source: actor.source.clone(),
    };
    store.commit(&[Change { audit: vec![event], ..Change::default() }])?;
    store.flush()?;
    store.snapshot(now)
}

/// `mfadmin backup`
#[derive(Debug, Clone, clap::Args)]
pub struct BackupArgs {
    /// The backup file to write (refused if it exists)
    pub file: PathBuf,
    /// Take it through a running `mfadmin serve` at this address (e.g. http://127.0.0.1:7070)
    #[arg(long, value_name = "URL")]
    pub remote: Option<String>,
    /// With --remote: a file holding an Owner's API key or session token
    #[arg(long, value_name = "FILE", requires = "remote")]
    pub token_file: Option<PathBuf>,
}

/// `mfadmin restore`
#[derive(Debug, Clone, clap::Args)]
pub struct RestoreArgs {
    /// The backup file to read
    pub file: PathBuf,
}

pub fn backup_cmd(ctx: &Context, actor: &Actor, args: BackupArgs) -> anyhow::Result<ExitCode> {
    if args.file.exists() {
        bail!("{} already exists: choose a new file name (a backup never overwrites one)", args.file.display());
    }
    let bytes = match &args.remote {
        Some(url) => {
            let token_file = args.token_file.as_deref().context("--remote needs --token-file FILE with an Owner's API key")?;
            let token = std::fs::read_to_string(token_file)
                .with_context(|| format!("cannot read the token file {}", token_file.display()))?;
            let bytes = fetch(url, token.trim())?;
            Snapshot::decode(&bytes).context("the server's answer is not a whole backup")?;
            bytes
        }
        None => {
            let service = match ctx.open_service() {
                Err(Error::StoreLocked { dir }) => bail!(
                    "the store in {} is held by a running server: back it up through it with \
                     `mfadmin backup --remote http://ADDR:PORT --token-file FILE {}` (an Owner's API key)",
                    dir.display(),
                    args.file.display()
                ),
                other => other?,
            };
            take(&service, actor, crate::cli::now())?.encode()
        }
    };
    let snapshot = Snapshot::decode(&bytes)?;
    write_new_file(&args.file, &bytes)?;
    let c = snapshot.counts();
    println!(
        "Backed up {} users, {} orgs, {} audit events and {} sessions/API keys to {} ({} bytes)",
        c.users,
        c.orgs,
        c.audit_events,
        c.sessions,
        args.file.display(),
        bytes.len()
    );
    eprintln!(
        "The backup holds the TOTP secrets sealed with the key file; it is not in the backup. Keep a copy of \
         the key file ({}) apart from the backups: a restore needs it.",
        ctx.config.key_file().display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Write `bytes` to a new file readable only by its owner, whole or not at all.
fn write_new_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let partial = path.with_extension("partial");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    let written = file.write_all(bytes).and_then(|_| file.sync_all());
    if let Err(e) = written.and_then(|_| std::fs::hard_link(&partial, path)) {
        let _ = std::fs::remove_file(&partial);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    std::fs::remove_file(&partial).with_context(|| format!("cannot remove {}", partial.display()))?;
    Ok(())
}

pub fn restore_cmd(ctx: &Context, args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let snapshot = Snapshot::decode(&bytes).with_context(|| format!("{} cannot be restored", args.file.display()))?;
    let data_dir = ctx.config.data_dir();
    let key_file = ctx.config.key_file();
    let store_dir = ctx.config.store_dir();
    if let Ok(entries) = std::fs::read_dir(&data_dir) {
        let others: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path() != key_file)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if !others.is_empty() {
            bail!(
                "{} is not empty (it holds {}): restore into an empty data directory (only the key file may be there)",
                data_dir.display(),
                others.join(", ")
            );
        }
    }
    let sealer = Sealer::load(&key_file).map_err(|e| {
        anyhow::anyhow!(
            "{e}\nA restore needs the key file of the store the backup was taken from: copy it to {} \
             (or point --key-file at it), then run the restore again",
            key_file.display()
        )
    })?;
    let store = format::restore(&snapshot, &store_dir)?;
    let opened = Service::new(Arc::new(store), sealer, ctx.config.policy()).and_then(|service| {
        let (problems, chain) = service.check(&Actor::console("cli"))?;
        Ok((service, problems, chain))
    });
    let (service, problems, chain) = match opened {
        Ok(done) => done,
        Err(e) => {
            // Nothing was there before: leave nothing behind.
            let _ = std::fs::remove_dir_all(&store_dir);
            return Err(anyhow::Error::new(e).context("the restored store does not open; nothing was kept"));
        }
    };
    let c = snapshot.counts();
    println!(
        "Restored {} users, {} orgs, {} audit events and {} sessions/API keys into {}",
        c.users,
        c.orgs,
        c.audit_events,
        c.sessions,
        data_dir.display()
    );
    for p in &problems {
        println!("problem: {p}");
    }
    if !chain.ok {
        println!("problem: the audit chain is broken at event {}", chain.broken_at.unwrap_or_default());
    } else {
        println!("audit chain: {} events, intact", chain.events);
    }
    drop(service);
    Ok(if problems.is_empty() && chain.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `GET /api/v1/backup` from a server at `url` (plain HTTP, as `mfadmin serve` speaks).
fn fetch(url: &str, token: &str) -> anyhow::Result<Vec<u8>> {
    let rest = url.strip_prefix("http://").with_context(|| {
        format!("--remote {url:?}: give the server's address as http://HOST:PORT (put TLS in front of it elsewhere)")
    })?;
    let (authority, prefix) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p.trim_end_matches('/')));
    let path = if prefix.is_empty() { "/api/v1/backup".to_string() } else { format!("/{prefix}/api/v1/backup") };
    let mut stream = std::net::TcpStream::connect(authority).with_context(|| format!("cannot connect to {authority}"))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(300)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {authority}\r\nauthorization: Bearer {token}\r\naccept: application/octet-stream\r\nconnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).context("reading the server's answer")?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").context("the server's answer has no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).context("the server's answer has no status")?;
    let mut body = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body)?;
    }
    if status != 200 {
        let detail = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        bail!("the server refused the backup ({status}): {detail}");
    }
    Ok(body)
}

fn dechunk(mut rest: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n").context("a damaged chunked answer")?;
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol])?.trim(), 16)?;
        if size == 0 {
            return Ok(out);
        }
        let start = eol + 2;
        let chunk = rest.get(start..start + size).context("a truncated chunked answer")?;
        out.extend_from_slice(chunk);
        rest = rest.get(start + size + 2..).context("a truncated chunked answer")?;
    }
}
