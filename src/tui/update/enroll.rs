//! Enrolling a user's second factor at the console: the QR code dialog and its code.

use crate::service::Enrollment;
use crate::tui::action::Command;
use crate::tui::effects::Effect;
use crate::tui::state::*;
use uuid::Uuid;

/// Open the enrollment dialog for `user` and ask for a new secret.
pub(super) fn begin(state: &mut State, user: Uuid, username: String) -> Option<Effect> {
    state.overlays.push(Overlay::Enroll(EnrollDialog {
        user,
        username,
        enrollment: None,
        code: String::new(),
        recovery_codes: None,
        error: None,
        waiting: true,
    }));
    Some(Effect::BeginEnroll(user))
}


pub(super) fn dialog_command(state: &mut State, command: Command) -> Option<Effect> {
    let Some(Overlay::Enroll(e)) = state.overlays.last_mut() else {
        return None;
    };
    match command {
        // Cancelled or done: the user is pending, enrolled or as before; the row and any detail
        // pane show which.
        Command::Back => {
            let user = e.user;
            state.overlays.pop();
            return Some(Effect::LoadDetail(user));
        }
        Command::Submit if e.recovery_codes.is_some() => {
            state.overlays.pop();
        }
        Command::Submit if e.waiting || e.enrollment.is_none() => {}
        Command::Submit => {
            let code: String = e.code.chars().filter(|c| !c.is_whitespace()).collect();
            if code.is_empty() {
                e.error = Some("type the 6-digit code the app shows".into());
                return None;
            }
            e.waiting = true;
            e.error = None;
            return Some(Effect::ConfirmEnroll { user: e.user, code });
        }
        _ => {}
    }
    None
}

/// The secret [`Effect::BeginEnroll`] made, for the dialog's QR code.
pub(super) fn begun(state: &mut State, result: Result<Enrollment, String>) -> Option<Effect> {
    if let Some(Overlay::Enroll(e)) = state.overlays.last_mut() {
        e.waiting = false;
        match result {
            Ok(enrollment) => {
                e.enrollment = Some(enrollment);
                // A secret was issued: the user is pending now.
                let user = e.user;
                return Some(Effect::LoadDetail(user));
            }
            Err(why) => e.error = Some(why),
        }
    }
    None
}

/// The answer to [`Effect::ConfirmEnroll`]: the recovery codes, or why the code was refused.
pub(super) fn confirmed(state: &mut State, result: Result<Vec<String>, String>) -> Option<Effect> {
    if let Some(Overlay::Enroll(e)) = state.overlays.last_mut() {
        e.waiting = false;
        match result {
            Ok(codes) => {
                e.recovery_codes = Some(codes);
                e.error = None;
                let user = e.user;
                state.audit.loaded = false;
                return Some(Effect::LoadDetail(user));
            }
            Err(why) => {
                e.error = Some(why);
                e.code.clear();
            }
        }
    }
    None
}
