//! Drawing: `draw(&State, &mut Frame)` turns the state into widgets and decides nothing.

mod dialogs;
mod login;
mod panes;
mod users;

use super::layout::{self, Density};
use super::state::{Level, Offer, Overlay, Screen, State, View};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders, Clear, Paragraph};
use ratatui::Frame;

const SPINNER: [&str; 4] = ["|", "/", "-", "\\"];

/// The frame shown while the store at `store` is being opened.
pub fn opening(store: &str, frame: &mut Frame) {
    let area = frame.area();
    if area.width == 0 || area.height == 0 {
        return;
    }
    let text = vec![Line::from(Span::raw(" mfadmin")), Line::from(Span::raw(format!(" opening {store}…")))];
    frame.render_widget(Paragraph::new(text), area);
}

pub fn draw(state: &State, frame: &mut Frame) {
    let area = frame.area();
    if area.width == 0 || area.height == 0 {
        return;
    }
    match &state.screen {
        Screen::Login(form) => login::draw(state, form, frame, area),
        Screen::Main => {
            let areas = layout::main_areas(area);
            draw_tabs(state, frame, areas.tabs);
            match state.view {
                View::Users => users::draw(state, frame, area),
                View::Audit => panes::draw_audit(state, frame, area),
                View::Orgs => panes::draw_orgs(state, frame, area),
            }
            draw_status(state, frame, areas.status);
        }
    }
    for overlay in &state.overlays {
        match overlay {
            Overlay::Help { scroll, first } => dialogs::help(state, *scroll, *first, frame, area),
            Overlay::CommandLine { input } => dialogs::command_line(state, input, frame, area),
            Overlay::Detail(pane) => panes::draw_detail(state, pane, frame, area),
            Overlay::AuditEvent(i) => panes::draw_audit_event(state, *i, frame, area),
            Overlay::ConfirmReset(d) => dialogs::confirm_reset(state, d, frame, area),
            Overlay::Progress(p) => dialogs::progress(state, p, frame, area),
            Overlay::ResetResult(r) => dialogs::reset_result(state, r, frame, area),
            Overlay::Confirm(c) => dialogs::confirm(state, c, frame, area),
            Overlay::Enroll(e) => dialogs::enroll(state, e, frame, area),
        }
    }
}

/// The top line: the views, the busy spinner and who is logged in.
fn draw_tabs(state: &State, frame: &mut Frame, area: Rect) {
    if area.height == 0 {
        return;
    }
    let t = &state.theme;
    let mut spans = vec![Span::styled(" mfadmin ", t.title())];
    if layout::density(state.area()) == Density::Compact {
        spans.push(Span::styled(format!("[{}]", state.view.title()), t.tab_active()));
    } else {
        for view in View::ALL {
            spans.push(Span::raw(" "));
            if view == state.view {
                spans.push(Span::styled(format!("[{}]", view.title()), t.tab_active()));
            } else {
                spans.push(Span::styled(format!(" {} ", view.title()), t.plain()));
            }
        }
    }
    if state.busy > 0 {
        spans.push(Span::raw(format!("  {} working", SPINNER[state.spinner % SPINNER.len()])));
    }
    if let Some(why) = &state.disconnected {
        spans.push(Span::styled(format!("  disconnected, retrying ({why})"), t.error()));
    }
    let left = Line::from(spans);
    let compact = layout::density(state.area()) == Density::Compact;
    let who = state
        .session
        .as_ref()
        .filter(|_| !compact)
        .map(|s| {
            let org = s.who.org.as_deref().map(|o| format!(", {o}")).unwrap_or_default();
            format!("{} ({}{org}) ", s.who.name, s.who.role)
        })
        .unwrap_or_default();
    let badge = state.badge.as_deref().map(|b| format!("{b}  ")).unwrap_or_default();
    let who = format!("{badge}{who}");
    frame.render_widget(Paragraph::new(left), area);
    let w = (who.chars().count() as u16).min(area.width / 2);
    if w > 0 {
        let right = Rect { x: area.right() - w, width: w, ..area };
        frame.render_widget(Paragraph::new(Span::styled(who, t.dim())), right);
    }
}

