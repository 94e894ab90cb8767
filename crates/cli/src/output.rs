//! Where output goes: results on stdout (text, or one JSON object per line), errors,
//! warnings and spinners on stderr. Everything written goes through
//! [`crate::terminal_text`], so nothing a peer or the relay chose reaches the terminal
//! as a control sequence.

use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value};

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

    /// A warning: `warning: TEXT` on stderr; in JSON mode also
    /// `{"warning": TEXT, "code": CODE, ...context}` on stdout, in line with the results
    /// it is about.
    pub(crate) fn warn(&self, code: &str, text: &str, context: &Map<String, Value>) {
        let _ = writeln!(std::io::stderr(), "warning: {}", terminal_text::line(text));
        if self.json {
            json_object(
                context,
                [("warning", Value::from(text)), ("code", Value::from(code))],
            );
        }
    }

    /// A warning about one contact (`peer` in JSON).
    pub(crate) fn warn_peer(&self, code: &str, text: &str, peer: &str) {
        let mut context = Map::new();
        context.insert("peer".to_owned(), Value::from(peer));
        self.warn(code, text, &context);
    }

    /// A note for a person at a terminal, on stderr; never part of the results.
    pub(crate) fn note(&self, text: &str) {
        let _ = writeln!(std::io::stderr(), "{}", terminal_text::line(text));
    }

    /// Reports a failed command: `error: TEXT` on stderr; in JSON mode also
    /// `{"error": TEXT, "exit_code": CODE, ...context}` on stdout. For a message left in
    /// the outbox the context says which one (`queued`), so scripts know not to send it
    /// again.
    pub(crate) fn error(&self, text: &str, code: u8, context: &Map<String, Value>) {
        // Error texts quote relay messages, redirect targets and addresses: one line.
        let _ = writeln!(std::io::stderr(), "error: {}", terminal_text::line(text));
        self.json_error(text, code, context);
    }

    /// The JSON error object alone (for errors whose text is already on stderr).
    pub(crate) fn json_error(&self, text: &str, code: u8, context: &Map<String, Value>) {
        if self.json {
            json_object(
                context,
                [
                    ("error", Value::from(text)),
                    ("exit_code", Value::from(code)),
                ],
            );
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

/// Prints `context` with `fields` added as one JSON line on stdout. Best effort: a
/// warning or an error that cannot be written (stdout closed) must not hide the error
/// being reported.
fn json_object<const N: usize>(context: &Map<String, Value>, fields: [(&str, Value); N]) {
    let mut value = context.clone();
    for (key, field) in fields {
        value.insert(key.to_owned(), field);
    }
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(
        stdout,
        "{}",
        terminal_text::json_line(&Value::Object(value))
    );
    let _ = stdout.flush();
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

/// Unix milliseconds as UTC `YYYY-MM-DD HH:MM:SS`, for text output.
pub(crate) fn format_time(unix_ms: u64) -> String {
    let time = e2ee_client_core::UtcTime::from_unix_ms(unix_ms);
    format!("{} {}", time.date(), time.time_of_day())
}

#[cfg(test)]
mod tests {
    use super::format_time;

    #[test]
    fn format_time_is_utc_calendar_time() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00");
        // 2000-02-29 (a leap day of a century leap year) 12:34:56.789 UTC.
        assert_eq!(format_time(951_827_696_789), "2000-02-29 12:34:56");
        assert_eq!(format_time(1_796_400_000_000), "2026-12-04 16:00:00");
    }
}
