//! `update(&mut State, Action) -> Option<Effect>`: every change of the console's state, with no IO.
//! Anything that needs the store comes back as an [`Effect`] for the runner.

use super::action::{Action, Command, Session};
use super::effects::{Effect, Secret};
use super::keymap::Key;
use super::layout;
use super::state::*;
use super::table::{Query, SORT_COLUMNS};
use crate::domain::mfa::MfaStatus;
use crate::domain::role::Role;
use crate::domain::user::Status;
use crate::service::{ResetOutcome, SortField};
use std::borrow::Cow;
use uuid::Uuid;

/// Translate a key and apply it: what the loop does for every key press.
pub fn handle_key(state: &mut State, key: &Key) -> Option<Effect> {
    let action = state.action_for_key(key)?;
    update(state, action)
}

pub fn update(state: &mut State, action: Action) -> Option<Effect> {
    match action {
        Action::Command(Command::Quit) => {
            state.quit = true;
            None
        }
        Action::Command(command) => on_command(state, command),
        Action::Type(c) => edit(state, Edit::Insert(c.to_string())),
        Action::Paste(text) => {
            let line: String = text.chars().filter(|c| !c.is_control()).collect();
            edit(state, Edit::Insert(line))
        }
        Action::Resize(w, h) => {
            state.size = (w, h);
            let page = state.page();
            state.users.scroll_into_view(page);
            scroll_audit(state, 0);
            None
        }
        Action::Tick => {
            state.spinner = state.spinner.wrapping_add(1);
            None
        }
        Action::Busy(n) => {
            state.busy = n;
            None
        }
        Action::Click { column, row } => on_click(state, column, row),
        Action::Scroll(lines) => on_scroll(state, lines),
        Action::Crashed(why) => {
            state.crashed = Some(why);
            state.quit = true;
            None
        }
        result => on_result(state, result),
    }
}

// ---------------------------------------------------------------- commands

fn on_command(state: &mut State, command: Command) -> Option<Effect> {
    match state.mode() {
        Mode::Login => login_command(state, command),
        Mode::Users => users_command(state, command),
        Mode::Filter => filter_command(state, command),
        Mode::Detail => detail_command(state, command),
        Mode::Audit => audit_command(state, command),
        Mode::Orgs => orgs_command(state, command),
        Mode::Dialog => dialog_command(state, command),
        Mode::Progress => None,
        Mode::Result => result_command(state, command),
        Mode::Help => help_command(state, command),
        Mode::Command => command_line_command(state, command),
    }
}

/// Commands every main view shares.
fn common_command(state: &mut State, command: Command) -> Option<Effect> {
    match command {
        Command::Help => state.overlays.push(Overlay::Help { scroll: 0 }),
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
        View::Users if !state.users.loaded && !state.load.running => Some(reload_users(state)),
        View::Audit if !state.audit.loaded => Some(load_audit(state).and(Effect::VerifyAudit)),
        View::Orgs if !state.orgs.loaded => Some(Effect::LoadOrgs),
        _ => None,
    }
}

