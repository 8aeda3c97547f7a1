//! The `:` command line.

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
        Command::Complete => complete(state),
        _ => {}
    }
    None
}

/// The commands `:` knows, as completion offers them (a space after those that take more).
const VERBS: [&str; 11] = ["reset", "filter ", "sort ", "users", "audit", "orgs", "help", "refresh", "mark all", "unmark", "quit"];
/// What `:sort` sorts by.
const SORT_FIELDS: [&str; 9] = ["username", "display_name", "email", "org", "role", "mfa", "last_login", "created", "number"];
/// What `:filter` takes besides text.
const FILTER_WORDS: [&str; 10] = ["role=owner", "role=admin", "role=helpdesk", "role=auditor", "role=member", "mfa=enrolled", "mfa=not_enrolled", "mfa=must_enroll", "mfa=pending", "mfa=locked"];

/// Complete the word being typed on the command line (tab): a command, what `:sort` sorts by, or a
/// `:filter` role or MFA state. One candidate is filled in; several fill in what they share and are
/// listed on the status line.
fn complete(state: &mut State) {
    let Some(Overlay::CommandLine { input }) = state.overlays.last() else {
        return;
    };
    let line = input.trim_start_matches(':').trim_start().to_string();
    let (head, word, candidates): (String, String, Vec<&str>) = match line.split_once(' ') {
        None => (String::new(), line.clone(), VERBS.to_vec()),
        Some((verb, rest)) => {
            let (done, word) = rest.rsplit_once(' ').map_or((String::new(), rest.to_string()), |(d, w)| (format!("{d} "), w.to_string()));
            let candidates = match verb {
                "sort" => SORT_FIELDS.to_vec(),
                "filter" | "f" => FILTER_WORDS.to_vec(),
                _ => Vec::new(),
            };
            (format!("{verb} {done}"), word, candidates)
        }
    };
    let found: Vec<&str> = candidates.into_iter().filter(|c| c.starts_with(&word)).collect();
    let filled = match found.as_slice() {
        [] => {
            state.error(format!("nothing to complete for {word:?}"));
            return;
        }
        [one] => one.to_string(),
        many => {
            state.info(many.iter().map(|c| c.trim_end()).collect::<Vec<_>>().join("  "));
            let first = many[0];
            let shared = (0..=first.len()).rev().find(|&n| first.is_char_boundary(n) && many.iter().all(|c| c.starts_with(&first[..n]))).unwrap_or(0);
            first[..shared].to_string()
        }
    };
    if let Some(Overlay::CommandLine { input }) = state.overlays.last_mut() {
        *input = format!("{head}{filled}");
    }
    state.cursor_back = 0;
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

