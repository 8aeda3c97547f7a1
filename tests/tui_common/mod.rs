//! Shared by the console's tests: a real store in a temporary directory with generated users, and a
//! headless console that runs its effects against it synchronously.
#![allow(dead_code)]

use mfadmin::app::Context;
use mfadmin::config::Config;
use mfadmin::demo;
use mfadmin::domain::role::Role;
use mfadmin::service::{Actor, NewUser, Service};
use mfadmin::tui::action::{Action, Session};
use mfadmin::backend::local::Local;
use mfadmin::app::Clock;
use mfadmin::tui::effects::{perform, Control, Effect};
use std::sync::Arc;
use mfadmin::tui::keymap::Key;
use mfadmin::tui::state::{Options, State};
use mfadmin::tui::update::{handle_key, logged_in, update};
use mfadmin::tui::views::draw;
use ratatui::backend::TestBackend;
use ratatui::style::{Color, Modifier};
use ratatui::Terminal;

/// The fixed clock of every test: 2025-06-15.
pub const NOW: i64 = 1_750_000_000;
pub const SEED: u64 = 7;

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub service: Arc<Service>,
    pub owner: Actor,
}

pub fn context(dir: &std::path::Path) -> Context {
    Context { config: Config { data_dir: Some(dir.to_path_buf()), ..Default::default() } }
}

/// A store with `users` generated users (fixed seed and clock) and the demo owner in Acme.
pub fn fixture(users: usize) -> Fixture {
    let dir = tempfile::tempdir().expect("temporary directory");
    let service = context(dir.path()).create_service().expect("new store");
    let console = Actor::console("tui");
    demo::populate(&service, &console, users, SEED, NOW, demo::Fill::ExistingStore).expect("demo users");
    service
        .add_user(
            &console,
            NewUser {
                username: demo::OWNER.into(),
                email: "owner@acme.example".into(),
                display_name: "Demo Owner".into(),
                role: Role::Owner,
                org: "Acme".into(),
                password: Some(demo::PASSWORD.into()),
            },
            NOW,
        )
        .expect("owner");
    let owner = service.act_as(&console, demo::OWNER, "tui").expect("act as the owner");
    Fixture { dir, service: Arc::new(service), owner }
}

/// A console over a real service: keys go through the key map and `update`; effects run at once.
pub struct App<'a> {
    pub state: State,
    pub service: &'a Service,
    /// The in-process backend over `service`, at the fixed clock.
    pub backend: Local,
    pub control: Control,
    /// Every effect `update` asked for, in order.
    pub effects: Vec<Effect>,
}

impl<'a> App<'a> {
    /// At the login screen.
    pub fn new(service: &'a Arc<Service>, options: Options) -> App<'a> {
        let mut state = State::new(options);
        state.now = NOW;
        update(&mut state, Action::Resize(120, 40));
        let backend = Local::with_clock(service.clone(), "tui", "mfadmin", Clock::from_fn(|| NOW));
        App { state, service, backend, control: Control::default(), effects: Vec::new() }
    }

    /// Logged in as `actor`, with the users loaded.
    pub fn logged_in(service: &'a Arc<Service>, actor: &Actor, options: Options) -> App<'a> {
        let mut app = App::new(service, options);
        let effect = logged_in(&mut app.state, Session::acting(actor.clone()));
        app.run(effect);
        app
    }

    /// Carry out an effect and every effect its results ask for.
    pub fn run(&mut self, effect: Option<Effect>) {
        let mut queue = Vec::new();
        if let Some(e) = effect {
            self.effects.push(e.clone());
            let who = self.state.session.as_ref().map(|s| s.who.clone());
            perform(&self.backend, &self.control, who.as_ref(), e, &mut |a| queue.push(a));
        }
        while !queue.is_empty() {
            let action = queue.remove(0);
            let next = update(&mut self.state, action);
            self.run(next);
        }
    }

    /// Press keys written as in the key map, separated by spaces: `"space j j R"`.
    pub fn press(&mut self, keys: &str) {
        for k in keys.split_whitespace() {
            let key = Key::parse(k).unwrap_or_else(|e| panic!("{e}"));
            let effect = handle_key(&mut self.state, &key);
            self.run(effect);
        }
    }

    /// Press keys without running what they ask for; returns the effects.
    pub fn press_only(&mut self, keys: &str) -> Vec<Effect> {
        let mut out = Vec::new();
        for k in keys.split_whitespace() {
            let key = Key::parse(k).unwrap_or_else(|e| panic!("{e}"));
            out.extend(handle_key(&mut self.state, &key));
        }
        out
    }

    /// Type text into the focused field, one key per character.
    pub fn type_text(&mut self, text: &str) {
        for c in text.chars() {
            let key = Key::plain(crossterm::event::KeyCode::Char(c));
            let effect = handle_key(&mut self.state, &key);
            self.run(effect);
        }
    }

    pub fn apply(&mut self, action: Action) {
        let effect = update(&mut self.state, action);
        self.run(effect);
    }

    /// The user names in the table, as shown (in order).
    pub fn shown_names(&self) -> Vec<String> {
        (0..self.state.users.shown_len()).map(|i| self.state.users.shown_row(i).unwrap().0.username.clone()).collect()
    }

    pub fn marked_names(&self) -> Vec<String> {
        self.state.users.marked_ids().iter().map(|id| self.state.users.user(*id).unwrap().username.clone()).collect()
    }

    pub fn cursor_name(&self) -> String {
        self.state.users.cursor_user().map(|u| u.username.clone()).unwrap_or_default()
    }
}

fn terminal_for(state: &State, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut state = state.clone();
    update(&mut state, Action::Resize(width, height));
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    terminal.draw(|frame| draw(&state, frame)).expect("draw");
    terminal
}

/// The screen as text.
pub fn render(state: &State, width: u16, height: u16) -> String {
    terminal_for(state, width, height).backend().to_string()
}

/// The screen as text, then a map of its modifiers (R reverse, B bold, U underline), for
/// checking that nothing depends on colour. Panics if any cell has a colour.
pub fn render_monochrome(state: &State, width: u16, height: u16) -> String {
    let terminal = terminal_for(state, width, height);
    let buffer = terminal.backend().buffer();
    let mut styles = String::new();
    for y in 0..height {
        let mut line = String::new();
        for x in 0..width {
            let cell = &buffer[(x, y)];
            assert!(
                cell.fg == Color::Reset && cell.bg == Color::Reset,
                "cell ({x},{y}) {:?} has a colour without colour: {:?}/{:?}",
                cell.symbol(),
                cell.fg,
                cell.bg
            );
            line.push(if cell.modifier.contains(Modifier::REVERSED) {
                'R'
            } else if cell.modifier.contains(Modifier::BOLD) {
                'B'
            } else if cell.modifier.contains(Modifier::UNDERLINED) {
                'U'
            } else {
                ' '
            });
        }
        styles.push_str(line.trim_end());
        styles.push('\n');
    }
    format!("{}\n--- modifiers (R reverse, B bold, U underline) ---\n{styles}", terminal.backend())
}

/// Options for tests: defaults, with or without colour.
pub fn options(color: bool) -> Options {
    Options { color, store: "/tmp/mfadmin-test".into(), ..Options::default() }
}

/// The TOTP code an authenticator app would show at `time` for a base32 secret.
pub fn code_for(secret_base32: &str, time: i64) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret_base32).expect("a base32 secret");
    mfadmin::auth::totp::code_at(secret.as_bytes(), time as u64)
}
