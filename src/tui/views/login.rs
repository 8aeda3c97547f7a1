//! The login screen: user name and password, then a code, or enrollment with a QR code.

use super::dialogs::enrollment_lines;
use super::popup;
use crate::tui::action::Command;
use crate::tui::keymap::Section;
use crate::tui::layout;
use crate::tui::state::{LoginForm, LoginStep, State};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

fn input<'a>(state: &State, label: &str, value: &str, focused: bool, masked: bool) -> Line<'a> {
    let t = &state.theme;
    let shown = if masked { "•".repeat(value.chars().count()) } else { value.to_string() };
    let (marker, style) = if focused { ("› ", t.focused_input()) } else { ("  ", t.input()) };
    let shown = if focused { super::with_cursor(&shown, state.cursor_back) } else { shown };
    Line::from(vec![Span::styled(marker.to_string(), t.key()), Span::raw(format!("{label:<11}")), Span::styled(shown, style)])
}

pub fn draw(state: &State, form: &LoginForm, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let tall = matches!(form.step, LoginStep::Enroll { .. } | LoginStep::RecoveryCodes { .. });
    let width = if tall { 72 } else { 64 };
    // Room for the QR code: the whole height but the box's border.
    let inner = Rect { width: width - 2, height: area.height.saturating_sub(2), ..area };
    let mut lines: Vec<Line> = Vec::new();
    let hint = |items: &[(Command, &str)]| {
        let mut spans = Vec::new();
        for (c, label) in items {
            spans.push(Span::styled(state.key_hint(Section::Login, *c), t.key()));
            spans.push(Span::raw(format!(" {label}   ")));
        }
        spans.push(Span::styled("ctrl-c", t.key()));
        spans.push(Span::raw(" quit"));
        Line::from(spans)
    };
    match &form.step {
        LoginStep::Password => {
            lines.push(Line::styled(format!("Store: {}", state.store), t.dim()));
            lines.push(Line::raw(""));
            lines.push(input(state, "User name", &form.username, form.focus == 0, false));
            lines.push(input(state, "Password", &form.password, form.focus == 1, true));
            lines.push(Line::raw(""));
            lines.push(hint(&[(Command::NextField, "next field"), (Command::Submit, "log in")]));
        }
        LoginStep::Code { .. } => {
            lines.push(Line::raw(format!("Password accepted for {}.", form.username)));
            lines.push(Line::raw("Type the 6-digit code from your authenticator app, or a recovery code."));
            lines.push(Line::raw(""));
            lines.push(input(state, "Code", &form.code, true, false));
            lines.push(Line::raw(""));
            lines.push(hint(&[(Command::Submit, "log in"), (Command::Back, "start again")]));
        }
        LoginStep::Enroll { enrollment, .. } => {
            lines.push(Line::raw(format!("Your org requires MFA: enroll {} now.", form.username)));
            match enrollment {
                None => lines.push(Line::styled("issuing a secret…", t.dim())),
                Some(e) => {
                    let room = Rect { height: inner.height.saturating_sub(6), ..inner };
                    lines.extend(enrollment_lines(state, e, room));
                    lines.push(input(state, "First code", &form.code, true, false));
                }
            }
            lines.push(hint(&[(Command::Submit, "confirm"), (Command::Back, "start again")]));
        }
        LoginStep::RecoveryCodes { session } => {
            lines.push(Line::styled("MFA is enrolled. Your recovery codes (each works once; shown only now):", t.ok()));
            lines.push(Line::raw(""));
            for pair in session.recovery_codes.chunks(2) {
                lines.push(Line::raw(format!("    {}", pair.join("    "))));
            }
            lines.push(Line::raw(""));
            lines.push(Line::raw("Write them down and keep them apart from the phone."));
            lines.push(hint(&[(Command::Submit, "continue to the console")]));
        }
    }
    if form.waiting {
        lines.push(Line::styled("checking…", t.dim()));
    }
    if let Some(e) = &form.error {
        lines.push(Line::styled(e.clone(), t.error()));
    }
    let text_width = (width - 2) as usize;
    let rows: usize = lines.iter().map(|l| l.width().max(1).div_ceil(text_width)).sum();
    let paragraph = Paragraph::new(lines).wrap(Wrap { trim: false });
    let height = (rows as u16).saturating_add(2);
    let outer = layout::centered(area, width, height);
    let inner = popup(state, frame, outer, "mfadmin: log in");
    frame.render_widget(paragraph, inner);
}
