//! `mfadmin backup` and `mfadmin restore`: who may take a backup, its audit event, writing one
//! record by record, restoring one into either kind of store, and the commands (in-process, or
//! through a running server's `GET /api/v1/backup`).
//!
//! The file format is in [`crate::store::backup`]; each store reads its records at one moment
//! (`Store::export`) and writes them into an empty store (`Store::import`).

use crate::app::Context;
use crate::auth::seal::Sealer;
use crate::domain::role::Role;
use crate::domain::Timestamp;
use crate::error::{Error, Result};
use crate::service::{Actor, Principal, Service};
use crate::store::backup::{self as format, BackupWriter, Counts, Opened, Summary};
use crate::store::{Change, Record, Store};
use anyhow::{bail, Context as _};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Write a backup of the whole store for `actor` to `out`, record by record, recording who took it
/// (the event is in the backup). The console may; over HTTP, an Owner may when the store holds
/// only the Owner's org (a backup holds every org, and nobody but the console sees other orgs).
pub fn take(service: &Service, actor: &Actor, now: Timestamp, out: &mut dyn Write) -> Result<Counts> {
    let store = service.store();
    if !matches!(actor.principal, Principal::Console { .. }) {
        if actor.role() != Role::Owner {
            return Err(Error::Forbidden(format!("{} cannot take a backup: only an Owner can", actor.role().with_article())));
        }
        if store.orgs()?.iter().any(|o| Some(o.key.as_str()) != actor.org()) {
            return Err(Error::Forbidden(
                "this store holds other orgs too, and a backup holds all of them: back it up at the console \
                 (on the server's host, `mfadmin backup FILE`)"
                    .into(),
            ));
        }
    }
    let event = crate::service::draft(actor, "store.backup", now);
    store.commit(&[Change { audit: vec![event], ..Change::default() }])?;
    store.flush()?;
    write_backup(&**store, service.sealer(), now, out)
}

/// Write every record of `store` at one moment to `out` as a backup authenticated with `sealer`.
pub fn write_backup(store: &dyn Store, sealer: &Sealer, now: Timestamp, out: &mut dyn Write) -> Result<Counts> {
    let mut writer = BackupWriter::start(out, sealer, now, store.kind())?;
    store.export(now, &mut |record| writer.record(record))?;
    let (out, counts) = writer.finish()?;
    out.flush().map_err(|e| Error::Storage(format!("writing the backup: {e}")))?;
    Ok(counts)
}

/// Put the backup read from `input` into `store`, which holds nothing yet. A backup that turns out
/// altered, cut short or damaged part-way is an error: PostgreSQL keeps nothing of it (one
/// transaction); a sled store must then be removed by the caller, who created it.
pub fn restore_into(store: &dyn Store, input: impl Read, sealer: &Sealer) -> Result<Counts> {
    match format::open(input, Some(sealer))? {
        Opened::Trees(snapshot) => {
            let counts = snapshot.counts();
            let mut records = crate::store::sled::records_of_trees(snapshot)?.into_iter();
            store.import(&mut || Ok(records.next()))?;
            Ok(counts)
        }
        Opened::Records(mut reader) => {
            store.import(&mut || reader.next_record())?;
            Ok(reader.counts())
        }
    }
}

/// Copy every record of `from` into `to` (empty) with no file between: one thread reads while the
/// other writes, a bounded number of records in flight. Returns how many of each were copied.
pub fn copy_store(from: &dyn Store, to: &dyn Store, now: Timestamp) -> Result<Counts> {
    /// A record, or the end: a reader that stops without saying so is an error, not an end.
    enum Sent {
        Record(Record),
        End,
    }
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Sent>(1024);
        let reading = scope.spawn(move || {
            let mut counts = Counts::default();
            let stopped = || Error::Storage("the target store stopped taking records".into());
            from.export(now, &mut |record| {
                counts.add(&record);
                tx.send(Sent::Record(record)).map_err(|_| stopped())
            })?;
            tx.send(Sent::End).map_err(|_| stopped())?;
            Ok::<Counts, Error>(counts)
        });
        let mut reader_gone = false;
        let written = to.import(&mut || match rx.recv() {
            Ok(Sent::Record(record)) => Ok(Some(record)),
            Ok(Sent::End) => Ok(None),
            Err(_) => {
                reader_gone = true;
                Err(Error::Storage("reading the store stopped part-way".into()))
            }
        });
        drop(rx);
        let read = reading.join().unwrap_or_else(|_| Err(Error::Storage("reading the store failed".into())));
        // Whichever side stopped first says why; the other only saw it stop.
        match (read, written) {
            (Ok(counts), Ok(())) => Ok(counts),
            (Err(e), _) if reader_gone => Err(e),
            (_, Err(e)) | (Err(e), Ok(())) => Err(e),
        }
    })
}

