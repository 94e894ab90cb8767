//! Error types: one enum per layer. The CLI maps [`ClientError`] to exit codes through
//! [`ClientError::kind`].

use std::path::PathBuf;

use thiserror::Error;

/// The local store could not be opened, read or written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed (I/O, lock timeout, constraint, full disk). Not a `#[source]`: its
    /// text is already in this one, and a chain printer would repeat it.
    #[error("local store: {0}{hint}", hint = database_hint(.0))]
    Database(sqlx::Error),
    /// Applying the store's schema migrations failed.
    #[error("local store migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A file next to the store (key file, directory) could not be used.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The store key file is readable by others than its owner.
    #[error("{} is readable by other users (mode {mode:o})", path.display())]
    KeyFilePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The store is protected by a passphrase and none was given.
    #[error("this profile's store is protected by a passphrase")]
    PassphraseRequired,
    /// The passphrase does not unwrap the store key.
    #[error("wrong passphrase for this profile's store")]
    WrongPassphrase,
    /// An empty passphrase was given where it would protect the store key.
    #[error("the passphrase is empty; an empty passphrase would not protect the store")]
    EmptyPassphrase,
    /// A key file has an unknown format or length.
    #[error("{} is not a valid store key file: {reason}", path.display())]
    BadKeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An encrypted row does not authenticate under the store key: wrong key, a
    /// tampered row, or a row moved to another place.
    #[error("encrypted {what} in the local store does not authenticate (tampered or wrong key)")]
    Corrupt {
        /// Which secret.
        what: &'static str,
    },
    /// A stored value could not be decoded.
    #[error("stored {what} cannot be decoded: {reason}")]
    Decode {
        /// Which value.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// Deriving the passphrase key failed (bad parameters).
    #[error("passphrase key derivation failed: {0}")]
    Kdf(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error)
    }
}

/// What a SQLite failure the user can fix means, by its primary result code, and what
/// it does not mean: nothing is lost. Worded for any front end: "try again" is
/// whatever retrying means there.
fn database_hint(error: &sqlx::Error) -> &'static str {
    const SQLITE_READONLY: i32 = 8;
    const SQLITE_IOERR: i32 = 10;
    const SQLITE_FULL: i32 = 13;
    const SQLITE_CANTOPEN: i32 = 14;
    let code = match error {
        sqlx::Error::Database(db) => db.code().and_then(|code| code.parse::<i32>().ok()),
        _ => None,
    };
    match code.map(|code| code & 0xff) {
        Some(SQLITE_FULL) => {
            "; the disk holding the profile is full: free some space and try again \
             (nothing is lost: what was not stored stays on the relay or in the outbox)"
        }
        // Growing the shared-memory file of a full disk ends here, as SQLITE_IOERR_SHMSIZE.
        Some(SQLITE_IOERR) => {
            "; the disk holding the profile failed a write: check that it has free space and \
             works, then try again (nothing is lost: what was not stored stays on the relay \
             or in the outbox)"
        }
        Some(SQLITE_READONLY | SQLITE_CANTOPEN) => {
            "; the profile directory must exist and be writable by you (is its disk mounted \
             read-only?): fix that and try again (nothing is lost: what was not stored stays \
             on the relay or in the outbox)"
        }
        _ => "",
    }
}

