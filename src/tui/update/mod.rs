//! `update(&mut State, Action) -> Option<Effect>`: every change of the console's state, with no IO.
//! Anything that needs the store comes back as an [`Effect`] for the runner, and its result comes
//! back as an action to a handler in the same file as the command that asked for it.

mod audit;
mod command_line;
mod detail;
mod edit;
mod enroll;
mod login;
mod orgs;
mod reset;
mod users;

pub use command_line::run_command_line;
pub use login::logged_in;

use super::action::{Action, Command};
use super::effects::Effect;
use super::keymap::Key;
use super::layout;
use super::state::*;
use std::time::Instant;
use edit::Edit;

/// Translate a key and apply it: what the loop does for every key press.
pub fn handle_key(state: &mut State, key: &Key) -> Option<Effect> {
    let action = state.action_for_key(key)?;
    update(state, action)
}

pub fn update(state: &mut State, action: Action) -> Option<Effect> {
    match action {
        // Quitting during a reset asks first, like esc.
        Action::Command(Command::Quit) if state.mode() == Mode::Progress => reset::progress_command(state, Command::Quit),
        Action::Command(Command::Quit) => {
            state.quit = true;
            None
        }
        Action::Command(command) if command.is_line_edit() && state.mode().takes_text() => match Edit::of(command) {
            Some(edit) => edit::apply(state, edit),
            None => None,
        },
        Action::Command(command) => {
            // Any other command may move the focus: a field is entered with the cursor at its end.
            state.cursor_back = 0;
            on_command(state, command)
        }
        Action::Type(c) => edit::apply(state, Edit::Insert(c.to_string())),
        Action::Paste(text) => {
            let line: String = text.chars().filter(|c| !c.is_control()).collect();
            edit::apply(state, Edit::Insert(line))
        }
        Action::Resize(w, h) => {
            state.size = (w, h);
            let page = state.page();
            state.users.scroll_into_view(page);
            audit::scroll(state, 0);
            None
        }
        Action::Tick(now) => {
            state.spinner = state.spinner.wrapping_add(1);
            fade_message(state, now);
            None
        }
        Action::Busy(n) => {
            state.busy = n;
            None
        }
        Action::Click { column, row } => on_click(state, column, row),
        Action::Scroll(lines) => on_scroll(state, lines),
        Action::Crashed(why) => {
            // A reset whose job died never reports: do not wait for it.
            state.overlays.retain(|o| !matches!(o, Overlay::Progress(_)));
            state.crashed = Some(why);
            state.quit = true;
            None
        }
        result => on_result(state, result),
    }
}

/// A message lives from the first tick that sees it, so one set while the clock stood still (no
/// work running, no message before) still gets its whole lifetime.
fn fade_message(state: &mut State, now: Instant) {
    match &mut state.message {
        Some(m) if m.faded(now) => state.message = None,
        Some(m) => {
            m.seen.get_or_insert(now);
        }
        None => {}
    }
}

// ---------------------------------------------------------------- commands

fn on_command(state: &mut State, command: Command) -> Option<Effect> {
    match state.mode() {
        Mode::Login => login::command(state, command),
        Mode::Users => users::command(state, command),
        Mode::Filter => users::filter_command(state, command),
        Mode::Detail => detail::command(state, command),
        Mode::Audit => audit::command(state, command),
        Mode::Orgs => orgs::command(state, command),
        Mode::Dialog => dialog_command(state, command),
        Mode::Progress => reset::progress_command(state, command),
        Mode::Result => reset::result_command(state, command),
        Mode::Help => help_command(state, command),
        Mode::Command => command_line::command(state, command),
    }
}

/// Commands every main view shares.
fn common_command(state: &mut State, command: Command) -> Option<Effect> {
    match command {
        Command::Help => state.open_help(),
        Command::CommandLine => state.overlays.push(Overlay::CommandLine { input: String::new() }),
        Command::NextView | Command::PrevView => {
            let i = View::ALL.iter().position(|v| *v == state.view).unwrap_or(0);
            let n = View::ALL.len();
            let next = if command == Command::NextView { (i + 1) % n } else { (i + n - 1) % n };
            return switch_view(state, View::ALL[next]);
        }
        _ => {}
    }
    None
}

fn switch_view(state: &mut State, view: View) -> Option<Effect> {
    state.view = view;
    state.message = None;
    match view {
        View::Users if !state.users.loaded && !state.load.running => Some(users::reload(state)),
        View::Audit if !state.audit.loaded => Some(audit::load(state).and(Effect::VerifyAudit)),
        View::Orgs if !state.orgs.loaded => Some(Effect::LoadOrgs),
        _ => None,
    }
}

// ---------------------------------------------------------------- dialogs

fn dialog_command(state: &mut State, command: Command) -> Option<Effect> {
    match state.overlays.last()? {
        Overlay::ConfirmReset(_) => reset::dialog_command(state, command),
        Overlay::Confirm(_) => confirm_command(state, command),
        Overlay::Enroll(_) => enroll::dialog_command(state, command),
        _ => None,
    }
}

