//! The users view: moving, marking, filtering and sorting the table, and loading the users into it.

use super::{audit, detail, enroll, reset};
use crate::domain::mfa::MfaStatus;
use crate::domain::role::Role;
use crate::domain::user::UserView;
use crate::tui::action::Command;
use crate::tui::effects::Effect;
use crate::tui::state::*;
use crate::tui::table::{Query, Unused, SORT_COLUMNS};
use crate::tui::views::count;

/// What the quick filter for unused factors steps through, in days (then off again).
pub const UNUSED_DAYS: [u32; 3] = [90, 180, 365];

pub(super) fn command(state: &mut State, command: Command) -> Option<Effect> {
    let page = state.page();
    let t = &mut state.users;
    match command {
        Command::Up => t.move_cursor(-1, page),
        Command::Down => t.move_cursor(1, page),
        Command::PageUp => t.move_cursor(-(page as isize), page),
        Command::PageDown => t.move_cursor(page as isize, page),
        Command::Top => t.set_cursor(0, page),
        Command::Bottom => t.set_cursor(usize::MAX, page),
        Command::ToggleMark => {
            if t.toggle_mark().is_some() {
                t.move_cursor(1, page);
            }
        }
        Command::MarkRange => match t.mark_range() {
            Ok(None) => {
                let name = t.anchor().map(|u| u.username.clone()).unwrap_or_default();
                let v = state.key_hint(crate::tui::keymap::Section::Users, Command::MarkRange);
                state.info(format!("range starts at {name}: move, then press {v} again to mark it"));
            }
            Ok(Some(n)) => state.info(format!("marked a range of {n}")),
            Err(e) => state.error(e),
        },
        Command::MarkAllShown => {
            let n = t.mark_all_shown();
            state.info(format!("marked all {n} shown"));
        }
        Command::ClearMarks => {
            t.clear_marks();
            state.info("marks cleared");
        }
        Command::Filter => state.filter_editing = true,
        Command::ClearFilter => {
            let had_range = t.cancel_range();
            if !t.query().is_empty() {
                t.clear_query();
                t.scroll_into_view(page);
                state.info("filter cleared");
                return follow_filter(state);
            } else if had_range {
                state.info("range cancelled");
            }
        }
        Command::FilterRole => {
            let next = cycle(&Role::ALL, t.query().role);
            t.set_role(next);
            t.scroll_into_view(page);
            return follow_filter(state);
        }
        Command::FilterMfa => {
            let next = cycle(&MfaStatus::ALL, t.query().mfa);
            t.set_mfa(next);
            t.scroll_into_view(page);
            return follow_filter(state);
        }
        Command::FilterUnused => {
            let next = cycle(&UNUSED_DAYS, t.query().unused.map(|u| u.days));
            t.set_unused(next.map(|days| Unused::days_before(days, state.now)));
            t.scroll_into_view(page);
            return follow_filter(state);
        }
        Command::SortNext => {
            let (field, desc) = t.sort();
            let i = SORT_COLUMNS.iter().position(|f| *f == field).map_or(0, |i| (i + 1) % SORT_COLUMNS.len());
            t.set_sort(SORT_COLUMNS[i], desc);
            t.scroll_into_view(page);
        }
        Command::SortReverse => {
            let (field, desc) = t.sort();
            t.set_sort(field, !desc);
            t.scroll_into_view(page);
        }
        Command::Refresh => return Some(reload(state)),
        Command::Reset => {
            let target = if t.mark_count() > 0 { None } else { t.cursor_user() };
            if let Some(why) = state.refusal(Offer::Reset, target.as_ref().map(|u| (u.role, u.username.as_str()))) {
                state.error(why);
                return None;
            }
            return reset::request(state, None);
        }
        Command::Open => {
            let user = t.cursor_user()?.id;
            state.overlays.push(Overlay::Detail(DetailPane { user, detail: None, error: None, scroll: 0 }));
            return Some(Effect::LoadDetail(user));
        }
        Command::Enroll => {
            let user = t.cursor_user()?;
            if let Some(why) = state.refusal(Offer::Enroll, Some((user.role, &user.username))) {
                state.error(why);
                return None;
            }
            return enroll::begin(state, user.id, user.username);
        }
        Command::ToggleStatus => {
            let user = t.cursor_user()?;
            if let Some(why) = state.refusal(Offer::SetStatus, Some((user.role, &user.username))) {
                state.error(why);
                return None;
            }
            detail::ask_status(state, user.id, user.username, user.status);
        }
        Command::Unlock => {
            let user = t.cursor_user()?;
            if let Some(why) = state.refusal(Offer::Unlock, Some((user.role, &user.username))) {
                state.error(why);
                return None;
            }
            detail::ask_unlock(state, &user);
        }
        other => return super::common_command(state, other),
    }
    None
}

