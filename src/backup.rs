//! `mfadmin backup` and `mfadmin restore`: who may take a backup, its audit event, and the commands
//! (in-process on a free store, or through a running server's `GET /api/v1/backup`).
//!
//! The file format and the consistent snapshot are in [`crate::store::backup`].

use crate::auth::seal::Sealer;
use crate::app::Context;
use crate::domain::role::Role;
use crate::domain::Timestamp;
use crate::error::{Error, Result};
use crate::service::{Actor, Principal, Service};
use crate::store::backup::Snapshot;
use crate::store::Change;
use anyhow::{bail, Context as _};
use std::io::Write;
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
    let event = crate::service::draft(actor, "store.backup", now);
    store.commit(&[Change { audit: vec![event], ..Change::default() }])?;
    store.flush()?;
    store.snapshot(now)
}

/// `mfadmin backup`
#[derive(Debug, Clone, clap::Args)]
pub struct BackupArgs {
    /// The backup file to write (refused if it exists). With --remote it is taken through that
    /// server, as the user of `mfadmin login` (or MFADMIN_TOKEN)
    pub file: PathBuf,
}

/// `mfadmin restore`
#[derive(Debug, Clone, clap::Args)]
pub struct RestoreArgs {
    /// The backup file to read
    pub file: PathBuf,
}

pub fn backup_cmd(ctx: &Context, args: BackupArgs) -> anyhow::Result<ExitCode> {
    if args.file.exists() {
        bail!("{} already exists: choose a new file name (a backup never overwrites one)", args.file.display());
    }
    let (backend, who) = match ctx.backend() {
        Err(e) if matches!(e.downcast_ref::<Error>(), Some(Error::StoreLocked { .. })) => {
            return Err(e.context(format!(
                "a running server holds the store: back it up through it with `mfadmin login --remote URL` \
                 (as an Owner), then `mfadmin backup --remote URL {}`",
                args.file.display()
            )));
        }
        other => other?,
    };
    let bytes = backend.backup(&who)?;
    let snapshot = Snapshot::decode(&bytes).context("what the backend sent is not a whole backup")?;
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
    crate::store::private::make_private(&data_dir)?;
    let store = crate::store::sled::restore(&snapshot, &store_dir)?;
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

