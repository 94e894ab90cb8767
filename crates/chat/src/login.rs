//! The login screen, shown when the home holds more than one profile or the chosen
//! profile's store is protected by a passphrase that was not given (or was wrong):
//! choose a profile, type its passphrase. Like [`crate::RegisterForm`] it only
//! decides: keys in, an [`Unlock`] out; the terminal loop opens the store.

use std::fmt;
use std::io;
use std::path::Path;

use e2ee_client_core::{KEY_FILE, STORE_FILE, WRAPPED_KEY_FILE};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use zeroize::{Zeroize as _, Zeroizing};

/// The longest passphrase the screen takes, in bytes. The buffer is allocated at this
/// size once, so typing never moves the secret and leaves copies behind.
pub const MAX_PASSPHRASE_BYTES: usize = 1024;

/// A profile in the home directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Its name, the directory under the home.
    pub name: String,
    /// Whether its store key is wrapped under a passphrase.
    pub protected: bool,
    /// Whether it does not exist yet (the one named on the command line): choosing it
    /// leads to the register screen.
    pub new: bool,
}

/// The profiles under `home`: the directories holding a store or a store key, sorted
/// by name. A missing home has none.
pub fn list_profiles(home: &Path) -> io::Result<Vec<Profile>> {
    let entries = match std::fs::read_dir(home) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut profiles = Vec::new();
    for entry in entries {
        let entry = entry?;
        if !entry.file_type()?.is_dir() {
            continue;
        }
        // A name that is not UTF-8 cannot be given as --profile either.
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let dir = entry.path();
        let protected = dir.join(WRAPPED_KEY_FILE).exists();
        if protected || dir.join(KEY_FILE).exists() || dir.join(STORE_FILE).exists() {
            profiles.push(Profile {
                name,
                protected,
                new: false,
            });
        }
    }
    profiles.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(profiles)
}

/// What the user asked the login screen for.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoginAction {
    /// Open this profile.
    Unlock(Unlock),
    /// Leave.
    Quit,
}

/// A profile to open, with the passphrase typed for it.
#[derive(PartialEq, Eq)]
pub struct Unlock {
    /// The profile's name.
    pub profile: String,
    /// The passphrase typed; `None` when the profile is not protected or nothing was
    /// typed (the one given on the command line, if any, is used then).
    pub passphrase: Option<Zeroizing<Vec<u8>>>,
}

impl fmt::Debug for Unlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unlock")
            .field("profile", &self.profile)
            .field(
                "passphrase",
                &self.passphrase.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// What became of an [`Unlock`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoginOutcome {
    /// The store is protected and no passphrase was typed.
    PassphraseRequired,
    /// The passphrase does not open the store: the field is emptied for another try.
    WrongPassphrase,
    /// Opening failed otherwise, in words.
    Failed(String),
}

/// The login screen's state.
pub struct LoginForm {
    profiles: Vec<Profile>,
    selected: usize,
    passphrase: Zeroizing<String>,
    busy: bool,
    message: Option<String>,
}

impl fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginForm")
            .field("profiles", &self.profiles)
            .field("selected", &self.selected)
            .field("passphrase_chars", &self.passphrase.chars().count())
            .field("busy", &self.busy)
            .field("message", &self.message)
            .finish()
    }
}

impl LoginForm {
    /// The screen over `profiles`, with `chosen` selected when it is among them.
    pub fn new(profiles: Vec<Profile>, chosen: &str) -> Self {
        let selected = profiles.iter().position(|p| p.name == chosen).unwrap_or(0);
        Self {
            profiles,
            selected,
            passphrase: Zeroizing::new(String::with_capacity(MAX_PASSPHRASE_BYTES)),
            busy: false,
            message: None,
        }
    }

    /// The profiles listed.
    pub fn profiles(&self) -> &[Profile] {
        &self.profiles
    }

    /// The selected profile.
    pub fn selected(&self) -> Option<&Profile> {
        self.profiles.get(self.selected)
    }

