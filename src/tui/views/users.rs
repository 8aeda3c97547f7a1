//! The user table: only the rows on screen are built, so 100,000 users draw like 10.

use super::{ago, fit, when};
use crate::domain::mfa::MfaStatus;
use crate::domain::user::{Status, UserView};
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
            (true, _) => format!("/{}", super::with_cursor(&q.text, state.cursor_back)),
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
        spans.push(Span::styled(format!("/{}", super::with_cursor(&q.text, state.cursor_back)), t.focused_input()));
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

/// A column's room: it never gets less than `min`, grows up to `max` (its widest text on screen)
/// by `grow` shares of what is left, and of the columns that do not fit, the lowest `keep` goes first.
#[derive(Debug, Clone, Copy)]
struct Spec {
    column: Column,
    title: &'static str,
    min: u16,
    max: u16,
    grow: u16,
    keep: u8,
}

/// The table's columns at a density, before any is dropped.
fn specs(density: Density) -> Vec<Spec> {
    use Column as C;
    let fixed = |column, title, width, keep| Spec { column, title, min: width, max: width, grow: 0, keep };
    let flexible = |column, title, min, grow, keep| Spec { column, title, min, max: u16::MAX, grow, keep };
    match density {
        Density::Full => vec![
            flexible(C::Name, "NAME", 8, 2, 3),
            flexible(C::Email, "EMAIL", 10, 3, 5),
            fixed(C::Org, "ORG", 8, 1),
            fixed(C::Role, "ROLE", 8, 6),
            fixed(C::Mfa, "MFA", 12, 9),
            Spec { column: C::LastLogin, title: "LAST LOGIN", min: 10, max: 16, grow: 1, keep: 2 },
            fixed(C::MfaUsed, "MFA USED", 8, 4),
            fixed(C::Status, "STATUS", 8, 7),
        ],
        Density::Narrow => vec![
            flexible(C::Name, "NAME", 8, 1, 3),
            fixed(C::Role, "ROLE", 8, 6),
            fixed(C::Mfa, "MFA", 12, 9),
            fixed(C::LastLogin, "LAST LOGIN", 10, 2),
            fixed(C::MfaUsed, "MFA USED", 8, 4),
        ],
        Density::Compact => vec![fixed(C::Mfa, "MFA", 12, 9)],
    }
}

/// The user name as its column shows it: without a status column, a disabled user says so.
fn username_cell(u: &UserView, density: Density) -> String {
    if u.status == Status::Disabled && density != Density::Full {
        format!("{} (disabled)", u.username)
    } else {
        u.username.clone()
    }
}

/// The widest text of `column` among `rows`.
fn widest(rows: &[(usize, UserView, bool)], text: impl Fn(&UserView) -> usize) -> u16 {
    rows.iter().map(|(_, u, _)| text(u)).max().unwrap_or(0).min(u16::MAX as usize) as u16
}

/// Widths for the columns in `width` cells: the user name gets its full width first (the widest
/// on screen), then the other columns their least, dropping the least needed ones until they
/// fit, then what is left is shared among the flexible ones up to their widest text. Returns the
/// user name's width and the kept columns with theirs, in display order.
fn fit_columns(density: Density, width: u16, rows: &[(usize, UserView, bool)]) -> (u16, Vec<(Spec, u16)>) {
    const GLYPH: u16 = 2;
    let chars = |s: &str| s.chars().count();
    let name = widest(rows, |u| chars(&username_cell(u, density))).max(chars("USER NAME ↑") as u16);
    let mut kept = specs(density);
    for spec in &mut kept {
        match spec.column {
            Column::Name => spec.max = widest(rows, |u| chars(&u.display_name)).max(spec.min),
            Column::Email => spec.max = widest(rows, |u| chars(&u.email)).max(spec.min),
            _ => {}
        }
    }
    // Each column after the glyph is preceded by one space.
    let needed = |kept: &[Spec]| GLYPH + 1 + name + kept.iter().map(|s| s.min + 1).sum::<u16>();
    while needed(&kept) > width && !kept.is_empty() {
        let least = kept.iter().enumerate().min_by_key(|(_, s)| s.keep).map(|(i, _)| i).unwrap_or(0);
        kept.remove(least);
    }
    let name = name.min(width.saturating_sub(GLYPH + 1));
    let mut widths: Vec<u16> = kept.iter().map(|s| s.min).collect();
    let mut spare = width.saturating_sub(needed(&kept));
    // Share the spare room by weight, a cell at a time, until every flexible column is at its widest.
    while spare > 0 {
        let mut gave = false;
        for (i, spec) in kept.iter().enumerate() {
            for _ in 0..spec.grow {
                if spare > 0 && widths[i] < spec.max {
                    widths[i] += 1;
                    spare -= 1;
                    gave = true;
                }
            }
        }
        if !gave {
            break;
        }
    }
    (name, kept.into_iter().zip(widths).collect())
}

