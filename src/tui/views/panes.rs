//! The audit view, the org view and the user detail pane.

use super::users::mfa_label;
use super::{fit, popup, when};
use crate::domain::mfa::MfaStatus;
use crate::domain::user::Status;
use crate::tui::action::Command;
use crate::tui::keymap::Section;
use crate::tui::layout::{self, Density};
use crate::tui::state::{DetailPane, Offer, State};
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

pub fn draw_audit(state: &State, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let a = &state.audit;
    let areas = layout::main_areas(area);
    let density = layout::density(area);
    let chain = match &a.verify {
        None => Span::styled("chain: checking…", t.dim()),
        Some(Ok(v)) if v.ok => Span::styled(format!("chain intact: {} (all orgs, all checks) ✓", super::count(v.events as usize, "event")), t.ok()),
        Some(Ok(v)) => Span::styled(
            format!("chain BROKEN at event {}: {} ✗", v.broken_at.unwrap_or_default(), v.problem.clone().unwrap_or_default()),
            t.error(),
        ),
        Some(Err(e)) => Span::styled(format!("chain not checked: {e}"), t.error()),
    };
    let find = if a.editing {
        Span::styled(format!("/{}", super::with_cursor(&a.filter, state.cursor_back)), t.focused_input())
    } else if a.filter.is_empty() {
        Span::styled(format!("({} to type)", state.key_hint(Section::Audit, Command::Filter)), t.dim())
    } else {
        Span::styled(format!("/{}", a.filter), t.input())
    };
    let bar = Line::from(vec![Span::raw(" Find "), find, Span::raw("   "), chain]);
    if density == Density::Compact {
        let line = if a.editing || !a.filter.is_empty() { format!("/{}", a.filter) } else { String::new() };
        let w = (line.chars().count() as u16).min(areas.tabs.width.saturating_sub(20));
        if w > 0 {
            let right = Rect { x: areas.tabs.right() - w, width: w, ..areas.tabs };
            frame.render_widget(Paragraph::new(Span::styled(line, t.focused_input())), right);
        }
    } else {
        frame.render_widget(Paragraph::new(bar), areas.filter);
    }
    let rows_area = layout::table_rows(area);
    let height = rows_area.height as usize;
    let end = (a.offset + height).min(a.events.len());
    let start = a.offset.min(end);
    let header_titles: &[&str] = match density {
        Density::Full => &["SEQ", "WHEN", "ACTOR", "ACTION", "TARGET", "OUTCOME", "SOURCE", "REASON / DETAIL"],
        // Narrow: the reason says more than the target, which the reason or detail mostly names.
        Density::Narrow => &["WHEN", "ACTOR", "ACTION", "OUTCOME", "REASON / DETAIL"],
        Density::Compact => &["ACTION", "TARGET"],
    };
    let rows: Vec<Row> = a.events[start..end]
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let is_cursor = start + i == a.cursor;
            let note = [e.reason.clone(), e.detail.clone()].into_iter().flatten().collect::<Vec<_>>().join(" — ");
            let target = e.target.clone().unwrap_or_default();
            let cells: Vec<String> = match density {
                Density::Full => vec![
                    e.seq.to_string(),
                    when(Some(&e.at), false),
                    e.actor.clone(),
                    e.action.clone(),
                    target,
                    e.outcome.as_str().into(),
                    e.source.clone(),
                    note,
                ],
                Density::Narrow => vec![when(Some(&e.at), false), e.actor.clone(), e.action.clone(), e.outcome.as_str().into(), note],
                Density::Compact => vec![e.action.clone(), target],
            };
            let mut row = vec![Cell::from(if is_cursor { "▶" } else { " " })];
            row.extend(cells.into_iter().map(Cell::from));
            Row::new(row).style(if is_cursor { t.cursor() } else { t.plain() })
        })
        .collect();
    let widths: Vec<Constraint> = match density {
        Density::Full => vec![
            Constraint::Length(1),
            Constraint::Length(6),
            Constraint::Length(16),
            Constraint::Fill(2),
            Constraint::Fill(2),
            Constraint::Fill(2),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Fill(4),
        ],
        Density::Narrow => vec![
            Constraint::Length(1),
            Constraint::Length(16),
            Constraint::Fill(2),
            Constraint::Fill(2),
            Constraint::Length(7),
            Constraint::Fill(4),
        ],
        Density::Compact => vec![Constraint::Length(1), Constraint::Fill(1), Constraint::Fill(1)],
    };
    let mut header = vec![Cell::from("")];
    header.extend(header_titles.iter().map(|h| Cell::from(*h)));
    let mut table = Table::new(rows, widths).header(Row::new(header).style(t.header())).column_spacing(1);
    if density != Density::Compact {
        let title = match (&a.error, a.loaded) {
            (Some(e), _) => format!(" Audit log: {e} "),
            (None, false) => " Audit log (loading…) ".into(),
            (None, true) => {
                let key = state.key_hint(Section::Audit, Command::ToggleValidations);
                let which = if a.all_loaded() { format!("all {}", a.events.len()) } else { format!("newest {}, more past the last", a.events.len()) };
                if a.validations {
                    format!(" Audit log, newest first ({which}); validations shown ({key} hides) ")
                } else {
                    format!(" Audit log, newest first ({which}); validations hidden ({key} shows) ")
                }
            }
        };
        table = table.block(Block::default().borders(Borders::ALL).border_style(t.border()).title(Span::styled(title, t.title())));
    }
    frame.render_widget(table, areas.body);
}

