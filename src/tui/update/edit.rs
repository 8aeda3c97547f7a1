//! Typing into whichever text field has the focus: the filter, the command line, a dialog's fields, the login form.

use super::{audit, users};
use crate::tui::action::Command;
use crate::tui::effects::Effect;
use crate::tui::state::*;

/// A change to the focused text field, or a move of its cursor.
pub(super) enum Edit {
    Insert(String),
    DeleteChar,
    DeleteNext,
    DeleteWord,
    Clear,
    Left,
    Right,
    Home,
    End,
}

impl Edit {
    /// The edit a line-editing command makes.
    pub(super) fn of(command: Command) -> Option<Edit> {
        Some(match command {
            Command::DeleteChar => Edit::DeleteChar,
            Command::DeleteNext => Edit::DeleteNext,
            Command::DeleteWord => Edit::DeleteWord,
            Command::ClearInput => Edit::Clear,
            Command::CursorLeft => Edit::Left,
            Command::CursorRight => Edit::Right,
            Command::LineStart => Edit::Home,
            Command::LineEnd => Edit::End,
            _ => return None,
        })
    }

    fn is_move(&self) -> bool {
        matches!(self, Edit::Left | Edit::Right | Edit::Home | Edit::End)
    }
}

/// Apply `edit` to `field`, whose cursor is `back` characters before its end (the state keeps
/// it so, one for whichever field has the focus: typing at the end, as most do, needs no care).
fn change(field: &mut String, back: &mut usize, edit: &Edit) {
    let len = field.chars().count();
    let at = len - (*back).min(len);
    let byte = |i: usize| field.char_indices().nth(i).map_or(field.len(), |(b, _)| b);
    match edit {
        Edit::Insert(s) => field.insert_str(byte(at), s),
        Edit::DeleteChar if at > 0 => {
            let (from, to) = (byte(at - 1), byte(at));
            field.replace_range(from..to, "");
        }
        Edit::DeleteNext if at < len => {
            let (from, to) = (byte(at), byte(at + 1));
            field.replace_range(from..to, "");
            *back -= 1;
        }
        Edit::DeleteWord => {
            let before: Vec<char> = field.chars().take(at).collect();
            let mut start = before.len();
            while start > 0 && before[start - 1].is_whitespace() {
                start -= 1;
            }
            while start > 0 && !before[start - 1].is_whitespace() {
                start -= 1;
            }
            let (from, to) = (byte(start), byte(at));
            field.replace_range(from..to, "");
        }
        Edit::Clear => {
            field.clear();
            *back = 0;
        }
        Edit::Left => *back = (*back + 1).min(len),
        Edit::Right => *back = back.saturating_sub(1),
        Edit::Home => *back = len,
        Edit::End => *back = 0,
        Edit::DeleteChar | Edit::DeleteNext => {}
    }
    *back = (*back).min(field.chars().count());
}

/// Apply an edit to whichever text field has the focus.
pub(super) fn apply(state: &mut State, edit: Edit) -> Option<Effect> {
    let mut back = state.cursor_back;
    let effect = apply_at(state, edit, &mut back);
    state.cursor_back = back;
    effect
}

/// [`apply`] with the field's cursor `back` characters before its end.
fn apply_at(state: &mut State, edit: Edit, back: &mut usize) -> Option<Effect> {
    let page = state.page();
    match state.mode() {
        Mode::Filter if state.view == View::Audit => {
            change(&mut state.audit.filter, back, &edit);
            (!edit.is_move()).then(|| audit::load(state))
        }
        Mode::Filter => {
            let mut text = state.users.query().text.clone();
            change(&mut text, back, &edit);
            if edit.is_move() {
                return None;
            }
            state.users.set_text(&text);
            state.users.scroll_into_view(page);
            users::follow_filter(state)
        }
        Mode::Command => {
            if let Some(Overlay::CommandLine { input }) = state.overlays.last_mut() {
                change(input, back, &edit);
            }
            None
        }
        Mode::Dialog => {
            match state.overlays.last_mut() {
                Some(Overlay::ConfirmReset(d)) => {
                    if matches!(d.focus, ResetFocus::Cancel | ResetFocus::Confirm) {
                        match edit {
                            // On the buttons, the arrows move between them.
                            Edit::Left => d.focus = ResetFocus::Cancel,
                            Edit::Right => d.focus = ResetFocus::Confirm,
                            // Typing while a button has the focus goes to the reason: Enter never confirms by accident.
                            Edit::Insert(_) => {
                                d.focus = ResetFocus::Reason;
                                *back = 0;
                            }
                            _ => {}
                        }
                        if !matches!(edit, Edit::Insert(_)) {
                            return None;
                        }
                    }
                    d.error = None;
                    match (d.focus, edit) {
                        (ResetFocus::Count, Edit::Insert(s)) => {
                            let digits: String = s.chars().filter(char::is_ascii_digit).collect();
                            change(&mut d.count, back, &Edit::Insert(digits));
                        }
                        (ResetFocus::Count, edit) => change(&mut d.count, back, &edit),
                        (_, edit) => change(&mut d.reason, back, &edit),
                    }
                }
                Some(Overlay::Confirm(c)) if matches!(edit, Edit::Left | Edit::Right) => c.focus_yes = matches!(edit, Edit::Right),
                Some(Overlay::Enroll(e)) if e.recovery_codes.is_none() => change(&mut e.code, back, &edit),
                _ => {}
            }
            None
        }
        Mode::Login => {
            let Screen::Login(form) = &mut state.screen else {
                return None;
            };
            let field = match (&form.step, form.focus) {
                (LoginStep::Password, 0) => &mut form.username,
                (LoginStep::Password, _) => &mut form.password,
                (LoginStep::Code { .. } | LoginStep::Enroll { .. }, _) => &mut form.code,
                (LoginStep::RecoveryCodes { .. }, _) => return None,
            };
            change(field, back, &edit);
            form.error = None;
            None
        }
        _ => None,
    }
}
