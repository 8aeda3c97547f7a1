//! Dialogs and overlays: help, command line, reset confirmation, progress, result, yes/no
//! questions and enrollment with its QR code.

use super::users::mfa_label;
use super::{fit, popup};
use crate::auth::totp;
use crate::service::{Enrollment, ResetOutcome};
use crate::tui::action::Command;
use crate::tui::keymap::Section;
use crate::tui::layout;
use crate::tui::state::{Level, Confirm, ConfirmReset, EnrollDialog, ResetFocus, ResetProgress, ResetResultView, State};
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;
use std::collections::BTreeMap;

/// A labelled text field. The focused one is marked with › and a cursor, not by colour alone.
fn field<'a>(state: &State, label: &str, value: &str, focused: bool, masked: bool) -> Line<'a> {
    let t = &state.theme;
    let shown = if masked { "•".repeat(value.chars().count()) } else { value.to_string() };
    let (marker, style) = if focused { ("› ", t.focused_input()) } else { ("  ", t.input()) };
    let shown = if focused { super::with_cursor(&shown, state.cursor_back) } else { shown };
    Line::from(vec![Span::styled(marker.to_string(), t.key()), Span::raw(format!("{label} ")), Span::styled(shown, style)])
}

fn button<'a>(state: &State, label: &str, focused: bool) -> Span<'a> {
    if focused {
        Span::styled(format!("▶ {label} ◀"), state.theme.focused_button())
    } else {
        Span::styled(format!("[ {label} ]"), state.theme.button())
    }
}

fn hint_line<'a>(state: &State, section: Section, items: &[(Command, &str)]) -> Line<'a> {
    let mut spans = Vec::new();
    for (command, label) in items {
        spans.push(Span::styled(state.key_hint(section, *command), state.theme.key()));
        spans.push(Span::raw(format!(" {label}   ")));
    }
    Line::from(spans)
}