/// A yes/no question; its answer is the effect its pending operation names.
fn confirm_command(state: &mut State, command: Command) -> Option<Effect> {
    let Some(Overlay::Confirm(c)) = state.overlays.last_mut() else {
        return None;
    };
    match command {
        Command::Back => {
            state.overlays.pop();
        }
        Command::NextField | Command::PrevField => c.focus_yes = !c.focus_yes,
        Command::Submit if !c.focus_yes => {
            state.overlays.pop();
        }
        Command::Submit => {
            let op = c.op.clone();
            state.overlays.pop();
            return Some(match op {
                PendingOp::SetStatus { user, status, .. } => Effect::SetStatus { user, status },
                PendingOp::Unlock { user } => Effect::Unlock(user),
                PendingOp::SetEnforced { org, on } => Effect::SetEnforced { org, on },
            });
        }
        _ => {}
    }
    None
}

fn help_command(state: &mut State, command: Command) -> Option<Effect> {
    let page = state.size.1.saturating_sub(4).max(1) as usize;
    let max = state.help_lines().saturating_sub(page);
    let Some(Overlay::Help { scroll, .. }) = state.overlays.last_mut() else {
        return None;
    };
    match command {
        Command::Back | Command::Help | Command::Quit => {
            state.overlays.pop();
        }
        Command::Top => *scroll = 0,
        Command::Bottom => *scroll = max,
        Command::Down => *scroll = (*scroll + 1).min(max),
        Command::Up => *scroll = scroll.saturating_sub(1),
        Command::PageDown => *scroll = (*scroll + page).min(max),
        Command::PageUp => *scroll = scroll.saturating_sub(page),
        _ => {}
    }
    None
}

// ---------------------------------------------------------------- mouse

fn on_click(state: &mut State, column: u16, row: u16) -> Option<Effect> {
    if !state.mouse || state.mode() != Mode::Users {
        return None;
    }
    let area = layout::table_rows(state.area());
    let inside = column >= area.x && column < area.right() && row >= area.y && row < area.bottom();
    if inside {
        let position = state.users.offset() + (row - area.y) as usize;
        if position < state.users.shown_len() {
            let page = state.page();
            state.users.set_cursor(position, page);
        }
    }
    None
}

fn on_scroll(state: &mut State, lines: i32) -> Option<Effect> {
    if !state.mouse {
        return None;
    }
    let page = state.page();
    match state.mode() {
        Mode::Users | Mode::Filter if state.view == View::Users => state.users.move_cursor(lines as isize, page),
        Mode::Audit => audit::scroll(state, lines as isize),
        Mode::Help | Mode::Result | Mode::Detail => {
            let command = if lines < 0 { Command::Up } else { Command::Down };
            for _ in 0..lines.unsigned_abs() {
                on_command(state, command);
            }
        }
        _ => {}
    }
    None
}

// ---------------------------------------------------------------- results


/// A background job's result, to the handler beside the command whose effect produced it.
fn on_result(state: &mut State, action: Action) -> Option<Effect> {
    match action {
        Action::LoginNeedsCode { challenge } => login::needs_code(state, challenge),
        Action::LoginNeedsEnrollment { challenge } => login::needs_enrollment(state, challenge),
        Action::LoginEnrollment(result) => login::enrollment(state, result),
        Action::LoginFailed(why) => login::failed(state, why),
        Action::LoggedIn(session) => login::succeeded(state, session),
        Action::SessionEnded(why) => login::session_ended(state, why),
        Action::UsersPage { generation, result, read, total, done } => users::page(state, generation, result, read, total, done),
        Action::UsersLoaded(result) => users::loaded(state, result),
        Action::Connection(trouble) => {
            state.disconnected = trouble;
            None
        }
        Action::DetailLoaded(result) => detail::loaded(state, result),
        Action::UserChanged(result) => detail::status_changed(state, result),
        Action::Unlocked(result) => detail::unlocked(state, result),
        Action::ResetPlanned(result) => reset::planned(state, result),
        Action::ResetProgress { reset } => reset::progress(state, reset),
        Action::ResetDone(run) => reset::done(state, run),
        Action::EnrollmentBegun(result) => enroll::begun(state, result),
        Action::EnrollmentConfirmed(result) => enroll::confirmed(state, result),
        Action::AuditLoaded { generation, result } => audit::loaded(state, generation, result),
        Action::AuditVerified(result) => audit::verified(state, result),
        Action::OrgsLoaded(result) => orgs::loaded(state, result),
        Action::OrgChanged(result) => orgs::changed(state, result),
        // Not results: `update` handles these itself.
        Action::Command(_)
        | Action::Type(_)
        | Action::Paste(_)
        | Action::Click { .. }
        | Action::Scroll(_)
        | Action::Resize(..)
        | Action::Tick(_)
        | Action::Busy(_)
        | Action::Crashed(_) => None,
    }
}
