//! `mfadmin store migrate --to TARGET`: copy the configured store into another one (sled to
//! PostgreSQL, or back) in one step, check the copy, and say what to change in the config.

use crate::app::Context;
use crate::auth::seal::Sealer;
use crate::config::{Config, StoreKind};
use crate::error::Error;
use crate::service::{Actor, Service};
use crate::store::backup::Counts;
use crate::store::Store;
use anyhow::bail;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// `mfadmin store …`
#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Copy the configured store into an empty one of either kind, check the copy, and print what
    /// to change in the config. Stop `mfadmin serve` first (with sled it holds the store)
    Migrate(MigrateArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct MigrateArgs {
    /// Where to: `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (an empty database or schema), or
    /// `sled:DIR` (or a plain path) for a new data directory whose `store` is made there
    #[arg(long, value_name = "TARGET")]
    pub to: String,
}

/// Where a copy goes, read from `--to`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Postgres(String),
    Sled(PathBuf),
}

fn parse_target(to: &str) -> anyhow::Result<Target> {
    let to = to.trim();
    if to.starts_with("postgres://") || to.starts_with("postgresql://") {
        crate::store::postgres::parse_url(to)?;
        return Ok(Target::Postgres(to.to_string()));
    }
    let dir = to.strip_prefix("sled:").unwrap_or(to);
    if dir.is_empty() || dir.contains("://") {
        bail!("--to {to:?} is neither postgres://USER:PASSWORD@HOST:PORT/DATABASE nor sled:DIR (a data directory)");
    }
    Ok(Target::Sled(PathBuf::from(dir)))
}

/// The config of the target store: the same settings, with the store (and for sled the data
/// directory) changed; the key file stays the one the secrets are sealed with.
fn target_config(config: &Config, target: &Target) -> Config {
    let mut to = config.clone();
    to.key_file = Some(config.key_file());
    match target {
        Target::Postgres(url) => {
            to.store.kind = StoreKind::Postgres;
            to.store.url = Some(url.clone());
        }
        Target::Sled(dir) => {
            to.store.kind = StoreKind::Sled;
            to.store.url = None;
            to.data_dir = Some(dir.clone());
        }
    }
    to
}

pub fn run(ctx: &Context, command: StoreCommand) -> anyhow::Result<ExitCode> {
    match command {
        StoreCommand::Migrate(args) => migrate(ctx, args),
    }
}

fn migrate(ctx: &Context, args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let target = parse_target(&args.to)?;
    let to_config = target_config(&ctx.config, &target);
    if crate::store::configured_place(&to_config) == crate::store::configured_place(&ctx.config) && to_config.store.kind == ctx.config.store.kind {
        bail!("--to names the store that is configured now: name another one");
    }
    let source = ctx.open_service().map_err(|e| match e {
        Error::StoreLocked { .. } => anyhow::Error::new(e).context("stop `mfadmin serve` first: a migration copies the store while nothing else writes to it"),
        e => e.into(),
    })?;
    let to = open_empty_target(&to_config)?;
    let now = crate::app::now();
    let console = Actor::console("cli");
    let event = crate::service::draft(&console, "store.migrate", now);
    source.store().commit(&[crate::store::Change { audit: vec![event], ..Default::default() }])?;
    let copied = crate::backup::copy_store(&**source.store(), &*to, now).and_then(|counts| to.flush().map(|_| counts));
    let counts = match copied {
        Ok(counts) => counts,
        Err(e) => {
            drop(to);
            if let Target::Sled(_) = target {
                let _ = std::fs::remove_dir_all(to_config.store_dir());
            }
            return Err(anyhow::Error::new(e).context("the store was not copied; nothing was kept in the target"));
        }
    };
    let sealer = Sealer::load(&ctx.config.key_file())?;
    let copy = Service::new(to, sealer, ctx.config.policy())?;
    println!("Copied {} users, {} orgs, {} audit events and {} sessions/API keys into {}", counts.users, counts.orgs, counts.audit_events, counts.sessions, crate::store::configured_place(&to_config));
    let same = same_counts(&**source.store(), &**copy.store(), &counts)?;
    let ok = crate::backup::check_and_report(&copy)? && same;
    if !ok {
        println!("The copy does not check out: keep the config as it is, and look at the problems above.");
        return Ok(ExitCode::FAILURE);
    }
    println!("{}", config_change(&ctx.config, &target));
    Ok(ExitCode::SUCCESS)
}

/// The target store: PostgreSQL's tables made if absent (one holding a store must be empty, which
/// the import checks), sled's directory new.
fn open_empty_target(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let place = crate::store::configured_place(config);
    if config.store.kind == StoreKind::Sled {
        if crate::store::sled::SledStore::exists(&config.store_dir()) {
            bail!("{place} already holds a store: migrate into a new data directory");
        }
        crate::store::private::make_private(&config.data_dir())?;
    }
    let store = if crate::store::configured_store_exists(config)? {
        crate::store::open_configured(config)?
    } else {
        crate::store::create_configured(config)?
    };
    if store.user_count()? > 0 || !store.orgs()?.is_empty() || store.audit_head()?.is_some() {
        bail!("{place} already holds an mfadmin store with records: migrate into an empty database (or schema)");
    }
    Ok(store)
}

/// Whether the copy holds as many users, orgs and audit events as were copied, and the source
/// still as many (nothing wrote to it meanwhile). Prints any difference.
fn same_counts(source: &dyn Store, copy: &dyn Store, copied: &Counts) -> crate::error::Result<bool> {
    let count = |store: &dyn Store| -> crate::error::Result<(usize, usize, u64)> {
        Ok((store.user_count()?, store.orgs()?.len(), store.audit_head()?.map_or(0, |(seq, _)| seq)))
    };
    let (from, to) = (count(source)?, count(copy)?);
    let expected = (copied.users, copied.orgs, copied.audit_events as u64);
    if from == to && to == expected {
        return Ok(true);
    }
    println!("problem: users, orgs and audit events: {from:?} in the store, {to:?} in the copy, {expected:?} copied");
    Ok(false)
}

/// What to change in the config to use the copy.
fn config_change(config: &Config, target: &Target) -> String {
    let key = config.key_file();
    match target {
        Target::Postgres(url) => format!(
            "To use it, set in the config (or MFADMIN_STORE_KIND / MFADMIN_STORE_URL):\n\n[store]\nkind = \"postgres\"\nurl = \"{url}\"\n\n\
             and keep the key file {} (key_file = \"{}\" if it moves): the secrets are sealed with it.",
            key.display(),
            key.display()
        ),
        Target::Sled(dir) => format!(
            "To use it, set in the config (or MFADMIN_DATA_DIR / MFADMIN_STORE_KIND):\n\ndata_dir = \"{}\"\nkey_file = \"{}\"\n\n[store]\nkind = \"sled\"\n\n\
             The key file stays where it is: the secrets are sealed with it.",
            dir.display(),
            key.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_read_from_what_people_write() {
        assert_eq!(parse_target("postgres://u:p@127.0.0.1:5432/db").unwrap(), Target::Postgres("postgres://u:p@127.0.0.1:5432/db".into()));
        assert_eq!(parse_target("sled:/srv/mfadmin").unwrap(), Target::Sled("/srv/mfadmin".into()));
        assert_eq!(parse_target("/srv/mfadmin").unwrap(), Target::Sled("/srv/mfadmin".into()));
        assert!(parse_target("mysql://x").is_err());
        assert!(parse_target("sled:").is_err());
    }
}
