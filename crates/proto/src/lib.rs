//! Wire types of the e2ee relay's HTTP/JSON API, shared by the relay and its clients.
//!
//! Everything here is plain data plus the two byte strings that get signed:
//! [`request_signing_bytes`] (every authenticated request) and
//! [`signed_prekey_signing_bytes`] (the signed prekey). Binary values travel as
//! base64url without padding through the [`Base64Key`], [`Base64Signature`] (both a
//! [`Base64Array`]) and [`Base64Bytes`] newtypes, which reject bad encodings and wrong
//! lengths while deserializing. docs/API.md describes the routes these types belong
//! to; the modules follow its sections.

mod accounts;
mod base64;
mod email;
mod error_code;
mod group_directory;
mod limits;
mod messages;
mod prekeys;
mod session_auth;
mod signing;
mod utc;

pub use accounts::{
    AccountResponse, RegisterRequest, RegisterResponse, UnregisterResponse, Verification,
    VerifyRequest,
};
pub use base64::{Base64Array, Base64Bytes, Base64Key, Base64Signature, decode_b64, encode_b64};
pub use email::{EmailError, normalize_email};
pub use error_code::{ErrorBody, ErrorCode, RefusalReason, RefusedRecipient};
pub use group_directory::{
    DEFAULT_DIRECTORY_PAGE, DirectoryPage, GROUP_ID_BYTES, GroupIdB64, GroupListing,
    JOIN_LINK_SECRET_BYTES, JoinLinkError, LISTING_TTL_MS, MAX_DIRECTORY_PAGE, MAX_LISTING_MEMBERS,
    MAX_LISTING_TITLE_BYTES, MAX_LISTING_TOPIC_BYTES, MAX_LISTINGS_PER_ACCOUNT,
    PublishListingRequest, PublishListingResponse, UnpublishListingResponse, join_link_group_id,
};
pub use limits::{
    EPHEMERAL_TTL_MS, FANOUT_IDEMPOTENCY_WINDOW_MS, MAX_ACK_IDS, MAX_EMAIL_BYTES,
    MAX_ENVELOPE_BODY_BYTES, MAX_EPHEMERAL_PER_RECIPIENT, MAX_FANOUT_ID_BYTES,
    MAX_FANOUT_RECIPIENTS, MAX_MESSAGES_PER_REQUEST, MAX_ONE_TIME_PREKEYS_PER_REQUEST,
    MAX_POLL_LIMIT, MAX_POLL_TIMEOUT_MS, MAX_VERIFICATION_CODE_CHARS, SIGNATURE_WINDOW_MS,
};
pub use messages::{
    AckRequest, AckResponse, Envelope, FailedRecipient, MultiSendRequest, MultiSendResponse,
    OutgoingMessage, PollAckRequest, PollAckResponse, PollResponse, SendRequest, SendResponse,
};
pub use prekeys::{BundleResponse, OneTimePreKey, PreKeyCount, SignedPreKey, UploadPreKeysRequest};
pub use session_auth::{
    ClientHandshake, CloseSessionsResponse, HEADER_MAC, HEADER_SESSION, OpenSessionRequest,
    OpenSessionResponse, SESSION_ID_BYTES, SESSION_KEY_CONTEXT, SESSION_LIFETIME_MS,
    SESSION_MAC_BYTES, SessionError, SessionId, SessionKey, accept_session,
};
pub use signing::{
    HEADER_ACCOUNT, HEADER_SIGNATURE, HEADER_TIMESTAMP, REQUEST_SIGNING_CONTEXT,
    SIGNED_PREKEY_CONTEXT, request_signing_bytes, sign_request, signed_prekey_signing_bytes,
};
pub use utc::{UtcTime, unix_day};