/// Talking to the relay failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RelayError {
    /// The relay could not be reached (connection refused, DNS, TLS, timeout).
    #[error("cannot reach relay at {url}: {cause}")]
    Unreachable {
        /// The relay's base URL.
        url: String,
        /// The innermost cause, e.g. `connection refused`.
        cause: String,
    },
    /// The relay answered with an error status and body `{error, message}`.
    #[error("relay refused the request ({status} {code}): {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The relay's error code.
        code: e2ee_proto::ErrorCode,
        /// The relay's human text.
        message: String,
        /// On `unknown_recipient`: the recipients the relay refused, and why.
        refused: Vec<e2ee_proto::RefusedRecipient>,
    },
    /// The relay rate-limited us.
    #[error("the relay is rate limiting this account; retry in {retry_after_secs} s")]
    RateLimited {
        /// Seconds from `Retry-After` (0 when absent).
        retry_after_secs: u64,
    },
    /// The server at the URL answered, but not as an e2ee relay does: an error status
    /// without the API's JSON error body, or a success that is not JSON (a web server,
    /// a proxy's error page). Its body is not repeated: it is often a page of HTML.
    #[error(
        "the server at {url} answered HTTP {status}, but this is not an e2ee relay (its answer is not the relay API's); check the relay URL"
    )]
    NotARelay {
        /// The base URL.
        url: String,
        /// The HTTP status it answered.
        status: u16,
    },
    /// The relay's answer was not what the API promises.
    #[error("unexpected answer from the relay: {0}")]
    Protocol(String),
    /// The relay URL is plain `http://` to a host other than this machine, and
    /// insecure relays were not allowed.
    #[error(
        "refusing plain http to {url}: use https, or http only to this machine (127.0.0.1, [::1], localhost)"
    )]
    InsecureHttp {
        /// The URL as given.
        url: String,
    },
    /// The relay answered with a redirect, which is never followed: it would carry
    /// the signed request (and its unconsumed signature) to another origin.
    #[error(
        "the relay at {url} redirects ({status}) to {location:?}; redirects are not followed, so that they cannot carry a signed request elsewhere: use the URL it points to if you trust it"
    )]
    Redirect {
        /// The relay's base URL.
        url: String,
        /// The 3xx status.
        status: u16,
        /// The `Location` header, cut to a few hundred characters.
        location: String,
    },
    /// The relay URL is not usable.
    #[error("invalid relay URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// Why.
        reason: String,
    },
}

/// What a [`ClientError`] means for the user, and so for the CLI's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The user asked for something impossible (exit 1).
    User,
    /// A bug or local fault (exit 2).
    Internal,
    /// The relay is unreachable (exit 3).
    Network,
    /// The peer's identity key changed and is not trusted yet (exit 4).
    Untrusted,
    /// The relay rate-limited us (exit 5).
    RateLimited,
}

