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

use crate::app::{self, Context};
use crate::demo;
use crate::error::Error;
use crate::backend::local::Local;
use crate::backend::on_demand::OnDemand;
use crate::backend::remote::Remote;
use crate::backend::Backend;
use crate::service::Actor;
use action::{Action, Session};
use anyhow::Context as _;
use state::{Options, State};
use std::ffi::c_long;
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

/// What the console works on: a backend, and the admin already logged in (`--demo`).
type Opened = (Arc<dyn Backend>, Option<Session>);

/// Say what to do when the store cannot be opened, above all when a server holds it.
fn explain(e: anyhow::Error) -> anyhow::Error {
    match e.downcast_ref::<Error>() {
        Some(Error::StoreLocked { .. }) => e.context(
            "the console opens the store itself, so it cannot run while `mfadmin serve` (or another \
             console) holds it. Connect to a running server instead (remote mode): \
             mfadmin tui --remote http://ADDRESS:PORT; or stop that process and start the console again",
        ),
        _ => e,
    }
}

/// Ask on the terminal whether to connect to the server at `url` instead; true for yes.
fn offer_to_connect(url: &str) -> anyhow::Result<bool> {
    use std::io::{BufRead, Write};
    eprint!(
        "The store is in use by the mfadmin server at {url}.\n\
         Connect the console to that server instead (you log in as a user of the store)? [y/N] "
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim().to_lowercase().as_str(), "y" | "yes"))
}

/// The backend: the server named by `--remote` (or the config), else the store in this process.
/// When a local server holds the store, offer to connect to it instead.
/// `leave` is called before anything is asked or printed on the terminal (it leaves full screen).
fn open(ctx: &Context, args: &TuiArgs, leave: &mut dyn FnMut()) -> anyhow::Result<Opened> {
    if let Some(remote) = app::remote_backend(ctx, effects::SOURCE)? {
        if args.demo {
            anyhow::bail!("--demo works on a store of its own; it cannot be combined with --remote");
        }
        return Ok((Arc::new(remote), None));
    }
    let issuer = &ctx.config.totp.issuer;
    if !args.demo {
        // A server holds the store: log in through its local socket.
        if let Some(server) = ctx.local_server(effects::SOURCE)? {
            return Ok((Arc::new(server), None));
        }
        return match ctx.open_service() {
            Ok(service) => {
                // The store opens, so logins will find it; it is closed again until one does.
                drop(service);
                let ctx = ctx.clone();
                let issuer = issuer.clone();
                let backend = OnDemand::new(move || Ok(Local::new(Arc::new(ctx.open_service()?), effects::SOURCE, &issuer)));
                Ok((Arc::new(backend), None))
            }
            Err(e @ Error::StoreLocked { .. }) => {
                let url = format!("http://{}", ctx.config.server.listen);
                let server = Remote::new(&url, &app::remote_options(ctx, effects::SOURCE)).ok().filter(Remote::reachable);
                if server.is_some() {
                    leave();
                }
                match server {
                    Some(server) if offer_to_connect(&url)? => Ok((Arc::new(server), None)),
                    Some(_) => Err(explain(e.into())),
                    None => Err(explain(e.into())),
                }
            }
            Err(e) => Err(explain(e.into())),
        };
    }
    let console = Actor::console(effects::SOURCE);
    let service = app::ensure_demo_store(ctx, &console).map_err(explain)?;
    // Only the demo owner there yet (counting every user of a large store would take seconds).
    let mut seen = 0;
    service.store().scan_users(&mut |_| {
        seen += 1;
        seen < 2
    })?;
    if seen <= 1 {
        leave();
        eprintln!("Generating {} demo users in {}…", args.demo_users, ctx.config.data_dir().display());
        demo::populate(&service, &console, args.demo_users, DEMO_SEED, app::now(), demo::Fill::ExistingStore)?;
    }
    let actor = service.act_as(&console, demo::OWNER, effects::SOURCE).with_context(|| {
        format!(
            "--demo logs in as the demo owner {:?}, which {} does not have: it holds another store. \
             Choose an empty directory with --data-dir for a demo store",
            demo::OWNER,
            ctx.config.data_dir().display()
        )
    })?;
    let backend = Local::new(Arc::new(service), effects::SOURCE, issuer);
    Ok((Arc::new(backend), Some(Session::acting(actor))))
}