/// The cursor row in full, for the line at the foot of the table: its user name, name and email
/// are never cut there.
fn cursor_line(u: &UserView) -> String {
    format!(" ▶ {}  {}  <{}> ", u.username, u.display_name, u.email)
}

fn draw_table(state: &State, frame: &mut Frame, area: Rect, body: Rect, density: Density) {
    if body.height == 0 {
        return;
    }
    let t = &state.theme;
    let users = &state.users;
    let rows_area = layout::table_rows(area);
    let on_screen: Vec<(usize, UserView, bool)> = users.visible(rows_area.height as usize).collect();
    let (name_width, cols) = fit_columns(density, rows_area.width, &on_screen);
    let (sort, desc) = users.sort();
    let title = |column: Column, title: &str, width: u16| {
        let mark = if column.sorted_by() == Some(sort) { if desc { " ↓" } else { " ↑" } } else { "" };
        Cell::from(fit(&format!("{title}{mark}"), width as usize))
    };
    let mut header_cells = vec![Cell::from(""), title(Column::Username, "USER NAME", name_width)];
    header_cells.extend(cols.iter().map(|(spec, width)| title(spec.column, spec.title, *width)));
    let header = Row::new(header_cells).style(t.header());
    let rows: Vec<Row> = on_screen
        .iter()
        .map(|(position, u, marked)| {
            let (is_cursor, marked) = (*position == users.cursor(), *marked);
            let glyph = match (is_cursor, marked) {
                (true, true) => "▶✓",
                (true, false) => "▶ ",
                (false, true) => " ✓",
                (false, false) => "  ",
            };
            let mut cells = vec![Cell::from(glyph), Cell::from(fit(&username_cell(u, density), name_width as usize))];
            for (spec, width) in &cols {
                let text = |s: &str| Cell::from(fit(s, *width as usize));
                cells.push(match spec.column {
                    Column::Username => text(&u.username),
                    Column::Name => text(&u.display_name),
                    Column::Email => text(&u.email),
                    Column::Org => text(&u.org),
                    Column::Role => text(u.role.as_str()),
                    Column::Mfa => Cell::from(Span::styled(mfa_label(u.mfa), if marked { t.plain() } else { t.mfa(u.mfa) })),
                    Column::LastLogin => text(&when(u.last_login_at.as_deref(), *width < 16)),
                    // A user without a confirmed factor has nothing to use: no "never" then.
                    Column::MfaUsed if u.mfa_last_used_at.is_none() && !matches!(u.mfa, MfaStatus::Enrolled | MfaStatus::Locked) => text("-"),
                    Column::MfaUsed => text(&ago(u.mfa_last_used_at.as_deref(), state.now)),
                    Column::Status => text(u.status.as_str()),
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
    let mut widths = vec![Constraint::Length(2), Constraint::Length(name_width)];
    widths.extend(cols.iter().map(|(_, w)| Constraint::Length(*w)));
    let mut table = Table::new(rows, widths).header(header).column_spacing(1);
    if density != Density::Compact {
        let title = if !users.loaded {
            " Users (loading…) ".to_string()
        } else if users.shown_len() == 0 && users.total() > 0 {
            " Users: nothing matches the filter ".to_string()
        } else {
            " Users ".to_string()
        };
        let mut block = Block::default().borders(Borders::ALL).border_style(t.border()).title(Span::styled(title, t.title()));
        if let Some(u) = users.cursor_user() {
            let room = body.width.saturating_sub(4) as usize;
            block = block.title_bottom(Span::styled(fit(&cursor_line(&u), room), t.plain()));
        }
        table = table.block(block);
    }
    frame.render_widget(table, body);
}