/// Everything [`crate::Client`] can fail with.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The relay failed or refused, in a way not covered by a more specific variant.
    #[error(transparent)]
    Relay(#[from] RelayError),
    /// The profile has no account yet.
    #[error("this profile has no account yet")]
    NotRegistered,
    /// The profile's account was deleted from its relay ([`crate::Client::unregister`]);
    /// its history is kept, but it can no longer send or receive.
    #[error(
        "this profile's account {email} was deleted from its relay (unregistered); its local \
         history is kept, but it can no longer send or receive"
    )]
    Unregistered {
        /// The deleted account's email.
        email: String,
    },
    /// `register` on a profile that already has an account.
    #[error("this profile is already registered as {email}")]
    AlreadyRegisteredLocally {
        /// The profile's account.
        email: String,
    },
    /// The relay mailed a verification code to the address: the profile keeps its new
    /// identity, and the account is active once the code is confirmed
    /// ([`crate::Client::register_with_code`]).
    #[error(
        "a verification code was mailed to {email}; the account is active once it is confirmed"
    )]
    VerificationPending {
        /// The address the code went to.
        email: String,
    },
    /// The relay already has an account with this email.
    #[error("{email} is already registered on this relay")]
    EmailTaken {
        /// The email.
        email: String,
    },
    /// The peer has no account on the relay.
    #[error("{email} is not registered on this relay")]
    UnknownAccount {
        /// The email.
        email: String,
    },
    /// No relay URL was given at registration.
    #[error("no relay given")]
    NoRelay,
    /// An email address is malformed.
    #[error("invalid email {email:?}: {reason}")]
    InvalidEmail {
        /// The address as given.
        email: String,
        /// Why it is refused.
        reason: String,
    },
    /// The peer is not a contact.
    #[error("{email} is not a contact")]
    UnknownContact {
        /// The email.
        email: String,
    },
    /// Sending to oneself is not supported.
    #[error("cannot send to yourself ({email})")]
    SelfMessage {
        /// The profile's own email.
        email: String,
    },
    /// The contact's identity key changed since it was pinned.
    #[error("{email}'s identity key changed")]
    IdentityChanged {
        /// The contact.
        email: String,
    },
    /// A safety number given to [`crate::Client::trust`] is not the number of any key
    /// of the contact: the pinned key, or one awaiting a decision. The key may have
    /// changed again since the number was shown; nothing was trusted.
    #[error(
        "the safety number given is not that of any identity key of {email} (it may have changed since it was shown); nothing was trusted"
    )]
    SafetyNumberMismatch {
        /// The contact.
        email: String,
    },
    /// A safety number is not 60 digits.
    #[error("invalid safety number: {reason}")]
    InvalidSafetyNumber {
        /// Why.
        reason: String,
    },
    /// [`crate::Client::reject`] on a contact with no key awaiting a decision.
    #[error("{email} has no new identity key awaiting a decision")]
    NoPendingIdentity {
        /// The contact.
        email: String,
    },
    /// The message is too long to fit one envelope.
    #[error("message is {len} bytes; the limit is {max}")]
    MessageTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The relay handed out a bundle that does not verify.
    #[error("the relay's prekey bundle for {email} is invalid: {reason}")]
    BadBundle {
        /// Whose bundle.
        email: String,
        /// Why.
        reason: String,
    },
    /// The ratchet refused to encrypt.
    #[error("encrypting for {email}: {source}")]
    Encrypt {
        /// The recipient.
        email: String,
        /// The ratchet's reason.
        #[source]
        source: e2ee_ratchet::EncryptError,
    },
    /// The message was encrypted and saved in the outbox, but posting it failed. It is
    /// not lost: the next send, poll or flush posts it, with the same ciphertext.
    #[error(
        "message to {to} not delivered yet, saved in the outbox (the next send or poll retries it)"
    )]
    Queued {
        /// The recipient.
        to: String,
        /// The message id, as in [`crate::SentMessage::id`].
        id: String,
        /// Why posting failed.
        #[source]
        source: Box<ClientError>,
    },
    /// The relay refused the recipient (no account, banned): the message was not sent,
    /// left the outbox and is marked failed in the history.
    #[error("{to} cannot receive messages on this relay ({reason}); the message was not sent")]
    Refused {
        /// The recipient.
        to: String,
        /// The message id, as in [`crate::SentMessage::id`].
        id: String,
        /// Why the relay refused it.
        reason: crate::FailureReason,
    },
    /// An event consumer's name is not one the store can keep
    /// ([`crate::Client::events`]).
    #[error("invalid consumer name {name:?}: {reason}")]
    InvalidConsumer {
        /// The name as given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A group operation was refused (see [`crate::GroupError`]); nothing changed.
    #[error(transparent)]
    Group(#[from] crate::GroupError),
    /// Stored state is inconsistent (e.g. a session without its contact).
    #[error("local store is inconsistent: {0}")]
    Inconsistent(String),
}

impl ClientError {
    /// How the error should be reported: its exit code class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Relay(RelayError::Unreachable { .. }) => ErrorKind::Network,
            Self::Relay(RelayError::RateLimited { .. }) => ErrorKind::RateLimited,
            Self::Relay(
                RelayError::BadUrl { .. }
                | RelayError::InsecureHttp { .. }
                | RelayError::Redirect { .. },
            ) => ErrorKind::User,
            Self::Relay(RelayError::NotARelay { .. }) => ErrorKind::Network,
            Self::Relay(RelayError::Status { status, .. }) if *status < 500 => ErrorKind::User,
            Self::Relay(_) => ErrorKind::Network,
            Self::IdentityChanged { .. } | Self::SafetyNumberMismatch { .. } => {
                ErrorKind::Untrusted
            }
            Self::Queued { source, .. } => source.kind(),
            Self::Store(
                StoreError::PassphraseRequired
                | StoreError::WrongPassphrase
                | StoreError::EmptyPassphrase
                | StoreError::KeyFilePermissions { .. },
            ) => ErrorKind::User,
            Self::Store(_)
            | Self::Inconsistent(_)
            | Self::Encrypt { .. }
            | Self::BadBundle { .. } => ErrorKind::Internal,
            Self::NotRegistered
            | Self::Unregistered { .. }
            | Self::AlreadyRegisteredLocally { .. }
            | Self::EmailTaken { .. }
            | Self::VerificationPending { .. }
            | Self::UnknownAccount { .. }
            | Self::NoRelay
            | Self::InvalidEmail { .. }
            | Self::UnknownContact { .. }
            | Self::SelfMessage { .. }
            | Self::InvalidSafetyNumber { .. }
            | Self::NoPendingIdentity { .. }
            | Self::MessageTooLong { .. }
            | Self::InvalidConsumer { .. }
            | Self::Group(_)
            | Self::Refused { .. } => ErrorKind::User,
        }
    }
}

