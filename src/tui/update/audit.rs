//! The audit view: scrolling and filtering the trail, and the loads and chain check it asks for.

use crate::service::{AuditView, VerifyReport};
use crate::tui::action::Command;
use crate::tui::effects::Effect;
use crate::tui::state::*;

/// Load the audit events the filter finds, superseding any load running.
pub(super) fn load(state: &mut State) -> Effect {
    state.audit.generation += 1;
    Effect::LoadAudit { generation: state.audit.generation, text: state.audit.filter.clone(), validations: state.audit.validations }
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
        Command::Down => scroll(state, 1),
        Command::PageUp => scroll(state, -page),
        Command::PageDown => scroll(state, page),
        Command::Top => scroll(state, isize::MIN / 2),
        Command::Bottom => scroll(state, isize::MAX / 2),
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
