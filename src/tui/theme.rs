//! Styles. Every signal also has a glyph or a modifier (reverse, bold), so without colour
//! (`--no-color` or `NO_COLOR`) nothing is lost.

use crate::domain::mfa::MfaStatus;
use ratatui::style::{Color, Modifier, Style};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
}

/// Is colour wanted? `NO_COLOR` set to anything non-empty turns it off (https://no-color.org).
pub fn color_wanted(no_color_flag: bool, no_color_env: Option<&std::ffi::OsStr>) -> bool {
    !no_color_flag && no_color_env.is_none_or(|v| v.is_empty())
}

impl Theme {
    fn paint(&self, style: Style, fg: Color) -> Style {
        if self.color { style.fg(fg) } else { style }
    }

    pub fn plain(&self) -> Style {
        Style::new()
    }

    pub fn title(&self) -> Style {
        self.paint(Style::new().add_modifier(Modifier::BOLD), Color::Cyan)
    }

    pub fn tab_active(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
    }

    pub fn header(&self) -> Style {
        self.paint(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED), Color::Cyan)
    }

    /// The cursor row: a ▶ glyph, bold and underlined.
    pub fn cursor(&self) -> Style {
        let s = Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED);
        if self.color { s.bg(Color::DarkGray) } else { s }
    }

    /// A marked row: a ✓ glyph and reverse video.
    pub fn marked(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    pub fn marked_cursor(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD | Modifier::UNDERLINED)
    }

    pub fn mfa(&self, status: MfaStatus) -> Style {
        match status {
            MfaStatus::Enrolled => self.paint(Style::new(), Color::Green),
            MfaStatus::NotEnrolled => Style::new(),
            MfaStatus::MustEnroll => self.paint(Style::new(), Color::Yellow),
            MfaStatus::Pending => self.paint(Style::new(), Color::Magenta),
            MfaStatus::Locked => self.paint(Style::new().add_modifier(Modifier::BOLD), Color::Red),
        }
    }

    pub fn error(&self) -> Style {
        self.paint(Style::new().add_modifier(Modifier::BOLD), Color::Red)
    }

    pub fn ok(&self) -> Style {
        self.paint(Style::new(), Color::Green)
    }

    pub fn dim(&self) -> Style {
        if self.color { Style::new().fg(Color::DarkGray) } else { Style::new() }
    }

    pub fn key(&self) -> Style {
        self.paint(Style::new().add_modifier(Modifier::BOLD), Color::Yellow)
    }

    pub fn border(&self) -> Style {
        self.paint(Style::new(), Color::Gray)
    }

    pub fn input(&self) -> Style {
        Style::new().add_modifier(Modifier::UNDERLINED)
    }

    pub fn focused_input(&self) -> Style {
        self.paint(Style::new().add_modifier(Modifier::UNDERLINED | Modifier::BOLD), Color::Yellow)
    }

    pub fn button(&self) -> Style {
        Style::new()
    }

    pub fn focused_button(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_color_is_honoured() {
        assert!(color_wanted(false, None));
        assert!(!color_wanted(true, None));
        assert!(!color_wanted(false, Some(std::ffi::OsStr::new("1"))));
        assert!(color_wanted(false, Some(std::ffi::OsStr::new(""))));
    }
}
