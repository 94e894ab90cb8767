//! What the user chooses: settings (`chat.json` in the profile) and key bindings
//! (`chat-keys.json`). Parsing and defaults only; the terminal loop reads and writes
//! the files.

use std::collections::{BTreeMap, HashMap};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde::{Deserialize, Serialize};

/// The settings file in the profile directory.
pub const SETTINGS_FILE: &str = "chat.json";
/// The key bindings file in the profile directory.
pub const KEYS_FILE: &str = "chat-keys.json";
/// Minutes without a key press before presence turns to away.
pub const DEFAULT_AWAY_AFTER_MINUTES: u64 = 5;

/// The chat's settings, kept across runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Send read receipts and show the peers'. Off: none sent, none shown (as Signal).
    pub read_receipts: bool,
    /// Send and show typing notices.
    pub typing: bool,
    /// Send and show presence.
    pub presence: bool,
    /// Idle minutes before presence turns to away.
    pub away_after_minutes: u64,
    /// Per conversation (its store key), the time up to which the user has seen it:
    /// unread counts survive a restart.
    pub last_read: BTreeMap<String, u64>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            read_receipts: true,
            typing: true,
            presence: true,
            away_after_minutes: DEFAULT_AWAY_AFTER_MINUTES,
            last_read: BTreeMap::new(),
        }
    }
}

impl Settings {
    /// Reads the settings file's text; a damaged file is an error, never silently reset.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The file's text.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Sets the setting `name`; false when there is no such setting.
    pub fn set(&mut self, name: &str, on: bool) -> bool {
        match name {
            "read-receipts" | "read_receipts" | "receipts" => self.read_receipts = on,
            "typing" => self.typing = on,
            "presence" => self.presence = on,
            _ => return false,
        }
        true
    }
}

/// What a key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum KeyAction {
    /// Send the input (or run its command).
    Send,
    /// A new line in the input.
    Newline,
    /// The next conversation in the list.
    NextConversation,
    /// The previous conversation in the list.
    PreviousConversation,
    /// The conversation switcher.
    Switcher,
    /// The help screen.
    Help,
    /// Leave the chat.
    Quit,
    /// Scroll the timeline up a page.
    ScrollUp,
    /// Scroll the timeline down a page.
    ScrollDown,
    /// Complete the name or command at the cursor.
    Complete,
    /// Show or hide the member panel.
    Members,
}

/// Which keys do what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keymap {
    keys: HashMap<(KeyCode, KeyModifiers), KeyAction>,
}

/// Why a key bindings file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeymapError {
    /// The file is not a JSON object of action names to key lists.
    #[error("the key bindings are not valid: {0}")]
    Syntax(String),
    /// A key's name is not understood.
    #[error("unknown key {0:?} (examples: ctrl-p, alt-up, f1, enter, alt-enter)")]
    Key(String),
}

/// gurk-rs's defaults, which people coming from it already know.
const DEFAULTS: [(&str, KeyAction); 15] = [
    ("enter", KeyAction::Send),
    ("alt-enter", KeyAction::Newline),
    ("shift-enter", KeyAction::Newline),
    ("alt-down", KeyAction::NextConversation),
    ("ctrl-n", KeyAction::NextConversation),
    ("alt-up", KeyAction::PreviousConversation),
    ("ctrl-p", KeyAction::Switcher),
    ("ctrl-k", KeyAction::Switcher),
    ("f1", KeyAction::Help),
    ("ctrl-c", KeyAction::Quit),
    ("pageup", KeyAction::ScrollUp),
    ("pagedown", KeyAction::ScrollDown),
    ("tab", KeyAction::Complete),
    ("f2", KeyAction::Members),
    ("ctrl-d", KeyAction::Quit),
];

