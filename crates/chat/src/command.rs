//! The input line's commands: `/tell EMAIL TEXT`, `/msg EMAIL`, `/quit`…
//!
//! Parsing only: what a command does is [`crate::App`]'s. Group commands parse too, so
//! that they answer "not available in this version" instead of "unknown command".

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `/tell EMAIL TEXT`: send TEXT to EMAIL and open that conversation.
    Tell {
        /// The recipient as typed.
        to: String,
        /// The message.
        text: String,
    },
    /// `/msg EMAIL [TEXT]`: open (or start) the conversation with EMAIL.
    Msg {
        /// The peer as typed.
        to: String,
        /// A first message, when given.
        text: Option<String>,
    },
    /// `/who`: who is there, with presence.
    Who,
    /// `/away [TEXT]`: presence away.
    Away(Option<String>),
    /// `/back`: presence online.
    Back,
    /// `/search EMAIL`: is this address on the relay.
    Search(String),
    /// `/verify [EMAIL]`: the safety number with the peer.
    Verify(Option<String>),
    /// `/trust NUMBER`: accept the peer's new key with that safety number.
    Trust(String),
    /// `/history [N]`: load N more messages of the history.
    History(Option<u32>),
    /// `/set NAME on|off`: a setting.
    Set {
        /// The setting.
        name: String,
        /// Its new value.
        on: bool,
    },
    /// `/help`: the help screen.
    Help,
    /// `/quit`.
    Quit,
    /// `/join`, `/leave`, `/invite`, `/kick`, `/ban`, `/requests`, `/accept`, `/reject`.
    Group(&'static str),
}

/// Why a line is no command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The command does not exist.
    #[error("unknown command /{0}")]
    Unknown(String),
    /// An argument is missing or malformed.
    #[error("usage: {0}")]
    Usage(&'static str),
}

/// The group commands, which wait for groups.
const GROUP_COMMANDS: [&str; 8] = [
    "join", "leave", "invite", "kick", "ban", "requests", "accept", "reject",
];

/// Every command name, for completion.
pub const NAMES: [&str; 20] = [
    "tell", "msg", "who", "away", "back", "search", "verify", "trust", "history", "set", "help",
    "quit", "join", "leave", "invite", "kick", "ban", "requests", "accept", "reject",
];

/// Parses `line` (which starts with `/`).
pub fn parse(line: &str) -> Result<Command, CommandError> {
    let body = line.strip_prefix('/').unwrap_or(line);
    let (name, rest) = match body.split_once(char::is_whitespace) {
        Some((name, rest)) => (name, rest.trim()),
        None => (body.trim(), ""),
    };
    let arg = (!rest.is_empty()).then(|| rest.to_owned());
    let first_and_rest = || {
        let mut split = rest.splitn(2, char::is_whitespace);
        let first = split.next().unwrap_or_default().to_owned();
        let more = split.next().map(str::trim).unwrap_or_default().to_owned();
        (first, more)
    };
    Ok(match name {
        "tell" => {
            let (to, text) = first_and_rest();
            if to.is_empty() || text.is_empty() {
                return Err(CommandError::Usage("/tell EMAIL TEXT"));
            }
            Command::Tell { to, text }
        }
        "msg" | "query" => {
            let (to, text) = first_and_rest();
            if to.is_empty() {
                return Err(CommandError::Usage("/msg EMAIL [TEXT]"));
            }
            Command::Msg {
                to,
                text: (!text.is_empty()).then_some(text),
            }
        }
        "who" => Command::Who,
        "away" => Command::Away(arg),
        "back" => Command::Back,
        "search" | "lookup" => match arg {
            Some(email) => Command::Search(email),
            None => return Err(CommandError::Usage("/search EMAIL")),
        },
        "verify" => Command::Verify(arg),
        "trust" => match arg {
            Some(number) => Command::Trust(number),
            None => {
                return Err(CommandError::Usage(
                    "/trust SAFETY-NUMBER (as /verify shows it)",
                ));
            }
        },
        "history" => match arg {
            None => Command::History(None),
            Some(n) => match n.parse() {
                Ok(n) => Command::History(Some(n)),
                Err(_) => return Err(CommandError::Usage("/history [COUNT]")),
            },
        },
        "set" => {
            let (name, value) = first_and_rest();
            let on = match value.as_str() {
                "on" | "true" | "yes" => true,
                "off" | "false" | "no" => false,
                _ => {
                    return Err(CommandError::Usage(
                        "/set read-receipts|typing|presence on|off",
                    ));
                }
            };
            Command::Set { name, on }
        }
        "help" => Command::Help,
        "quit" | "exit" => Command::Quit,
        other => match GROUP_COMMANDS.iter().find(|g| **g == other) {
            Some(group) => Command::Group(group),
            None => return Err(CommandError::Unknown(other.to_owned())),
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn commands_parse_with_their_arguments() {
        assert_eq!(
            parse("/tell bob@y hi there").unwrap(),
            Command::Tell {
                to: "bob@y".into(),
                text: "hi there".into()
            }
        );
        assert_eq!(
            parse("/msg bob@y").unwrap(),
            Command::Msg {
                to: "bob@y".into(),
                text: None
            }
        );
        assert_eq!(
            parse("/away lunch").unwrap(),
            Command::Away(Some("lunch".into()))
        );
        assert_eq!(parse("/away").unwrap(), Command::Away(None));
        assert_eq!(parse("/history 50").unwrap(), Command::History(Some(50)));
        assert_eq!(
            parse("/set typing off").unwrap(),
            Command::Set {
                name: "typing".into(),
                on: false
            }
        );
        assert_eq!(parse("/quit").unwrap(), Command::Quit);
    }

    #[test]
    fn group_commands_are_recognised_and_bad_lines_explained() {
        for name in GROUP_COMMANDS {
            assert_eq!(parse(&format!("/{name} x")).unwrap(), Command::Group(name));
        }
        assert_eq!(
            parse("/frobnicate"),
            Err(CommandError::Unknown("frobnicate".into()))
        );
        assert!(matches!(parse("/tell bob@y"), Err(CommandError::Usage(_))));
        assert!(matches!(parse("/trust"), Err(CommandError::Usage(_))));
        assert!(matches!(
            parse("/history many"),
            Err(CommandError::Usage(_))
        ));
    }
}
