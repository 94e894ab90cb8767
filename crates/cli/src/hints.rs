//! What the user can do about a client error, in the CLI's own terms: commands, flags
//! and environment variables. The library's messages state what happened and stay the
//! same for every front end; each front end adds its own hints, this is the CLI's.

use e2ee_client_core::{ClientError, GroupError, RelayError, RelayErrorCode, StoreError};

/// The hint printed right after `error`'s message, starting with its separator (`; `
/// or `. `), or `None` when the message says enough.
pub(crate) fn hint(error: &ClientError) -> Option<String> {
    Some(match error {
        ClientError::NotRegistered => "; run `e2ee register EMAIL --relay URL` first".to_owned(),
        ClientError::AlreadyRegisteredLocally { .. } => {
            "; use another --profile or --home".to_owned()
        }
        ClientError::NoRelay => "; pass --relay URL or set E2EE_RELAY".to_owned(),
        ClientError::UnknownContact { email } => format!("; run `e2ee add-contact {email}`"),
        ClientError::IdentityChanged { email } => identity_changed_advice(email),
        ClientError::Store(StoreError::PassphraseRequired) => {
            "; give it with --passphrase-file or E2EE_PASSPHRASE_COMMAND".to_owned()
        }
        ClientError::Store(StoreError::KeyFilePermissions { path, .. }) => format!(
            "; run `chmod 600 {}` after checking nobody copied it",
            path.display()
        ),
        ClientError::Group(group) => return group_hint(group),
        ClientError::Relay(RelayError::Status { code, .. }) => match code {
            RelayErrorCode::ListingTaken => {
                "; that admin can refresh or remove it, or it expires 30 days after its last \
                 publish"
                    .to_owned()
            }
            RelayErrorCode::TooManyListings => {
                "; remove one with `e2ee group publish NAME --remove`".to_owned()
            }
            RelayErrorCode::UnknownListing => {
                "; `e2ee group directory` shows what is listed".to_owned()
            }
            _ => return None,
        },
        ClientError::Relay(RelayError::InsecureHttp { .. }) => {
            "; on a network you trust, --allow-insecure-relay permits plain http to other \
             hosts"
                .to_owned()
        }
        _ => return None,
    })
}

/// What to do about a refused group operation.
fn group_hint(error: &GroupError) -> Option<String> {
    Some(match error {
        GroupError::UnknownGroup { .. } => {
            "; `e2ee groups` lists this profile's groups by the names to use".to_owned()
        }
        GroupError::NotAdmin { title } => {
            format!("; `e2ee group info '{title}'` shows its admins, who can do it")
        }
        GroupError::LastAdmin { title } => {
            format!("; run `e2ee group promote '{title}' EMAIL` first")
        }
        GroupError::NotAMember { .. } => {
            "; `e2ee group join LINK` asks to join again, with a link from an admin".to_owned()
        }
        GroupError::BadLink { .. } => {
            "; an admin prints the link with `e2ee group link NAME`; quote it for the shell"
                .to_owned()
        }
        _ => return None,
    })
}

/// What to do when a contact's key changed; after the library's "X's identity key
/// changed", and after a message from a contact whose new key awaits a decision.
pub(crate) fn identity_changed_advice(email: &str) -> String {
    format!(
        ". Check the new safety number with 'e2ee verify {email}', then run 'e2ee trust {email} \
         NUMBER' with it, or 'e2ee reject {email}'."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_the_commands_and_flags_the_library_leaves_out() {
        let email = "bob@y".to_owned();
        let cases = [
            (
                ClientError::NotRegistered,
                "e2ee register EMAIL --relay URL",
            ),
            (
                ClientError::UnknownContact {
                    email: email.clone(),
                },
                "e2ee add-contact bob@y",
            ),
            (
                ClientError::IdentityChanged {
                    email: email.clone(),
                },
                "'e2ee trust bob@y NUMBER'",
            ),
            (
                ClientError::Store(StoreError::PassphraseRequired),
                "--passphrase-file",
            ),
            (
                ClientError::Store(StoreError::KeyFilePermissions {
                    path: "/p/store.key".into(),
                    mode: 0o644,
                }),
                "chmod 600 /p/store.key",
            ),
            (ClientError::NoRelay, "--relay URL"),
        ];
        for (error, expected) in cases {
            let hint = hint(&error);
            assert!(
                hint.as_deref().is_some_and(|h| h.contains(expected)),
                "{error}: {hint:?}"
            );
        }
        assert_eq!(hint(&ClientError::SelfMessage { email }), None);
        let group_cases = [
            (
                ClientError::Group(GroupError::UnknownGroup {
                    name: "#team".to_owned(),
                }),
                "e2ee groups",
            ),
            (
                ClientError::Group(GroupError::LastAdmin {
                    title: "team".to_owned(),
                }),
                "e2ee group promote 'team' EMAIL",
            ),
            (
                ClientError::Group(GroupError::NotAdmin {
                    title: "team".to_owned(),
                }),
                "e2ee group info 'team'",
            ),
        ];
        for (error, expected) in group_cases {
            let hint = hint(&error);
            assert!(
                hint.as_deref().is_some_and(|h| h.contains(expected)),
                "{error}: {hint:?}"
            );
        }
    }
}
