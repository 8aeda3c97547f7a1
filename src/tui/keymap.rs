//! Key bindings: the defaults embedded from `assets/keymap.toml`, merged with the user's
//! `[tui.keys.<mode>]` tables. Input handling and the help overlay both read this one map.

use super::action::Command;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// The default bindings, as shipped.
pub const DEFAULT_KEYMAP: &str = include_str!("../../assets/keymap.toml");

/// A table of bindings. Which ones apply depends on the screen (see [`Section::for_mode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Section {
    Users,
    Filter,
    Detail,
    Audit,
    Orgs,
    Dialog,
    Progress,
    Result,
    Help,
    Command,
    Login,
    Input,
    Global,
}

impl Section {
    pub const ALL: [Section; 13] = [
        Section::Users,
        Section::Filter,
        Section::Detail,
        Section::Audit,
        Section::Orgs,
        Section::Dialog,
        Section::Progress,
        Section::Result,
        Section::Help,
        Section::Command,
        Section::Login,
        Section::Input,
        Section::Global,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Section::Global => "global",
            Section::Login => "login",
            Section::Input => "input",
            Section::Users => "users",
            Section::Filter => "filter",
            Section::Detail => "detail",
            Section::Audit => "audit",
            Section::Orgs => "orgs",
            Section::Dialog => "dialog",
            Section::Progress => "progress",
            Section::Result => "result",
            Section::Help => "help",
            Section::Command => "command",
        }
    }

    /// The heading of the section in the help overlay.
    pub fn title(self) -> &'static str {
        match self {
            Section::Global => "Everywhere",
            Section::Login => "Login screen",
            Section::Input => "Text fields",
            Section::Users => "User table",
            Section::Filter => "While typing a filter",
            Section::Detail => "User detail",
            Section::Audit => "Audit log",
            Section::Orgs => "Orgs",
            Section::Dialog => "Dialogs",
            Section::Progress => "While a reset runs",
            Section::Result => "Reset result",
            Section::Help => "Help",
            Section::Command => "Command line",
        }
    }

    fn parse(name: &str) -> Option<Section> {
        Section::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// A key as bindings name it. Letters carry their case instead of a shift modifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
    pub alt: bool,
}

impl Key {
    pub fn plain(code: KeyCode) -> Key {
        Key { code, ctrl: false, alt: false }
    }

    pub fn from_event(event: &KeyEvent) -> Key {
        let ctrl = event.modifiers.contains(KeyModifiers::CONTROL);
        let alt = event.modifiers.contains(KeyModifiers::ALT);
        let code = match event.code {
            // Terminals disagree on the case of ctrl-letters; bindings use lower case.
            KeyCode::Char(c) if ctrl => KeyCode::Char(c.to_ascii_lowercase()),
            KeyCode::Tab if event.modifiers.contains(KeyModifiers::SHIFT) => KeyCode::BackTab,
            other => other,
        };
        Key { code, ctrl, alt }
    }

    /// Parse a key as written in a key map: `j`, `G`, `?`, `ctrl-d`, `alt-x`, `space`, `pagedown`, `f5`.
    pub fn parse(text: &str) -> Result<Key, String> {
        let mut rest = text;
        let (mut ctrl, mut alt) = (false, false);
        loop {
            let lower = rest.to_lowercase();
            if rest.chars().count() > 1 && lower.starts_with("ctrl-") {
                ctrl = true;
                rest = &rest[5..];
            } else if rest.chars().count() > 1 && lower.starts_with("alt-") {
                alt = true;
                rest = &rest[4..];
            } else {
                break;
            }
        }
        let mut chars = rest.chars();
        let code = match (chars.next(), chars.next()) {
            (Some(c), None) => KeyCode::Char(if ctrl { c.to_ascii_lowercase() } else { c }),
            _ => match rest.to_lowercase().as_str() {
                "space" => KeyCode::Char(' '),
                "enter" | "return" => KeyCode::Enter,
                "esc" | "escape" => KeyCode::Esc,
                "tab" => KeyCode::Tab,
                "backtab" | "shift-tab" => KeyCode::BackTab,
                "backspace" => KeyCode::Backspace,
                "delete" | "del" => KeyCode::Delete,
                "insert" | "ins" => KeyCode::Insert,
                "up" => KeyCode::Up,
                "down" => KeyCode::Down,
                "left" => KeyCode::Left,
                "right" => KeyCode::Right,
                "home" => KeyCode::Home,
                "end" => KeyCode::End,
                "pageup" | "pgup" => KeyCode::PageUp,
                "pagedown" | "pgdown" | "pgdn" => KeyCode::PageDown,
                f if f.starts_with('f') && f[1..].parse::<u8>().is_ok_and(|n| (1..=12).contains(&n)) => {
                    KeyCode::F(f[1..].parse().unwrap_or(1))
                }
                _ => return Err(format!("unknown key {text:?} (use e.g. j, G, ctrl-d, space, enter, pagedown, f5)")),
            },
        };
        Ok(Key { code, ctrl, alt })
    }