/// Parses `ctrl-p`, `alt-up`, `f1`, `enter`, `x`.
pub fn parse_key(spec: &str) -> Result<(KeyCode, KeyModifiers), KeymapError> {
    let lower = spec.to_ascii_lowercase();
    let mut modifiers = KeyModifiers::NONE;
    let mut rest = lower.as_str();
    loop {
        if let Some(r) = rest.strip_prefix("ctrl-") {
            modifiers |= KeyModifiers::CONTROL;
            rest = r;
        } else if let Some(r) = rest.strip_prefix("alt-") {
            modifiers |= KeyModifiers::ALT;
            rest = r;
        } else if let Some(r) = rest.strip_prefix("shift-") {
            modifiers |= KeyModifiers::SHIFT;
            rest = r;
        } else {
            break;
        }
    }
    let code = match rest {
        "enter" => KeyCode::Enter,
        "tab" => KeyCode::Tab,
        "esc" => KeyCode::Esc,
        "up" => KeyCode::Up,
        "down" => KeyCode::Down,
        "left" => KeyCode::Left,
        "right" => KeyCode::Right,
        "pageup" => KeyCode::PageUp,
        "pagedown" => KeyCode::PageDown,
        "home" => KeyCode::Home,
        "end" => KeyCode::End,
        "backspace" => KeyCode::Backspace,
        f if f.starts_with('f') && f.len() > 1 => match f[1..].parse::<u8>() {
            Ok(n @ 1..=12) => KeyCode::F(n),
            _ => return Err(KeymapError::Key(spec.to_owned())),
        },
        c if c.chars().count() == 1 => KeyCode::Char(c.chars().next().unwrap_or(' ')),
        _ => return Err(KeymapError::Key(spec.to_owned())),
    };
    Ok((code, modifiers))
}

impl Default for Keymap {
    fn default() -> Self {
        let mut keys = HashMap::new();
        for (spec, action) in DEFAULTS {
            if let Ok(key) = parse_key(spec) {
                keys.insert(key, action);
            }
        }
        Self { keys }
    }
}

impl Keymap {
    /// The defaults with the file's bindings on top: `{"switcher": ["ctrl-o"]}` binds
    /// ctrl-o to the switcher (ctrl-p keeps its default unless rebound).
    pub fn parse(text: &str) -> Result<Self, KeymapError> {
        let file: BTreeMap<KeyAction, Vec<String>> =
            serde_json::from_str(text).map_err(|e| KeymapError::Syntax(e.to_string()))?;
        let mut map = Self::default();
        for (action, specs) in file {
            for spec in specs {
                map.keys.insert(parse_key(&spec)?, action);
            }
        }
        Ok(map)
    }

    /// What `key` does, if it is bound.
    pub fn action(&self, key: &KeyEvent) -> Option<KeyAction> {
        // Terminals report an upper-case letter with SHIFT; bindings name the letter.
        let modifiers = key.modifiers - KeyModifiers::SHIFT;
        let code = match key.code {
            KeyCode::Char(c) if key.modifiers.contains(KeyModifiers::CONTROL) => {
                KeyCode::Char(c.to_ascii_lowercase())
            }
            other => other,
        };
        self.keys
            .get(&(code, key.modifiers))
            .or_else(|| self.keys.get(&(code, modifiers)))
            .copied()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_defaults_are_gurks_and_a_file_rebinds() {
        let map = Keymap::default();
        let ctrl_p = KeyEvent::new(KeyCode::Char('p'), KeyModifiers::CONTROL);
        assert_eq!(map.action(&ctrl_p), Some(KeyAction::Switcher));
        let alt_up = KeyEvent::new(KeyCode::Up, KeyModifiers::ALT);
        assert_eq!(map.action(&alt_up), Some(KeyAction::PreviousConversation));
        let map = Keymap::parse(r#"{"switcher": ["ctrl-o"], "help": ["f5"]}"#).unwrap();
        let ctrl_o = KeyEvent::new(KeyCode::Char('o'), KeyModifiers::CONTROL);
        assert_eq!(map.action(&ctrl_o), Some(KeyAction::Switcher));
        assert_eq!(
            map.action(&KeyEvent::new(KeyCode::F(5), KeyModifiers::NONE)),
            Some(KeyAction::Help)
        );
        assert!(matches!(
            Keymap::parse(r#"{"help": ["hyper-x"]}"#),
            Err(KeymapError::Key(_))
        ));
        assert!(matches!(Keymap::parse("[1]"), Err(KeymapError::Syntax(_))));
    }

    #[test]
    fn settings_round_trip_and_default_on() {
        let mut settings = Settings::default();
        assert!(settings.read_receipts && settings.typing && settings.presence);
        assert!(settings.set("read-receipts", false));
        assert!(!settings.set("colour", true));
        settings.last_read.insert("direct:b@x".into(), 5);
        assert_eq!(Settings::parse(&settings.to_json()).unwrap(), settings);
        assert_eq!(Settings::parse("{}").unwrap(), Settings::default());
        assert!(Settings::parse("not json").is_err());
    }
}