fn users_command(state: &mut State, command: Command) -> Option<Effect> {
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
                let v = state.key_hint(super::keymap::Section::Users, Command::MarkRange);
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
        Command::Refresh => return Some(reload_users(state)),
        Command::Reset => return request_reset(state, None),
        Command::Open => {
            let user = t.cursor_user()?.id;
            state.overlays.push(Overlay::Detail(DetailPane { user, detail: None, error: None, scroll: 0 }));
            return Some(Effect::LoadDetail(user));
        }
        Command::Enroll => {
            let user = t.cursor_user()?;
            return begin_enroll(state, user.id, user.username);
        }
        Command::ToggleStatus => {
            let user = t.cursor_user()?;
            ask_status(state, user.id, user.username, user.status);
        }
        other => return common_command(state, other),
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

fn filter_command(state: &mut State, command: Command) -> Option<Effect> {
    let page = state.page();
    match command {
        Command::ClearFilter => {
            if state.view == View::Audit {
                state.audit.editing = false;
                if !state.audit.filter.is_empty() {
                    state.audit.filter.clear();
                    return Some(load_audit(state));
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
                scroll_audit(state, delta);
            } else {
                state.users.move_cursor(delta, page);
            }
        }
        Command::DeleteChar => return edit(state, Edit::DeleteChar),
        Command::DeleteWord => return edit(state, Edit::DeleteWord),
        Command::ClearInput => return edit(state, Edit::Clear),
        _ => {}
    }
    None
}

fn detail_command(state: &mut State, command: Command) -> Option<Effect> {
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
            return request_reset(state, Some(vec![user]));
        }
        Command::Enroll => {
            let user = pane.user;
            let name = detail_name(state, user);
            return begin_enroll(state, user, name);
        }
        Command::ToggleStatus => {
            let user = pane.user;
            let status = pane.detail.as_ref().map(|d| d.user.status).or_else(|| state.users.user(user).map(|u| u.status))?;
            let name = detail_name(state, user);
            ask_status(state, user, name, status);
        }
        Command::Help => state.overlays.push(Overlay::Help { scroll: 0 }),
        _ => {}
    }
    None
}

fn detail_name(state: &State, user: Uuid) -> String {
    state.users.username(user).map_or_else(|| user.to_string(), Cow::into_owned)
}