    /// A key that types `c` into a text field, if it is one.
    pub fn typed_char(&self) -> Option<char> {
        match self.code {
            KeyCode::Char(c) if !self.ctrl && !self.alt => Some(c),
            _ => None,
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ctrl {
            f.write_str("ctrl-")?;
        }
        if self.alt {
            f.write_str("alt-")?;
        }
        match self.code {
            KeyCode::Char(' ') => f.write_str("space"),
            KeyCode::Char(c) => write!(f, "{c}"),
            KeyCode::Enter => f.write_str("enter"),
            KeyCode::Esc => f.write_str("esc"),
            KeyCode::Tab => f.write_str("tab"),
            KeyCode::BackTab => f.write_str("shift-tab"),
            KeyCode::Backspace => f.write_str("backspace"),
            KeyCode::Delete => f.write_str("delete"),
            KeyCode::Insert => f.write_str("insert"),
            KeyCode::Up => f.write_str("up"),
            KeyCode::Down => f.write_str("down"),
            KeyCode::Left => f.write_str("left"),
            KeyCode::Right => f.write_str("right"),
            KeyCode::Home => f.write_str("home"),
            KeyCode::End => f.write_str("end"),
            KeyCode::PageUp => f.write_str("pageup"),
            KeyCode::PageDown => f.write_str("pagedown"),
            KeyCode::F(n) => write!(f, "f{n}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// The merged bindings of every section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMap {
    bindings: BTreeMap<Section, HashMap<Key, Command>>,
}

impl Default for KeyMap {
    fn default() -> Self {
        KeyMap::from_toml(DEFAULT_KEYMAP).expect("the embedded assets/keymap.toml is valid")
    }
}

impl KeyMap {
    /// Parse a whole key map file (tables of `key = "action"` per section).
    pub fn from_toml(text: &str) -> Result<KeyMap, String> {
        let tables: BTreeMap<String, BTreeMap<String, String>> =
            toml::from_str(text).map_err(|e| format!("the key map is not valid: {e}"))?;
        let mut map = KeyMap { bindings: BTreeMap::new() };
        map.merge(&tables)?;
        Ok(map)
    }

    /// The defaults with the user's tables (from the config file's `[tui.keys]`) on top.
    pub fn with_overrides(overrides: &BTreeMap<String, BTreeMap<String, String>>) -> Result<KeyMap, String> {
        let mut map = KeyMap::default();
        map.merge(overrides).map_err(|e| format!("config [tui.keys]: {e}"))?;
        Ok(map)
    }

    fn merge(&mut self, tables: &BTreeMap<String, BTreeMap<String, String>>) -> Result<(), String> {
        for (section_name, table) in tables {
            let section = Section::parse(section_name).ok_or_else(|| {
                let names: Vec<&str> = Section::ALL.iter().map(|s| s.name()).collect();
                format!("unknown mode {section_name:?}; known modes: {}", names.join(", "))
            })?;
            let bindings = self.bindings.entry(section).or_default();
            for (key_text, action) in table {
                let key = Key::parse(key_text).map_err(|e| format!("[{section_name}] {e}"))?;
                if action.trim().eq_ignore_ascii_case("none") {
                    bindings.remove(&key);
                } else {
                    let command = action.parse::<Command>().map_err(|e| format!("[{section_name}] {key_text}: {e}"))?;
                    bindings.insert(key, command);
                }
            }
        }
        Ok(())
    }

    /// The command `key` stands for in the first of `sections` that binds it.
    pub fn lookup(&self, sections: &[Section], key: &Key) -> Option<Command> {
        sections.iter().find_map(|s| self.bindings.get(s).and_then(|b| b.get(key)).copied())
    }

    /// Every binding of `section`, grouped by command (in the order commands are declared), with
    /// the keys as the user writes them: what the help overlay prints.
    pub fn help(&self, section: Section) -> Vec<(Command, Vec<String>)> {
        let mut by_command: BTreeMap<Command, Vec<String>> = BTreeMap::new();
        if let Some(bindings) = self.bindings.get(&section) {
            for (key, command) in bindings {
                by_command.entry(*command).or_default().push(key.to_string());
            }
        }
        by_command
            .into_iter()
            .map(|(command, mut keys)| {
                keys.sort_by(|a, b| (a.len(), a).cmp(&(b.len(), b)));
                (command, keys)
            })
            .collect()
    }

    /// The keys bound to `command` in `section`, for hints ("R reset").
    pub fn keys_for(&self, section: Section, command: Command) -> Vec<String> {
        let mut keys: Vec<String> = self
            .bindings
            .get(&section)
            .map(|b| b.iter().filter(|(_, c)| **c == command).map(|(k, _)| k.to_string()).collect())
            .unwrap_or_default();
        keys.sort_by(|a, b| (a.len(), a).cmp(&(b.len(), b)));
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_print_back() {
        for text in ["j", "G", "?", "ctrl-d", "alt-x", "space", "enter", "pagedown", "f5", "shift-tab"] {
            let key = Key::parse(text).unwrap();
            assert_eq!(Key::parse(&key.to_string()).unwrap(), key, "{text}");
        }
        assert!(Key::parse("hyper-x").is_err());
        assert_eq!(Key::parse("ctrl-D").unwrap(), Key::parse("ctrl-d").unwrap());
    }

    #[test]
    fn events_normalise_like_bindings() {
        let shifted = KeyEvent::new(KeyCode::Char('G'), KeyModifiers::SHIFT);
        assert_eq!(Key::from_event(&shifted), Key::parse("G").unwrap());
        let ctrl = KeyEvent::new(KeyCode::Char('C'), KeyModifiers::CONTROL | KeyModifiers::SHIFT);
        assert_eq!(Key::from_event(&ctrl), Key::parse("ctrl-c").unwrap());
    }

    #[test]
    fn the_defaults_load_and_overrides_replace_or_remove() {
        let map = KeyMap::default();
        let r = Key::parse("R").unwrap();
        assert_eq!(map.lookup(&[Section::Users, Section::Global], &r), Some(Command::Reset));
        let mut users = BTreeMap::new();
        users.insert("R".to_string(), "none".to_string());
        users.insert("ctrl-r".to_string(), "reset".to_string());
        let overrides = BTreeMap::from([("users".to_string(), users)]);
        let map = KeyMap::with_overrides(&overrides).unwrap();
        assert_eq!(map.lookup(&[Section::Users], &r), None);
        assert_eq!(map.lookup(&[Section::Users], &Key::parse("ctrl-r").unwrap()), Some(Command::Reset));
    }

    #[test]
    fn mistakes_are_named() {
        let bad = BTreeMap::from([("userz".to_string(), BTreeMap::new())]);
        assert!(KeyMap::with_overrides(&bad).unwrap_err().contains("userz"));
        let bad = BTreeMap::from([("users".to_string(), BTreeMap::from([("x".to_string(), "rest".to_string())]))]);
        assert!(KeyMap::with_overrides(&bad).unwrap_err().contains("rest"));
    }
}
