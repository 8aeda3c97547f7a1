//! The scriptable command line: parses arguments, calls the service, prints tables, JSON or CSV.

use crate::app::{Context, GlobalArgs, TokenFile, ensure_demo_store, local_only, now, remote_backend, remote_options};
use crate::auth::totp;
use crate::domain::mfa::MfaStatus;
use crate::domain::role::Role;
use crate::domain::user::Status;
use crate::error::Error;
use crate::service::{
    audit_csv_row, csv_row, Actor, AuditFormat, AuditQuery, AuditView, ImportOptions, ImportProgress, ImportStage, NewUser, ResetOutcome, ResetReport,
    SortField, StoreCheck, UserQuery, AUDIT_CSV_HEADER,
};
use crate::domain::user::UserView;
use crate::backend::remote::Remote;
use crate::backend::{list_all, Backend, Credential, Login};
use crate::demo;
use anyhow::{bail, Context as _};
use clap::{Args, Subcommand, ValueEnum};
use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new store, its key file, the first org and its owner
    Init(InitArgs),
    /// Fill the store with generated users (creating a demo store if there is none)
    Demo(DemoArgs),
    /// List, show, add, disable, enable, import and export users
    #[command(subcommand)]
    User(UserCommand),
    /// Enroll, confirm, inspect and reset second factors
    #[command(subcommand)]
    Mfa(MfaCommand),
    /// Show orgs, add one, and turn MFA enforcement on or off
    #[command(subcommand)]
    Org(OrgCommand),
    /// Read, verify and export the hash-chained audit log
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Verify the store offline: every index against the records, and the audit chain (exit 1 on a problem)
    Check,
    /// Create, list and revoke API keys for scripts that call `mfadmin serve`
    #[command(subcommand)]
    Apikey(ApikeyCommand),
    /// Write a consistent backup of the whole store to FILE or `-` (in-process, or --remote through a server)
    Backup(crate::backup::BackupArgs),
    /// Restore a backup into the configured store, which must be empty (a sled data directory
    /// holding only the key file, or an empty PostgreSQL database); the key file must be there already
    Restore(crate::backup::RestoreArgs),
    /// Move the store: copy it into an empty store of either kind (sled, PostgreSQL)
    #[command(subcommand)]
    Store(crate::store_move::StoreCommand),
    /// Log in to a running server (--remote URL); keeps the token in the token file (mode 0600)
    Login(LoginArgs),
    /// Revoke the token of `mfadmin login` on the server and delete the token file
    Logout,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Your user name (or email) on the server [default: asked]
    #[arg(long)]
    pub username: Option<String>,
    /// Read the password (and then, when asked for, the code) from standard input, one a line
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Name of the first org
    #[arg(long)]
    pub org: String,
    /// User name of the org's owner
    #[arg(long)]
    pub owner: String,
    /// The owner's email [default: OWNER@localhost.localdomain]
    #[arg(long)]
    pub email: Option<String>,
    /// The owner's display name [default: the user name]
    #[arg(long)]
    pub display_name: Option<String>,
    /// Read the owner's password from the first line of standard input instead of prompting
    #[arg(long)]
    pub password_stdin: bool,
    /// Do not require MFA of the org's users
    #[arg(long)]
    pub no_enforce_mfa: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How many users to generate
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Seed of the generator: the same seed gives the same users
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// List users, filtered and sorted
    List(ListArgs),
    /// Show one user (by user name, email, id or number) and its recent audit events
    Show {
        user: String,
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Add a user
    Add(AddArgs),
    /// Disable a user: it can no longer log in, and its sessions end
    Disable { user: String },
    /// Enable a disabled user
    Enable { user: String },
    /// Set a user's password (prompted, or from standard input)
    SetPassword {
        user: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Import users from CSV with the header username,email,display_name,role,org (and optionally
    /// status: active or disabled; other columns, such as those `user export` adds, are ignored)
    Import {
        /// CSV file, or - for standard input
        file: PathBuf,
        /// Import the valid rows and report the others, instead of importing nothing
        #[arg(long)]
        skip_invalid: bool,
        /// Check every row against the store and report; import nothing
        #[arg(long)]
        check_only: bool,
    },
    /// Export every user as CSV (importable again) or JSON
    Export {
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Csv)]
        output: Output,
    },
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Text to find in user name, display name or email (case-insensitive)
    #[arg(long, short = 'f')]
    pub filter: Option<String>,
    #[arg(long)]
    pub role: Option<Role>,
    #[arg(long)]
    pub org: Option<String>,
    /// enrolled, not_enrolled, must_enroll, pending or locked
    #[arg(long)]
    pub mfa: Option<MfaStatus>,
    /// Only users whose second factor has passed no check for this long, e.g. 180d, 26w or 12h (a
    /// factor never used counts from its enrollment): factors nobody uses, to reset
    #[arg(long, value_name = "AGE", value_parser = |s: &str| crate::service::parse_unused_for(s, false))]
    pub unused_for: Option<u64>,
    /// username, display_name, email, org, role, mfa, last_login, created or number
    #[arg(long, default_value = "username")]
    pub sort: SortField,
    #[arg(long)]
    pub desc: bool,
    /// Show at most this many users
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    pub username: String,
    #[arg(long)]
    pub email: String,
    #[arg(long)]
    pub display_name: Option<String>,
    #[arg(long, default_value = "member")]
    pub role: Role,
    /// The user's org [default: the only org, when the store has one]
    #[arg(long)]
    pub org: Option<String>,
    /// Set a password, read from the first line of standard input
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Subcommand)]
pub enum MfaCommand {
    /// Begin enrollment: print the otpauth URI, the secret and a QR code to scan
    Enroll { user: String },
    /// Confirm an enrollment with the first code from the app; prints the recovery codes once
    Confirm { user: String, code: String },
    /// Show a user's MFA state
    Status { user: String },
    /// Reset the MFA of one or many users (user names, emails, ids or numbers; - reads them from stdin)
    Reset(ResetArgs),
    /// Unlock a factor that wrong codes locked, at once; the factor and its recovery codes stay
    Unlock {
        user: String,
        /// Why (recorded in the audit log)
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// Users to reset; `-` reads one per line from standard input
    #[arg(required = true)]
    pub users: Vec<String>,
    /// Why (recorded in the audit log; required unless reset.reason_required = false)
    #[arg(long)]
    pub reason: Option<String>,
    /// Show what would happen, change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Reset the users that exist even when some named ones do not (by default a list naming an
    /// unknown user changes nothing)
    #[arg(long)]
    pub skip_missing: bool,
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Show the orgs with their users and enforcement
    Show {
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Add an org
    Add {
        name: String,
        #[arg(long)]
        enforce_mfa: bool,
    },
    /// Require (on) or stop requiring (off) MFA for an org's users
    EnforceMfa {
        #[arg(value_enum)]
        state: OnOff,
        /// Which org (needed when there are several)
        #[arg(long)]
        org: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Show the newest events
    List {
        /// Text to find in actor, action, target, reason or detail
        #[arg(long, short = 'f')]
        filter: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Walk the hash chain and name the first broken link (exit 1 if broken); with --file, check a
    /// signed export against its signature instead
    Verify {
        /// A file written by `audit export --signed`: check it against FILE.sig with the key file
        /// (exit 1 if it was changed)
        #[arg(long, value_name = "EXPORT")]
        file: Option<PathBuf>,
    },
    /// Export every event, oldest first
    Export {
        #[arg(long, value_enum, default_value_t = AuditFormat::Jsonl)]
        format: AuditFormat,
        /// Write to this file instead of standard output
        #[arg(long, short = 'o', visible_alias = "file", value_name = "FILE")]
        output: Option<PathBuf>,
        /// Also write FILE.sig, a MAC of the export under the key file, so that whoever holds the
        /// key file can check a copy later with `audit verify --file FILE`
        #[arg(long, requires = "output")]
        signed: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApikeyCommand {
    /// Create an API key for USER (an Owner or Admin), acting with ROLE; prints the key once
    Create {
        #[arg(long)]
        user: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "helpdesk", conflicts_with = "validate_only")]
        role: Role,
        /// A key that can only check second factors (`/validate/check`): for a RADIUS server, a
        /// PAM module or an application; it checks the users of USER's org
        #[arg(long)]
        validate_only: bool,
    },
    /// List the unexpired API keys (never the keys themselves), with the ids that revoke them
    List {
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Revoke an API key by its id (from `mfadmin apikey list`)
    Revoke { id: String },
}






/// A line of standard input, or a prompt on the terminal (hidden for secrets).
fn ask(prompt: &str, from_stdin: bool, secret: bool) -> anyhow::Result<String> {
    if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).with_context(|| format!("reading {prompt} from standard input"))?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_string());
    }
    if secret {
        return Ok(rpassword::prompt_password(format!("{prompt}: "))?);
    }
    eprint!("{prompt}: ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_string())
}

/// `mfadmin login --remote URL`: password, then the code (or enrollment), then keep the token.
fn login(ctx: &Context, args: LoginArgs) -> anyhow::Result<ExitCode> {
    let Some(remote) = remote_backend(ctx, "cli")? else {
        bail!("log in to which server? Give --remote URL (or `remote` in the config, MFADMIN_REMOTE)");
    };
    let username = match args.username {
        Some(u) => u,
        None => ask("User name or email", args.password_stdin, false)?,
    };
    let password = ask(&format!("Password for {username}"), args.password_stdin, true)?;
    let who = match remote.login_password(&username, &password)? {
        Login::Done(who) => who,
        Login::MfaRequired { challenge } => {
            let code = ask("Code from your authenticator app (or a recovery code)", args.password_stdin, false)?;
            remote.login_code(&challenge, &code)?
        }
        Login::EnrollmentRequired { challenge } => {
            eprintln!("Your org requires MFA and you have none yet: enroll now.");
            print_enrollment(&remote.login_enroll_begin(&challenge)?);
            let code = ask("First code from the app", args.password_stdin, false)?;
            let (who, confirmed) = remote.login_enroll_confirm(&challenge, &code)?;
            println!("Recovery codes (each works once; shown only now):\n");
            for c in &confirmed.recovery_codes {
                println!("  {c}");
            }
            who
        }
    };
    let token = who.token().context("the server gave no session token")?.to_string();
    let path = ctx.config.token_file();
    TokenFile { url: remote.url().to_string(), token }.write(&path)?;
    eprintln!("Logged in to {} as {} ({}); the token is in {} (mode 0600)", remote.url(), who.name, who.role, path.display());
    Ok(ExitCode::SUCCESS)
}

/// `mfadmin logout`: revoke the token on its server, then delete the token file.
fn logout(ctx: &Context) -> anyhow::Result<ExitCode> {
    let path = ctx.config.token_file();
    let saved = TokenFile::read(&path)?;
    let url = ctx.config.remote.clone().unwrap_or_else(|| saved.url.clone());
    let remote = Remote::new(&url, &remote_options(ctx, "cli"))?;
    let revoked = match remote.resume(&saved.token) {
        Ok(who) => remote.logout(&who).map(|()| true),
        Err(e) if e.needs_login() => Ok(false),
        Err(e) => Err(e),
    };
    match revoked {
        Ok(revoked) => {
            std::fs::remove_file(&path).with_context(|| format!("cannot delete {}", path.display()))?;
            if revoked {
                eprintln!("Logged out of {url}: the token is revoked and {} deleted", path.display());
            } else {
                eprintln!("The token had already ended on {url}; deleted {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(anyhow::Error::from(e).context(format!(
            "could not revoke the token on {url}, so {} is kept: try again when the server answers",
            path.display()
        ))),
    }
}

/// The store's page cache for `user import` at most, in MiB.
const IMPORT_CACHE_MB: u64 = 32;

/// The command line to suggest as a next step: `mfadmin`, with the `--data-dir` and `--config`
/// that were given (as flags or in the environment), so the hint works as it is printed.
fn suggested(global: &GlobalArgs) -> String {
    let mut line = String::from("mfadmin");
    for (flag, value) in [("--data-dir", &global.data_dir), ("--config", &global.config)] {
        if let Some(path) = value {
            line.push_str(&format!(" {flag} {}", shell_word(&path.to_string_lossy())));
        }
    }
    line
}

/// `word` as one word for a POSIX shell: as it is when that is safe, else in single quotes.
fn shell_word(word: &str) -> String {
    if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c)) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// Run a command of the CLI; the exit code says how it went. The commands that work on the store
/// itself refuse `--remote` (`global.remote`).
pub fn run(ctx: &Context, global: &GlobalArgs, command: Command) -> anyhow::Result<ExitCode> {
    let actor = Actor::console("cli");
    let remote_flag = global.remote.is_some();
    match command {
        Command::Init(args) => {
            local_only(remote_flag, "init")?;
            init(ctx, &actor, args, &suggested(global))
        }
        Command::Demo(args) => {
            local_only(remote_flag, "demo")?;
            demo_cmd(ctx, &actor, args)
        }
        Command::User(cmd @ UserCommand::Import { .. }) => {
            // An import reads and writes each page of the store about once: a large page cache
            // would only hold pages it does not need again (a million rows into 100,000: 1.28 GB resident with 128 MiB, 1.03 GB with 32 MiB, and faster).
            let mut config = ctx.config.clone();
            config.store.cache_mb = config.store.cache_mb.min(IMPORT_CACHE_MB);
            let (backend, who) = Context { config }.backend()?;
            user_cmd(backend.as_ref(), &who, cmd, &suggested(global))
        }
        Command::User(cmd) => {
            let (backend, who) = ctx.backend()?;
            user_cmd(backend.as_ref(), &who, cmd, &suggested(global))
        }
        Command::Mfa(cmd) => {
            let (backend, who) = ctx.backend()?;
            mfa_cmd(backend.as_ref(), &who, cmd)
        }
        Command::Org(cmd) => {
            let (backend, who) = ctx.backend()?;
            org_cmd(backend.as_ref(), &who, cmd)
        }
        Command::Audit(AuditCommand::Verify { file: Some(export) }) => verify_signed_export(ctx, &export),
        Command::Audit(AuditCommand::Export { format, output: Some(output), signed: true }) => {
            // The key first: nothing is exported that could not be signed.
            let sealer = load_key_for_signing(ctx)?;
            let (backend, who) = ctx.backend()?;
            let code = audit_export(backend.as_ref(), &who, format, Some(output.clone()))?;
            let mut file = std::fs::File::open(&output).with_context(|| format!("cannot read back {}", output.display()))?;
            let signature = crate::service::sign_export(&sealer, &mut file).with_context(|| format!("cannot read back {}", output.display()))?;
            let sig_path = crate::service::signature_path(&output);
            std::fs::write(&sig_path, signature).with_context(|| format!("cannot write {}", sig_path.display()))?;
            eprintln!("Signed: {} (check a copy with `mfadmin audit verify --file {}`)", sig_path.display(), output.display());
            Ok(code)
        }
        Command::Audit(cmd) => {
            let (backend, who) = ctx.backend()?;
            audit_cmd(backend.as_ref(), &who, cmd)
        }
        Command::Login(args) => login(ctx, args),
        Command::Logout => logout(ctx),
        Command::Check => {
            local_only(remote_flag, "check")?;
            // The store itself, or the server that holds it (through its local socket).
            let (backend, who) = ctx.store_backend("cli")?;
            let StoreCheck { problems, chain, users, space } = backend.check(&who)?;
            for p in &problems {
                println!("problem: {p}");
            }
            match (&chain.problem, chain.broken_at) {
                (Some(why), Some(at)) => println!("problem: the audit chain is broken at event {at}: {why}"),
                _ => println!("audit chain: {} events, intact", chain.events),
            }
            if let Some(space) = space {
                let reclaimable = match space.reclaimable {
                    Some(bytes) => format!("; about {} could be taken back", human_bytes(bytes)),
                    None => String::new(),
                };
                println!(
                    "space: {} on disk, of which the records are {}{reclaimable}",
                    human_bytes(space.on_disk),
                    human_bytes(space.records)
                );
            }
            if problems.is_empty() && chain.ok {
                println!("store ok: {users} users, every index entry matches its record");
                Ok(ExitCode::SUCCESS)
            } else {
                println!("store has {} problem(s)", problems.len() + usize::from(!chain.ok));
                Ok(ExitCode::FAILURE)
            }
        }
        Command::Apikey(ApikeyCommand::List { output }) => {
            let (backend, who) = ctx.backend()?;
            let keys = backend.api_keys(&who)?;
            let names = org_names(backend.as_ref(), &who);
            print_api_keys(&keys, &names, output)?;
            if output == Output::Table {
                eprintln!("{}", count(keys.len(), "API key", "API keys"));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Apikey(ApikeyCommand::Revoke { id }) => {
            let (backend, who) = ctx.backend()?;
            backend.revoke_api_key(&who, &id)?;
            println!("Revoked the API key {}; scripts that use it are refused from now on", id.trim());
            Ok(ExitCode::SUCCESS)
        }
        Command::Apikey(ApikeyCommand::Create { user, name, role, validate_only }) => {
            local_only(remote_flag, "apikey create")?;
            let service = ctx.open_service()?;
            let as_user = service.act_as(&actor, &user, "cli")?;
            let (key, expires, what) = if validate_only {
                let (key, expires) = service.create_validate_key(&as_user, &name, now())?;
                (key, expires, "that can only check second factors (/validate/check)".to_string())
            } else {
                let (key, expires) = service.create_api_key(&as_user, &name, role, now())?;
                (key, expires, format!("with role {role}"))
            };
            println!("{key}");
            eprintln!(
                "API key {name:?} for {user} {what}, valid until {}. It is shown only this once.",
                table_time(&crate::domain::user::rfc3339(expires))
            );
            Ok(ExitCode::SUCCESS)
        }
        // These pass over the store once, as an import does: a large page cache would only hold
        // pages read once, and grow the process with the store.
        Command::Backup(args) => crate::backup::backup_cmd(&one_pass(ctx), args),
        Command::Restore(args) => crate::backup::restore_cmd(&one_pass(ctx), args),
        Command::Store(command) => {
            local_only(remote_flag, "store")?;
            crate::store_move::run(&one_pass(ctx), command)
        }
    }
}

/// `ctx` with the store's page cache kept at [`IMPORT_CACHE_MB`], for commands that read or write
/// each page of the store about once.
fn one_pass(ctx: &Context) -> Context {
    let mut config = ctx.config.clone();
    config.store.cache_mb = config.store.cache_mb.min(IMPORT_CACHE_MB);
    Context { config }
}

fn read_password(from_stdin: bool, prompt: &str) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_string());
    }
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to ask for the password: pass it on standard input with --password-stdin");
    }
    // A password the store would refuse is refused before it is typed a second time.
    let mut first = rpassword::prompt_password(format!("{prompt}: "))?;
    let mut tries = 1;
    while let Err(why) = crate::auth::password::check_strength(&first) {
        if tries == 3 {
            bail!("{why}");
        }
        eprintln!("{why}; try again.");
        first = rpassword::prompt_password(format!("{prompt}: "))?;
        tries += 1;
    }
    let again = rpassword::prompt_password("Again: ")?;
    if first != again {
        bail!("the two passwords differ");
    }
    Ok(first)
}

