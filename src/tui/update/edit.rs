//! Typing into whichever text field has the focus: the filter, the command line, a dialog's fields, the login form.

use super::{audit, users};
use crate::tui::effects::Effect;
use crate::tui::state::*;

/// A change to the focused text field.
pub(super) enum Edit {
    Insert(String),
    DeleteChar,
    DeleteWord,
    Clear,
}

fn change(field: &mut String, edit: &Edit) {
    match edit {
        Edit::Insert(s) => field.push_str(s),
        Edit::DeleteChar => {
            field.pop();
        }
        Edit::DeleteWord => {
            let trimmed = field.trim_end().len();
            field.truncate(trimmed);
            let cut = field.rfind(char::is_whitespace).map_or(0, |i| i + 1);
            field.truncate(cut);
        }
        Edit::Clear => field.clear(),
    }
}

/// Apply an edit to whichever text field has the focus.
pub(super) fn apply(state: &mut State, edit: Edit) -> Option<Effect> {
    let page = state.page();
    match state.mode() {
        Mode::Filter if state.view == View::Audit => {
            change(&mut state.audit.filter, &edit);
            Some(audit::load(state))
        }
        Mode::Filter => {
            let mut text = state.users.query().text.clone();
            change(&mut text, &edit);
            state.users.set_text(&text);
            state.users.scroll_into_view(page);
            users::follow_filter(state)
        }
        Mode::Command => {
            if let Some(Overlay::CommandLine { input }) = state.overlays.last_mut() {
                change(input, &edit);
            }
            None
        }
        Mode::Dialog => {
            match state.overlays.last_mut() {
                Some(Overlay::ConfirmReset(d)) => {
                    // Typing while a button has the focus goes to the reason: Enter never confirms by accident.
                    if matches!(d.focus, ResetFocus::Cancel | ResetFocus::Confirm) {
                        if !matches!(edit, Edit::Insert(_)) {
                            return None;
                        }
                        d.focus = ResetFocus::Reason;
                    }
                    d.error = None;
                    match d.focus {
                        ResetFocus::Count => {
                            if let Edit::Insert(s) = &edit {
                                d.count.extend(s.chars().filter(char::is_ascii_digit));
                            } else {
                                change(&mut d.count, &edit);
                            }
                        }
                        _ => change(&mut d.reason, &edit),
                    }
                }
                Some(Overlay::Enroll(e)) if e.recovery_codes.is_none() => change(&mut e.code, &edit),
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
            change(field, &edit);
            form.error = None;
            None
        }
        _ => None,
    }
}

