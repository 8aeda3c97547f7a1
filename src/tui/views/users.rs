//! The user table: only the rows on screen are built, so 100,000 users draw like 10.

use super::{ago, fit, when};
use crate::domain::mfa::MfaStatus;
use crate::service::SortField;
use crate::tui::layout::{self, Density};
use crate::tui::state::State;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use ratatui::Frame;

pub fn mfa_label(m: MfaStatus) -> &'static str {
    match m {
        MfaStatus::Enrolled => "enrolled",
        MfaStatus::NotEnrolled => "not enrolled",
        MfaStatus::MustEnroll => "must enroll",
        MfaStatus::Pending => "pending",
        MfaStatus::Locked => "locked",
    }
}

fn sort_label(f: SortField) -> &'static str {
    match f {
        SortField::Username => "user name",
        SortField::DisplayName => "name",
        SortField::Email => "email",
        SortField::Org => "org",
        SortField::Role => "role",
        SortField::Mfa => "MFA",
        SortField::LastLogin => "last login",
        SortField::Created => "created",
        SortField::Number => "number",
    }
}

pub fn draw(state: &State, frame: &mut Frame, area: Rect) {
    let areas = layout::main_areas(area);
    let density = layout::density(area);
    draw_filter_bar(state, frame, if density == Density::Compact { areas.tabs } else { areas.filter }, density);
    draw_table(state, frame, area, areas.body, density);
}