    /// How many characters of passphrase are typed (the screen shows only dots).
    pub fn passphrase_len(&self) -> usize {
        self.passphrase.chars().count()
    }

    /// Whether the store is being opened.
    pub fn busy(&self) -> bool {
        self.busy
    }

    /// The last error or hint.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// Shows `text` (an error from opening the store before the screen appeared).
    pub fn set_message(&mut self, text: impl Into<String>) {
        self.message = Some(text.into());
    }

    fn select(&mut self, by: isize) {
        if self.profiles.is_empty() {
            return;
        }
        let len = self.profiles.len() as isize;
        let next = (self.selected as isize + by).rem_euclid(len) as usize;
        if next != self.selected {
            self.selected = next;
            // A passphrase belongs to one profile.
            self.passphrase.zeroize();
            self.message = None;
        }
    }

    /// A key press.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<LoginAction> {
        if key.code == KeyCode::Esc
            || (key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL))
        {
            return Some(LoginAction::Quit);
        }
        if self.busy {
            return None;
        }
        let protected = self.selected().is_some_and(|p| p.protected);
        match key.code {
            KeyCode::Up | KeyCode::BackTab => self.select(-1),
            KeyCode::Down | KeyCode::Tab => self.select(1),
            KeyCode::Enter => return self.submit(),
            KeyCode::Backspace if protected => {
                self.passphrase.pop();
            }
            KeyCode::Char('u') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.passphrase.zeroize();
            }
            KeyCode::Char(c)
                if protected
                    && !key
                        .modifiers
                        .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) =>
            {
                if self.passphrase.len() + c.len_utf8() > MAX_PASSPHRASE_BYTES {
                    self.message = Some(format!(
                        "a passphrase is at most {MAX_PASSPHRASE_BYTES} bytes here"
                    ));
                } else {
                    self.passphrase.push(c);
                }
            }
            _ => {}
        }
        None
    }

    fn submit(&mut self) -> Option<LoginAction> {
        let profile = self.selected()?.clone();
        let passphrase = if profile.protected && !self.passphrase.is_empty() {
            Some(Zeroizing::new(self.passphrase.as_bytes().to_vec()))
        } else {
            None
        };
        self.busy = true;
        self.message = Some(if profile.protected {
            format!("unlocking {}…", profile.name)
        } else {
            format!("opening {}…", profile.name)
        });
        Some(LoginAction::Unlock(Unlock {
            profile: profile.name,
            passphrase,
        }))
    }

    /// What became of the last [`Unlock`]; the form stays for another try.
    pub fn on_outcome(&mut self, outcome: LoginOutcome) {
        self.busy = false;
        let name = self.selected().map(|p| p.name.clone()).unwrap_or_default();
        if matches!(
            outcome,
            LoginOutcome::PassphraseRequired | LoginOutcome::WrongPassphrase
        ) && let Some(profile) = self.profiles.get_mut(self.selected)
        {
            // Learned from the store itself (a wrapped key the listing did not see).
            profile.protected = true;
        }
        self.message = Some(match outcome {
            LoginOutcome::PassphraseRequired => {
                format!("the store of {name} is protected: type its passphrase")
            }
            LoginOutcome::WrongPassphrase => {
                self.passphrase.zeroize();
                format!("wrong passphrase for {name}: try again")
            }
            LoginOutcome::Failed(error) => error,
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn profile(name: &str, protected: bool) -> Profile {
        Profile {
            name: name.to_owned(),
            protected,
            new: false,
        }
    }

    fn press(form: &mut LoginForm, code: KeyCode) -> Option<LoginAction> {
        form.on_key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn type_text(form: &mut LoginForm, text: &str) {
        for c in text.chars() {
            assert_eq!(press(form, KeyCode::Char(c)), None);
        }
    }

    #[test]
    fn a_protected_profile_is_unlocked_with_the_typed_passphrase_and_retried_when_wrong() {
        let mut form = LoginForm::new(vec![profile("home", false), profile("work", true)], "work");
        assert_eq!(form.selected().unwrap().name, "work");
        type_text(&mut form, "hunter2");
        assert_eq!(form.passphrase_len(), 7);
        let Some(LoginAction::Unlock(unlock)) = press(&mut form, KeyCode::Enter) else {
            panic!()
        };
        assert_eq!(unlock.profile, "work");
        assert_eq!(unlock.passphrase.as_deref().unwrap().as_slice(), b"hunter2");
        assert!(!format!("{unlock:?}").contains("hunter2"));
        assert!(form.busy());
        // Keys wait while the store opens.
        assert_eq!(press(&mut form, KeyCode::Char('x')), None);
        form.on_outcome(LoginOutcome::WrongPassphrase);
        assert_eq!(form.passphrase_len(), 0);
        assert!(
            form.message()
                .unwrap()
                .contains("wrong passphrase for work")
        );
        assert!(!format!("{form:?}").contains("hunter2"));
        type_text(&mut form, "right");
        let Some(LoginAction::Unlock(unlock)) = press(&mut form, KeyCode::Enter) else {
            panic!()
        };
        assert_eq!(unlock.passphrase.as_deref().unwrap().as_slice(), b"right");
    }

    #[test]
    fn choosing_another_profile_forgets_the_passphrase_and_a_plain_one_takes_no_typing() {
        let mut form = LoginForm::new(
            vec![profile("home", false), profile("work", true)],
            "missing",
        );
        assert_eq!(form.selected().unwrap().name, "home");
        // Not protected: typing goes nowhere.
        type_text(&mut form, "abc");
        assert_eq!(form.passphrase_len(), 0);
        press(&mut form, KeyCode::Down);
        type_text(&mut form, "abc");
        assert_eq!(form.passphrase_len(), 3);
        press(&mut form, KeyCode::Up);
        assert_eq!(form.passphrase_len(), 0);
        let Some(LoginAction::Unlock(unlock)) = press(&mut form, KeyCode::Enter) else {
            panic!()
        };
        assert_eq!(unlock.profile, "home");
        assert_eq!(unlock.passphrase, None);
        // The store says it needs one after all: the field opens.
        form.on_outcome(LoginOutcome::PassphraseRequired);
        assert!(form.selected().unwrap().protected);
        type_text(&mut form, "x");
        assert_eq!(form.passphrase_len(), 1);
        assert_eq!(press(&mut form, KeyCode::Esc), Some(LoginAction::Quit));
    }

    #[test]
    fn an_overlong_passphrase_is_refused_with_a_message() {
        let mut form = LoginForm::new(vec![profile("p", true)], "p");
        type_text(&mut form, &"a".repeat(MAX_PASSPHRASE_BYTES));
        assert_eq!(press(&mut form, KeyCode::Char('b')), None);
        assert_eq!(form.passphrase_len(), MAX_PASSPHRASE_BYTES);
        assert!(form.message().unwrap().contains("at most"));
    }

    #[test]
    fn profiles_are_the_directories_with_a_store_or_key() {
        let home = tempfile::tempdir().unwrap();
        for (name, file) in [("b", KEY_FILE), ("a", WRAPPED_KEY_FILE), ("c", STORE_FILE)] {
            std::fs::create_dir(home.path().join(name)).unwrap();
            std::fs::write(home.path().join(name).join(file), b"").unwrap();
        }
        std::fs::create_dir(home.path().join("empty")).unwrap();
        std::fs::write(home.path().join("file"), b"").unwrap();
        let names: Vec<_> = list_profiles(home.path())
            .unwrap()
            .into_iter()
            .map(|p| (p.name, p.protected))
            .collect();
        assert_eq!(
            names,
            [("a".into(), true), ("b".into(), false), ("c".into(), false)]
        );
        assert!(
            list_profiles(&home.path().join("nowhere"))
                .unwrap()
                .is_empty()
        );
    }
}