/// `mfadmin backup`
#[derive(Debug, Clone, clap::Args)]
pub struct BackupArgs {
    /// The backup file to write (refused if it exists; written whole or not at all, mode 0600), or
    /// `-` for standard output. With --remote it is taken through that server, as the user of
    /// `mfadmin login` (or MFADMIN_TOKEN)
    pub file: PathBuf,
}

/// `mfadmin restore`
#[derive(Debug, Clone, clap::Args)]
pub struct RestoreArgs {
    /// The backup file to read (of either format: records, or an older mfadmin's whole trees)
    pub file: PathBuf,
}

fn describe(c: &Counts) -> String {
    format!("{} users, {} orgs, {} audit events and {} sessions/API keys", c.users, c.orgs, c.audit_events, c.sessions)
}

pub fn backup_cmd(ctx: &Context, args: BackupArgs) -> anyhow::Result<ExitCode> {
    let to_stdout = args.file.as_os_str() == "-";
    if !to_stdout && args.file.exists() {
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
    if to_stdout {
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
        backend.backup(&who, &mut out)?;
        out.flush().context("writing the backup to standard output")?;
        eprintln!("Backup written to standard output. {}", key_file_note(ctx));
        return Ok(ExitCode::SUCCESS);
    }
    let summary = write_new_file(&args.file, |out| backend.backup(&who, out).map_err(anyhow::Error::from), |file| {
        check_written(ctx, file)
    })?;
    let bytes = std::fs::metadata(&args.file).map(|m| m.len()).unwrap_or_default();
    println!("Backed up {} to {} ({bytes} bytes)", describe(&summary.counts), args.file.display());
    eprintln!("{}", key_file_note(ctx));
    Ok(ExitCode::SUCCESS)
}

fn key_file_note(ctx: &Context) -> String {
    format!(
        "The backup holds the TOTP secrets sealed with the key file; it is not in the backup. Keep a copy of \
         the key file ({}) apart from the backups: a restore needs it.",
        ctx.config.key_file().display()
    )
}

/// Read a just-written backup back: whole, its counts as it says, and with this host's key file
/// (when it is the store's) its authentication code too.
fn check_written(ctx: &Context, file: &Path) -> anyhow::Result<Summary> {
    let read = |sealer: Option<&Sealer>| -> Result<Summary> {
        let f = std::fs::File::open(file).map_err(|e| Error::Storage(format!("cannot read {} back: {e}", file.display())))?;
        format::verify(std::io::BufReader::new(f), sealer)
    };
    let summary = match Sealer::load(&ctx.config.key_file()) {
        Ok(sealer) => match read(Some(&sealer)) {
            // The key file here belongs to another store than the server's: check what can be.
            Err(Error::KeyFile(_)) => read(None),
            other => other,
        },
        Err(_) => read(None),
    };
    summary.context("the backup written is not whole; it was not kept")
}

/// Write a new file readable only by its owner, whole or not at all: `fill` writes it under a
/// temporary name, `check` reads it back, and only then does it take its name.
pub fn write_new_file<T>(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>,
    check: impl FnOnce(&Path) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let partial = path.with_extension("partial");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(&partial).with_context(|| format!("cannot create {}", partial.display()))?;
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, file);
    let written = fill(&mut out)
        .and_then(|_| out.into_inner().map_err(|e| anyhow::Error::new(e.into_error())))
        .and_then(|file| file.sync_all().map_err(anyhow::Error::from))
        .and_then(|_| check(&partial))
        .and_then(|checked| std::fs::hard_link(&partial, path).map(|_| checked).map_err(anyhow::Error::from));
    match written {
        Ok(checked) => {
            std::fs::remove_file(&partial).with_context(|| format!("cannot remove {}", partial.display()))?;
            Ok(checked)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e.context(format!("cannot write {}", path.display())))
        }
    }
}

