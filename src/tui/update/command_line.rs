//! The `:` command line.

use super::edit::{self, Edit};
use super::{audit, reset, users};
use crate::domain::mfa::MfaStatus;
use crate::domain::role::Role;
use crate::service::SortField;
use crate::tui::action::{Action, Command};
use crate::tui::effects::Effect;
use crate::tui::state::*;

pub(super) fn command(state: &mut State, command: Command) -> Option<Effect> {
    match command {
        Command::Back => {
            state.overlays.pop();
        }
        Command::Submit => {
            let Some(Overlay::CommandLine { input }) = state.overlays.pop() else {
                return None;
            };
            return run_command_line(state, &input);
        }
        Command::DeleteChar => return edit::apply(state, Edit::DeleteChar),
        Command::DeleteWord => return edit::apply(state, Edit::DeleteWord),
        Command::ClearInput => return edit::apply(state, Edit::Clear),
        _ => {}
    }
    None
}

/// Run a `:` command: `reset`, `q`, `filter role=admin mfa=locked TEXT`, `sort FIELD [desc]`,
/// `users`, `audit`, `orgs`, `help`, `refresh`, `mark all`, `unmark`.
pub fn run_command_line(state: &mut State, input: &str) -> Option<Effect> {
    let input = input.trim().trim_start_matches(':').trim();
    let (verb, rest) = input.split_once(char::is_whitespace).unwrap_or((input, ""));
    let rest = rest.trim();
    let page = state.page();
    match verb {
        "" => None,
        "q" | "q!" | "quit" | "exit" => super::update(state, Action::Command(Command::Quit)),
        "help" | "h" => {
            state.open_help();
            None
        }
        "users" => super::switch_view(state, View::Users),
        "audit" => super::switch_view(state, View::Audit),
        "orgs" => super::switch_view(state, View::Orgs),
        "refresh" => match state.view {
            View::Users => Some(users::reload(state)),
            View::Audit => Some(audit::load(state).and(Effect::VerifyAudit)),
            View::Orgs => Some(Effect::LoadOrgs),
        },
        "reset" => {
            state.view = View::Users;
            reset::request(state, None)
        }
        "mark" if rest == "all" => {
            let n = state.users.mark_all_shown();
            state.info(format!("marked all {n} shown"));
            None
        }
        "unmark" | "nomark" => {
            state.users.clear_marks();
            state.info("marks cleared");
            None
        }
        "filter" | "f" if state.view == View::Audit => {
            state.audit.filter = rest.to_string();
            Some(audit::load(state))
        }
        "filter" | "f" => {
            let mut text = Vec::new();
            let (mut role, mut mfa) = (state.users.query().role, state.users.query().mfa);
            if rest.is_empty() {
                state.users.clear_query();
                state.users.scroll_into_view(page);
                state.info("filter cleared");
                return users::follow_filter(state);
            }
            for word in rest.split_whitespace() {
                match word.split_once('=') {
                    Some(("role", "any" | "all" | "")) => role = None,
                    Some(("role", r)) => match r.parse::<Role>() {
                        Ok(r) => role = Some(r),
                        Err(e) => {
                            state.error(e);
                            return None;
                        }
                    },
                    Some(("mfa", "any" | "all" | "")) => mfa = None,
                    Some(("mfa", m)) => match m.parse::<MfaStatus>() {
                        Ok(m) => mfa = Some(m),
                        Err(e) => {
                            state.error(e);
                            return None;
                        }
                    },
                    Some((k, _)) if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphabetic()) => {
                        state.error(format!("unknown filter {k:?}: use role=…, mfa=… or plain text"));
                        return None;
                    }
                    _ => text.push(word),
                }
            }
            let t = &mut state.users;
            t.set_role(role);
            t.set_mfa(mfa);
            if !text.is_empty() {
                t.set_text(&text.join(" "));
            }
            t.scroll_into_view(page);
            state.view = View::Users;
            users::follow_filter(state)
        }
        "sort" => {
            let mut words = rest.split_whitespace();
            let field = match words.next().map(str::parse::<SortField>) {
                Some(Ok(f)) => f,
                Some(Err(e)) => {
                    state.error(e);
                    return None;
                }
                None => {
                    state.error("sort by what? e.g. :sort email, :sort last_login desc");
                    return None;
                }
            };
            let desc = matches!(words.next(), Some("desc" | "descending" | "reverse"));
            state.users.set_sort(field, desc);
            state.users.scroll_into_view(page);
            None
        }
        other => {
            state.error(format!("unknown command :{other} (try :reset, :filter role=admin, :sort email, :q)"));
            None
        }
    }
}