fn init(ctx: &Context, actor: &Actor, args: InitArgs, mfadmin: &str) -> anyhow::Result<ExitCode> {
    use crate::domain::user as u;
    let email = args.email.clone().unwrap_or_else(|| format!("{}@localhost.localdomain", args.owner));
    // Check everything before creating anything, so a mistake leaves no half-made store.
    u::validate_name("org name", &args.org).map_err(anyhow::Error::msg)?;
    u::validate_username(&args.owner).map_err(anyhow::Error::msg)?;
    u::validate_email(&email).map_err(anyhow::Error::msg)?;
    if ctx.store_exists() {
        bail!("{} already holds a store; choose another --data-dir", ctx.config.data_dir().display());
    }
    let password = read_password(args.password_stdin, &format!("Password for {}", args.owner))?;
    crate::auth::password::check_strength(&password).map_err(anyhow::Error::msg)?;
    let service = ctx.create_service()?;
    let t = now();
    service.add_org(actor, &args.org, !args.no_enforce_mfa, t)?;
    let owner = NewUser {
        username: args.owner.clone(),
        email,
        display_name: args.display_name.unwrap_or_else(|| args.owner.clone()),
        role: Role::Owner,
        org: args.org.clone(),
        password: Some(password),
    };
    service.add_user(actor, owner, t)?;
    println!("Created the store in {}", ctx.config.data_dir().display());
    println!("Key file: {} (mode 0600; back it up: without it the TOTP secrets cannot be opened)", ctx.config.key_file().display());
    let enrollment = service.begin_enrollment(actor, &args.owner, &ctx.config.totp.issuer, t)?;
    print_enrollment(&enrollment);
    println!("Then confirm with: {mfadmin} mfa confirm {} CODE", shell_word(&args.owner));
    Ok(ExitCode::SUCCESS)
}

