//! Screen geometry shared by drawing and input (page size, mouse clicks): pure functions of the size.

use ratatui::layout::Rect;

/// How much room there is. Below 80×24 the console drops borders and columns instead of failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Density {
    /// 110 columns or more: every column.
    Full,
    /// 80 to 109 columns: no email and org columns.
    Narrow,
    /// Below 80×24: no borders, user name and MFA state only.
    Compact,
}

pub fn density(area: Rect) -> Density {
    if area.width < 80 || area.height < 24 {
        Density::Compact
    } else if area.width < 110 {
        Density::Narrow
    } else {
        Density::Full
    }
}

/// The parts of the main screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MainAreas {
    pub tabs: Rect,
    /// The filter bar (empty in the compact layout, where the tab line shows the filter).
    pub filter: Rect,
    /// The table or list, with its border.
    pub body: Rect,
    pub status: Rect,
}

fn row(area: Rect, y: u16, height: u16) -> Rect {
    let y = y.min(area.height);
    Rect { x: area.x, y: area.y + y, width: area.width, height: height.min(area.height - y) }
}

pub fn main_areas(area: Rect) -> MainAreas {
    let h = area.height;
    let status = if h >= 1 { row(area, h - 1, 1) } else { row(area, 0, 0) };
    let tabs = if h >= 2 { row(area, 0, 1) } else { row(area, 0, 0) };
    if density(area) == Density::Compact {
        let body = row(area, tabs.height, h.saturating_sub(tabs.height + status.height));
        MainAreas { tabs, filter: row(area, tabs.height, 0), body, status }
    } else {
        let filter = row(area, 1, 1);
        let body = row(area, 2, h.saturating_sub(3));
        MainAreas { tabs, filter, body, status }
    }
}

/// Where the data rows of a table in `body` go: inside the border, below the header line.
pub fn table_rows(area: Rect) -> Rect {
    let body = main_areas(area).body;
    let inner = if density(area) == Density::Compact {
        body
    } else {
        Rect {
            x: body.x.saturating_add(1),
            y: body.y.saturating_add(1),
            width: body.width.saturating_sub(2),
            height: body.height.saturating_sub(2),
        }
    };
    Rect { y: inner.y.saturating_add(1).min(inner.bottom()), height: inner.height.saturating_sub(1), ..inner }
}

/// How many data rows a table shows at this size (at least one, so paging always moves).
pub fn page_rows(area: Rect) -> usize {
    (table_rows(area).height as usize).max(1)
}

/// A box of at most `width`×`height` centred in `area`.
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_has_a_layout() {
        for w in 0..130 {
            for h in 0..45 {
                let area = Rect::new(0, 0, w, h);
                let a = main_areas(area);
                for r in [a.tabs, a.filter, a.body, a.status, table_rows(area)] {
                    assert!(r.bottom() <= h && r.right() <= w, "{w}x{h}: {r:?}");
                }
            }
        }
        assert_eq!(page_rows(Rect::new(0, 0, 120, 40)), 34);
        assert_eq!(page_rows(Rect::new(0, 0, 80, 24)), 18);
    }
}
