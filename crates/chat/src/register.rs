//! The register screen, shown when the profile has no account yet: the address, the
//! relay URL, and the code the relay mails when it verifies addresses. Like [`crate::App`]
//! it only decides: keys in, a [`Submit`] out; the terminal loop registers.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::input::Input;

/// The form's fields, in tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Field {
    /// The address to register.
    Email,
    /// The relay's URL.
    Relay,
    /// The mailed code (only once the relay asked for one).
    Code,
}

/// What the user asked the form for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormAction {
    /// Register with these values.
    Submit(Submit),
    /// Leave without registering.
    Quit,
}

/// A registration to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submit {
    /// The address as typed.
    pub email: String,
    /// The relay URL as typed.
    pub relay: String,
    /// The mailed code, once asked for.
    pub code: Option<String>,
}

/// What became of a [`Submit`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegisterOutcome {
    /// Registered: the chat starts.
    Done,
    /// The relay mailed a code to the address: the form asks for it.
    CodeSent,
    /// It failed, in words; the form stays, with what was typed.
    Failed(String),
}

/// The register form.
#[derive(Debug, Clone)]
pub struct RegisterForm {
    email: Input,
    relay: Input,
    code: Input,
    focus: Field,
    needs_code: bool,
    busy: bool,
    message: Option<String>,
}

impl RegisterForm {
    /// An empty form, the relay URL prefilled when one was given (`--relay`).
    pub fn new(relay: Option<&str>) -> Self {
        let mut relay_input = Input::default();
        if let Some(url) = relay {
            relay_input.insert_str(url);
        }
        Self {
            email: Input::default(),
            relay: relay_input,
            code: Input::default(),
            focus: Field::Email,
            needs_code: false,
            busy: false,
            message: None,
        }
    }

    /// The field with the cursor.
    pub fn focus(&self) -> Field {
        self.focus
    }

    /// What is typed in `field`.
    pub fn value(&self, field: Field) -> &str {
        match field {
            Field::Email => self.email.text(),
            Field::Relay => self.relay.text(),
            Field::Code => self.code.text(),
        }
    }

    /// Whether the code field is shown.
    pub fn needs_code(&self) -> bool {
        self.needs_code
    }

    /// Whether a registration is under way.
    pub fn busy(&self) -> bool {
        self.busy
    }

    /// The last error or hint.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    fn fields(&self) -> &'static [Field] {
        if self.needs_code {
            &[Field::Email, Field::Relay, Field::Code]
        } else {
            &[Field::Email, Field::Relay]
        }
    }

    fn input_mut(&mut self) -> &mut Input {
        match self.focus {
            Field::Email => &mut self.email,
            Field::Relay => &mut self.relay,
            Field::Code => &mut self.code,
        }
    }

    fn move_focus(&mut self, by: isize) {
        let fields = self.fields();
        let at = fields.iter().position(|f| *f == self.focus).unwrap_or(0) as isize;
        let next = (at + by).rem_euclid(fields.len() as isize) as usize;
        self.focus = fields[next];
    }

    /// A key press.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<FormAction> {
        if key.code == KeyCode::Esc
            || (key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL))
        {
            return Some(FormAction::Quit);
        }
        if self.busy {
            return None;
        }
        match key.code {
            KeyCode::Tab | KeyCode::Down => self.move_focus(1),
            KeyCode::BackTab | KeyCode::Up => self.move_focus(-1),
            KeyCode::Enter => {
                let fields = self.fields();
                if self.focus != *fields.last().unwrap_or(&Field::Relay) {
                    self.move_focus(1);
                    return None;
                }
                return self.submit();
            }
            KeyCode::Backspace => self.input_mut().backspace(),
            KeyCode::Left => self.input_mut().left(),
            KeyCode::Right => self.input_mut().right(),
            KeyCode::Char(c)
                if !key
                    .modifiers
                    .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) =>
            {
                self.input_mut().insert(c)
            }
            _ => {}
        }
        None
    }

    fn submit(&mut self) -> Option<FormAction> {
        let email = self.email.text().trim().to_owned();
        let relay = self.relay.text().trim().to_owned();
        if email.is_empty() {
            self.message = Some("type the address to register".to_owned());
            self.focus = Field::Email;
            return None;
        }
        if relay.is_empty() {
            self.message = Some("type the relay's URL (http://127.0.0.1:8080, say)".to_owned());
            self.focus = Field::Relay;
            return None;
        }
        let code = self.code.text().trim().to_owned();
        if self.needs_code && code.is_empty() {
            self.message = Some(format!("type the code the relay mailed to {email}"));
            self.focus = Field::Code;
            return None;
        }
        self.busy = true;
        self.message = Some(format!("registering {email} on {relay}…"));
        Some(FormAction::Submit(Submit {
            email,
            relay,
            code: self.needs_code.then_some(code),
        }))
    }

    /// What became of the last [`Submit`].
    pub fn on_outcome(&mut self, outcome: RegisterOutcome) {
        self.busy = false;
        match outcome {
            RegisterOutcome::Done => self.message = Some("registered".to_owned()),
            RegisterOutcome::CodeSent => {
                self.needs_code = true;
                self.focus = Field::Code;
                self.message = Some(format!(
                    "the relay mailed a code to {}: type it below",
                    self.email.text().trim()
                ));
            }
            RegisterOutcome::Failed(error) => self.message = Some(error),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn type_text(form: &mut RegisterForm, text: &str) {
        for c in text.chars() {
            assert_eq!(
                form.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)),
                None
            );
        }
    }

    fn press(form: &mut RegisterForm, code: KeyCode) -> Option<FormAction> {
        form.on_key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    #[test]
    fn the_form_submits_address_and_relay_then_asks_for_the_mailed_code() {
        let mut form = RegisterForm::new(None);
        type_text(&mut form, "alice@x.org");
        assert_eq!(press(&mut form, KeyCode::Enter), None);
        assert_eq!(form.focus(), Field::Relay);
        // No relay yet: a hint, nothing submitted.
        assert_eq!(press(&mut form, KeyCode::Enter), None);
        assert!(form.message().unwrap().contains("relay"));
        type_text(&mut form, "http://127.0.0.1:1");
        let Some(FormAction::Submit(submit)) = press(&mut form, KeyCode::Enter) else {
            panic!()
        };
        assert_eq!(submit.email, "alice@x.org");
        assert_eq!(submit.relay, "http://127.0.0.1:1");
        assert_eq!(submit.code, None);
        assert!(form.busy());
        form.on_outcome(RegisterOutcome::CodeSent);
        assert!(form.needs_code());
        assert_eq!(form.focus(), Field::Code);
        type_text(&mut form, "123456");
        let Some(FormAction::Submit(submit)) = press(&mut form, KeyCode::Enter) else {
            panic!()
        };
        assert_eq!(submit.code.as_deref(), Some("123456"));
        form.on_outcome(RegisterOutcome::Failed("wrong code".into()));
        assert_eq!(form.message(), Some("wrong code"));
        assert_eq!(press(&mut form, KeyCode::Esc), Some(FormAction::Quit));
    }

    #[test]
    fn a_given_relay_is_prefilled() {
        let form = RegisterForm::new(Some("https://relay.example"));
        assert_eq!(form.value(Field::Relay), "https://relay.example");
    }
}