fn print_enrollment(e: &crate::service::Enrollment) {
    println!("\nEnroll {} in an authenticator app: scan this code, or type the secret.\n", e.username);
    println!("{}", totp::qr_text(&e.otpauth_uri));
    println!("Secret:  {}", e.secret_base32);
    println!("URI:     {}\n", e.otpauth_uri);
}

fn demo_cmd(ctx: &Context, actor: &Actor, args: DemoArgs) -> anyhow::Result<ExitCode> {
    if args.users > 5_000_000 {
        bail!("--users {} is more than the 5,000,000 a demo store is meant for", args.users);
    }
    let created = !ctx.store_exists();
    let service = ensure_demo_store(ctx, actor)?;
    let started = std::time::Instant::now();
    let fill = if created { demo::Fill::NewStore } else { demo::Fill::ExistingStore };
    let n = demo::populate(&service, actor, args.users, args.seed, now(), fill)?;
    eprintln!(
        "Generated {n} users in {:.1} s into {}",
        started.elapsed().as_secs_f64(),
        ctx.config.data_dir().display()
    );
    if created {
        eprintln!("Demo owner: {} / password {} (a demo store; not for real use)", demo::OWNER, demo::PASSWORD);
    }
    Ok(ExitCode::SUCCESS)
}


// ------------------------------------------------------------------ output

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    // Buffered: standard output writes each line at once, and a report of 100,000 results has
    // nearly a million lines.
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// Print rows as aligned columns under a header.
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line(header.to_vec()));
    for row in rows {
        let _ = writeln!(out, "{}", line(row.iter().map(String::as_str).collect()));
    }
}