/// The key file a restore needs, with what to do when it is not there or not the store's.
fn restore_key(ctx: &Context) -> anyhow::Result<Sealer> {
    let key_file = ctx.config.key_file();
    Sealer::load(&key_file).map_err(|e| {
        anyhow::anyhow!(
            "{e}\nA restore needs the key file of the store the backup was taken from: copy it to {} \
             (or point --key-file at it), then run the restore again",
            key_file.display()
        )
    })
}

/// Refuse a sled data directory that holds anything but the key file.
fn sled_target_is_empty(ctx: &Context) -> anyhow::Result<()> {
    let data_dir = ctx.config.data_dir();
    let key_file = ctx.config.key_file();
    if let Ok(entries) = std::fs::read_dir(&data_dir) {
        let others: Vec<String> =
            entries.filter_map(|e| e.ok()).filter(|e| e.path() != key_file).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        if !others.is_empty() {
            bail!(
                "{} is not empty (it holds {}): restore into an empty data directory (only the key file may be there)",
                data_dir.display(),
                others.join(", ")
            );
        }
    }
    Ok(())
}

/// A store to restore into: sled's is new (and removed again if the restore fails); PostgreSQL's
/// tables are made if absent (a store there must be empty: the import checks).
fn restore_target(ctx: &Context) -> anyhow::Result<Arc<dyn Store>> {
    use crate::config::StoreKind;
    match ctx.config.store.kind {
        StoreKind::Sled => {
            crate::store::private::make_private(&ctx.config.data_dir())?;
            Ok(crate::store::create_configured(&ctx.config)?)
        }
        StoreKind::Postgres if crate::store::configured_store_exists(&ctx.config)? => Ok(crate::store::open_configured(&ctx.config)?),
        StoreKind::Postgres => Ok(crate::store::create_configured(&ctx.config)?),
    }
}

/// Check a restored or copied store as `mfadmin check` does: its indexes and its audit chain.
/// Prints what it finds; true when all is well.
pub fn check_and_report(service: &Service) -> Result<bool> {
    let (problems, chain) = service.check(&Actor::console("cli"))?;
    for p in &problems {
        println!("problem: {p}");
    }
    if chain.ok {
        println!("audit chain: {} events, intact", chain.events);
    } else {
        println!("problem: the audit chain is broken at event {}", chain.broken_at.unwrap_or_default());
    }
    Ok(problems.is_empty() && chain.ok)
}

pub fn restore_cmd(ctx: &Context, args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let open_file = || -> anyhow::Result<std::io::BufReader<std::fs::File>> {
        let f = std::fs::File::open(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
        Ok(std::io::BufReader::with_capacity(256 * 1024, f))
    };
    // Read it whole first, so that a bad file is refused before anything is written.
    let precheck = format::open(open_file()?, None).map(|_| ());
    precheck.with_context(|| format!("{} cannot be restored", args.file.display()))?;
    let sled = ctx.config.store.kind == crate::config::StoreKind::Sled;
    if sled {
        sled_target_is_empty(ctx)?;
    }
    let sealer = restore_key(ctx)?;
    format::verify(open_file()?, Some(&sealer)).with_context(|| format!("{} cannot be restored", args.file.display()))?;
    let place = crate::store::configured_place(&ctx.config);
    let store = restore_target(ctx)?;
    let restored = restore_into(&*store, open_file()?, &sealer).and_then(|counts| {
        store.flush()?;
        Ok((counts, Service::new(store.clone(), sealer, ctx.config.policy())?))
    });
    drop(store);
    let (counts, service) = match restored {
        Ok(done) => done,
        Err(e) => {
            if sled {
                // Nothing was there before: leave nothing behind.
                let _ = std::fs::remove_dir_all(ctx.config.store_dir());
            }
            return Err(anyhow::Error::new(e).context(format!("{} was not restored; nothing was kept", args.file.display())));
        }
    };
    println!("Restored {} into {place}", describe(&counts));
    let ok = check_and_report(&service)?;
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