fn begin_enroll(state: &mut State, user: Uuid, username: String) -> Option<Effect> {
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

fn ask_status(state: &mut State, user: Uuid, username: String, current: Status) {
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

fn load_audit(state: &mut State) -> Effect {
    state.audit.generation += 1;
    Effect::LoadAudit { generation: state.audit.generation, text: state.audit.filter.clone() }
}

fn scroll_audit(state: &mut State, delta: isize) {
    let page = state.page();
    let a = &mut state.audit;
    a.cursor = a.cursor.saturating_add_signed(delta).min(a.events.len().saturating_sub(1));
    if a.cursor < a.offset {
        a.offset = a.cursor;
    } else if a.cursor >= a.offset + page {
        a.offset = a.cursor + 1 - page;
    }
    a.offset = a.offset.min(a.events.len().saturating_sub(page));
}

fn audit_command(state: &mut State, command: Command) -> Option<Effect> {
    let page = state.page() as isize;
    match command {
        Command::Up => scroll_audit(state, -1),
        Command::Down => scroll_audit(state, 1),
        Command::PageUp => scroll_audit(state, -page),
        Command::PageDown => scroll_audit(state, page),
        Command::Top => scroll_audit(state, isize::MIN / 2),
        Command::Bottom => scroll_audit(state, isize::MAX / 2),
        Command::Filter => state.audit.editing = true,
        Command::ClearFilter if !state.audit.filter.is_empty() => {
            state.audit.filter.clear();
            return Some(load_audit(state));
        }
        Command::Refresh => return Some(load_audit(state).and(Effect::VerifyAudit)),
        other => return common_command(state, other),
    }
    None
}

fn orgs_command(state: &mut State, command: Command) -> Option<Effect> {
    let o = &mut state.orgs;
    match command {
        Command::Up => o.cursor = o.cursor.saturating_sub(1),
        Command::Down => o.cursor = (o.cursor + 1).min(o.orgs.len().saturating_sub(1)),
        Command::Refresh => return Some(Effect::LoadOrgs),
        Command::ToggleEnforcement => {
            let org = o.orgs.get(o.cursor)?.clone();
            let on = !org.mfa_enforced;
            let lines = if on {
                vec![
                    format!("Require MFA for every user of {}?", org.name),
                    format!("{} of its {} users have no second factor yet; they must enroll at their next login.", org.users - org.enrolled, org.users),
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
        other => return common_command(state, other),
    }
    None
}

// ---------------------------------------------------------------- reset

/// Open the reset confirmation for `targets`, or the marked users, or the cursor row; and ask
/// for the dry run that fills in its breakdown.
fn request_reset(state: &mut State, targets: Option<Vec<Uuid>>) -> Option<Effect> {
    let targets = match targets {
        Some(t) => t,
        None if state.users.mark_count() > 0 => state.users.marked_ids(),
        None => match state.users.cursor_user() {
            Some(u) => vec![u.id],
            None => {
                state.error("no user to reset: the table is empty");
                return None;
            }
        },
    };
    let names = targets.iter().map(|id| detail_name(state, *id)).collect();
    state.overlays.push(Overlay::ConfirmReset(ConfirmReset::new(targets.clone(), names)));
    Some(Effect::PlanReset(targets))
}

fn confirm_reset(state: &mut State) -> Option<Effect> {
    let reason_required = state.reason_required;
    let Some(Overlay::ConfirmReset(d)) = state.overlays.last_mut() else {
        return None;
    };
    let problem = match d.will_reset() {
        None if d.plan.as_ref().is_some_and(|p| p.is_err()) => Some((ResetFocus::Cancel, "the check failed; cancel and try again")),
        None => Some((ResetFocus::Confirm, "still checking what the reset would do; a moment")),
        Some(0) => Some((ResetFocus::Cancel, "none of these users has MFA to reset")),
        Some(_) if reason_required && d.reason.trim().is_empty() => Some((ResetFocus::Reason, "a reason is required")),
        Some(_) if d.needs_count() && d.count.trim() != d.targets.len().to_string() => {
            Some((ResetFocus::Count, "type the number of users to confirm"))
        }
        Some(_) => None,
    };
    if let Some((focus, why)) = problem {
        d.focus = focus;
        d.error = Some(why.into());
        return None;
    }
    let targets = d.targets.clone();
    let reason = d.reason.trim().to_string();
    state.overlays.pop();
    state.overlays.push(Overlay::Progress(ResetProgress { done: 0, total: targets.len() }));
    Some(Effect::RunReset { targets, reason })
}

// ---------------------------------------------------------------- dialogs

fn dialog_command(state: &mut State, command: Command) -> Option<Effect> {
    match state.overlays.last_mut()? {
        Overlay::ConfirmReset(d) => match command {
            Command::Back => {
                state.overlays.pop();
            }
            Command::NextField | Command::PrevField => {
                let order = d.focus_order();
                let i = order.iter().position(|f| *f == d.focus).unwrap_or(0);
                let n = order.len();
                d.focus = order[if command == Command::NextField { (i + 1) % n } else { (i + n - 1) % n }];
            }
            Command::Submit => match d.focus {
                ResetFocus::Cancel => {
                    state.overlays.pop();
                }
                ResetFocus::Confirm => return confirm_reset(state),
                ResetFocus::Reason | ResetFocus::Count => {
                    let order = d.focus_order();
                    let i = order.iter().position(|f| *f == d.focus).unwrap_or(0);
                    d.focus = order[(i + 1) % order.len()];
                }
            },
            Command::DeleteChar => return edit(state, Edit::DeleteChar),
            Command::DeleteWord => return edit(state, Edit::DeleteWord),
            Command::ClearInput => return edit(state, Edit::Clear),
            _ => {}
        },
        Overlay::Confirm(c) => match command {
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
                    PendingOp::SetEnforced { org, on } => Effect::SetEnforced { org, on },
                });
            }
            _ => {}
        },
        Overlay::Enroll(e) => match command {
            Command::Back => {
                state.overlays.pop();
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
            Command::DeleteChar => return edit(state, Edit::DeleteChar),
            Command::DeleteWord => return edit(state, Edit::DeleteWord),
            Command::ClearInput => return edit(state, Edit::Clear),
            _ => {}
        },
        _ => {}
    }
    None
}

fn result_command(state: &mut State, command: Command) -> Option<Effect> {
    let Some(Overlay::ResetResult(r)) = state.overlays.last_mut() else {
        return None;
    };
    let page = state.size.1.saturating_sub(12).max(1) as usize;
    let max = r.report.results.len().saturating_sub(1);
    match command {
        Command::Back => {
            state.overlays.pop();
            // Back in a user's detail: show it as it is now.
            if let Some(Overlay::Detail(d)) = state.overlays.last() {
                return Some(Effect::LoadDetail(d.user));
            }
        }
        Command::ToggleDetails => {
            r.details = !r.details;
            r.scroll = 0;
        }
        Command::Down => r.scroll = (r.scroll + 1).min(max),
        Command::Up => r.scroll = r.scroll.saturating_sub(1),
        Command::PageDown => r.scroll = (r.scroll + page).min(max),
        Command::PageUp => r.scroll = r.scroll.saturating_sub(page),
        Command::Help => state.overlays.push(Overlay::Help { scroll: 0 }),
        _ => {}
    }
    None
}

fn help_command(state: &mut State, command: Command) -> Option<Effect> {
    let page = state.size.1.saturating_sub(4).max(1) as usize;
    let max = state.help_lines().saturating_sub(page);
    let Some(Overlay::Help { scroll }) = state.overlays.last_mut() else {
        return None;
    };
    match command {
        Command::Back | Command::Help => {
            state.overlays.pop();
        }
        Command::Down => *scroll = (*scroll + 1).min(max),
        Command::Up => *scroll = scroll.saturating_sub(1),
        Command::PageDown => *scroll = (*scroll + page).min(max),
        Command::PageUp => *scroll = scroll.saturating_sub(page),
        _ => {}
    }
    None
}

// ---------------------------------------------------------------- command line

fn command_line_command(state: &mut State, command: Command) -> Option<Effect> {
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
        Command::DeleteChar => return edit(state, Edit::DeleteChar),
        Command::DeleteWord => return edit(state, Edit::DeleteWord),
        Command::ClearInput => return edit(state, Edit::Clear),
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
        "q" | "q!" | "quit" | "exit" => update(state, Action::Command(Command::Quit)),
        "help" | "h" => {
            state.overlays.push(Overlay::Help { scroll: 0 });
            None
        }
        "users" => switch_view(state, View::Users),
        "audit" => switch_view(state, View::Audit),
        "orgs" => switch_view(state, View::Orgs),
        "refresh" => match state.view {
            View::Users => Some(reload_users(state)),
            View::Audit => Some(load_audit(state).and(Effect::VerifyAudit)),
            View::Orgs => Some(Effect::LoadOrgs),
        },
        "reset" => {
            state.view = View::Users;
            request_reset(state, None)
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
            Some(load_audit(state))
        }
        "filter" | "f" => {
            let mut text = Vec::new();
            let (mut role, mut mfa) = (state.users.query().role, state.users.query().mfa);
            if rest.is_empty() {
                state.users.clear_query();
                state.users.scroll_into_view(page);
                state.info("filter cleared");
                return follow_filter(state);
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
            follow_filter(state)
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

// ---------------------------------------------------------------- text fields

enum Edit {
    Insert(String),
    DeleteChar,
    DeleteWord,
    Clear,
}

fn apply_edit(field: &mut String, edit: &Edit) {
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
fn edit(state: &mut State, edit: Edit) -> Option<Effect> {
    let page = state.page();
    match state.mode() {
        Mode::Filter if state.view == View::Audit => {
            apply_edit(&mut state.audit.filter, &edit);
            Some(load_audit(state))
        }
        Mode::Filter => {
            let mut text = state.users.query().text.clone();
            apply_edit(&mut text, &edit);
            state.users.set_text(&text);
            state.users.scroll_into_view(page);
            follow_filter(state)
        }
        Mode::Command => {
            if let Some(Overlay::CommandLine { input }) = state.overlays.last_mut() {
                apply_edit(input, &edit);
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
                                apply_edit(&mut d.count, &edit);
                            }
                        }
                        _ => apply_edit(&mut d.reason, &edit),
                    }
                }
                Some(Overlay::Enroll(e)) if e.recovery_codes.is_none() => apply_edit(&mut e.code, &edit),
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
            apply_edit(field, &edit);
            form.error = None;
            None
        }
        _ => None,
    }
}

// ---------------------------------------------------------------- login

fn login_command(state: &mut State, command: Command) -> Option<Effect> {
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
        Command::DeleteChar => return edit(state, Edit::DeleteChar),
        Command::DeleteWord => return edit(state, Edit::DeleteWord),
        Command::ClearInput => return edit(state, Edit::Clear),
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
    Some(reload_users(state))
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
fn reload_users(state: &mut State) -> Effect {
    state.load.complete = false;
    start_load(state, Query::default())
}

/// After the filter changed: while not every user is here, ask the backend for what the filter
/// finds, unless a finished load already brought all of it.
fn follow_filter(state: &mut State) -> Option<Effect> {
    let wanted = state.users.query().clone();
    let load = &state.load;
    let covers = |had: &Query| {
        wanted.text.to_lowercase().contains(&had.text.to_lowercase())
            && had.role.is_none_or(|r| wanted.role == Some(r))
            && had.mfa.is_none_or(|m| wanted.mfa == Some(m))
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
        Mode::Audit => scroll_audit(state, lines as isize),
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

fn on_result(state: &mut State, action: Action) -> Option<Effect> {
    match action {
        Action::LoginNeedsCode { challenge } => {
            if let Screen::Login(form) = &mut state.screen {
                form.waiting = false;
                form.step = LoginStep::Code { challenge };
                form.code.clear();
            }
        }
        Action::LoginNeedsEnrollment { challenge } => {
            if let Screen::Login(form) = &mut state.screen {
                form.step = LoginStep::Enroll { challenge: challenge.clone(), enrollment: None };
                form.code.clear();
                return Some(Effect::LoginEnrollBegin { challenge: Secret(challenge) });
            }
        }
        Action::LoginEnrollment(result) => {
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
        }
        Action::LoginFailed(why) => {
            if let Screen::Login(form) = &mut state.screen {
                form.waiting = false;
                form.error = Some(why);
                form.code.clear();
            }
        }
        Action::LoggedIn(session) => {
            if session.recovery_codes.is_empty() {
                return logged_in(state, *session);
            }
            if let Screen::Login(form) = &mut state.screen {
                form.waiting = false;
                form.step = LoginStep::RecoveryCodes { session };
            }
        }
        Action::UsersPage { generation, .. } if generation != state.load.generation => {}
        Action::UsersPage { result: Ok(rows), read, total, done, .. } => {
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
                    state.info(format!("{} users loaded", state.users.total()));
                }
            } else if show {
                state.info(format!("loading users: {} of {}…", state.load.received, state.load.total));
            }
        }
        Action::UsersPage { result: Err(e), .. } => {
            state.load.running = false;
            state.error(format!("cannot load the users: {e}"));
        }
        Action::Connection(trouble) => state.disconnected = trouble,
        Action::SessionEnded(why) => {
            if let Some(old) = state.session.take() {
                let username = old.who.name;
                state.overlays.clear();
                state.filter_editing = false;
                state.load.running = false;
                let mut form = LoginForm::new();
                form.username = username;
                form.focus = if form.username.is_empty() { 0 } else { 1 };
                form.error = Some(format!("{why}. Log in again: your marks and filter are kept"));
                state.screen = Screen::Login(Box::new(form));
            }
        }
        Action::UsersLoaded(Ok(rows)) => {
            let n = rows.len();
            state.load.complete = true;
            state.users.load(rows);
            let page = state.page();
            state.users.scroll_into_view(page);
            if state.message.as_ref().is_some_and(|m| m.text.ends_with("loading users…")) {
                state.info(format!("{n} users loaded"));
            }
        }
        Action::UsersLoaded(Err(e)) => state.error(format!("cannot load the users: {e}")),
        Action::DetailLoaded(result) => {
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
        }
        Action::ResetPlanned(result) => {
            if let Some(Overlay::ConfirmReset(d)) = state.overlays.last_mut() {
                let same = match &result {
                    Ok(plan) => plan.results.len() == d.targets.len()
                        && plan.results.iter().zip(&d.targets).all(|(r, t)| r.target == t.to_string()),
                    Err(_) => true,
                };
                if same {
                    d.plan = Some(result);
                }
            }
        }
        Action::ResetProgress { done, total } => {
            if let Some(Overlay::Progress(p)) = state.overlays.last_mut() {
                p.done = done;
                p.total = total;
            }
        }
        Action::ResetDone(result) => {
            if let Some(Overlay::Progress(_)) = state.overlays.last() {
                state.overlays.pop();
            }
            match result {
                Ok(report) => {
                    state.users.apply_reset(&report);
                    let page = state.page();
                    state.users.scroll_into_view(page);
                    let c = |o| report.count(o);
                    state.info(format!(
                        "reset {}, skipped {}, denied {}, not found {}, failed {}{}",
                        c(ResetOutcome::Reset),
                        c(ResetOutcome::Skipped),
                        c(ResetOutcome::Denied),
                        c(ResetOutcome::NotFound),
                        c(ResetOutcome::Failed),
                        match c(ResetOutcome::Unknown) {
                            0 => String::new(),
                            n => format!(", UNKNOWN {n} (answer lost)"),
                        }
                    ));
                    state.audit.loaded = false;
                    state.orgs.loaded = false;
                    state.overlays.push(Overlay::ResetResult(ResetResultView { report, details: false, scroll: 0 }));
                }
                Err(e) => state.error(format!("the reset did not run: {e}")),
            }
        }
        Action::EnrollmentBegun(result) => {
            if let Some(Overlay::Enroll(e)) = state.overlays.last_mut() {
                e.waiting = false;
                match result {
                    Ok(enrollment) => e.enrollment = Some(enrollment),
                    Err(why) => e.error = Some(why),
                }
            }
        }
        Action::EnrollmentConfirmed(result) => {
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
        }
        Action::UserChanged(Ok(view)) => {
            let (id, name, status) = (view.id, view.username.clone(), view.status);
            state.users.replace(view);
            state.info(format!("{name} is now {}", status.as_str()));
            state.audit.loaded = false;
            if state.overlays.iter().any(|o| matches!(o, Overlay::Detail(d) if d.user == id)) {
                return Some(Effect::LoadDetail(id));
            }
        }
        Action::UserChanged(Err(e)) => state.error(e),
        Action::AuditLoaded { generation, result } if generation == state.audit.generation => {
            let a = &mut state.audit;
            a.loaded = true;
            match result {
                Ok(events) => {
                    a.events = events;
                    a.error = None;
                }
                Err(e) => {
                    a.events.clear();
                    a.error = Some(e);
                }
            }
            scroll_audit(state, 0);
        }
        Action::AuditVerified(result) => state.audit.verify = Some(result),
        Action::OrgsLoaded(result) => {
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
        }
        Action::OrgChanged(Ok(org)) => {
            state.info(format!("MFA enforcement for {} is now {}", org.name, if org.mfa_enforced { "on" } else { "off" }));
            state.audit.loaded = false;
            // Enforcement changes what "not enrolled" means for every user of the org.
            return Some(Effect::LoadOrgs.and(reload_users(state)));
        }
        Action::OrgChanged(Err(e)) => state.error(e),
        _ => {}
    }
    None
}