/// An RFC 3339 time (`2026-12-01T19:44:20Z`) as tables show it: `2026-12-01 19:44:20Z`.
fn table_time(rfc3339: &str) -> String {
    rfc3339.replacen('T', " ", 1)
}

/// "1 user", "2 users".
fn count(n: usize, one: &str, many: &str) -> String {
    if n == 1 { format!("1 {one}") } else { format!("{n} {many}") }
}

/// Org keys (lower-cased) to the names the orgs were given; empty when the orgs cannot be read.
fn org_names(backend: &dyn Backend, who: &Credential) -> HashMap<String, String> {
    backend
        .orgs(who)
        .map(|orgs| orgs.into_iter().map(|o| (crate::domain::user::org_key(&o.name), o.name)).collect())
        .unwrap_or_default()
}

/// The name `org` (a key) was given, for output.
fn org_name<'a>(names: &'a HashMap<String, String>, org: &'a str) -> &'a str {
    names.get(org).map_or(org, String::as_str)
}

/// The users' org as its given name (user records keep the lower-cased key).
fn named_orgs(users: &[UserView], names: &HashMap<String, String>) -> Vec<UserView> {
    users.iter().map(|u| UserView { org: org_name(names, &u.org).to_string(), ..u.clone() }).collect()
}

/// The fields of a user's JSON: CSV carries the same ones.
const USER_CSV_HEADER: [&str; 16] = [
    "id",
    "number",
    "username",
    "email",
    "display_name",
    "org",
    "role",
    "status",
    "mfa",
    "recovery_codes_left",
    "created_at",
    "last_login_at",
    "mfa_enrolled_at",
    "mfa_reset_at",
    "mfa_last_used_at",
    "mfa_last_client",
];