/// The bottom line: the message of the moment, or the counts and key hints.
fn draw_status(state: &State, frame: &mut Frame, area: Rect) {
    if area.height == 0 {
        return;
    }
    let t = &state.theme;
    let counts = match state.view {
        View::Users => format!(
            " shown {} / total {} / marked {} ",
            state.users.shown_len(),
            state.users.total(),
            state.users.mark_count()
        ),
        View::Audit if state.audit.loaded && !state.audit.all_loaded() => format!(" {}+ events ", state.audit.events.len()),
        View::Audit => format!(" {} ", count(state.audit.events.len(), "event")),
        View::Orgs => format!(" {} ", count(state.orgs.orgs.len(), "org")),
    };
    // What is cut ends in …; a key hint is shown whole or not at all.
    let mut room = usize::from(area.width).saturating_sub(counts.chars().count() + 1);
    let mut spans = vec![Span::styled(counts, t.tab_active()), Span::raw(" ")];
    match &state.message {
        Some(m) if m.level == Level::Error => spans.push(Span::styled(fit(&format!("error: {}", m.text), room), t.error())),
        Some(m) => spans.push(Span::raw(fit(&m.text, room))),
        None => {
            use super::action::Command as C;
            use super::keymap::Section as S;
            let section = match state.view {
                View::Users => S::Users,
                View::Audit => S::Audit,
                View::Orgs => S::Orgs,
            };
            let hints: &[(C, &str)] = match state.view {
                View::Users => &[(C::Help, "help"), (C::Filter, "find"), (C::ToggleMark, "mark"), (C::Reset, "reset"), (C::Open, "detail"), (C::Quit, "quit")],
                View::Audit => &[(C::Help, "help"), (C::Filter, "find"), (C::NextView, "next view"), (C::Quit, "quit")],
                View::Orgs => &[(C::Help, "help"), (C::ToggleEnforcement, "enforce on/off"), (C::NextView, "next view"), (C::Quit, "quit")],
            };
            // Only what the admin's role may do is offered.
            let allowed = |c: &C| match c {
                C::Reset => state.refusal(Offer::Reset, None).is_none(),
                C::ToggleEnforcement => state.refusal(Offer::ChangeOrg, None).is_none(),
                _ => true,
            };
            for (command, label) in hints.iter().filter(|(c, _)| allowed(c)) {
                let key = state.key_hint(section, *command);
                let label = format!(" {label}  ");
                let width = key.chars().count() + label.trim_end().chars().count();
                if width > room {
                    break;
                }
                room = room.saturating_sub(width + 2);
                spans.push(Span::styled(key, t.key()));
                spans.push(Span::raw(label));
            }
        }
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// A bordered box over whatever is below, cleared first.
fn popup(state: &State, frame: &mut Frame, area: Rect, title: &str) -> Rect {
    frame.render_widget(Clear, area);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Plain)
        .border_style(state.theme.border())
        .title(Span::styled(format!(" {title} "), state.theme.title()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    inner
}

/// `text` with the cursor of the focused field drawn in it, `back` characters before its end.
pub fn with_cursor(text: &str, back: usize) -> String {
    let len = text.chars().count();
    let at = len - back.min(len);
    let mut out: String = text.chars().take(at).collect();
    out.push('▏');
    out.extend(text.chars().skip(at));
    out
}

/// "1 user", "2 users": a count and its noun, singular for one.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// Cut `text` to `width` characters, ending in … when cut.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else if width == 0 {
        String::new()
    } else {
        let mut s: String = text.chars().take(width - 1).collect();
        s.push('…');
        s
    }
}

/// An RFC 3339 time as "YYYY-MM-DD HH:MM" (or the date alone when `short`).
fn when(rfc3339: Option<&str>, short: bool) -> String {
    match rfc3339 {
        None => "never".into(),
        Some(t) => {
            let t = t.replace('T', " ");
            let n = if short { 10 } else { 16 };
            t.chars().take(n).collect()
        }
    }
}

/// How long before `now` an RFC 3339 time was, in at most 8 characters: "today", "12d ago",
/// "9w ago", "14mo ago", "3y ago"; "never" for none. A time that cannot be read is shown as it is.
fn ago(rfc3339: Option<&str>, now: i64) -> String {
    let Some(text) = rfc3339 else {
        return "never".into();
    };
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) else {
        return when(Some(text), true);
    };
    let days = now.saturating_sub(t.timestamp()).max(0) / 86_400;
    match days {
        0 => "today".into(),
        1..=13 => format!("{days}d ago"),
        14..=69 => format!("{}w ago", days / 7),
        70..=729 => format!("{}mo ago", days / 30),
        _ => format!("{}y ago", days / 365),
    }
}

#[cfg(test)]
mod tests {
    use super::ago;

    #[test]
    fn ages_read_at_a_glance_and_fit_eight_columns() {
        let now = 1_750_000_000;
        let at = |days_back: i64| crate::domain::user::rfc3339(now - days_back * 86_400 - 5);
        for (days, shown) in [(0, "today"), (1, "1d ago"), (13, "13d ago"), (14, "2w ago"), (69, "9w ago"), (70, "2mo ago"), (729, "24mo ago"), (730, "2y ago")] {
            assert_eq!(ago(Some(&at(days)), now), shown);
            assert!(shown.chars().count() <= 8);
        }
        assert_eq!(ago(None, now), "never");
        assert_eq!(ago(Some(&crate::domain::user::rfc3339(now + 3_600)), now), "today", "a clock a little ahead is not the future");
    }
}