/// The next value of a quick filter: none → first → … → last → none.
fn cycle<T: Copy + PartialEq>(all: &[T], current: Option<T>) -> Option<T> {
    match current {
        None => all.first().copied(),
        Some(c) => all.iter().position(|x| *x == c).and_then(|i| all.get(i + 1)).copied(),
    }
}

/// Typing a filter: the users' or, in the audit view, the audit trail's.
pub(super) fn filter_command(state: &mut State, command: Command) -> Option<Effect> {
    let page = state.page();
    match command {
        Command::ClearFilter => {
            if state.view == View::Audit {
                state.audit.editing = false;
                if !state.audit.filter.is_empty() {
                    state.audit.filter.clear();
                    return Some(audit::load(state));
                }
            } else {
                state.filter_editing = false;
                state.users.set_text("");
                state.users.scroll_into_view(page);
                return follow_filter(state);
            }
        }
        Command::Submit => {
            state.filter_editing = false;
            state.audit.editing = false;
        }
        Command::Up | Command::Down => {
            let delta = if command == Command::Up { -1 } else { 1 };
            if state.view == View::Audit {
                audit::scroll(state, delta);
            } else {
                state.users.move_cursor(delta, page);
            }
        }
        _ => {}
    }
    None
}

/// Load the users `query` finds (page by page, into the table), superseding any load running.
fn start_load(state: &mut State, query: Query) -> Effect {
    let load = &mut state.load;
    load.generation += 1;
    load.query = query.clone();
    load.running = true;
    load.total = 0;
    load.received = 0;
    Effect::LoadUsers { generation: load.generation, query }
}

/// Load every user again (rows already here are updated in place; marks stay).
pub(super) fn reload(state: &mut State) -> Effect {
    state.load.complete = false;
    start_load(state, Query::default())
}

/// After the filter changed: while not every user is here, ask the backend for what the filter
/// finds, unless a finished load already brought all of it.
pub(super) fn follow_filter(state: &mut State) -> Option<Effect> {
    let wanted = state.users.query().clone();
    let load = &state.load;
    let covers = |had: &Query| {
        wanted.text.to_lowercase().contains(&had.text.to_lowercase())
            && had.role.is_none_or(|r| wanted.role == Some(r))
            && had.mfa.is_none_or(|m| wanted.mfa == Some(m))
            && had.unused.is_none_or(|h| wanted.unused.is_some_and(|w| w.days >= h.days))
    };
    // A store in this process streams every user at once: the table filters them itself.
    let local = state.badge.is_none();
    if local || load.complete || load.query == wanted || (!load.running && covers(&load.query)) {
        return None;
    }
    Some(start_load(state, wanted))
}

fn loading_message(state: &State) -> bool {
    state.message.as_ref().is_none_or(|m| m.text.starts_with("loading users") || m.text.ends_with("loading users…"))
}

/// A page of [`Effect::LoadUsers`]; a superseded load's page is dropped.
pub(super) fn page(state: &mut State, generation: u64, result: Result<Vec<UserView>, String>, read: usize, total: usize, done: bool) -> Option<Effect> {
    if generation != state.load.generation {
        return None;
    }
    let rows = match result {
        Ok(rows) => rows,
        Err(e) => {
            state.load.running = false;
            state.error(format!("cannot load the users: {e}"));
            return None;
        }
    };
    let page = state.page();
    state.load.received = read;
    state.load.total = total;
    let show = loading_message(state);
    state.users.upsert(rows);
    state.users.scroll_into_view(page);
    if done {
        state.load.running = false;
        state.load.complete |= state.load.query.is_empty();
        if show {
            state.info(format!("{} loaded", count(state.users.total(), "user")));
        }
    } else if show {
        state.info(format!("loading users: {} of {}…", state.load.received, state.load.total));
    }
    None
}

/// Every user at once.
pub(super) fn loaded(state: &mut State, result: Result<Vec<UserView>, String>) -> Option<Effect> {
    let rows = match result {
        Ok(rows) => rows,
        Err(e) => {
            state.error(format!("cannot load the users: {e}"));
            return None;
        }
    };
    let n = rows.len();
    state.load.complete = true;
    state.users.load(rows);
    let page = state.page();
    state.users.scroll_into_view(page);
    if state.message.as_ref().is_some_and(|m| m.text.ends_with("loading users…")) {
        state.info(format!("{} loaded", count(n, "user")));
    }
    None
}
