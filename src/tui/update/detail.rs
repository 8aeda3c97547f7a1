//! A user's detail pane, and disabling or enabling a user (from the pane or the table).

use super::{enroll, reset};
use crate::domain::mfa::MfaStatus;
use crate::domain::user::{Status, UserView};
use crate::service::UserDetail;
use crate::tui::action::Command;
use crate::tui::effects::Effect;
use crate::tui::state::*;
use std::borrow::Cow;
use uuid::Uuid;

pub(super) fn command(state: &mut State, command: Command) -> Option<Effect> {
    if let Some(Overlay::AuditEvent(_)) = state.overlays.last() {
        match command {
            Command::Back => {
                state.overlays.pop();
            }
            Command::Help => state.open_help(),
            _ => {}
        }
        return None;
    }
    if matches!(command, Command::Reset | Command::Enroll | Command::ToggleStatus | Command::Unlock)
        && let Some(why) = refused(state, command)
    {
        state.error(why);
        return None;
    }
    let Some(Overlay::Detail(pane)) = state.overlays.last_mut() else {
        return None;
    };
    match command {
        Command::Back => {
            state.overlays.pop();
        }
        Command::Down => {
            // The record's lines and the audit events below them.
            let lines = 16 + pane.detail.as_ref().map_or(0, |d| d.recent_audit.len());
            pane.scroll = (pane.scroll + 1).min(lines);
        }
        Command::Up => pane.scroll = pane.scroll.saturating_sub(1),
        Command::Reset => {
            let user = pane.user;
            return reset::request(state, Some(vec![user]));
        }
        Command::Enroll => {
            let user = pane.user;
            let name = name(state, user);
            return enroll::begin(state, user, name);
        }
        Command::ToggleStatus => {
            let user = pane.user;
            let status = pane.detail.as_ref().map(|d| d.user.status).or_else(|| state.users.user(user).map(|u| u.status))?;
            let name = name(state, user);
            ask_status(state, user, name, status);
        }
        Command::Unlock => {
            let user = pane.detail.as_ref().map(|d| d.user.clone()).or_else(|| state.users.user(pane.user))?;
            ask_unlock(state, &user);
        }
        Command::Help => state.open_help(),
        _ => {}
    }
    None
}

/// Why the admin may not do `command` to the user of the top detail pane, if not.
fn refused(state: &State, command: Command) -> Option<String> {
    let Some(Overlay::Detail(pane)) = state.overlays.last() else {
        return None;
    };
    let user = pane.detail.as_ref().map(|d| d.user.clone()).or_else(|| state.users.user(pane.user))?;
    let offer = match command {
        Command::Reset => Offer::Reset,
        Command::Enroll => Offer::Enroll,
        Command::Unlock => Offer::Unlock,
        _ => Offer::SetStatus,
    };
    state.refusal(offer, Some((user.role, &user.username)))
}

/// Ask whether to unlock `user`'s factor; yes becomes [`Effect::Unlock`]. A factor that is not
/// locked is said so at once (the service would refuse it too).
pub(super) fn ask_unlock(state: &mut State, user: &UserView) {
    if user.mfa != MfaStatus::Locked {
        state.error(format!("the MFA of {} is not locked (it is {}): there is nothing to unlock", user.username, user.mfa));
        return;
    }
    state.overlays.push(Overlay::Confirm(Confirm {
        title: "Unlock MFA".into(),
        lines: vec![
            format!("Unlock the MFA of {}?", user.username),
            "Their codes work again at once; the factor and its recovery codes stay.".into(),
        ],
        yes_label: "Unlock".into(),
        op: PendingOp::Unlock { user: user.id },
        focus_yes: false,
    }));
}

/// The user name of `user`, or its id while the table does not have it.
pub(super) fn name(state: &State, user: Uuid) -> String {
    state.users.username(user).map_or_else(|| user.to_string(), Cow::into_owned)
}

/// Ask whether to disable (or enable) `user`; yes becomes [`Effect::SetStatus`].
pub(super) fn ask_status(state: &mut State, user: Uuid, username: String, current: Status) {
    let (status, verb) = match current {
        Status::Active => (Status::Disabled, "Disable"),
        Status::Disabled => (Status::Active, "Enable"),
    };
    let lines = match status {
        Status::Disabled => vec![format!("Disable {username}?"), "They can no longer log in, and their sessions end.".into()],
        Status::Active => vec![format!("Enable {username}?"), "They can log in again.".into()],
    };
    state.overlays.push(Overlay::Confirm(Confirm {
        title: format!("{verb} user"),
        lines,
        yes_label: verb.to_string(),
        op: PendingOp::SetStatus { user, username, status },
        focus_yes: false,
    }));
}


/// The detail [`Effect::LoadDetail`] brought: the table's row and every pane showing that user.
pub(super) fn loaded(state: &mut State, result: Result<Box<UserDetail>, String>) -> Option<Effect> {
    let fresh = result.as_ref().ok().map(|d| d.user.clone());
    if let Some(view) = fresh.clone() {
        state.users.replace(view);
    }
    let id = fresh.map(|v| v.id);
    for overlay in state.overlays.iter_mut() {
        if let Overlay::Detail(pane) = overlay {
            match &result {
                Ok(d) if Some(pane.user) == id => {
                    pane.detail = Some(d.clone());
                    pane.error = None;
                }
                Err(e) if pane.detail.is_none() => pane.error = Some(e.clone()),
                _ => {}
            }
        }
    }
    None
}

/// The answer to [`Effect::Unlock`]: the row, and every pane showing the user, load again.
pub(super) fn unlocked(state: &mut State, result: Result<Box<UserView>, String>) -> Option<Effect> {
    let view = match result {
        Ok(view) => *view,
        Err(e) => {
            state.error(e);
            return None;
        }
    };
    let (id, name, mfa) = (view.id, view.username.clone(), view.mfa);
    state.users.replace(view);
    state.info(format!("unlocked the MFA of {name}: it is {mfa} again"));
    state.audit.loaded = false;
    if state.overlays.iter().any(|o| matches!(o, Overlay::Detail(d) if d.user == id)) {
        return Some(Effect::LoadDetail(id));
    }
    None
}

/// The answer to [`Effect::SetStatus`].
pub(super) fn status_changed(state: &mut State, result: Result<Box<UserView>, String>) -> Option<Effect> {
    let view = match result {
        Ok(view) => *view,
        Err(e) => {
            state.error(e);
            return None;
        }
    };
    let (id, name, status) = (view.id, view.username.clone(), view.status);
    state.users.replace(view);
    state.info(format!("{name} is now {}", status.as_str()));
    state.audit.loaded = false;
    if state.overlays.iter().any(|o| matches!(o, Overlay::Detail(d) if d.user == id)) {
        return Some(Effect::LoadDetail(id));
    }
    None
}