/// Render `lines` in a box of `width` sized to fit them (wrapped).
fn boxed(state: &State, frame: &mut Frame, area: Rect, title: &str, width: u16, lines: Vec<Line>) {
    let text_width = width.min(area.width).saturating_sub(2).max(1) as usize;
    let rows: usize = lines.iter().map(|l| l.width().max(1).div_ceil(text_width)).sum();
    let height = (rows as u16).saturating_add(2);
    let outer = layout::centered(area, width, height);
    let inner = popup(state, frame, outer, title);
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

// ---------------------------------------------------------------- help

/// Every binding of every mode, generated from the key map that handles input.
pub fn help(state: &State, scroll: usize, first: Section, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let outer = layout::centered(area, 96, area.height.saturating_sub(2).max(3));
    let inner = popup(state, frame, outer, "Keys");
    let mut lines = vec![
        Line::styled("From the key map; change keys in the config file: [tui.keys.<mode>].", t.dim()),
        Line::styled("This screen's keys first. q/esc close, j/k g/G scroll; ctrl-c quits anywhere.", t.dim()),
    ];
    for section in crate::tui::state::help_sections(first) {
        let bindings = state.keymap.help(section);
        if bindings.is_empty() {
            continue;
        }
        lines.push(Line::raw(""));
        lines.push(Line::styled(format!("{} [{}]", section.title(), section.name()), t.header()));
        for (command, keys) in bindings {
            let keys = keys.join(", ");
            lines.push(Line::from(vec![Span::styled(format!("  {keys:<20}"), t.key()), Span::raw(command.describe())]));
        }
    }
    let max_scroll = lines.len().saturating_sub(inner.height as usize);
    let scroll = scroll.min(max_scroll) as u16;
    frame.render_widget(Paragraph::new(lines).scroll((scroll, 0)), inner);
}

pub fn command_line(state: &State, input: &str, frame: &mut Frame, area: Rect) {
    let status = layout::main_areas(area).status;
    frame.render_widget(ratatui::widgets::Clear, status);
    let mut spans = vec![Span::styled(format!(":{}", super::with_cursor(input, state.cursor_back)), state.theme.focused_input())];
    // What completion offers, or why it offers nothing, beside the line.
    if let Some(m) = &state.message {
        spans.push(Span::styled(format!("   {}", m.text), if m.level == Level::Error { state.theme.error() } else { state.theme.dim() }));
    }
    let line = Line::from(spans);
    frame.render_widget(Paragraph::new(line), status);
}

// ---------------------------------------------------------------- reset

pub fn confirm_reset(state: &State, d: &ConfirmReset, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let width: u16 = 76;
    let inner_width = width.saturating_sub(2).min(area.width.saturating_sub(2)) as usize;
    let n = d.targets.len();
    let mut lines = vec![Line::styled(format!("Reset MFA for {n} user{}:", if n == 1 { "" } else { "s" }), t.title())];
    const SHOWN: usize = 8;
    let mut names = d.names.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if n > SHOWN {
        names.push_str(&format!(" and {} more", n - SHOWN));
    }
    for chunk in wrap_words(&names, inner_width.saturating_sub(2)) {
        lines.push(Line::raw(format!("  {chunk}")));
    }
    for warning in reset_warnings(state, d) {
        for chunk in wrap_words(&warning, inner_width.saturating_sub(4)) {
            lines.push(Line::styled(format!("  {chunk}"), t.error()));
        }
    }
    lines.push(Line::raw(""));
    match &d.plan {
        None => lines.push(Line::styled("  checking what the reset would do…", t.dim())),
        Some(Err(e)) => lines.push(Line::styled(format!("  cannot check: {e}"), t.error())),
        Some(Ok(plan)) => {
            let c = |o| plan.count(o);
            let row = |label: &str, count: usize, note: &str| {
                Line::raw(format!("  {label:<22}{count:>7}  {note}"))
            };
            lines.push(row("will reset", c(ResetOutcome::Reset), "second factor removed, sessions ended"));
            lines.push(row("will skip", c(ResetOutcome::Skipped), "not enrolled: nothing to reset"));
            lines.push(row("denied to you", c(ResetOutcome::Denied), ""));
            let mut why: BTreeMap<&str, usize> = BTreeMap::new();
            for r in plan.results.iter().filter(|r| r.outcome == ResetOutcome::Denied) {
                *why.entry(r.detail.as_deref().unwrap_or("not allowed")).or_default() += 1;
            }
            for (reason, count) in why {
                lines.push(Line::styled(fit(&format!("    {count} × {reason}"), inner_width), t.error()));
            }
            if c(ResetOutcome::NotFound) > 0 {
                lines.push(row("not found", c(ResetOutcome::NotFound), "gone since the list was loaded"));
            }
        }
    }
    lines.push(Line::raw(""));
    let label = if state.reason_required { "Reason (required):" } else { "Reason:" };
    lines.push(field(state, label, &d.reason, d.focus == ResetFocus::Reason, false));
    if d.needs_count() {
        // The number on the Reset button: what the dry run says will be reset.
        let label = match d.will_reset() {
            Some(k) => format!("Type {k} to confirm:"),
            None => "Type the number to reset (checking…):".to_string(),
        };
        lines.push(field(state, &label, &d.count, d.focus == ResetFocus::Count, false));
    }
    lines.push(match &d.error {
        Some(e) => Line::styled(format!("  {e}"), t.error()),
        None => Line::raw(""),
    });
    let verb = match d.will_reset() {
        Some(k) => format!("Reset {k}"),
        None => "Reset".into(),
    };
    lines.push(Line::from(vec![
        Span::raw("      "),
        button(state, "Cancel", d.focus == ResetFocus::Cancel),
        Span::raw("     "),
        button(state, &verb, d.focus == ResetFocus::Confirm),
    ]));
    lines.push(hint_line(state, Section::Dialog, &[(Command::NextField, "next"), (Command::Submit, "press"), (Command::Back, "cancel")]));
    boxed(state, frame, area, "Reset MFA", width, lines);
}

/// What the admin may not expect of this set: marks the filter hides, the admin's own account,
/// a whole org.
fn reset_warnings(state: &State, d: &ConfirmReset) -> Vec<String> {
    let mut out = Vec::new();
    let n = d.targets.len();
    if d.hidden > 0 {
        let verb = if d.hidden == 1 { "is" } else { "are" };
        let clear = state.key_hint(Section::Users, Command::ClearMarks);
        out.push(format!("! {} of the {n} {verb} hidden by the filter (marked earlier; {clear} clears marks)", d.hidden));
    }
    if d.includes_operator {
        let me = state.session.as_ref().map_or("you", |s| s.who.name.as_str());
        out.push(format!("! this includes you ({me}): your own second factor is reset too"));
    }
    for org in &d.whole_orgs {
        out.push(format!("! this is every user of {org}"));
    }
    out
}

fn wrap_words(text: &str, width: usize) -> Vec<String> {
    let mut out = vec![String::new()];
    for word in text.split(' ') {
        let last = out.last_mut().expect("one line at least");
        if !last.is_empty() && last.chars().count() + 1 + word.chars().count() > width.max(1) {
            out.push(word.to_string());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    out
}

pub fn progress(state: &State, p: &ResetProgress, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let width = 64u16.min(area.width);
    let bar_width = width.saturating_sub(12) as usize;
    let done = p.reset.min(p.total);
    let filled = (bar_width * done).checked_div(p.total).unwrap_or(0);
    let percent = (100 * done).checked_div(p.total).unwrap_or(0);
    let mut lines = vec![
        Line::raw(format!("Resetting MFA: {} of {} reset", p.reset, p.total)),
        Line::raw(""),
        Line::raw(format!(" {}{} {percent:>3}%", "█".repeat(filled), "░".repeat(bar_width - filled))),
        Line::raw(""),
    ];
    match p.asking {
        Some(focus_stop) => {
            lines.push(Line::styled("Stop after the current batch?", t.title()));
            lines.push(Line::raw("Paused. Users reset so far stay reset; the rest are left as they are."));
            lines.push(Line::from(vec![
                Span::raw("      "),
                button(state, "Keep going", !focus_stop),
                Span::raw("     "),
                button(state, "Stop", focus_stop),
            ]));
            lines.push(hint_line(state, Section::Progress, &[(Command::NextField, "switch"), (Command::Submit, "press"), (Command::Quit, "stop and quit")]));
        }
        None if p.stopping && p.quit_after => {
            lines.push(Line::styled("Stopping after the current batch, then quitting: the results go to standard output.", t.key()))
        }
        None if p.stopping => lines.push(Line::styled("Stopping after the current batch…", t.key())),
        None => {
            lines.push(Line::styled("Each user is one atomic change; the audit log records every one.", t.dim()));
            lines.push(hint_line(state, Section::Progress, &[(Command::Back, "stop…")]));
        }
    }
    boxed(state, frame, area, "Working", width, lines);
}

pub fn reset_result(state: &State, r: &ResetResultView, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let c = |o| r.report.count(o);
    let mut lines = vec![
        Line::raw(format!("  {:<12}{:>7}", "reset", c(ResetOutcome::Reset))),
        Line::raw(format!("  {:<12}{:>7}", "skipped", c(ResetOutcome::Skipped))),
        Line::raw(format!("  {:<12}{:>7}", "denied", c(ResetOutcome::Denied))),
        Line::raw(format!("  {:<12}{:>7}", "not found", c(ResetOutcome::NotFound))),
        Line::raw(format!("  {:<12}{:>7}", "failed", c(ResetOutcome::Failed))),
    ];
    if !r.untouched.is_empty() {
        let why = if r.stopped { "stopped before their batch: unchanged" } else { "a batch failed: these were not sent" };
        lines.push(Line::styled(format!("  {:<12}{:>7}  {why}", "not tried", r.untouched.len()), t.error()));
    }
    if let Some(e) = &r.error {
        lines.push(Line::styled(format!("  a batch failed: {e}"), t.error()));
    }
    if c(ResetOutcome::Unknown) > 0 {
        // Only a remote reset whose answer was lost has these; never claimed either way.
        lines.push(Line::styled(
            format!("  {:<12}{:>7}  the server's answer was lost: check them (details: d)", "unknown", c(ResetOutcome::Unknown)),
            t.error(),
        ));
    }
    lines.push(Line::raw(""));
    let width = 90u16;
    if r.details {
        let room = area.height.saturating_sub(lines.len() as u16 + 6).max(1) as usize;
        let inner_width = width.min(area.width).saturating_sub(2) as usize;
        lines.push(Line::styled(format!("  {:<28}{:<11}{:<14}{}", "USER", "OUTCOME", "MFA NOW", "DETAIL"), t.header()));
        let done = r.report.results.iter().map(|res| {
            let name = res.username.clone().unwrap_or_else(|| res.target.clone());
            let text = format!(
                "  {:<28}{:<11}{:<14}{}",
                fit(&name, 27),
                res.outcome.as_str().replace('_', " "),
                res.mfa_after.map_or("-", mfa_label),
                res.detail.clone().unwrap_or_default()
            );
            let style = match res.outcome {
                ResetOutcome::Denied | ResetOutcome::Failed | ResetOutcome::NotFound | ResetOutcome::Unknown => t.error(),
                _ => t.plain(),
            };
            (text, style)
        });
        let not_tried = r.untouched.iter().map(|name| (format!("  {:<28}{:<11}{:<14}{}", fit(name, 27), "not tried", "unchanged", ""), t.error()));
        for (text, style) in done.chain(not_tried).skip(r.scroll).take(room.saturating_sub(1)) {
            lines.push(Line::styled(fit(&text, inner_width), style));
        }
        lines.push(hint_line(state, Section::Result, &[(Command::Down, "scroll"), (Command::ToggleDetails, "hide"), (Command::Back, "close")]));
    } else {
        lines.push(hint_line(state, Section::Result, &[(Command::ToggleDetails, "per-user results"), (Command::Back, "close")]));
    }
    boxed(state, frame, area, "Reset finished", width, lines);
}

pub fn confirm(state: &State, c: &Confirm, frame: &mut Frame, area: Rect) {
    let mut lines: Vec<Line> = c.lines.iter().map(|l| Line::raw(l.clone())).collect();
    lines.push(Line::raw(""));
    lines.push(Line::from(vec![
        Span::raw("      "),
        button(state, "Cancel", !c.focus_yes),
        Span::raw("     "),
        button(state, &c.yes_label, c.focus_yes),
    ]));
    lines.push(hint_line(state, Section::Dialog, &[(Command::NextField, "switch"), (Command::Submit, "press"), (Command::Back, "cancel")]));
    boxed(state, frame, area, &c.title, 72, lines);
}

// ---------------------------------------------------------------- enrollment

/// The QR code of an enrollment and its secret, or the secret alone when the QR does not fit.
pub fn enrollment_lines<'a>(state: &State, e: &Enrollment, room: Rect) -> Vec<Line<'a>> {
    let qr = totp::qr_text(&e.otpauth_uri);
    let qr_lines: Vec<&str> = qr.lines().collect();
    let qr_width = qr_lines.iter().map(|l| l.chars().count()).max().unwrap_or(0) as u16;
    let mut lines = Vec::new();
    if qr_width <= room.width && (qr_lines.len() as u16) + 4 <= room.height {
        lines.push(Line::raw("Scan this code with the authenticator app:"));
        // The QR code is drawn in the terminal's own colours, whatever the theme.
        lines.extend(qr_lines.iter().map(|l| Line::styled(l.to_string(), Style::new())));
    } else {
        lines.push(Line::styled(
            format!("(the QR code needs a window of at least {}×{})", qr_width + 2, qr_lines.len() + 9),
            state.theme.dim(),
        ));
        lines.push(Line::raw("Type this secret into the authenticator app:"));
    }
    lines.push(Line::from(vec![Span::raw("Secret: "), Span::styled(e.secret_base32.clone(), state.theme.key())]));
    lines
}

pub fn enroll(state: &State, e: &EnrollDialog, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let width = 72;
    let mut lines: Vec<Line> = Vec::new();
    if let Some(codes) = &e.recovery_codes {
        lines.push(Line::styled(format!("MFA is now enrolled for {}.", e.username), t.ok()));
        lines.push(Line::raw("Recovery codes (each works once; shown only now; hand them over safely):"));
        lines.push(Line::raw(""));
        for pair in codes.chunks(2) {
            lines.push(Line::raw(format!("    {}", pair.join("    "))));
        }
        lines.push(Line::raw(""));
        lines.push(hint_line(state, Section::Dialog, &[(Command::Submit, "done")]));
    } else {
        match &e.enrollment {
            None if e.error.is_none() => lines.push(Line::styled("issuing a secret…", t.dim())),
            None => {}
            Some(en) => {
                // Room for the QR code: the screen but the box's border and the lines around it.
                let room = Rect { width: width - 2, height: area.height.saturating_sub(5), ..area };
                lines.extend(enrollment_lines(state, en, room));
                lines.push(field(state, "First code from the app:", &e.code, !e.waiting, false));
            }
        }
        if let Some(err) = &e.error {
            lines.push(Line::styled(err.clone(), t.error()));
        } else if e.waiting && e.enrollment.is_some() {
            lines.push(Line::styled("checking…", t.dim()));
        }
        lines.push(hint_line(state, Section::Dialog, &[(Command::Submit, "confirm"), (Command::Back, "cancel")]));
    }
    boxed(state, frame, area, &format!("Enroll {}", e.username), width, lines);
}
