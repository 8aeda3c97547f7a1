//! Resetting MFA: the confirmation with its dry run, the progress, and the result.

use super::detail;
use crate::service::{ResetOutcome, ResetReport};
use crate::tui::action::{Command, ResetRun};
use crate::tui::effects::{Effect, ResetGate};
use crate::tui::state::*;
use uuid::Uuid;

/// Open the reset confirmation for `targets`, or the marked users, or the cursor row; and ask
/// for the dry run that fills in its breakdown.
pub(super) fn request(state: &mut State, targets: Option<Vec<Uuid>>) -> Option<Effect> {
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
    let names: Vec<String> = targets.iter().map(|id| detail::name(state, *id)).collect();
    let mut dialog = ConfirmReset::new(targets.clone(), Vec::new());
    dialog.hidden = state.users.hidden_among(&targets);
    let me = state.session.as_ref().map(|s| s.who.name.as_str());
    dialog.includes_operator = me.is_some_and(|me| names.iter().any(|n| n == me));
    // Only a table with every user in it knows what "every user of an org" is.
    if state.load.complete {
        dialog.whole_orgs = state.users.whole_orgs_among(&targets);
    }
    dialog.names = names;
    state.overlays.push(Overlay::ConfirmReset(dialog));
    Some(Effect::PlanReset(targets))
}

/// Run the reset the dialog describes, if everything it asks for is there.
fn confirm(state: &mut State) -> Option<Effect> {
    let reason_required = state.reason_required;
    let Some(Overlay::ConfirmReset(d)) = state.overlays.last_mut() else {
        return None;
    };
    let problem = match d.will_reset() {
        None if d.plan.as_ref().is_some_and(|p| p.is_err()) => Some((ResetFocus::Cancel, "the check failed; cancel and try again")),
        None => Some((ResetFocus::Confirm, "still checking what the reset would do; a moment")),
        Some(0) => Some((ResetFocus::Cancel, "none of these users has MFA to reset")),
        Some(_) if reason_required && d.reason.trim().is_empty() => Some((ResetFocus::Reason, "a reason is required")),
        Some(k) if d.needs_count() && d.count.trim() != k.to_string() => Some((ResetFocus::Count, "type the number on the Reset button to confirm")),
        Some(_) => None,
    };
    if let Some((focus, why)) = problem {
        d.focus = focus;
        d.error = Some(why.into());
        return None;
    }
    let targets = d.targets.clone();
    let reason = d.reason.trim().to_string();
    let will_reset = d.will_reset().unwrap_or(targets.len());
    state.overlays.pop();
    state.overlays.push(Overlay::Progress(ResetProgress::new(will_reset)));
    Some(Effect::RunReset { targets, reason, batch: state.batch_size })
}

/// The reset confirmation dialog.
pub(super) fn dialog_command(state: &mut State, command: Command) -> Option<Effect> {
    let Some(Overlay::ConfirmReset(d)) = state.overlays.last_mut() else {
        return None;
    };
    match command {
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
            ResetFocus::Confirm => return confirm(state),
            ResetFocus::Reason | ResetFocus::Count => {
                let order = d.focus_order();
                let i = order.iter().position(|f| *f == d.focus).unwrap_or(0);
                d.focus = order[(i + 1) % order.len()];
            }
        },
        _ => {}
    }
    None
}

/// The result view after a reset.
pub(super) fn result_command(state: &mut State, command: Command) -> Option<Effect> {
    let Some(Overlay::ResetResult(r)) = state.overlays.last_mut() else {
        return None;
    };
    let page = state.size.1.saturating_sub(12).max(1) as usize;
    let max = (r.report.results.len() + r.untouched.len()).saturating_sub(1);
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
        Command::Help => state.open_help(),
        _ => {}
    }
    None
}


/// The dry run [`Effect::PlanReset`] made, for the dialog still asking about the same users.
pub(super) fn planned(state: &mut State, result: Result<ResetReport, String>) -> Option<Effect> {
    if let Some(Overlay::ConfirmReset(d)) = state.overlays.last_mut() {
        let same = match &result {
            Ok(plan) => plan.results.len() == d.targets.len() && plan.results.iter().zip(&d.targets).all(|(r, t)| r.target == t.to_string()),
            Err(_) => true,
        };
        if same {
            d.plan = Some(result);
            if d.focus == ResetFocus::Count && !d.needs_count() {
                d.focus = ResetFocus::Reason;
            }
        }
    }
    None
}