impl From<sqlx::Error> for ClientError {
    fn from(error: sqlx::Error) -> Self {
        Self::Store(StoreError::Database(error))
    }
}

#[cfg(test)]
mod tests {
    use super::{ClientError, RelayError, StoreError};
    use crate::FailureReason;

    /// One value of every variant, nested ones included. The match in [`variant_name`]
    /// has no `_` arm, so a new variant does not compile until it is added here.
    fn every_error() -> Vec<ClientError> {
        let email = || "bob@y".to_owned();
        let url = || "http://relay.example".to_owned();
        let path = || std::path::PathBuf::from("/home/u/.e2ee/default/store.key");
        let stores = vec![
            StoreError::Database(sqlx::Error::PoolTimedOut),
            StoreError::Migration(sqlx::migrate::MigrateError::VersionMissing(3)),
            StoreError::Io {
                path: path(),
                source: std::io::Error::other("denied"),
            },
            StoreError::KeyFilePermissions {
                path: path(),
                mode: 0o644,
            },
            StoreError::PassphraseRequired,
            StoreError::WrongPassphrase,
            StoreError::EmptyPassphrase,
            StoreError::BadKeyFile {
                path: path(),
                reason: "too short",
            },
            StoreError::Corrupt { what: "session" },
            StoreError::Decode {
                what: "contact",
                reason: "bad".to_owned(),
            },
            StoreError::Kdf("bad parameters".to_owned()),
        ];
        let relays = vec![
            RelayError::Unreachable {
                url: url(),
                cause: "connection refused".to_owned(),
            },
            RelayError::Status {
                status: 400,
                code: e2ee_proto::ErrorCode::BadEmail,
                message: "relay text".to_owned(),
                refused: Vec::new(),
            },
            RelayError::RateLimited {
                retry_after_secs: 3,
            },
            RelayError::NotARelay {
                url: url(),
                status: 501,
            },
            RelayError::Protocol("not JSON".to_owned()),
            RelayError::InsecureHttp { url: url() },
            RelayError::Redirect {
                url: url(),
                status: 301,
                location: "https://elsewhere".to_owned(),
            },
            RelayError::BadUrl {
                url: url(),
                reason: "no host".to_owned(),
            },
        ];
        let mut errors: Vec<ClientError> = stores.into_iter().map(ClientError::Store).collect();
        errors.extend(relays.into_iter().map(ClientError::Relay));
        errors.extend([
            ClientError::NotRegistered,
            ClientError::Unregistered { email: email() },
            ClientError::AlreadyRegisteredLocally { email: email() },
            ClientError::VerificationPending { email: email() },
            ClientError::EmailTaken { email: email() },
            ClientError::UnknownAccount { email: email() },
            ClientError::NoRelay,
            ClientError::InvalidEmail {
                email: "bob".to_owned(),
                reason: "no @".to_owned(),
            },
            ClientError::UnknownContact { email: email() },
            ClientError::SelfMessage { email: email() },
            ClientError::IdentityChanged { email: email() },
            ClientError::SafetyNumberMismatch { email: email() },
            ClientError::InvalidSafetyNumber {
                reason: "59 digits".to_owned(),
            },
            ClientError::NoPendingIdentity { email: email() },
            ClientError::MessageTooLong {
                len: 70_000,
                max: 60_000,
            },
            ClientError::BadBundle {
                email: email(),
                reason: "bad signature".to_owned(),
            },
            ClientError::Encrypt {
                email: email(),
                source: e2ee_ratchet::EncryptError::NoSession,
            },
            ClientError::Queued {
                to: email(),
                id: "id".to_owned(),
                source: Box::new(ClientError::NoRelay),
            },
            ClientError::Refused {
                to: email(),
                id: "id".to_owned(),
                reason: FailureReason::NoAccount,
            },
            ClientError::InvalidConsumer {
                name: "a b".to_owned(),
                reason: "a space",
            },
            ClientError::Group(crate::GroupError::UnknownGroup {
                name: "#team".to_owned(),
            }),
            ClientError::Inconsistent("a session without its contact".to_owned()),
        ]);
        errors
    }