/// One audit event in full: every field, the reason and detail wrapped rather than cut.
pub fn draw_audit_event(state: &State, index: usize, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let Some(e) = state.audit.events.get(index) else {
        return;
    };
    let boxed = layout::centered(area, 100, area.height.saturating_sub(2));
    let inner = popup(state, frame, boxed, &format!("Audit event {}", e.seq));
    let field = |k: &str, v: String| Line::from(vec![Span::styled(format!("{k:>10}  "), t.dim()), Span::raw(v)]);
    let none = || "-".to_string();
    let lines = vec![
        field("when", e.at.clone()),
        field("actor", e.actor.clone()),
        field("action", e.action.clone()),
        field("target", e.target.clone().unwrap_or_else(none)),
        field("org", e.org.clone().unwrap_or_else(none)),
        field("outcome", e.outcome.as_str().into()),
        field("source", e.source.clone()),
        field("reason", e.reason.clone().unwrap_or_else(none)),
        field("detail", e.detail.clone().unwrap_or_else(none)),
        field("hash", e.hash.clone()),
        field("previous", e.prev_hash.clone()),
        Line::raw(""),
        Line::from(vec![Span::styled(state.key_hint(Section::Detail, Command::Back), t.key()), Span::raw(" back")]),
    ];
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

pub fn draw_orgs(state: &State, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let o = &state.orgs;
    let areas = layout::main_areas(area);
    if layout::density(area) != Density::Compact {
        let key = state.key_hint(Section::Orgs, Command::ToggleEnforcement);
        let bar = match state.refusal(Offer::ChangeOrg, None) {
            None => Line::from(vec![Span::raw(" MFA enforcement per org: "), Span::styled(key, t.key()), Span::raw(" turns it on or off (asks first)")]),
            Some(why) => Line::from(vec![Span::raw(" MFA enforcement per org ("), Span::styled(why, t.dim()), Span::raw(")")]),
        };
        frame.render_widget(Paragraph::new(bar), areas.filter);
    }
    let rows: Vec<Row> = o
        .orgs
        .iter()
        .enumerate()
        .map(|(i, org)| {
            let is_cursor = i == o.cursor;
            Row::new(vec![
                Cell::from(if is_cursor { "▶" } else { " " }),
                Cell::from(org.name.clone()),
                Cell::from(if org.mfa_enforced { "on" } else { "off" }),
                Cell::from(org.users.to_string()),
                Cell::from(org.enrolled.to_string()),
            ])
            .style(if is_cursor { t.cursor() } else { t.plain() })
        })
        .collect();
    let widths = [Constraint::Length(1), Constraint::Fill(1), Constraint::Length(14), Constraint::Length(8), Constraint::Length(9)];
    let header = Row::new(vec!["", "ORG", "MFA ENFORCED", "USERS", "ENROLLED"]).style(t.header());
    let mut table = Table::new(rows, widths).header(header).column_spacing(1);
    if layout::density(area) != Density::Compact {
        let title = match (&o.error, o.loaded) {
            (Some(e), _) => format!(" Orgs: {e} "),
            (None, false) => " Orgs (loading…) ".into(),
            (None, true) => " Orgs ".into(),
        };
        table = table.block(Block::default().borders(Borders::ALL).border_style(t.border()).title(Span::styled(title, t.title())));
    }
    frame.render_widget(table, areas.body);
}

/// When the factor the user has now was enrolled: the record keeps the date of one since reset
/// or being replaced, which is history, not the state.
fn enrolled_line(u: &crate::domain::user::UserView) -> String {
    use crate::domain::mfa::MfaStatus;
    let date = when(u.mfa_enrolled_at.as_deref(), false);
    match (u.mfa, &u.mfa_enrolled_at) {
        (MfaStatus::Enrolled | MfaStatus::Locked, _) => date,
        (MfaStatus::Pending, _) => "not yet: a secret was issued, its first code not confirmed".into(),
        (_, Some(_)) => format!("no factor now (one enrolled {date} was reset)"),
        (_, None) => "never".into(),
    }
}

pub fn draw_detail(state: &State, pane: &DetailPane, frame: &mut Frame, area: Rect) {
    let t = &state.theme;
    let boxed = layout::centered(area, 100, area.height.saturating_sub(2));
    let inner = popup(state, frame, boxed, "User");
    let mut lines: Vec<Line> = Vec::new();
    match (&pane.detail, &pane.error) {
        (_, Some(e)) => lines.push(Line::styled(format!("cannot show this user: {e}"), t.error())),
        (None, None) => lines.push(Line::styled("loading…", t.dim())),
        (Some(d), None) => {
            let u = &d.user;
            let field = |k: &str, v: String| Line::from(vec![Span::styled(format!("{k:>16}  "), t.dim()), Span::raw(v)]);
            lines.push(field("user name", u.username.clone()));
            lines.push(field("display name", u.display_name.clone()));
            lines.push(field("email", u.email.clone()));
            lines.push(field("org", u.org.clone()));
            lines.push(field("role", u.role.to_string()));
            lines.push(field("status", u.status.as_str().into()));
            let unlocks = d.mfa_locked_until.as_deref().map(|at| format!("  (wrong codes; unlocks by itself at {})", when(Some(at), false))).unwrap_or_default();
            lines.push(Line::from(vec![
                Span::styled(format!("{:>16}  ", "MFA"), t.dim()),
                Span::styled(mfa_label(u.mfa), t.mfa(u.mfa)),
                Span::raw(unlocks),
            ]));
            lines.push(field("MFA enrolled", enrolled_line(u)));
            let client = u.mfa_last_client.as_deref().map(|c| format!(" ({c})")).unwrap_or_default();
            lines.push(field("MFA last used", format!("{}{client}", when(u.mfa_last_used_at.as_deref(), false))));
            lines.push(field("MFA reset", when(u.mfa_reset_at.as_deref(), false)));
            lines.push(field("recovery codes", format!("{} left", u.recovery_codes_left)));
            lines.push(field("created", when(Some(&u.created_at), false)));
            lines.push(field("last login", when(u.last_login_at.as_deref(), false)));
            lines.push(field("number / id", format!("#{}  {}", u.number, u.id)));
            lines.push(Line::raw(""));
            lines.push(Line::styled("Recent audit events", t.header()));
            if d.recent_audit.is_empty() {
                lines.push(Line::styled("  none you may see", t.dim()));
            }
            for e in &d.recent_audit {
                let note = [e.reason.clone(), e.detail.clone()].into_iter().flatten().collect::<Vec<_>>().join(" — ");
                let text = format!(
                    "  {}  {} by {} ({}) {}{}",
                    when(Some(&e.at), false),
                    e.action,
                    e.actor,
                    e.source,
                    e.outcome.as_str(),
                    if note.is_empty() { String::new() } else { format!(": {note}") }
                );
                lines.push(Line::raw(fit(&text, inner.width as usize)));
            }
        }
    }
    let hints_height = 1.min(inner.height);
    let body = Rect { height: inner.height - hints_height, ..inner };
    let hints_area = Rect { y: inner.bottom() - hints_height, height: hints_height, ..inner };
    frame.render_widget(Paragraph::new(lines).scroll((pane.scroll.min(u16::MAX as usize) as u16, 0)).wrap(Wrap { trim: false }), body);
    let status_verb = match pane.detail.as_ref().map(|d| d.user.status) {
        Some(Status::Disabled) => "enable",
        _ => "disable",
    };
    let user = pane.detail.as_ref().map(|d| d.user.clone()).or_else(|| state.users.user(pane.user));
    let locked = user.as_ref().is_some_and(|u| u.mfa == MfaStatus::Locked);
    // Only what the admin's role may do to this user is offered.
    let allowed = |offer| user.as_ref().is_none_or(|u| state.refusal(offer, Some((u.role, &u.username))).is_none());
    let offers = [
        (Command::Reset, "reset MFA", allowed(Offer::Reset)),
        (Command::Enroll, "enroll now", allowed(Offer::Enroll)),
        (Command::ToggleStatus, status_verb, allowed(Offer::SetStatus)),
        (Command::Unlock, "unlock MFA", locked && allowed(Offer::Unlock)),
        (Command::Back, "back", true),
    ];
    let mut hints = Vec::new();
    for (command, label, _) in offers.into_iter().filter(|o| o.2) {
        hints.push(Span::styled(state.key_hint(Section::Detail, command), t.key()));
        hints.push(Span::raw(format!(" {label}   ")));
    }
    frame.render_widget(Paragraph::new(Line::from(hints)), hints_area);
}
