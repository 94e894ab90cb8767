//! Where the store passphrase comes from: `--passphrase-file`, else the shell command
//! in `E2EE_PASSPHRASE_COMMAND`, else none (the store key lives in a 0600 file).

use std::path::Path;

use zeroize::Zeroizing;

use crate::UserError;

/// Environment variable naming a shell command that prints the passphrase.
const PASSPHRASE_COMMAND_ENV: &str = "E2EE_PASSPHRASE_COMMAND";

/// The first line, without its line ending: files and commands usually end in one.
fn first_line(mut bytes: Zeroizing<Vec<u8>>) -> Zeroizing<Vec<u8>> {
    if let Some(end) = bytes.iter().position(|&b| b == b'\n') {
        bytes.truncate(end);
    }
    if bytes.last() == Some(&b'\r') {
        bytes.pop();
    }
    bytes
}

/// Reads the passphrase, if one is configured.
pub(crate) fn read(file: Option<&Path>) -> anyhow::Result<Option<Zeroizing<Vec<u8>>>> {
    if let Some(path) = file {
        let bytes = std::fs::read(path).map_err(|e| {
            UserError(format!(
                "cannot read passphrase file {}: {e}",
                path.display()
            ))
        })?;
        return Ok(Some(first_line(Zeroizing::new(bytes))));
    }
    let Ok(command) = std::env::var(PASSPHRASE_COMMAND_ENV) else {
        return Ok(None);
    };
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(&command)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| UserError(format!("cannot run {PASSPHRASE_COMMAND_ENV}: {e}")))?;
    if !output.status.success() {
        return Err(UserError(format!(
            "{PASSPHRASE_COMMAND_ENV} failed ({}); fix the command or unset it",
            output.status
        ))
        .into());
    }
    Ok(Some(first_line(Zeroizing::new(output.stdout))))
}
