//! The console's state as users stream in page by page, filters go to the backend while they do,
//! the connection drops and comes back, and a session ends: key → action → state, no IO.

mod tui_common;

use mfadmin::domain::mfa::MfaStatus;
use mfadmin::domain::role::Role;
use mfadmin::domain::user::{Status, UserView};
use mfadmin::service::{Actor, SortField};
use mfadmin::tui::action::{Action, Command, Session};
use mfadmin::tui::effects::Effect;
use mfadmin::tui::state::{Options, Screen, State};
use mfadmin::tui::table::{Query, UserTable};
use mfadmin::tui::update::{logged_in, update};
use uuid::Uuid;

fn user(i: usize) -> UserView {
    UserView {
        id: Uuid::from_u128(i as u128 + 1),
        number: i as u64,
        username: format!("user{:04}", (i * 7919) % 10_000),
        email: format!("u{i}@example.org"),
        display_name: format!("Person {}", i % 97),
        org: "acme".into(),
        role: if i.is_multiple_of(5) { Role::Admin } else { Role::Member },
        status: Status::Active,
        mfa: if i.is_multiple_of(3) { MfaStatus::NotEnrolled } else { MfaStatus::Enrolled },
        recovery_codes_left: 10,
        created_at: "2025-01-01T00:00:00Z".into(),
        last_login_at: None,
        mfa_enrolled_at: None,
        mfa_last_used_at: None,
        mfa_last_client: None,
        mfa_reset_at: None,
    }
}

fn console() -> (State, u64) {
    let mut state = State::new(Options { badge: Some("remote: http://127.0.0.1:7070".into()), ..tui_common::options(false) });
    update(&mut state, Action::Resize(120, 40));
    let effect = logged_in(&mut state, Session::acting(Actor::console("tui")));
    let Some(Effect::LoadUsers { generation, query }) = effect else { panic!("logging in loads the users: {effect:?}") };
    assert!(query.is_empty());
    (state, generation)
}

/// A page of a load of `total` users, `read` of them received with this one.
fn page(generation: u64, users: Vec<UserView>, read: usize, total: usize, done: bool) -> Action {
    Action::UsersPage { generation, result: Ok(users), read, total, done }
}

fn names(state: &State) -> Vec<String> {
    (0..state.users.shown_len()).map(|i| state.users.shown_row(i).unwrap().0.username.clone()).collect()
}

#[test]
fn the_first_page_shows_at_once_and_a_filter_typed_meanwhile_goes_to_the_backend() {
    let all: Vec<UserView> = (0..1000).map(user).collect();
    let (mut state, first) = console();
    assert_eq!(update(&mut state, page(first, all[..500].to_vec(), 500, 1000, false)), None);
    assert_eq!(state.users.total(), 500, "the first page is in the table");
    assert!(state.message.as_ref().unwrap().text.contains("500 of 1000"), "{:?}", state.message);

    // A filter before everything is here: the backend is asked for what it finds.
    update(&mut state, Action::Command(Command::Filter));
    let effects: Vec<Effect> = "user00".chars().filter_map(|c| update(&mut state, Action::Type(c))).collect();
    let Some(Effect::LoadUsers { generation, query }) = effects.first().cloned() else { panic!("{effects:?}") };
    assert!(generation > first);
    assert_eq!(query.text, "u", "the first keystroke already asks");
    // Narrower text while that load runs asks again, with the newest text.
    let Some(Effect::LoadUsers { generation: newest, query }) = effects.last().cloned() else { panic!() };
    assert_eq!(query, Query { text: "user00".into(), ..Query::default() });

    // A page of an older load is dropped; the newest load's pages are added.
    let before = state.users.total();
    update(&mut state, page(first, all[500..].to_vec(), 1000, 1000, true));
    assert_eq!(state.users.total(), before, "a superseded load's page is dropped");
    let found: Vec<UserView> = all.iter().filter(|u| u.username.contains("user00")).cloned().collect();
    update(&mut state, page(newest, found.clone(), found.len(), found.len(), true));
    let mut expected: Vec<String> = found.iter().map(|u| u.username.clone()).collect();
    expected.sort();
    assert_eq!(names(&state), expected, "the filter shows everything the backend found");

    // Clearing the filter before every user is here loads every user (rows stay, marks stay).
    update(&mut state, Action::Command(Command::Submit));
    update(&mut state, Action::Command(Command::ToggleMark));
    let marked = state.users.marked_ids();
    let Some(Effect::LoadUsers { generation: full, query }) = update(&mut state, Action::Command(Command::ClearFilter)) else {
        panic!("clearing the filter loads the rest")
    };
    assert!(query.is_empty());
    update(&mut state, page(full, all[..500].to_vec(), 500, 1000, false));
    update(&mut state, page(full, all[500..].to_vec(), 1000, 1000, true));
    assert_eq!(state.users.total(), 1000);
    assert_eq!(state.users.marked_ids(), marked, "marks survive the pages");
    assert!(state.load.complete && !state.load.running);

    // Everything is here now: filters need no backend.
    assert_eq!(update(&mut state, Action::Command(Command::FilterRole)), None);
}

