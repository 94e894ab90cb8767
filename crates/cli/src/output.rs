//! Where output goes: results on stdout (text, or one JSON object per line), errors,
//! warnings and spinners on stderr.

use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use e2ee_client_core::ClientError;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

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

    /// Prints a result: `text` in text mode, `value` as one line in JSON mode.
    pub(crate) fn result(&self, text: &str, value: &Value) -> anyhow::Result<()> {
        let mut stdout = std::io::stdout().lock();
        if self.json {
            writeln!(stdout, "{value}")?;
        } else {
            writeln!(stdout, "{text}")?;
        }
        stdout.flush()?;
        Ok(())
    }

    /// A warning on stderr.
    pub(crate) fn warn(&self, text: &str) {
        let _ = writeln!(std::io::stderr(), "warning: {text}");
    }

    /// Reports a failed command: text on stderr; in JSON mode also an object on stdout,
    /// which for a message left in the outbox says which one (`queued`), so scripts know
    /// not to send it again.
    pub(crate) fn error(&self, error: &anyhow::Error, code: u8) {
        let _ = writeln!(std::io::stderr(), "error: {error:#}");
        if self.json {
            let mut value = serde_json::json!({"error": format!("{error:#}"), "exit_code": code});
            if let Some(ClientError::Queued { to, id, .. }) = error.downcast_ref::<ClientError>() {
                value["queued"] = serde_json::json!({"id": id, "to": to});
            }
            let _ = writeln!(std::io::stdout(), "{value}");
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

/// A running spinner; cleared when dropped.
pub(crate) struct Spinner(Option<ProgressBar>);

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
        }
    }
}
