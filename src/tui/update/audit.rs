//! The audit view: scrolling and filtering the trail, and the loads and chain check it asks for.

use crate::service::{AuditView, VerifyReport};
use crate::tui::action::Command;
use crate::tui::effects::Effect;
use crate::tui::state::*;

/// Load the newest audit events the filter finds (a page of them), superseding any load running.
pub(super) fn load(state: &mut State) -> Effect {
    state.audit.limit = AUDIT_PAGE;
    load_limit(state)
}

fn load_limit(state: &mut State) -> Effect {
    state.audit.generation += 1;
    let a = &state.audit;
    Effect::LoadAudit { generation: a.generation, text: a.filter.clone(), validations: a.validations, limit: a.limit }
}

/// At the last event loaded, while there are older ones: ask for a page more.
fn more(state: &mut State) -> Option<Effect> {
    let a = &state.audit;
    if !a.loaded || a.all_loaded() || a.cursor + 1 < a.events.len() {
        return None;
    }
    state.audit.limit += AUDIT_PAGE;
    state.audit.loaded = false;
    state.info(format!("loading {} more events…", AUDIT_PAGE));
    Some(load_limit(state))
}

/// Move the audit cursor by `delta` rows, keeping it on the page.
pub(super) fn scroll(state: &mut State, delta: isize) {
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

pub(super) fn command(state: &mut State, command: Command) -> Option<Effect> {
    let page = state.page() as isize;
    match command {
        Command::Up => scroll(state, -1),
        Command::Down | Command::PageDown | Command::Bottom => {
            let at_end = state.audit.cursor + 1 >= state.audit.events.len();
            scroll(state, match command {
                Command::Down => 1,
                Command::PageDown => page,
                _ => isize::MAX / 2,
            });
            // Pressed again at the end: the older events.
            if at_end {
                return more(state);
            }
        }
        Command::PageUp => scroll(state, -page),
        Command::Top => scroll(state, isize::MIN / 2),
        Command::Open if !state.audit.events.is_empty() => state.overlays.push(Overlay::AuditEvent(state.audit.cursor)),
        Command::Filter => state.audit.editing = true,
        Command::ClearFilter if !state.audit.filter.is_empty() => {
            state.audit.filter.clear();
            return Some(load(state));
        }
        Command::ToggleValidations => {
            state.audit.validations = !state.audit.validations;
            state.info(if state.audit.validations { "second-factor checks shown" } else { "second-factor checks hidden" });
            return Some(load(state));
        }
        Command::Refresh => return Some(load(state).and(Effect::VerifyAudit)),
        other => return super::common_command(state, other),
    }
    None
}


/// The events [`Effect::LoadAudit`] found; a superseded load's answer is dropped.
pub(super) fn loaded(state: &mut State, generation: u64, result: Result<Vec<AuditView>, String>) -> Option<Effect> {
    if generation != state.audit.generation {
        return None;
    }
    if state.message.as_ref().is_some_and(|m| m.text.ends_with("more events…")) {
        state.message = None;
    }
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
    scroll(state, 0);
    None
}

/// The answer to [`Effect::VerifyAudit`].
pub(super) fn verified(state: &mut State, result: Result<VerifyReport, String>) -> Option<Effect> {
    state.audit.verify = Some(result);
    None
}
