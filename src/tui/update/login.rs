//! The login screen: password, then a code or an enrollment, then any recovery codes; and back to
//! it when the session ends.

use super::users;
use crate::service::Enrollment;
use crate::tui::action::{Command, Session};
use crate::tui::effects::{Effect, Secret};
use crate::tui::state::*;

pub(super) fn command(state: &mut State, command: Command) -> Option<Effect> {
    let Screen::Login(form) = &mut state.screen else {
        return None;
    };
    match command {
        Command::NextField | Command::PrevField if form.step == LoginStep::Password => form.focus = 1 - form.focus.min(1),
        Command::Back if form.step != LoginStep::Password && !form.waiting => {
            form.step = LoginStep::Password;
            form.code.clear();
            form.password.clear();
            form.focus = 1;
        }
        Command::Submit if form.waiting => {}
        Command::Submit => match &form.step {
            LoginStep::Password if form.focus == 0 => form.focus = 1,
            LoginStep::Password => {
                if form.username.trim().is_empty() {
                    form.error = Some("type your user name".into());
                    form.focus = 0;
                    return None;
                }
                form.waiting = true;
                form.error = None;
                let password = Secret(std::mem::take(&mut form.password));
                return Some(Effect::LoginPassword { username: form.username.trim().to_string(), password });
            }
            LoginStep::Code { challenge } => {
                let challenge = Secret(challenge.clone());
                form.waiting = true;
                form.error = None;
                return Some(Effect::LoginCode { challenge, code: Secret(std::mem::take(&mut form.code)) });
            }
            LoginStep::Enroll { challenge, enrollment: Some(_) } => {
                let challenge = Secret(challenge.clone());
                form.waiting = true;
                form.error = None;
                return Some(Effect::LoginEnrollConfirm { challenge, code: Secret(std::mem::take(&mut form.code)) });
            }
            LoginStep::Enroll { .. } => {}
            LoginStep::RecoveryCodes { session } => {
                let session = (**session).clone();
                return logged_in(state, session);
            }
        },
        _ => {}
    }
    None
}

/// Enter the console as `session`'s admin and load the users.
pub fn logged_in(state: &mut State, session: Session) -> Option<Effect> {
    let who = format!("{} ({})", session.who.name, session.who.role);
    state.session = Some(session);
    state.screen = Screen::Main;
    state.view = View::Users;
    state.info(format!("logged in as {who}; loading users…"));
    Some(users::reload(state))
}


/// [`Effect::LoginPassword`]'s answer when a second factor is due.
pub(super) fn needs_code(state: &mut State, challenge: String) -> Option<Effect> {
    if let Screen::Login(form) = &mut state.screen {
        form.waiting = false;
        form.step = LoginStep::Code { challenge };
        form.code.clear();
    }
    None
}

/// [`Effect::LoginPassword`]'s answer when the org requires MFA and the user has none yet.
pub(super) fn needs_enrollment(state: &mut State, challenge: String) -> Option<Effect> {
    if let Screen::Login(form) = &mut state.screen {
        form.step = LoginStep::Enroll { challenge: challenge.clone(), enrollment: None };
        form.code.clear();
        return Some(Effect::LoginEnrollBegin { challenge: Secret(challenge) });
    }
    None
}

/// The secret [`Effect::LoginEnrollBegin`] made, for the login screen's QR code.
pub(super) fn enrollment(state: &mut State, result: Result<Enrollment, String>) -> Option<Effect> {
    if let Screen::Login(form) = &mut state.screen {
        form.waiting = false;
        match (result, &mut form.step) {
            (Ok(e), LoginStep::Enroll { enrollment, .. }) => *enrollment = Some(e),
            (Err(e), _) => {
                form.step = LoginStep::Password;
                form.error = Some(e);
            }
            _ => {}
        }
    }
    None
}

/// Any login step refused.
pub(super) fn failed(state: &mut State, why: String) -> Option<Effect> {
    if let Screen::Login(form) = &mut state.screen {
        form.waiting = false;
        form.error = Some(why);
        form.code.clear();
    }
    None
}

/// The last login step passed: in, unless recovery codes from an enrollment must be shown first.
pub(super) fn succeeded(state: &mut State, session: Box<Session>) -> Option<Effect> {
    if session.recovery_codes.is_empty() {
        return logged_in(state, *session);
    }
    if let Screen::Login(form) = &mut state.screen {
        form.waiting = false;
        form.step = LoginStep::RecoveryCodes { session };
    }
    None
}

/// Any effect found the session over: back to the login screen, keeping marks and filter.
pub(super) fn session_ended(state: &mut State, why: String) -> Option<Effect> {
    if let Some(old) = state.session.take() {
        let username = old.who.name;
        // What a reset did stays on screen, above the login form.
        state.overlays.retain(|o| matches!(o, Overlay::ResetResult(_)));
        state.filter_editing = false;
        state.load.running = false;
        let mut form = LoginForm::new();
        form.username = username;
        form.focus = if form.username.is_empty() { 0 } else { 1 };
        form.error = Some(format!("{why}. Log in again: your marks and filter are kept"));
        state.screen = Screen::Login(Box::new(form));
    }
    None
}