fn user_csv_row(u: &UserView) -> Vec<String> {
    let opt = |o: &Option<String>| o.clone().unwrap_or_default();
    vec![
        u.id.to_string(),
        u.number.to_string(),
        u.username.clone(),
        u.email.clone(),
        u.display_name.clone(),
        u.org.clone(),
        u.role.to_string(),
        u.status.as_str().into(),
        u.mfa.to_string(),
        u.recovery_codes_left.to_string(),
        u.created_at.clone(),
        opt(&u.last_login_at),
        opt(&u.mfa_enrolled_at),
        opt(&u.mfa_reset_at),
        opt(&u.mfa_last_used_at),
        opt(&u.mfa_last_client),
    ]
}

/// Users in the chosen form; `users` carry org names already (see [`named_orgs`]).
fn print_users(users: &[UserView], output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json => print_json(&users)?,
        Output::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout().lock());
            w.write_record(USER_CSV_HEADER)?;
            for u in users {
                w.write_record(csv_row(user_csv_row(u)))?;
            }
            w.flush()?;
        }
        Output::Table => {
            let rows: Vec<Vec<String>> = users
                .iter()
                .map(|u| {
                    vec![
                        u.number.to_string(),
                        u.username.clone(),
                        u.display_name.clone(),
                        u.email.clone(),
                        u.org.clone(),
                        u.role.to_string(),
                        u.status.as_str().into(),
                        u.mfa.to_string(),
                        u.last_login_at.as_deref().map_or("never".into(), table_time),
                        // The day is enough to find factors nobody uses, and keeps the table narrow.
                        u.mfa_last_used_at.as_deref().map_or("never".into(), |t| t.chars().take(10).collect()),
                    ]
                })
                .collect();
            print_table(&["#", "USERNAME", "NAME", "EMAIL", "ORG", "ROLE", "STATUS", "MFA", "LAST LOGIN", "MFA LAST USED"], &rows);
        }
    }
    Ok(())
}

fn print_api_keys(keys: &[crate::service::ApiKeyView], names: &HashMap<String, String>, output: Output) -> anyhow::Result<()> {
    let keys: Vec<_> = keys.iter().map(|k| crate::service::ApiKeyView { org: org_name(names, &k.org).to_string(), ..k.clone() }).collect();
    if output == Output::Json {
        return print_json(&keys);
    }
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            let time = |t: &str| if output == Output::Table { table_time(t) } else { t.to_string() };
            vec![
                k.id.clone(),
                k.name.clone(),
                k.role.to_string(),
                k.owner.clone(),
                k.org.clone(),
                time(&k.created_at),
                time(&k.expires_at),
                k.validate_only.to_string(),
            ]
        })
        .collect();
    if output == Output::Csv {
        let mut w = csv::Writer::from_writer(std::io::stdout().lock());
        w.write_record(["id", "name", "role", "owner", "org", "created_at", "expires_at", "validate_only"])?;
        for r in &rows {
            w.write_record(r)?;
        }
        w.flush()?;
    } else {
        print_table(&["ID", "NAME", "ROLE", "OWNER", "ORG", "CREATED", "EXPIRES", "VALIDATE ONLY"], &rows);
    }
    Ok(())
}

// ------------------------------------------------------------------ users