/// How far [`Effect::RunReset`] has got.
pub(super) fn progress(state: &mut State, reset: usize) -> Option<Effect> {
    if let Some(Overlay::Progress(p)) = state.overlays.last_mut() {
        p.reset = reset;
    }
    None
}

/// Keys while a reset runs: esc, q or ctrl-c ask whether to stop after the current batch (the
/// reset waits for the answer); asked, q or ctrl-c stop it and quit, and the results are printed
/// once the console has closed.
pub(super) fn progress_command(state: &mut State, command: Command) -> Option<Effect> {
    let Some(Overlay::Progress(p)) = state.overlays.last_mut() else {
        return None;
    };
    if p.stopping {
        if command == Command::Quit {
            p.quit_after = true;
            state.quit = true;
        }
        return None;
    }
    let Some(focus_stop) = p.asking else {
        return match command {
            Command::Back | Command::Quit => {
                p.asking = Some(false);
                Some(Effect::Gate(ResetGate::Pause))
            }
            _ => None,
        };
    };
    let stop = |p: &mut ResetProgress, quit: bool| {
        p.asking = None;
        p.stopping = true;
        p.quit_after = quit;
        Some(Effect::Gate(ResetGate::Stop))
    };
    match command {
        Command::NextField | Command::PrevField => p.asking = Some(!focus_stop),
        Command::Back => {
            p.asking = None;
            return Some(Effect::Gate(ResetGate::Run));
        }
        Command::Submit if focus_stop => return stop(p, false),
        Command::Submit => {
            p.asking = None;
            return Some(Effect::Gate(ResetGate::Run));
        }
        Command::Quit => {
            state.quit = true;
            return stop(p, true);
        }
        _ => {}
    }
    None
}

/// The report of [`Effect::RunReset`]: the table takes the new states and the result view opens;
/// if the admin quit meanwhile, the console closes and prints it.
pub(super) fn done(state: &mut State, run: ResetRun) -> Option<Effect> {
    let quit_after = match state.overlays.last() {
        Some(Overlay::Progress(p)) => p.quit_after,
        _ => false,
    };
    state.overlays.retain(|o| !matches!(o, Overlay::Progress(_)));
    let ResetRun { report, untouched, stopped, error } = run;
    if report.results.is_empty() && !stopped {
        state.error(format!("the reset did not run: {}", error.unwrap_or_default()));
        return None;
    }
    state.users.apply_reset(&report);
    let page = state.page();
    state.users.scroll_into_view(page);
    let untouched: Vec<String> = untouched.iter().map(|id| detail::name(state, *id)).collect();
    let view = ResetResultView { report, untouched, stopped, error, details: false, scroll: 0 };
    state.info(summary(&view));
    state.audit.loaded = false;
    state.orgs.loaded = false;
    if quit_after {
        state.print_on_exit = Some(printed(&view));
        state.quit = true;
    }
    state.overlays.push(Overlay::ResetResult(view));
    None
}

/// One line on what a reset did.
fn summary(view: &ResetResultView) -> String {
    let c = |o| view.report.count(o);
    let mut text = format!(
        "reset {}, skipped {}, denied {}, not found {}, failed {}",
        c(ResetOutcome::Reset),
        c(ResetOutcome::Skipped),
        c(ResetOutcome::Denied),
        c(ResetOutcome::NotFound),
        c(ResetOutcome::Failed),
    );
    if c(ResetOutcome::Unknown) > 0 {
        text.push_str(&format!(", UNKNOWN {} (answer lost)", c(ResetOutcome::Unknown)));
    }
    if !view.untouched.is_empty() {
        let why = if view.stopped { "stopped" } else { "a batch failed" };
        text.push_str(&format!("; {why}: {} not tried", view.untouched.len()));
    }
    text
}

/// The results user by user, for standard output after the console has closed: a summary line,
/// then one tab-separated line per user (user, outcome, MFA after, detail).
fn printed(view: &ResetResultView) -> String {
    let mut out = format!("mfadmin tui: {}\n", summary(view));
    if let Some(e) = &view.error {
        out.push_str(&format!("mfadmin tui: a batch failed: {e}\n"));
    }
    for r in &view.report.results {
        let name = r.username.as_deref().unwrap_or(&r.target);
        let after = r.mfa_after.map_or("-".to_string(), |m| m.to_string());
        out.push_str(&format!("{name}\t{}\t{after}\t{}\n", r.outcome.as_str(), r.detail.as_deref().unwrap_or("")));
    }
    for name in &view.untouched {
        out.push_str(&format!("{name}\tnot_tried\t-\tunchanged: the reset ended before its batch\n"));
    }
    out
}
