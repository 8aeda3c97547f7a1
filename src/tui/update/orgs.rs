//! The orgs view, and turning an org's MFA enforcement on or off.

use super::users;
use crate::service::OrgView;
use crate::tui::action::Command;
use crate::tui::effects::Effect;
use crate::tui::state::*;

pub(super) fn command(state: &mut State, command: Command) -> Option<Effect> {
    let o = &mut state.orgs;
    match command {
        Command::Up => o.cursor = o.cursor.saturating_sub(1),
        Command::Down => o.cursor = (o.cursor + 1).min(o.orgs.len().saturating_sub(1)),
        Command::Refresh => return Some(Effect::LoadOrgs),
        Command::ToggleEnforcement => {
            if let Some(why) = state.refusal(Offer::ChangeOrg, None) {
                state.error(why);
                return None;
            }
            let o = &state.orgs;
            let org = o.orgs.get(o.cursor)?.clone();
            let on = !org.mfa_enforced;
            let lines = if on {
                vec![
                    format!("Require MFA for every user of {}?", org.name),
                    format!(
                        "{} of its {} {} no second factor yet; they must enroll at their next login.",
                        org.users - org.enrolled,
                        crate::tui::views::count(org.users, "user"),
                        if org.users - org.enrolled == 1 { "has" } else { "have" }
                    ),
                ]
            } else {
                vec![
                    format!("Stop requiring MFA in {}?", org.name),
                    "Users without a second factor can then log in with their password alone.".into(),
                ]
            };
            state.overlays.push(Overlay::Confirm(Confirm {
                title: "MFA enforcement".into(),
                lines,
                yes_label: if on { "Turn on".into() } else { "Turn off".into() },
                op: PendingOp::SetEnforced { org: org.name, on },
                focus_yes: false,
            }));
        }
        other => return super::common_command(state, other),
    }
    None
}


/// The orgs [`Effect::LoadOrgs`] found.
pub(super) fn loaded(state: &mut State, result: Result<Vec<OrgView>, String>) -> Option<Effect> {
    let o = &mut state.orgs;
    o.loaded = true;
    match result {
        Ok(orgs) => {
            o.orgs = orgs;
            o.error = None;
            o.cursor = o.cursor.min(o.orgs.len().saturating_sub(1));
        }
        Err(e) => o.error = Some(e),
    }
    None
}

/// The answer to [`Effect::SetEnforced`].
pub(super) fn changed(state: &mut State, result: Result<OrgView, String>) -> Option<Effect> {
    match result {
        Ok(org) => {
            state.info(format!("MFA enforcement for {} is now {}", org.name, if org.mfa_enforced { "on" } else { "off" }));
            state.audit.loaded = false;
            // Enforcement changes what "not enrolled" means for every user of the org.
            Some(Effect::LoadOrgs.and(users::reload(state)))
        }
        Err(e) => {
            state.error(e);
            None
        }
    }
}
