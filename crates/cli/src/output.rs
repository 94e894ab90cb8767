//! Where output goes: results on stdout (text, or one JSON object per line), errors,
//! warnings and spinners on stderr. Everything written goes through
//! [`crate::terminal_text`], so nothing a peer or the relay chose reaches the terminal
//! as a control sequence.

use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use e2ee_client_core::{ClientError, RelayError};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::terminal_text;

/// How often the spinner ticks.
const SPINNER_TICK: Duration = Duration::from_millis(100);

/// The output mode of one invocation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    json: bool,
}

impl Output {
    pub(crate) fn new(json: bool) -> Self {
        Self { json }
    }

    pub(crate) fn json(&self) -> bool {
        self.json
    }

    /// Prints a result: `text` in text mode, `value` as one line in JSON mode. `text`
    /// may span lines of the caller's making; a message's text must come through
    /// [`terminal_text::message`], which keeps its newlines from starting lines.
    pub(crate) fn result(&self, text: &str, value: &Value) -> anyhow::Result<()> {
        let mut stdout = std::io::stdout().lock();
        if self.json {
            writeln!(stdout, "{}", terminal_text::json_line(value))?;
        } else {
            writeln!(stdout, "{}", terminal_text::block(text))?;
        }
        stdout.flush()?;
        Ok(())
    }

    /// A warning on stderr, on one line.
    pub(crate) fn warn(&self, text: &str) {
        let _ = writeln!(std::io::stderr(), "warning: {}", terminal_text::line(text));
    }

    /// Reports a failed command: text on stderr; in JSON mode also an object on stdout,
    /// which for a message left in the outbox says which one (`queued`), so scripts know
    /// not to send it again.
    pub(crate) fn error(&self, error: &anyhow::Error, code: u8) {
        // Error texts quote relay messages, redirect targets and addresses: one line.
        let _ = writeln!(
            std::io::stderr(),
            "error: {}",
            terminal_text::line(&format!("{error:#}"))
        );
        if let Some(hint) = hint(error) {
            let _ = writeln!(std::io::stderr(), "hint: {hint}");
        }
        if self.json {
            let mut value = serde_json::json!({"error": format!("{error:#}"), "exit_code": code});
            if let Some(ClientError::Queued { to, id, .. }) = error.downcast_ref::<ClientError>() {
                value["queued"] = serde_json::json!({"id": id, "to": to});
            }
            let _ = writeln!(std::io::stdout(), "{}", terminal_text::json_line(&value));
        }
    }

    /// A spinner on stderr while waiting on the network, only on a terminal.
    pub(crate) fn spinner(&self, message: &str) -> Spinner {
        if !std::io::stderr().is_terminal() {
            return Spinner(None);
        }
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
            bar.set_style(style);
        }
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(SPINNER_TICK);
        Spinner(Some(bar))
    }
}

/// What the CLI can add to a library error: its own flags, which the library does not
/// know about.
fn hint(error: &anyhow::Error) -> Option<&'static str> {
    match error.downcast_ref::<ClientError>() {
        Some(ClientError::Relay(RelayError::InsecureHttp { .. })) => {
            Some("on a network you trust, --allow-insecure-relay permits plain http to other hosts")
        }
        _ => None,
    }
}

/// A running spinner; cleared when dropped.
pub(crate) struct Spinner(Option<ProgressBar>);

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
        }
    }
}
