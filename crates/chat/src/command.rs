//! The input line's commands: `/tell EMAIL TEXT`, `/msg EMAIL`, `/quit`…
//!
//! Parsing only: what a command does is [`crate::App`]'s. The group commands
//! ([`GroupCommand`]) act on the open group unless they name one (`/create`, `/join`).

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
    /// A group command.
    Group(GroupCommand),
}

/// The commands about groups; all but `/create` and `/join` act on the open group.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupCommand {
    /// `/create NAME`: a new group with us as its admin.
    Create(String),
    /// `/add EMAIL` (or `/invite`): add a member.
    Add(String),
    /// `/kick EMAIL`: remove a member.
    Kick(String),
    /// `/ban EMAIL`: remove and refuse its join requests.
    Ban(String),
    /// `/unban EMAIL`: lift a ban.
    Unban(String),
    /// `/op EMAIL`: make an admin.
    Op(String),
    /// `/deop EMAIL`: make a plain member.
    Deop(String),
    /// `/leave`: leave the group.
    Leave,
    /// `/link`: the group's join link.
    Link,
    /// `/join LINK [NOTE]` asks to join; `/join #NAME` opens a group of ours.
    Join {
        /// The link or `#name` as typed.
        target: String,
        /// A note to the admins.
        note: Option<String>,
    },
    /// `/requests`: the join requests waiting.
    Requests,
    /// `/accept EMAIL`: admit a requester.
    Accept(String),
    /// `/reject EMAIL`: refuse a requester.
    Reject(String),
    /// `/info`: members, roles, pending requests, policy.
    Info,
    /// `/topic TEXT`: set the group's topic (`/topic` alone clears it).
    Topic(String),
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

/// Every command name, for completion.
pub const NAMES: [&str; 28] = [
    "tell", "msg", "who", "away", "back", "search", "verify", "trust", "history", "set", "help",
    "quit", "create", "add", "invite", "kick", "ban", "unban", "op", "deop", "leave", "link",
    "join", "requests", "accept", "reject", "info", "topic",
];

/// The group commands taking one address, with their usage line.
fn member_command(name: &str, email: String) -> Option<GroupCommand> {
    Some(match name {
        "add" | "invite" => GroupCommand::Add(email),
        "kick" => GroupCommand::Kick(email),
        "ban" => GroupCommand::Ban(email),
        "unban" => GroupCommand::Unban(email),
        "op" => GroupCommand::Op(email),
        "deop" => GroupCommand::Deop(email),
        "accept" => GroupCommand::Accept(email),
        "reject" => GroupCommand::Reject(email),
        _ => return None,
    })
}

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
        "create" => match arg {
            Some(title) => Command::Group(GroupCommand::Create(title)),
            None => return Err(CommandError::Usage("/create NAME")),
        },
        "leave" | "part" => Command::Group(GroupCommand::Leave),
        "link" => Command::Group(GroupCommand::Link),
        "requests" => Command::Group(GroupCommand::Requests),
        "info" => Command::Group(GroupCommand::Info),
        "topic" => Command::Group(GroupCommand::Topic(arg.unwrap_or_default())),
        "join" => {
            let (target, note) = first_and_rest();
            if target.is_empty() {
                return Err(CommandError::Usage("/join LINK [NOTE] or /join #NAME"));
            }
            Command::Group(GroupCommand::Join {
                target,
                note: (!note.is_empty()).then_some(note),
            })
        }
        other => {
            let (email, more) = first_and_rest();
            match member_command(other, email.clone()) {
                Some(_) if email.is_empty() || !more.is_empty() => {
                    return Err(CommandError::Usage(member_usage(other)));
                }
                Some(command) => Command::Group(command),
                None => return Err(CommandError::Unknown(other.to_owned())),
            }
        }
    })
}

/// The usage line of a one-address group command.
fn member_usage(name: &str) -> &'static str {
    match name {
        "add" | "invite" => "/add EMAIL",
        "kick" => "/kick EMAIL",
        "ban" => "/ban EMAIL",
        "unban" => "/unban EMAIL",
        "op" => "/op EMAIL",
        "deop" => "/deop EMAIL",
        "accept" => "/accept EMAIL",
        _ => "/reject EMAIL",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

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
    fn group_commands_parse_with_their_arguments() {
        let g = |line: &str| match parse(line).unwrap() {
            Command::Group(command) => command,
            other => panic!("{line}: {other:?}"),
        };
        assert_eq!(
            g("/create Team Alpha"),
            GroupCommand::Create("Team Alpha".into())
        );
        assert_eq!(g("/add bob@y"), GroupCommand::Add("bob@y".into()));
        assert_eq!(g("/invite bob@y"), GroupCommand::Add("bob@y".into()));
        assert_eq!(g("/kick bob@y"), GroupCommand::Kick("bob@y".into()));
        assert_eq!(g("/ban bob@y"), GroupCommand::Ban("bob@y".into()));
        assert_eq!(g("/unban bob@y"), GroupCommand::Unban("bob@y".into()));
        assert_eq!(g("/op bob@y"), GroupCommand::Op("bob@y".into()));
        assert_eq!(g("/deop bob@y"), GroupCommand::Deop("bob@y".into()));
        assert_eq!(g("/accept bob@y"), GroupCommand::Accept("bob@y".into()));
        assert_eq!(g("/reject bob@y"), GroupCommand::Reject("bob@y".into()));
        assert_eq!(g("/leave"), GroupCommand::Leave);
        assert_eq!(
            g("/topic plans for friday"),
            GroupCommand::Topic("plans for friday".into())
        );
        assert_eq!(g("/topic"), GroupCommand::Topic(String::new()));
        assert_eq!(g("/link"), GroupCommand::Link);
        assert_eq!(g("/requests"), GroupCommand::Requests);
        assert_eq!(g("/info"), GroupCommand::Info);
        assert_eq!(
            g("/join e2ee-join:abc please let me in"),
            GroupCommand::Join {
                target: "e2ee-join:abc".into(),
                note: Some("please let me in".into())
            }
        );
        assert_eq!(
            g("/join #team"),
            GroupCommand::Join {
                target: "#team".into(),
                note: None
            }
        );
    }

    #[test]
    fn group_commands_missing_or_extra_arguments_say_their_usage() {
        assert_eq!(parse("/create"), Err(CommandError::Usage("/create NAME")));
        assert_eq!(parse("/kick"), Err(CommandError::Usage("/kick EMAIL")));
        assert_eq!(parse("/op a@x b@x"), Err(CommandError::Usage("/op EMAIL")));
        assert!(matches!(parse("/join"), Err(CommandError::Usage(_))));
    }

    #[test]
    fn bad_lines_are_explained() {
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