/// Run the console until the admin quits.
pub fn run(ctx: &Context, args: TuiArgs) -> anyhow::Result<ExitCode> {
    let keymap = keymap::KeyMap::with_overrides(&ctx.config.tui.keys).map_err(anyhow::Error::msg)?;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        anyhow::bail!("the console needs a terminal; for scripts use the other commands (mfadmin --help)");
    }
    // The console keeps its own table of the users: it needs little of the store's page cache, and
    // the memory its load frees goes back to the system as it goes.
    let purge_delay = purge_freed_memory_soon();
    let store = crate::config::StoreConfig { cache_mb: ctx.config.tui.store_cache_mb, ..ctx.config.store.clone() };
    let ctx = &Context { config: crate::config::Config { store, ..ctx.config.clone() } };
    // The first frame comes before the store is opened (on a large store that takes a moment).
    let mut screen = Some(terminal::enter(args.mouse).context("cannot switch the terminal to full-screen mode")?);
    let mut timings = Timings::from_env();
    if let Some(guard) = &mut screen {
        let store = ctx.config.remote.clone().unwrap_or_else(|| ctx.config.data_dir().display().to_string());
        guard.terminal.draw(|frame| views::opening(&store, frame))?;
        if let Some(t) = &mut timings {
            t.first_frame();
        }
    }
    let (backend, session) = open(ctx, &args, &mut || drop(screen.take()))?;
    let options = Options {
        keymap,
        color: theme::color_wanted(args.no_color, std::env::var_os("NO_COLOR").as_deref()),
        reason_required: ctx.config.reset.reason_required,
        mouse: args.mouse,
        store: backend.badge().unwrap_or_else(|| ctx.config.data_dir().display().to_string()),
        badge: backend.badge(),
    };
    let mut state = State::new(options);
    let first = session.and_then(|s| update::logged_in(&mut state, s));

    // A blocking thread (the users' load runs on one) ends half a second after its last job, not
    // tokio's ten: ending, it has the allocator take back all the load freed, which costs a core
    // for a moment, better spent before the first keystrokes than among them.
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_keep_alive(Duration::from_millis(500)).enable_all().build()?;
    let control = Arc::new(effects::Control::default());
    let mut guard = match screen {
        Some(guard) => guard,
        None => terminal::enter(args.mouse).context("cannot switch the terminal to full-screen mode")?,
    };
    let outcome = runtime.block_on(event_loop(&mut guard.terminal, &mut state, backend.clone(), control.clone(), first, timings, purge_delay));
    drop(guard);
    control.close();
    if runtime.metrics().num_alive_tasks() > 0 {
        eprintln!("Waiting for the running work to finish…");
    }
    drop(runtime);
    // Outside the runtime: a blocking HTTP client must not be used (or dropped) inside one.
    if let Some(session) = &state.session {
        let _ = backend.logout(&session.who);
    }
    drop(backend);
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
    backend: Arc<dyn Backend>,
    control: Arc<effects::Control>,
    first: Option<effects::Effect>,
    mut timings: Option<Timings>,
    purge_delay: c_long,
) -> anyhow::Result<()> {
    let (action_tx, mut actions) = tokio::sync::mpsc::unbounded_channel::<Action>();
    let (input_tx, mut input) = tokio::sync::mpsc::unbounded_channel();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = event::spawn_reader(input_tx, stop.clone());
    let runner = effects::Runner::new(backend, control, action_tx);
    let actor = |s: &State| s.session.as_ref().map(|s| s.who.clone());
    let apply = |state: &mut State, action: Action| {
        state.now = crate::app::now();
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
    // The clock stands still while idle; when it starts again it must not run through every tick it missed.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut trimmed = false;
    let result = loop {
        apply(state, Action::Busy(runner.running()));
        if let Err(e) = terminal.draw(|frame| views::draw(state, frame)) {
            break Err(e.into());
        }
        if state.load.complete && !state.load.running && !trimmed {
            trimmed = true;
            release_freed_memory(purge_delay);
        }
        if let Some(t) = &mut timings {
            t.drawn(state);
        }
        if state.quit {
            break Ok(());
        }
        tokio::select! {
            ev = input.recv() => match ev {
                Some(ev) => {
                    if let Some(t) = &mut timings {
                        t.key_arrived();
                    }
                    if let Some(a) = event::to_action(state, &ev) {
                        apply(state, a);
                    }
                }
                // The terminal is gone: nobody can quit any other way.
                None => break Ok(()),
            },
            Some(a) = actions.recv() => apply(state, a),
            _ = tick.tick(), if runner.running() > 0 || state.message.is_some() => apply(state, Action::Tick(std::time::Instant::now())),
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

/// mimalloc's `mi_option_purge_delay` (its `mimalloc.h`, of the version pinned in Cargo.toml;
/// the Rust binding names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How soon (ms) the allocator returns freed memory to the system while the users load: at once.
/// The load frees hundreds of megabytes of batches as it goes, and with mimalloc's own delay (a
/// second) they pile up: peak 470–510 instead of 370 MiB at 600,000 rows (10 ms: 390–410 MiB).
const LOAD_PURGE_DELAY_MS: c_long = 0;

/// Return freed memory to the system soon while the users load; gives the delay it replaced.
fn purge_freed_memory_soon() -> c_long {
    // SAFETY: reading and setting an allocator option are plain loads and stores in its table.
    unsafe {
        let was = libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY);
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, LOAD_PURGE_DELAY_MS);
        was
    }
}

/// Once loaded: hand what the load freed back to the system at once (the allocator would otherwise
/// return it only on later activity, which an idle console does not have), then put back the
/// allocator's own delay, so the buffers a keystroke frees are reused by the next one instead of
/// being returned and faulted in again.
fn release_freed_memory(purge_delay: c_long) {
    // SAFETY: mi_collect only frees and returns the allocator's own unused memory; setting an
    // option is a plain store.
    unsafe {
        libmimalloc_sys::mi_collect(true);
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, purge_delay);
    }
}

/// With `MFADMIN_TUI_TIMINGS=FILE`, the console writes to FILE when its first frame and its first
/// rows were drawn and when every user was loaded (Unix time in nanoseconds), and for every key
/// how long it took until the frame that shows its effect was drawn (microseconds). `bench/tui.sh`
/// reads it.
struct Timings {
    out: std::io::BufWriter<std::fs::File>,
    first_frame: bool,
    first_rows: bool,
    loaded: bool,
    key: Option<std::time::Instant>,
}

impl Timings {
    fn from_env() -> Option<Timings> {
        let path = std::env::var_os("MFADMIN_TUI_TIMINGS")?;
        let file = std::fs::File::create(path).ok()?;
        Some(Timings { out: std::io::BufWriter::new(file), first_frame: false, first_rows: false, loaded: false, key: None })
    }

    fn now_ns() -> u128 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
    }

    fn first_frame(&mut self) {
        Timings::once(&mut self.out, &mut self.first_frame, "first_frame");
    }

    /// Write `what` with the time, unless `done` says it was written already; true when written.
    fn once(out: &mut std::io::BufWriter<std::fs::File>, done: &mut bool, what: &str) -> bool {
        use std::io::Write;
        if *done {
            return false;
        }
        *done = true;
        let _ = writeln!(out, "{what} {}", Timings::now_ns());
        true
    }

    fn key_arrived(&mut self) {
        self.key.get_or_insert_with(std::time::Instant::now);
    }

    /// A frame was drawn: note what it is the first of, and the key it answers.
    fn drawn(&mut self, state: &State) {
        use std::io::Write;
        self.first_frame();
        if state.users.total() > 0 {
            Timings::once(&mut self.out, &mut self.first_rows, "first_rows");
        }
        if state.load.complete && !state.load.running && Timings::once(&mut self.out, &mut self.loaded, "loaded") {
            let _ = writeln!(self.out, "rows {}", state.users.total());
        }
        if let Some(at) = self.key.take() {
            let _ = writeln!(self.out, "key_us {}", at.elapsed().as_micros());
        }
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // SAFETY: reading an allocator option.
        let get = || unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(get(), 1000, "mimalloc's purge delay defaults to 1000 ms; is option {MI_OPTION_PURGE_DELAY} still it?");
        let was = purge_freed_memory_soon();
        assert_eq!((was, get()), (1000, LOAD_PURGE_DELAY_MS));
        release_freed_memory(was);
        assert_eq!(get(), 1000);
    }
}
