//! `e2ee trust EMAIL [NUMBER…]`: trust the contact's key whose safety number the user
//! checked.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use e2ee_client_core::{Client, Contact};

use crate::UserError;
use crate::output::Output;

/// Arguments of `trust`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The contact.
    email: String,
    /// The safety number you compared, as `e2ee verify` shows it (spaces are ignored).
    /// Omitted on a terminal: the number is shown and you are asked.
    number: Vec<String>,
}

pub(crate) async fn run(client: &Client, args: &Args, out: &Output) -> anyhow::Result<()> {
    let number = if args.number.is_empty() {
        ask(&client.safety_number(&args.email).await?, out)?
    } else {
        args.number.join(" ")
    };
    let contact = client.trust(&args.email, &number).await?;
    out.result(
        &format!(
            "trusted {} (safety number {})",
            contact.email, contact.safety_number
        ),
        &super::contact_json(&contact),
    )
}

/// The number to trust, asked of the person at the terminal: the key to trust is
/// the one whose number they were shown here, whatever arrives meanwhile.
fn ask(contact: &Contact, out: &Output) -> anyhow::Result<String> {
    let interactive =
        !out.json() && std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if !interactive {
        return Err(UserError(format!(
            "give the safety number you compared: 'e2ee trust {email} NUMBER' \
             ('e2ee verify {email}' shows it)",
            email = contact.email
        ))
        .into());
    }
    let candidates: &[String] = if contact.pending_safety_numbers.is_empty() {
        std::slice::from_ref(&contact.safety_number)
    } else {
        &contact.pending_safety_numbers
    };
    let mut stderr = std::io::stderr().lock();
    let answer = if let [only] = candidates {
        writeln!(stderr, "safety number with {}:\n  {only}", contact.email)?;
        write!(stderr, "does it match what {} sees? [y/N] ", contact.email)?;
        stderr.flush()?;
        let line = read_line()?;
        if !matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
            return Err(UserError("not trusted".to_owned()).into());
        }
        only.clone()
    } else {
        writeln!(
            stderr,
            "{} new identity keys were seen for {}; their safety numbers:",
            candidates.len(),
            contact.email
        )?;
        for number in candidates {
            writeln!(stderr, "  {number}")?;
        }
        write!(stderr, "type the one {} sees: ", contact.email)?;
        stderr.flush()?;
        read_line()?
    };
    Ok(answer)
}

fn read_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| UserError(format!("cannot read the answer: {e}")))?;
    Ok(line)
}
