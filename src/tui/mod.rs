//! The full-screen console (`mfadmin tui`): find, mark and reset many users from the keyboard.
//!
//! Keys become [`action::Action`]s through the [`keymap`]; [`update::update`] changes the
//! [`state::State`] and may ask for an [`effects::Effect`], which runs the service off the UI
//! thread and comes back as another action; [`views::draw`] only reads the state.

pub mod action;
pub mod effects;
pub mod event;
pub mod keymap;
pub mod layout;
pub mod state;
pub mod table;
pub mod terminal;
pub mod theme;
pub mod update;
pub mod views;

use crate::cli::{self, Context};
use crate::demo;
use crate::error::Error;
use crate::service::{Actor, Service};
use action::{Action, Session};
use anyhow::Context as _;
use state::{Options, State};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The seed of the users a new `--demo` store gets: the same every time.
pub const DEMO_SEED: u64 = 42;

#[derive(Debug, Clone, clap::Args)]
pub struct TuiArgs {
    /// Create (or reuse) a demo store in the data directory and log in as its demo owner
    #[arg(long)]
    pub demo: bool,
    /// How many generated users a new demo store gets
    #[arg(long, value_name = "N", default_value_t = 5000)]
    pub demo_users: usize,
    /// Draw without colours (also when NO_COLOR is set)
    #[arg(long)]
    pub no_color: bool,
    /// Let the mouse select rows (click) and scroll (wheel)
    #[arg(long)]
    pub mouse: bool,
}

/// Say what to do when the store cannot be opened, above all when a server holds it.
fn explain(e: anyhow::Error) -> anyhow::Error {
    match e.downcast_ref::<Error>() {
        Some(Error::StoreLocked { .. }) => e.context(
            "the console opens the store itself, so it cannot run while `mfadmin serve` (or another \
             console) holds it. Stop that process and start the console again; connecting the console \
             to a running server (remote mode) comes in a later version",
        ),
        _ => e,
    }
}

/// Open the store; with `--demo`, create or reuse a demo store and log in as its owner.
fn open(ctx: &Context, args: &TuiArgs) -> anyhow::Result<(Service, Option<Session>)> {
    if !args.demo {
        let service = ctx.open_service().map_err(|e| explain(e.into()))?;
        return Ok((service, None));
    }
    let console = Actor::console(effects::SOURCE);
    let service = cli::ensure_demo_store(ctx, &console).map_err(explain)?;
    if service.store().user_count()? <= 1 {
        eprintln!("Generating {} demo users in {}…", args.demo_users, ctx.config.data_dir().display());
        demo::populate(&service, &console, args.demo_users, DEMO_SEED, cli::now())?;
    }
    let actor = service.act_as(&console, demo::OWNER, effects::SOURCE).with_context(|| {
        format!(
            "--demo logs in as the demo owner {:?}, which {} does not have: it holds another store. \
             Choose an empty directory with --data-dir for a demo store",
            demo::OWNER,
            ctx.config.data_dir().display()
        )
    })?;
    Ok((service, Some(Session { actor, token: None, recovery_codes: Vec::new() })))
}

/// Run the console until the admin quits.
pub fn run(ctx: &Context, args: TuiArgs) -> anyhow::Result<ExitCode> {
    let keymap = keymap::KeyMap::with_overrides(&ctx.config.tui.keys).map_err(anyhow::Error::msg)?;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        anyhow::bail!("the console needs a terminal; for scripts use the other commands (mfadmin --help)");
    }
    let (service, session) = open(ctx, &args)?;
    let service = Arc::new(service);
    let options = Options {
        keymap,
        color: theme::color_wanted(args.no_color, std::env::var_os("NO_COLOR").as_deref()),
        reason_required: ctx.config.reset.reason_required,
        mouse: args.mouse,
        store: ctx.config.data_dir().display().to_string(),
    };
    let mut state = State::new(options);
    let first = session.and_then(|s| update::logged_in(&mut state, s));

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut guard = terminal::enter(args.mouse).context("cannot switch the terminal to full-screen mode")?;
    let outcome = runtime.block_on(event_loop(&mut guard.terminal, &mut state, service.clone(), ctx.config.totp.issuer.clone(), first));
    drop(guard);
    if runtime.metrics().num_alive_tasks() > 0 {
        eprintln!("Waiting for the running work to finish…");
    }
    drop(runtime);
    if let Some(token) = state.session.as_ref().and_then(|s| s.token.as_deref()) {
        let _ = service.logout(token);
    }
    outcome?;
    if let Some(why) = state.crashed {
        eprintln!("mfadmin tui: {why}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

async fn event_loop(
    terminal: &mut terminal::Term,
    state: &mut State,
    service: Arc<Service>,
    issuer: String,
    first: Option<effects::Effect>,
) -> anyhow::Result<()> {
    let (action_tx, mut actions) = tokio::sync::mpsc::unbounded_channel::<Action>();
    let (input_tx, mut input) = tokio::sync::mpsc::unbounded_channel();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = event::spawn_reader(input_tx, stop.clone());
    let runner = effects::Runner::new(service, issuer, action_tx);
    let actor = |s: &State| s.session.as_ref().map(|s| s.actor.clone());
    let apply = |state: &mut State, action: Action| {
        if let Some(effect) = update::update(state, action) {
            runner.spawn(effect, actor(state));
        }
    };
    let size = terminal.size()?;
    apply(state, Action::Resize(size.width, size.height));
    if let Some(effect) = first {
        runner.spawn(effect, actor(state));
    }
    let mut tick = tokio::time::interval(Duration::from_millis(120));
    let result = loop {
        apply(state, Action::Busy(runner.running()));
        if let Err(e) = terminal.draw(|frame| views::draw(state, frame)) {
            break Err(e.into());
        }
        if state.quit {
            break Ok(());
        }
        tokio::select! {
            ev = input.recv() => match ev {
                Some(ev) => {
                    if let Some(a) = event::to_action(state, &ev) {
                        apply(state, a);
                    }
                }
                // The terminal is gone: nobody can quit any other way.
                None => break Ok(()),
            },
            Some(a) = actions.recv() => apply(state, a),
            _ = tick.tick(), if runner.running() > 0 => apply(state, Action::Tick),
        }
        // Take everything that queued up meanwhile before drawing again.
        while !state.quit {
            if let Ok(ev) = input.try_recv() {
                if let Some(a) = event::to_action(state, &ev) {
                    apply(state, a);
                }
            } else if let Ok(a) = actions.try_recv() {
                apply(state, a);
            } else {
                break;
            }
        }
    };
    stop.store(true, Ordering::SeqCst);
    let _ = reader.join();
    result
}
