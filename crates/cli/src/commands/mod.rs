//! One module per subcommand: its arguments and what it prints.

pub(crate) mod add_contact;
pub(crate) mod chat;
pub(crate) mod contacts;
pub(crate) mod group;
pub(crate) mod groups;
pub(crate) mod history;
pub(crate) mod irc;
pub(crate) mod lookup;
pub(crate) mod poll;
pub(crate) mod register;
pub(crate) mod reject;
pub(crate) mod send;
pub(crate) mod trust;
pub(crate) mod unregister;
pub(crate) mod verify;
pub(crate) mod whoami;

/// A contact as the `--json` line of contacts, verify, trust and reject: the same four
/// fields everywhere (docs/CLIENT.md).
pub(crate) fn contact_json(contact: &e2ee_client_core::Contact) -> serde_json::Value {
    serde_json::json!({
        "peer": contact.email,
        "safety_number": contact.safety_number,
        "pending_safety_numbers": contact.pending_safety_numbers,
        "trust": contact.trust,
    })
}
