//! The console at 100,000 users: one filter keystroke (it must stay within a 16 ms frame) and a
//! full redraw of the user table. Run with `cargo bench --bench tui`.

use criterion::{criterion_group, criterion_main, Criterion};
use mfadmin::app::Context;
use mfadmin::config::Config;
use mfadmin::domain::user::UserView;
use mfadmin::service::Actor;
use mfadmin::tui::action::{Action, Command, Session};
use mfadmin::tui::state::{Options, State};
use mfadmin::tui::update::{logged_in, update};
use mfadmin::tui::views::draw;
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::hint::black_box;
use std::time::{Duration, Instant};

const USERS: usize = 100_000;
const NOW: i64 = 1_750_000_000;

/// 100,000 generated users (as the demo makes them), and a console showing them, logged in.
fn console() -> State {
    let dir = tempfile::tempdir().expect("temporary directory");
    let ctx = Context { config: Config { data_dir: Some(dir.path().to_path_buf()), ..Default::default() } };
    let service = ctx.create_service().expect("store");
    let users = mfadmin::demo::generate(&service, USERS, 42, NOW).expect("users");
    let rows: Vec<UserView> = users.iter().map(|u| UserView::new(u, u.org != "globex", NOW)).collect();
    let mut state = State::new(Options::default());
    update(&mut state, Action::Resize(120, 40));
    let session = Session::acting(Actor::console("bench"));
    let _ = logged_in(&mut state, session);
    update(&mut state, Action::UsersLoaded(Ok(rows)));
    assert_eq!(state.users.total(), USERS);
    state
}

/// Time only the action `timed` gives, after `setup` each round.
fn rounds(iters: u64, state: &mut State, setup: &[Action], mut timed: impl FnMut() -> Action) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        for a in setup {
            update(state, a.clone());
        }
        let action = timed();
        let start = Instant::now();
        black_box(update(state, action));
        total += start.elapsed();
    }
    total
}

fn filter(c: &mut Criterion) {
    let mut state = console();
    update(&mut state, Action::Command(Command::Filter));
    let mut group = c.benchmark_group("filter keystroke, 100k users");
    let clear = Action::Command(Command::ClearInput);
    let backspace = Action::Command(Command::DeleteChar);
    // The first character: every user is checked. Letters in turn, so that none was typed lately
    // (the table remembers the answers of the last 16 texts for backspaces).
    let mut letters = ('a'..='z').cycle();
    group.bench_function("first character", |b| {
        b.iter_custom(|iters| rounds(iters, &mut state, std::slice::from_ref(&clear), || Action::Type(letters.next().unwrap_or('a'))))
    });
    // A longer filter only narrows what is already shown.
    group.bench_function("narrowing character", |b| {
        b.iter_custom(|iters| rounds(iters, &mut state, &[clear.clone(), Action::Type('a')], || Action::Type('n')))
    });
    // Backspace widens again: the shorter text's answer comes back from a moment ago.
    group.bench_function("backspace", |b| {
        b.iter_custom(|iters| rounds(iters, &mut state, &[clear.clone(), Action::Type('a'), Action::Type('n')], || backspace.clone()))
    });
    group.finish();
}

fn redraw(c: &mut Criterion) {
    let mut state = console();
    let mut group = c.benchmark_group("redraw, 100k users");
    for (w, h) in [(120u16, 40u16), (80, 24)] {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
        update(&mut state, Action::Resize(w, h));
        group.bench_function(format!("full frame {w}x{h}"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    // Somewhere else in the table each time, and nothing left on screen to reuse.
                    update(&mut state, Action::Command(Command::PageDown));
                    terminal.clear().expect("clear");
                    let start = Instant::now();
                    terminal.draw(|frame| draw(&state, frame)).expect("draw");
                    total += start.elapsed();
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = filter, redraw
}
criterion_main!(benches);