fn draw_filter_bar(state: &State, frame: &mut Frame, area: Rect, density: Density) {
    if area.height == 0 {
        return;
    }
    let t = &state.theme;
    let q = state.users.query();
    let (sort, desc) = state.users.sort();
    let arrow = if desc { "↓" } else { "↑" };
    let mut spans = Vec::new();
    if density == Density::Compact {
        // The compact layout shares the top line: the filter goes to its right end.
        let text = match (state.filter_editing, q.text.is_empty()) {
            (true, _) => format!("/{}▏", q.text),
            (false, false) => format!("/{}", q.text),
            (false, true) => String::new(),
        };
        let quick: Vec<String> = [q.role.map(|r| r.to_string()), q.mfa.map(|m| mfa_label(m).to_string()), q.unused.map(|u| format!("unused {}d", u.days))]
            .into_iter()
            .flatten()
            .collect();
        let line = format!("{text} {}", quick.join(" "));
        let w = (line.chars().count() as u16).min(area.width.saturating_sub(20));
        if w > 0 {
            let right = Rect { x: area.right() - w, width: w, ..area };
            frame.render_widget(Paragraph::new(Span::styled(fit(&line, w as usize), t.focused_input())), right);
        }
        return;
    }
    spans.push(Span::styled(" Find ", t.plain()));
    if state.filter_editing {
        spans.push(Span::styled(format!("/{}▏", q.text), t.focused_input()));
    } else if q.text.is_empty() {
        let key = state.key_hint(crate::tui::keymap::Section::Users, crate::tui::action::Command::Filter);
        spans.push(Span::styled(format!("({key} to type)"), t.dim()));
    } else {
        spans.push(Span::styled(format!("/{}", q.text), t.input()));
    }
    spans.push(Span::raw("   role: "));
    spans.push(Span::styled(q.role.map_or("any".to_string(), |r| r.to_string()), if q.role.is_some() { t.key() } else { t.plain() }));
    spans.push(Span::raw("   MFA: "));
    spans.push(Span::styled(q.mfa.map_or("any", mfa_label), if q.mfa.is_some() { t.key() } else { t.plain() }));
    spans.push(Span::raw("   unused: "));
    spans.push(Span::styled(q.unused.map_or("off".to_string(), |u| format!("{}d", u.days)), if q.unused.is_some() { t.key() } else { t.plain() }));
    spans.push(Span::raw(format!("   sort: {} {arrow}", sort_label(sort))));
    if let Some(anchor) = state.users.anchor() {
        spans.push(Span::styled(format!("   range from {}", anchor.username), t.key()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Username,
    Name,
    Email,
    Org,
    Role,
    Mfa,
    LastLogin,
    MfaUsed,
    Status,
}

impl Column {
    fn sorted_by(self) -> Option<SortField> {
        Some(match self {
            Column::Username => SortField::Username,
            Column::Name => SortField::DisplayName,
            Column::Email => SortField::Email,
            Column::Org => SortField::Org,
            Column::Role => SortField::Role,
            Column::Mfa => SortField::Mfa,
            Column::LastLogin => SortField::LastLogin,
            Column::MfaUsed | Column::Status => return None,
        })
    }
}

/// The table's columns at a density: column, header, width.
fn columns(density: Density) -> Vec<(Column, &'static str, Constraint)> {
    use Column as C;
    match density {
        Density::Full => vec![
            (C::Username, "USER NAME", Constraint::Fill(2)),
            (C::Name, "NAME", Constraint::Fill(2)),
            (C::Email, "EMAIL", Constraint::Fill(3)),
            (C::Org, "ORG", Constraint::Length(8)),
            (C::Role, "ROLE", Constraint::Length(8)),
            (C::Mfa, "MFA", Constraint::Length(12)),
            (C::LastLogin, "LAST LOGIN", Constraint::Length(16)),
            (C::MfaUsed, "MFA USED", Constraint::Length(8)),
            (C::Status, "STATUS", Constraint::Length(8)),
        ],
        Density::Narrow => vec![
            (C::Username, "USER NAME", Constraint::Fill(1)),
            (C::Name, "NAME", Constraint::Fill(1)),
            (C::Role, "ROLE", Constraint::Length(8)),
            (C::Mfa, "MFA", Constraint::Length(12)),
            (C::LastLogin, "LAST LOGIN", Constraint::Length(10)),
            (C::MfaUsed, "MFA USED", Constraint::Length(8)),
        ],
        Density::Compact => vec![(C::Username, "USER NAME", Constraint::Fill(1)), (C::Mfa, "MFA", Constraint::Length(12))],
    }
}

fn draw_table(state: &State, frame: &mut Frame, area: Rect, body: Rect, density: Density) {
    if body.height == 0 {
        return;
    }
    let t = &state.theme;
    let users = &state.users;
    let rows_area = layout::table_rows(area);
    let cols = columns(density);
    let (sort, desc) = users.sort();
    let mut header_cells = vec![Cell::from("")];
    header_cells.extend(cols.iter().map(|(column, title, _)| {
        let mark = if column.sorted_by() == Some(sort) { if desc { " ↓" } else { " ↑" } } else { "" };
        Cell::from(format!("{title}{mark}"))
    }));
    let header = Row::new(header_cells).style(t.header());
    let rows: Vec<Row> = users
        .visible(rows_area.height as usize)
        .map(|(position, u, marked)| {
            let is_cursor = position == users.cursor();
            let glyph = match (is_cursor, marked) {
                (true, true) => "▶✓",
                (true, false) => "▶ ",
                (false, true) => " ✓",
                (false, false) => "  ",
            };
            let mut cells = vec![Cell::from(glyph)];
            let disabled = u.status == crate::domain::user::Status::Disabled;
            for (column, _, _) in &cols {
                cells.push(match column {
                    // Without a status column, the name says it.
                    Column::Username if disabled && density != Density::Full => Cell::from(format!("{} (disabled)", u.username)),
                    Column::Username => Cell::from(u.username.clone()),
                    Column::Name => Cell::from(u.display_name.clone()),
                    Column::Email => Cell::from(u.email.clone()),
                    Column::Org => Cell::from(u.org.clone()),
                    Column::Role => Cell::from(u.role.as_str()),
                    Column::Mfa => Cell::from(Span::styled(mfa_label(u.mfa), if marked { t.plain() } else { t.mfa(u.mfa) })),
                    Column::LastLogin => Cell::from(when(u.last_login_at.as_deref(), density != Density::Full)),
                    // A user without a confirmed factor has nothing to use: no "never" then.
                    Column::MfaUsed if u.mfa_last_used_at.is_none() && !matches!(u.mfa, MfaStatus::Enrolled | MfaStatus::Locked) => Cell::from("-"),
                    Column::MfaUsed => Cell::from(ago(u.mfa_last_used_at.as_deref(), state.now)),
                    Column::Status => Cell::from(u.status.as_str()),
                });
            }
            let style = match (is_cursor, marked) {
                (true, true) => t.marked_cursor(),
                (true, false) => t.cursor(),
                (false, true) => t.marked(),
                (false, false) => t.plain(),
            };
            Row::new(cells).style(style)
        })
        .collect();
    let mut widths = vec![Constraint::Length(2)];
    widths.extend(cols.iter().map(|c| c.2));
    let mut table = Table::new(rows, widths).header(header).column_spacing(1);
    if density != Density::Compact {
        let title = if !users.loaded {
            " Users (loading…) ".to_string()
        } else if users.shown_len() == 0 && users.total() > 0 {
            " Users: nothing matches the filter ".to_string()
        } else {
            " Users ".to_string()
        };
        table = table.block(Block::default().borders(Borders::ALL).border_style(t.border()).title(Span::styled(title, t.title())));
    }
    frame.render_widget(table, body);
}
