//! The control channel's commands: what IRC has no command for, typed to the service
//! nick in `&e2ee` (the BitlBee pattern).

/// The control channel.
pub const CONTROL_CHANNEL: &str = "&e2ee";
/// The service nick that answers in it.
pub const SERVICE_NICK: &str = "e2ee";

/// A command for the service.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Control {
    /// The list of commands.
    Help,
    /// This profile's account.
    Whoami,
    /// Every contact with its nick and trust state.
    Contacts,
    /// Add the address as a contact (it gets a nick).
    Add(String),
    /// The safety number with a contact (nick or address).
    Verify(String),
    /// Trust a contact's key whose safety number was compared.
    Trust {
        /// Nick or address.
        who: String,
        /// The safety number as `verify` shows it (spaces allowed).
        number: String,
    },
    /// Keep a contact's pinned key and drop the new ones.
    Reject(String),
    /// Whether an address has an account on the relay.
    Lookup(String),
    /// Admin: let a join request in (`accept #c NICK|EMAIL`).
    Accept {
        /// The channel.
        channel: String,
        /// The requester.
        who: String,
    },
    /// Admin: turn a join request down (`deny #c NICK|EMAIL`, or `reject #c …`).
    Deny {
        /// The channel.
        channel: String,
        /// The requester.
        who: String,
    },
    /// Admin: the join requests waiting in a channel.
    Requests(String),
    /// Admin: the join link of a channel, to give whoever may ask to join.
    Link(String),
    /// Admin: list a channel in the relay's public directory (title, topic, member
    /// count, join link), so that anyone may find it with LIST and ask to join.
    Publish(String),
    /// Register this profile's account on the relay.
    Register {
        /// The address.
        email: String,
        /// The code the relay mailed, on a relay that verifies addresses.
        code: Option<String>,
    },
}

/// The help text, one line each.
pub const HELP: &[&str] = &[
    "Commands (type them here):",
    "  contacts                 list contacts, their nicks and trust state",
    "  add EMAIL                add a contact; it gets a nick to /msg",
    "  verify NICK|EMAIL        show the 60-digit safety number to compare out of band",
    "  trust NICK|EMAIL NUMBER  trust the key whose safety number you compared",
    "  reject NICK|EMAIL        keep the pinned key, drop the new one",
    "  lookup EMAIL             is this address on the relay (nothing is added)",
    "  register EMAIL [CODE]    register this profile's account on the relay",
    "  whoami                   this profile's account",
    "Channels are groups: /join #name (a new name makes a group), /join LINK asks to join.",
    "  requests #CHANNEL        join requests waiting (admins)",
    "  accept #CHANNEL NICK     let a requester in; deny #CHANNEL NICK turns it down",
    "  link #CHANNEL            the join link to give whoever may ask to join (admins)",
    "  publish #CHANNEL         list it in the relay's directory: anyone may ask to join",
    "Messages: /msg NICK text; /whois NICK shows the address, safety number and trust.",
];

/// Parses what the user typed; the error is the usage line to show.
pub fn parse(text: &str) -> Result<Control, String> {
    let mut words = text.split_whitespace();
    let Some(command) = words.next() else {
        return Err("type 'help' for the commands".to_owned());
    };
    let args: Vec<&str> = words.collect();
    let one = |usage: &str| match args.as_slice() {
        [arg] => Ok((*arg).to_owned()),
        _ => Err(format!("usage: {usage}")),
    };
    match command.to_ascii_lowercase().as_str() {
        "help" => Ok(Control::Help),
        "whoami" => Ok(Control::Whoami),
        "contacts" => Ok(Control::Contacts),
        "add" => one("add EMAIL").map(Control::Add),
        "verify" => one("verify NICK|EMAIL").map(Control::Verify),
        "reject" | "deny" if args.first().is_some_and(|a| a.starts_with('#')) => {
            match args.as_slice() {
                [channel, who] => Ok(Control::Deny {
                    channel: (*channel).to_owned(),
                    who: (*who).to_owned(),
                }),
                _ => Err("usage: deny #CHANNEL NICK|EMAIL".to_owned()),
            }
        }
        "reject" => one("reject NICK|EMAIL").map(Control::Reject),
        "accept" => match args.as_slice() {
            [channel, who] if channel.starts_with('#') => Ok(Control::Accept {
                channel: (*channel).to_owned(),
                who: (*who).to_owned(),
            }),
            _ => Err("usage: accept #CHANNEL NICK|EMAIL".to_owned()),
        },
        "requests" => one("requests #CHANNEL").map(Control::Requests),
        "link" => one("link #CHANNEL").map(Control::Link),
        "publish" => one("publish #CHANNEL").map(Control::Publish),
        "lookup" => one("lookup EMAIL").map(Control::Lookup),
        "trust" => match args.split_first() {
            Some((who, number)) if !number.is_empty() => Ok(Control::Trust {
                who: (*who).to_owned(),
                number: number.join(" "),
            }),
            _ => Err("usage: trust NICK|EMAIL NUMBER (the number as 'verify' shows it)".to_owned()),
        },
        "register" => match args.as_slice() {
            [email] => Ok(Control::Register {
                email: (*email).to_owned(),
                code: None,
            }),
            [email, code] => Ok(Control::Register {
                email: (*email).to_owned(),
                code: Some((*code).to_owned()),
            }),
            _ => Err("usage: register EMAIL [CODE]".to_owned()),
        },
        other => Err(format!(
            "unknown command {:?}; type 'help' for the commands",
            crate::text::clean(other)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands_and_explains_mistakes() {
        assert_eq!(parse(" HELP "), Ok(Control::Help));
        assert_eq!(
            parse("trust bob 12345 67890"),
            Ok(Control::Trust {
                who: "bob".into(),
                number: "12345 67890".into()
            })
        );
        assert_eq!(
            parse("register a@b.org 123456"),
            Ok(Control::Register {
                email: "a@b.org".into(),
                code: Some("123456".into())
            })
        );
        assert_eq!(parse("verify"), Err("usage: verify NICK|EMAIL".into()));
        assert!(parse("trust bob").is_err_and(|e| e.starts_with("usage: trust")));
        assert!(parse("frobnicate").is_err_and(|e| e.contains("unknown command")));
        assert!(parse("").is_err());
        assert_eq!(
            parse("reject #team bob"),
            Ok(Control::Deny {
                channel: "#team".into(),
                who: "bob".into()
            })
        );
        assert_eq!(parse("reject bob"), Ok(Control::Reject("bob".into())));
        assert!(parse("accept bob").is_err_and(|e| e.starts_with("usage: accept")));
    }
}