    fn variant_name(error: &ClientError) -> &'static str {
        match error {
            ClientError::Store(store) => match store {
                StoreError::Database(_) => "Database",
                StoreError::Migration(_) => "Migration",
                StoreError::Io { .. } => "Io",
                StoreError::KeyFilePermissions { .. } => "KeyFilePermissions",
                StoreError::PassphraseRequired => "PassphraseRequired",
                StoreError::WrongPassphrase => "WrongPassphrase",
                StoreError::EmptyPassphrase => "EmptyPassphrase",
                StoreError::BadKeyFile { .. } => "BadKeyFile",
                StoreError::Corrupt { .. } => "Corrupt",
                StoreError::Decode { .. } => "Decode",
                StoreError::Kdf(_) => "Kdf",
            },
            ClientError::Relay(relay) => match relay {
                RelayError::Unreachable { .. } => "Unreachable",
                RelayError::Status { .. } => "Status",
                RelayError::RateLimited { .. } => "RateLimited",
                RelayError::NotARelay { .. } => "NotARelay",
                RelayError::Protocol(_) => "Protocol",
                RelayError::InsecureHttp { .. } => "InsecureHttp",
                RelayError::Redirect { .. } => "Redirect",
                RelayError::BadUrl { .. } => "BadUrl",
            },
            ClientError::NotRegistered => "NotRegistered",
            ClientError::Unregistered { .. } => "Unregistered",
            ClientError::AlreadyRegisteredLocally { .. } => "AlreadyRegisteredLocally",
            ClientError::VerificationPending { .. } => "VerificationPending",
            ClientError::EmailTaken { .. } => "EmailTaken",
            ClientError::UnknownAccount { .. } => "UnknownAccount",
            ClientError::NoRelay => "NoRelay",
            ClientError::InvalidEmail { .. } => "InvalidEmail",
            ClientError::UnknownContact { .. } => "UnknownContact",
            ClientError::SelfMessage { .. } => "SelfMessage",
            ClientError::IdentityChanged { .. } => "IdentityChanged",
            ClientError::SafetyNumberMismatch { .. } => "SafetyNumberMismatch",
            ClientError::InvalidSafetyNumber { .. } => "InvalidSafetyNumber",
            ClientError::NoPendingIdentity { .. } => "NoPendingIdentity",
            ClientError::MessageTooLong { .. } => "MessageTooLong",
            ClientError::BadBundle { .. } => "BadBundle",
            ClientError::Encrypt { .. } => "Encrypt",
            ClientError::Queued { .. } => "Queued",
            ClientError::Refused { .. } => "Refused",
            ClientError::InvalidConsumer { .. } => "InvalidConsumer",
            ClientError::Group(_) => "Group",
            ClientError::Inconsistent(_) => "Inconsistent",
        }
    }

    /// Library messages say what happened; the commands to run about it are the
    /// front end's to add (the CLI's hints.rs appends `e2ee ...` hints), since an app
    /// embedding this library has no `e2ee` command nor `--profile` flag. "e2ee relay"
    /// names the protocol's server, not a command, so it is the one use of the word
    /// allowed.
    #[test]
    fn issue12_library_messages_name_no_cli_command_or_flag() {
        let errors = every_error();
        let names: std::collections::BTreeSet<_> = errors.iter().map(variant_name).collect();
        assert_eq!(names.len(), errors.len(), "one sample per variant");
        for error in &errors {
            let text = error.to_string();
            let name = variant_name(error);
            assert!(!text.is_empty(), "{name}");
            let without_product = text.replace("e2ee relay", "relay");
            assert!(!without_product.contains("e2ee "), "{name}: {text}");
            assert!(!text.contains("--"), "{name}: {text}");
            assert!(!text.contains("E2EE_"), "{name}: {text}");
        }
    }
}
