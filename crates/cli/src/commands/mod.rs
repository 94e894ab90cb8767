//! One module per subcommand: its arguments and what it prints.

pub(crate) mod add_contact;
pub(crate) mod contacts;
pub(crate) mod history;
pub(crate) mod poll;
pub(crate) mod register;
pub(crate) mod reject;
pub(crate) mod send;
pub(crate) mod trust;
pub(crate) mod unregister;
pub(crate) mod verify;
pub(crate) mod whoami;