#[test]
fn pages_in_any_order_give_the_order_of_one_full_load() {
    let all: Vec<UserView> = (0..600).map(user).collect();
    let mut changed = all[10].clone();
    changed.mfa = MfaStatus::MustEnroll;
    let mut fresher = all.clone();
    fresher[10] = changed.clone();
    for (field, descending) in [(SortField::Username, false), (SortField::Email, true), (SortField::Mfa, false), (SortField::Role, true)] {
        let mut whole = UserTable::new();
        whole.set_sort(field, descending);
        whole.load(fresher.clone());
        let mut paged = UserTable::new();
        paged.set_sort(field, descending);
        for chunk in [&all[300..450], &all[0..100], &all[450..], &all[100..300]] {
            paged.upsert(chunk.to_vec());
        }
        // A fresher copy of a row already there is put in place (and in order).
        paged.upsert(vec![changed.clone()]);
        let order = |t: &UserTable| (0..t.shown_len()).map(|i| t.shown_row(i).unwrap().0.id).collect::<Vec<_>>();
        assert!(order(&paged) == order(&whole), "{field:?} descending={descending}: the orders differ");
        assert_eq!(paged.total(), 600);
    }
}

#[test]
fn a_dropped_connection_shows_and_an_ended_session_returns_to_login_keeping_marks_and_filter() {
    let all: Vec<UserView> = (0..50).map(user).collect();
    let (mut state, first) = console();
    update(&mut state, page(first, all.clone(), 50, 50, true));
    let screen = tui_common::render(&state, 120, 40);
    assert!(screen.contains("remote: http://127.0.0.1:7070"), "the badge:\n{screen}");

    update(&mut state, Action::Connection(Some("the server at http://127.0.0.1:7070 does not answer".into())));
    let screen = tui_common::render(&state, 120, 40);
    assert!(screen.contains("disconnected, retrying"), "{screen}");
    update(&mut state, Action::Connection(None));
    assert!(!tui_common::render(&state, 120, 40).contains("disconnected"));

    update(&mut state, Action::Command(Command::FilterMfa));
    update(&mut state, Action::Command(Command::ToggleMark));
    update(&mut state, Action::Command(Command::ToggleMark));
    let (marked, query) = (state.users.marked_ids(), state.users.query().clone());
    assert_eq!(marked.len(), 2);
    update(&mut state, Action::Command(Command::Reset));
    update(&mut state, Action::SessionEnded("unknown or revoked token".into()));
    let Screen::Login(form) = &state.screen else { panic!("back at the login screen") };
    assert!(form.error.as_deref().unwrap().contains("marks and filter are kept"), "{form:?}");
    assert!(state.overlays.is_empty() && state.session.is_none());

    let again = update(&mut state, Action::LoggedIn(Box::new(Session::acting(Actor::console("tui")))));
    let Some(Effect::LoadUsers { generation, .. }) = again else { panic!("{again:?}") };
    update(&mut state, page(generation, all, 50, 50, true));
    assert_eq!(state.users.marked_ids(), marked);
    assert_eq!(state.users.query(), &query);
}
