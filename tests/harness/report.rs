//! Counting what a fault did to the messages a user sent, for the assertions and for
//! the table in docs/RELIABILITY.md (written by `tests/reliability.sh`).

use std::collections::BTreeMap;
use std::io::Write as _;

/// The environment variable naming the file a test appends its row to.
pub const REPORT_ENV: &str = "E2EE_RELIABILITY_REPORT";

/// One row: a fault and what the users saw through it.
#[derive(Debug)]
pub struct Tally {
    /// The fault, as a table cell.
    pub fault: String,
    /// Messages the sender's client accepted (sent, or saved in its outbox).
    pub sent: usize,
    /// Of those, how many the recipient was shown.
    pub received: usize,
    /// Accepted but never shown.
    pub lost: usize,
    /// Showings beyond the first of a message.
    pub duplicated: usize,
    /// What the fault looked like to the user, as a table cell.
    pub seen: String,
}

impl Tally {
    /// Counts `shown` (every message the recipient's UI printed, in order, repeats
    /// included) against `sent`. Panics on a shown text nobody sent.
    pub fn count(fault: &str, sent: &[String], shown: &[String], seen: &str) -> Self {
        let mut times: BTreeMap<&str, usize> = sent.iter().map(|t| (t.as_str(), 0)).collect();
        for text in shown {
            let count = times
                .get_mut(text.as_str())
                .unwrap_or_else(|| panic!("shown a message nobody sent: {text:?}"));
            *count += 1;
        }
        let received = times.values().filter(|&&n| n > 0).count();
        Self {
            fault: fault.to_owned(),
            sent: sent.len(),
            received,
            lost: sent.len() - received,
            duplicated: times.values().map(|&n| n.saturating_sub(1)).sum(),
            seen: seen.to_owned(),
        }
    }

    /// The row as a line of the Markdown table in docs/RELIABILITY.md.
    pub fn markdown_row(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {} | {} |",
            self.fault, self.sent, self.received, self.lost, self.duplicated, self.seen
        )
    }

    /// Appends the row to the report file when one is named, and prints it.
    pub fn record(&self) {
        let row = self.markdown_row();
        eprintln!("reliability: {row}");
        if let Ok(path) = std::env::var(REPORT_ENV) {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("{REPORT_ENV}={path}: {e}"));
            writeln!(file, "{row}").expect("writing the reliability report");
        }
    }

    /// Records the row, then fails the test if anything was lost or shown twice.
    #[track_caller]
    pub fn assert_nothing_lost_or_repeated(&self) {
        self.record();
        assert_eq!(
            (self.lost, self.duplicated),
            (0, 0),
            "{}: lost {} and showed {} twice",
            self.fault,
            self.lost,
            self.duplicated
        );
    }
}