fn user_cmd(backend: &dyn Backend, who: &Credential, cmd: UserCommand, mfadmin: &str) -> anyhow::Result<ExitCode> {
    // Asked for only by the commands that name orgs: the org list counts every org's users, which
    // reads every user into memory (an import of a million rows would hold them all twice).
    let names = std::cell::LazyCell::new(|| org_names(backend, who));
    match cmd {
        UserCommand::List(a) => {
            if let Some(org) = a.org.as_deref()
                && !names.contains_key(&crate::domain::user::org_key(org))
            {
                let mut known: Vec<&str> = names.values().map(String::as_str).collect();
                known.sort_unstable();
                bail!("there is no org {org:?} (the orgs: {}); see `mfadmin org show`", known.join(", "));
            }
            let query = UserQuery {
                text: a.filter,
                role: a.role,
                org: a.org,
                mfa: a.mfa,
                status: None,
                unused_for: a.unused_for,
                sort: a.sort,
                descending: a.desc,
                cursor: None,
                limit: a.limit,
            };
            let page = if query.limit.is_some_and(|l| l <= crate::backend::PAGE) {
                backend.list_users(who, &query)?
            } else {
                let users = list_all(backend, who, &query)?;
                let total = users.len();
                let users = users.into_iter().take(query.limit.unwrap_or(usize::MAX)).collect();
                crate::service::UserPage { users, next_cursor: None, total }
            };
            print_users(&named_orgs(&page.users, &names), a.output)?;
            if a.output == Output::Table {
                eprintln!("{} shown of {} matching", page.users.len(), page.total);
            }
        }
        UserCommand::Show { user, output } => {
            let mut detail = backend.user_detail(who, &user)?;
            detail.user.org = org_name(&names, &detail.user.org).to_string();
            match output {
                Output::Json => print_json(&detail)?,
                Output::Csv => print_users(std::slice::from_ref(&detail.user), Output::Csv)?,
                Output::Table => {
                    let u = &detail.user;
                    let when = |t: &Option<String>| t.as_deref().map_or("never".to_string(), table_time);
                    let password = if detail.password_set {
                        "set".to_string()
                    } else {
                        format!("not set: cannot log in until one is set (`{mfadmin} user set-password {}`)", shell_word(&u.username))
                    };
                    for (k, v) in [
                        ("id", u.id.to_string()),
                        ("number", u.number.to_string()),
                        ("username", u.username.clone()),
                        ("display name", u.display_name.clone()),
                        ("email", u.email.clone()),
                        ("org", u.org.clone()),
                        ("role", u.role.to_string()),
                        ("status", u.status.as_str().into()),
                        ("password", password),
                        ("mfa", u.mfa.to_string()),
                        ("recovery codes left", u.recovery_codes_left.to_string()),
                        ("created", table_time(&u.created_at)),
                        ("last login", when(&u.last_login_at)),
                        ("mfa enrolled", when(&u.mfa_enrolled_at)),
                        ("mfa last used", match (&u.mfa_last_used_at, &u.mfa_last_client) {
                            (Some(at), Some(client)) => format!("{} ({client})", table_time(at)),
                            (at, _) => when(at),
                        }),
                        ("mfa reset", when(&u.mfa_reset_at)),
                    ] {
                        println!("{k:>20}  {v}");
                    }
                    if !detail.recent_audit.is_empty() {
                        println!("\nRecent audit events:");
                        print_audit(&detail.recent_audit);
                    }
                }
            }
        }
        UserCommand::Disable { user } => {
            let v = backend.set_status(who, &user, Status::Disabled)?;
            println!("Disabled {}; their sessions were ended", v.username);
        }
        UserCommand::Enable { user } => {
            let v = backend.set_status(who, &user, Status::Active)?;
            println!("Enabled {}", v.username);
        }
        UserCommand::Add(a) => {
            let org = match a.org {
                Some(org) => org,
                None => {
                    let mut orgs: Vec<&String> = names.values().collect();
                    orgs.sort();
                    match orgs.as_slice() {
                        [only] => only.to_string(),
                        [] => bail!("there is no org to add the user to: create one with `{mfadmin} org add NAME`"),
                        several => bail!(
                            "the store has several orgs ({}): name the user's with --org",
                            several.iter().map(|o| o.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    }
                }
            };
            let password = if a.password_stdin { Some(read_password(true, "")?) } else { None };
            let has_password = password.is_some();
            let display_name = a.display_name.unwrap_or_else(|| a.username.clone());
            let new = NewUser { username: a.username, email: a.email, display_name, role: a.role, org, password };
            let view = backend.add_user(who, new)?;
            println!("Added {} (#{}, {}) to {}", view.username, view.number, view.id, org_name(&names, &view.org));
            if !has_password {
                println!(
                    "{} has no password, so cannot log in yet: set one with `{mfadmin} user set-password {}` \
                     (or add the user with --password-stdin)",
                    view.username,
                    shell_word(&view.username)
                );
            }
        }
        UserCommand::SetPassword { user, password_stdin } => {
            let password = read_password(password_stdin, &format!("New password for {user}"))?;
            backend.set_password(who, &user, &password)?;
            println!("Password set for {user}; their sessions were ended");
        }
        UserCommand::Import { file, skip_invalid, check_only } => {
            return import(backend, who, &file, ImportOptions { check_only, skip_invalid });
        }
        UserCommand::Export { output } => {
            let users = list_all(backend, who, &UserQuery::default())?;
            print_users(&named_orgs(&users, &names), if output == Output::Table { Output::Csv } else { output })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn import(backend: &dyn Backend, who: &Credential, file: &Path, options: ImportOptions) -> anyhow::Result<ExitCode> {
    let mut csv = Vec::new();
    if file == Path::new("-") {
        std::io::stdin().lock().read_to_end(&mut csv).context("reading the CSV from standard input")?;
    } else {
        csv = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    }
    let mut bar = std::io::stderr().is_terminal().then(ProgressBar::default);
    let report = backend.import_users_with_progress(who, &csv, options, &mut |p| {
        if let Some(bar) = &mut bar {
            bar.show(p);
        }
    });
    if let Some(bar) = &mut bar {
        bar.clear();
    }
    let report = report?;
    for e in &report.skipped {
        eprintln!("skipped {e}");
    }
    let skipped = match report.skipped.len() {
        0 => String::new(),
        n => format!("; skipped {}", count(n, "row", "rows")),
    };
    if report.check_only {
        println!("Checked: {} would be imported{skipped}; nothing was changed", count(report.imported, "user", "users"));
    } else {
        println!("Imported {}{skipped}", count(report.imported, "user", "users"));
    }
    Ok(if report.skipped.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// A one-line progress bar on standard error (a terminal), redrawn at most ten times a second.
#[derive(Default)]
struct ProgressBar {
    drawn: Option<(std::time::Instant, ImportStage)>,
}

impl ProgressBar {
    const WIDTH: usize = 30;

    fn show(&mut self, p: ImportProgress) {
        let now = std::time::Instant::now();
        let stage_changed = self.drawn.is_none_or(|(_, stage)| stage != p.stage);
        if !stage_changed && p.done < p.total && self.drawn.is_some_and(|(at, _)| now - at < std::time::Duration::from_millis(100)) {
            return;
        }
        self.drawn = Some((now, p.stage));
        let line = match p.stage {
            ImportStage::Checking => {
                let filled = (p.done * Self::WIDTH).checked_div(p.total).unwrap_or(Self::WIDTH);
                format!("checking [{}{}] {} of {} rows", "#".repeat(filled), ".".repeat(Self::WIDTH - filled), p.done, p.total)
            }
            ImportStage::Writing if p.done < p.total => format!("writing {} users (all or none)...", p.total),
            ImportStage::Writing => format!("written {} users", p.total),
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
    }

    fn clear(&mut self) {
        if self.drawn.is_some() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

// ------------------------------------------------------------------ mfa

fn mfa_cmd(backend: &dyn Backend, who: &Credential, cmd: MfaCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        MfaCommand::Enroll { user } => {
            let e = backend.begin_enrollment(who, &user)?;
            print_enrollment(&e);
            println!("Then confirm with: mfadmin mfa confirm {user} CODE");
        }
        MfaCommand::Confirm { user, code } => {
            let confirmed = backend.confirm_enrollment(who, &user, &code)?;
            println!("MFA is now enrolled for {user}. Recovery codes (each works once; shown only now):\n");
            for c in &confirmed.recovery_codes {
                println!("  {c}");
            }
        }
        MfaCommand::Status { user } => {
            let detail = backend.user_detail(who, &user)?;
            let u = &detail.user;
            match &detail.mfa_locked_until {
                Some(until) => println!(
                    "{}: {} until {} ({} recovery codes left); `mfadmin mfa unlock {}` lifts it now",
                    u.username, u.mfa, table_time(until), u.recovery_codes_left, u.username
                ),
                None => println!("{}: {} ({} recovery codes left)", u.username, u.mfa, u.recovery_codes_left),
            }
        }
        MfaCommand::Reset(args) => return reset(backend, who, args),
        MfaCommand::Unlock { user, reason } => {
            let u = backend.unlock_mfa(who, &user, reason.as_deref())?;
            println!("Unlocked the MFA of {}: it is {} again; wrong codes count from zero", u.username, u.mfa);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn reset(backend: &dyn Backend, who: &Credential, args: ResetArgs) -> anyhow::Result<ExitCode> {
    let mut targets = Vec::new();
    for u in &args.users {
        if u == "-" {
            let mut first = true;
            for line in std::io::stdin().lock().lines() {
                let line = line?;
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                // A list cut from a CSV or a table starts with its column's name.
                let header = first && ["id", "username", "user", "email", "number"].iter().any(|h| line.eq_ignore_ascii_case(h));
                first = false;
                if !header {
                    targets.push(line.to_string());
                }
            }
        } else {
            targets.push(u.clone());
        }
    }
    if targets.is_empty() {
        bail!("no users given: name them, or pass - and give one per line on standard input");
    }
    let reason = args.reason.as_deref();
    let mut progress = |done: usize, total: usize| {
        if done < total {
            eprintln!("progress: {done} of {total}");
        }
    };
    // A list naming someone who does not exist (a typo, perhaps of the user meant) changes nothing.
    // Without a question to ask, the backend decides and resets in one go, and stops before
    // changing anything when someone is missing; otherwise a dry run decides first, so that the
    // question can say what will happen.
    if args.yes && !args.skip_missing && !args.dry_run {
        let report = backend.reset_mfa_if_all_found(who, &targets, reason, &mut progress)?;
        if report.dry_run {
            refuse_missing(&report, args.output)?;
        }
        return finish_reset(&report, &args);
    }
    let plan = if args.dry_run || (args.skip_missing && args.yes) {
        None
    } else {
        Some(backend.reset_mfa(who, &targets, reason, true, &mut |_, _| {})?)
    };
    if let Some(plan) = &plan
        && !args.skip_missing
    {
        refuse_missing(plan, args.output)?;
    }
    if let Some(plan) = plan.as_ref().filter(|_| !args.yes) {
        let will = plan.count(ResetOutcome::Reset);
        if !std::io::stdin().is_terminal() || args.users.iter().any(|u| u == "-") {
            bail!("refusing to reset {will} users without confirmation: add --yes (or look first with --dry-run)");
        }
        print_reset(plan, Output::Table)?;
        eprint!("Reset MFA for {}? Type yes to confirm: ", count(will, "user", "users"));
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            eprintln!("Nothing was changed.");
            return Ok(ExitCode::FAILURE);
        }
    }
    let report = backend.reset_mfa(who, &targets, reason, args.dry_run, &mut progress)?;
    finish_reset(&report, &args)
}

/// When `plan` names targets that were not found: print it, and the error that nothing was changed.
fn refuse_missing(plan: &ResetReport, output: Output) -> anyhow::Result<()> {
    let missing: Vec<&str> = plan.results.iter().filter(|r| r.outcome == ResetOutcome::NotFound).map(|r| r.target.as_str()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    print_reset(plan, output)?;
    let shown: Vec<&str> = missing.iter().take(5).copied().collect();
    bail!(
        "{} not found ({}{}), so nothing was changed: correct the list, or add --skip-missing to reset the \
         users that exist",
        count(missing.len(), "user named was", "users named were"),
        shown.join(", "),
        if missing.len() > shown.len() { ", …" } else { "" }
    );
}

/// Print the report of a reset that ran, and whether every target came out as asked.
fn finish_reset(report: &ResetReport, args: &ResetArgs) -> anyhow::Result<ExitCode> {
    print_reset(report, args.output)?;
    let clean = report.results.iter().all(|r| match r.outcome {
        ResetOutcome::Reset | ResetOutcome::Skipped => true,
        ResetOutcome::NotFound => args.skip_missing,
        _ => false,
    });
    Ok(if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn print_reset(report: &ResetReport, output: Output) -> anyhow::Result<()> {
    if output == Output::Json {
        return print_json(report);
    }
    let rows: Vec<Vec<String>> = report
        .results
        .iter()
        .map(|r| {
            let outcome = match (r.outcome, report.dry_run) {
                (ResetOutcome::Reset, true) => "would reset".to_string(),
                (o, _) => o.as_str().replace('_', " "),
            };
            vec![
                r.target.clone(),
                r.user_id.map(|id| id.to_string()).unwrap_or_default(),
                r.username.clone().unwrap_or_else(|| "-".into()),
                outcome,
                r.mfa_after.map_or("-".into(), |m| m.to_string()),
                r.detail.clone().unwrap_or_default(),
            ]
        })
        .collect();
    if output == Output::Csv {
        let mut w = csv::Writer::from_writer(std::io::stdout().lock());
        w.write_record(["target", "user_id", "username", "outcome", "mfa_after", "detail"])?;
        for r in &rows {
            w.write_record(csv_row(r))?;
        }
        w.flush()?;
    } else {
        let rows: Vec<Vec<String>> = rows.into_iter().map(|mut r| {
            r.remove(1);
            r
        }).collect();
        print_table(&["TARGET", "USER", "OUTCOME", "MFA AFTER", "DETAIL"], &rows);
    }
    let c = |o| report.count(o);
    eprintln!(
        "{}{}, {} skipped, {} denied, {} not found, {} failed{}",
        if report.dry_run { "dry run, nothing changed: " } else { "" },
        if report.dry_run { format!("{} would be reset", c(ResetOutcome::Reset)) } else { format!("{} reset", c(ResetOutcome::Reset)) },
        c(ResetOutcome::Skipped),
        c(ResetOutcome::Denied),
        c(ResetOutcome::NotFound),
        c(ResetOutcome::Failed),
        match c(ResetOutcome::Unknown) {
            0 => String::new(),
            n => format!(", {n} UNKNOWN (the server's answer was lost: check them with `mfadmin mfa status`)"),
        }
    );
    Ok(())
}

// ------------------------------------------------------------------ orgs and audit

fn org_cmd(backend: &dyn Backend, who: &Credential, cmd: OrgCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        OrgCommand::Show { output } => {
            let orgs = backend.orgs(who)?;
            if output == Output::Json {
                print_json(&orgs)?;
            } else if output == Output::Csv {
                let mut w = csv::Writer::from_writer(std::io::stdout().lock());
                w.write_record(["name", "mfa_enforced", "users", "enrolled"])?;
                for o in &orgs {
                    w.write_record([o.name.clone(), o.mfa_enforced.to_string(), o.users.to_string(), o.enrolled.to_string()])?;
                }
                w.flush()?;
            } else {
                let rows: Vec<Vec<String>> = orgs
                    .iter()
                    .map(|o| {
                        vec![
                            o.name.clone(),
                            if o.mfa_enforced { "on".into() } else { "off".into() },
                            o.users.to_string(),
                            o.enrolled.to_string(),
                        ]
                    })
                    .collect();
                print_table(&["ORG", "MFA ENFORCED", "USERS", "ENROLLED"], &rows);
            }
        }
        OrgCommand::Add { name, enforce_mfa } => {
            let o = backend.add_org(who, &name, enforce_mfa)?;
            println!("Added org {} (MFA enforced: {})", o.name, if o.mfa_enforced { "on" } else { "off" });
        }
        OrgCommand::EnforceMfa { state, org } => {
            let o = backend.set_mfa_enforced(who, org.as_deref(), state == OnOff::On)?;
            println!("MFA enforcement for {} is now {}", o.name, if o.mfa_enforced { "on" } else { "off" });
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_audit(events: &[AuditView]) {
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                table_time(&e.at),
                e.actor.clone(),
                e.action.clone(),
                e.target.clone().unwrap_or_default(),
                e.outcome.as_str().into(),
                e.source.clone(),
                [e.reason.clone(), e.detail.clone()].into_iter().flatten().collect::<Vec<_>>().join(" — "),
            ]
        })
        .collect();
    print_table(&["SEQ", "WHEN", "ACTOR", "ACTION", "TARGET", "OUTCOME", "SOURCE", "REASON / DETAIL"], &rows);
}

fn audit_cmd(backend: &dyn Backend, who: &Credential, cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::List { filter, limit, output } => {
            let events = backend.audit_list(who, &AuditQuery { text: filter, limit: Some(limit), ..AuditQuery::default() })?;
            match output {
                Output::Json => print_json(&events)?,
                Output::Csv => {
                    let mut w = csv::Writer::from_writer(std::io::stdout().lock());
                    w.write_record(AUDIT_CSV_HEADER)?;
                    for e in &events {
                        w.write_record(audit_csv_row(e))?;
                    }
                    w.flush()?;
                }
                Output::Table => print_audit(&events),
            }
        }
        AuditCommand::Verify { .. } => {
            let report = backend.audit_verify(who)?;
            if report.ok {
                println!("The audit chain verifies: {} events, every link intact.", report.events);
            } else {
                println!(
                    "The audit chain is BROKEN at event {}: {}",
                    report.broken_at.unwrap_or_default(),
                    report.problem.unwrap_or_default()
                );
                return Ok(ExitCode::FAILURE);
            }
        }
        AuditCommand::Export { format, output, .. } => return audit_export(backend, who, format, output),
    }
    Ok(ExitCode::SUCCESS)
}

/// The key file, to sign or check an audit export with.
fn load_key_for_signing(ctx: &Context) -> anyhow::Result<crate::auth::seal::Sealer> {
    crate::auth::seal::Sealer::load(&ctx.config.key_file())
        .map_err(|e| anyhow::anyhow!("{e}\nSigning and checking audit exports needs the store's key file (--key-file)"))
}

/// `audit verify --file EXPORT`: the export against EXPORT.sig, with the key file.
fn verify_signed_export(ctx: &Context, export: &std::path::Path) -> anyhow::Result<ExitCode> {
    let sealer = load_key_for_signing(ctx)?;
    let sig_path = crate::service::signature_path(export);
    let signature = std::fs::read_to_string(&sig_path)
        .with_context(|| format!("cannot read the signature {} (written by `mfadmin audit export --signed`)", sig_path.display()))?;
    let mut file = std::fs::File::open(export).with_context(|| format!("cannot read {}", export.display()))?;
    match crate::service::check_export(&sealer, &mut file, &signature) {
        Ok(()) => {
            println!("{} is as mfadmin exported it: its signature {} matches under this key file.", export.display(), sig_path.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("{}: {e}", export.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Every audit event, oldest first, to standard output or a file, written as it arrives.
fn audit_export(backend: &dyn Backend, who: &Credential, format: AuditFormat, file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let out: Box<dyn Write> = match &file {
        Some(path) => Box::new(std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = RecordCounter::new(std::io::BufWriter::new(out), format == AuditFormat::Csv);
    let exported = backend.audit_export(who, format, &mut out).and_then(|()| out.flush().map_err(|e| Error::Storage(e.to_string())));
    if let Err(e) = exported {
        // A reader that stopped early (`mfadmin audit export | head`) is not a failure.
        return if out.broken_pipe { Ok(ExitCode::SUCCESS) } else { Err(e.into()) };
    }
    if let Some(path) = file {
        let header = u64::from(format == AuditFormat::Csv);
        eprintln!("Exported {} events to {}", out.records.saturating_sub(header), path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Counts the records written through it: line ends, except inside a quoted CSV field (which may
/// hold one). A JSON line holds no line end but its last.
struct RecordCounter<W> {
    inner: W,
    csv: bool,
    quoted: bool,
    records: u64,
    broken_pipe: bool,
}

impl<W: Write> RecordCounter<W> {
    fn new(inner: W, csv: bool) -> RecordCounter<W> {
        RecordCounter { inner, csv, quoted: false, records: 0, broken_pipe: false }
    }
}

impl<W: Write> Write for RecordCounter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf).inspect_err(|e| self.broken_pipe |= e.kind() == std::io::ErrorKind::BrokenPipe)?;
        for &b in &buf[..n] {
            match b {
                b'"' if self.csv => self.quoted = !self.quoted,
                b'\n' if !self.quoted => self.records += 1,
                _ => {}
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().inspect_err(|e| self.broken_pipe |= e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// Bytes as a reader takes them in: "712 B", "3.40 MiB", "692 MiB", "1.21 GiB".
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let (mut value, mut unit) = (bytes as f64 / 1024.0, 0);
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let digits = if value < 10.0 { 2 } else if value < 100.0 { 1 } else { 0 };
    format!("{value:.digits$} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn bytes_read_as_a_person_reads_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.00 KiB");
        assert_eq!(human_bytes(3_565_158), "3.40 MiB");
        assert_eq!(human_bytes(725_090_304), "692 MiB");
        assert_eq!(human_bytes(1_300_000_000), "1.21 GiB");
        assert_eq!(human_bytes(u64::MAX), "16777216 TiB");
    }
}
