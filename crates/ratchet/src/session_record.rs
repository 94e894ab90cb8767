//! Everything one party keeps about one peer: the current session and a few archived
//! ones, so that simultaneous initiation converges.

use std::collections::VecDeque;

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::{
    DecodeError, DecryptError, EncryptError, EncryptedMessage, IdentityKey, IdentityKeyPair,
    Message, OneTimePreKeyPair, PreKeyBundle, PreKeyMessage, SignedPreKeyPair, X3dhError,
    codec::{Reader, Writer, reserve_wiping},
    session::{PendingPreKey, Session, SessionParties},
    x3dh,
};

/// Archived sessions kept per peer (libsignal keeps 40 too).
pub const MAX_ARCHIVED_SESSIONS: usize = 40;

/// Version byte of the stored session record format written now.
const RECORD_FORMAT_VERSION: u8 = 3;
/// Version bytes of the formats [`SessionRecord::from_bytes`] reads.
const READABLE_RECORD_FORMATS: [u8; 3] = [1, 2, RECORD_FORMAT_VERSION];

/// A stored record format this build reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordFormat {
    /// Format 1: skipped keys carry no time, and closed receiving chains that hold
    /// skipped keys were kept beyond the cap (they are dropped on reading).
    V1,
    /// Format 2: every skipped key carries the time it was skipped, and a session holds
    /// at most [`crate::MAX_RECEIVER_CHAINS`] receiving chains.
    V2,
    /// Format 3: as format 2, but a session's ratchet key pair is optional (absent
    /// between a DH step and the next send, whose sending half makes a new one).
    V3,
}

/// The result of decrypting a prekey message.
#[derive(Debug)]
pub struct PreKeyDecryption {
    /// The message text.
    pub plaintext: Vec<u8>,
    /// The one-time prekey this message used up: delete it in the same transaction that
    /// stores the record. `None` when no one-time prekey was used, or when the message
    /// went to a session that already existed.
    pub consumed_one_time_prekey: Option<u32>,
    /// Whether this message created a new session.
    pub created_session: bool,
}

/// The responder's keys and addresses, as the caller of `decrypt_prekey` passes them.
#[derive(Clone, Copy)]
struct ResponderKeys<'a> {
    local_identity: &'a IdentityKeyPair,
    local_email: &'a str,
    remote_email: &'a str,
    signed_prekey: Option<&'a SignedPreKeyPair>,
}

/// All sessions with one peer. Serialize it with [`SessionRecord::to_bytes`] after every
/// successful encrypt or decrypt.
#[derive(Clone, Default)]
pub struct SessionRecord {
    current: Option<Session>,
    /// Newest first.
    archived: VecDeque<Session>,
}

impl SessionRecord {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether there is a session to encrypt with.
    pub fn has_session(&self) -> bool {
        self.current.as_ref().is_some_and(Session::can_send)
    }

    /// The peer's identity key in the current session.
    pub fn remote_identity(&self) -> Option<IdentityKey> {
        self.current.as_ref().map(|s| s.remote_identity)
    }

    /// Whether messages are still sent as prekey messages (no reply received yet).
    pub fn awaiting_reply(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|s| s.pending_prekey.is_some())
    }

    /// How many archived sessions are kept.
    pub fn archived_sessions(&self) -> usize {
        self.archived.len()
    }

    /// Skipped message keys held by the current session.
    pub fn skipped_message_keys(&self) -> usize {
        self.current.as_ref().map_or(0, Session::skipped_key_count)
    }

    fn install(&mut self, session: Session) {
        if let Some(previous) = self.current.replace(session) {
            reserve_wiping(&mut self.archived, 1);
            self.archived.push_front(previous);
            self.archived.truncate(MAX_ARCHIVED_SESSIONS);
        }
    }

    /// Runs X3DH as the initiator against `bundle` and makes the result the current
    /// session; the previous one is archived. Messages are prekey messages until the
    /// peer replies.
    pub fn initiate<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        local_identity: &IdentityKeyPair,
        local_email: &str,
        remote_email: &str,
        bundle: &PreKeyBundle,
    ) -> Result<(), X3dhError> {
        let associated_data = x3dh::associated_data(
            local_email,
            &local_identity.public_key(),
            remote_email,
            &bundle.identity_key,
        )?;
        let initiation = x3dh::initiate(rng, local_identity, bundle)?;
        let session = Session::new_initiator(
            rng,
            initiation.secrets,
            SessionParties {
                local_identity: local_identity.public_key(),
                remote_identity: bundle.identity_key,
                associated_data,
                base_key: initiation.base_key,
            },
            &initiation.signed_prekey,
            PendingPreKey {
                signed_prekey_id: bundle.signed_prekey_id,
                one_time_prekey_id: bundle.one_time_prekey.map(|(id, _)| id),
            },
        )
        .map_err(|_| X3dhError::NonContributory {
            which: "signed prekey",
        })?;
        self.install(session);
        Ok(())
    }

    /// Encrypts with the current session: a prekey message until the peer has replied,
    /// a normal message after.
    pub fn encrypt<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        plaintext: &[u8],
    ) -> Result<EncryptedMessage, EncryptError> {
        let session = self.current.as_mut().ok_or(EncryptError::NoSession)?;
        let message = session.encrypt(rng, plaintext)?;
        Ok(match session.pending_prekey {
            Some(pending) => EncryptedMessage::PreKey(Box::new(PreKeyMessage {
                identity_key: session.local_identity,
                base_key: session.base_key,
                signed_prekey_id: pending.signed_prekey_id,
                one_time_prekey_id: pending.one_time_prekey_id,
                message,
            })),
            None => EncryptedMessage::Normal(message),
        })
    }

    /// Decrypts a normal message with the current session or, failing that, an archived
    /// session **with the same remote identity**, which then becomes current. On error
    /// nothing changes.
    ///
    /// Archived sessions with another remote identity (left from before the peer's key
    /// changed) are never tried, so a state held under an old or substituted key cannot
    /// speak for the current one: [`Self::remote_identity`] is the same before and after a
    /// successful call, and it is the identity of the session that decrypted the message.
    /// The caller still compares it with the identity it trusts for this peer.
    ///
    /// This call has no clock: skipped keys never expire through it, and the keys it skips
    /// are stored with an unknown time, which the next call with a clock starts counting
    /// from. Callers that know the time use [`Self::decrypt_at`].
    ///
    /// No decrypt draws from `_rng` any more: a DH step's sending half, with its new
    /// ratchet key, runs at the next [`Self::encrypt`]. The parameter stays so that the
    /// receive path may need randomness again without an API break (libsignal's
    /// `message_decrypt` takes one too).
    pub fn decrypt<R: CryptoRng + ?Sized>(
        &mut self,
        _rng: &mut R,
        message: &Message,
    ) -> Result<Vec<u8>, DecryptError> {
        self.decrypt_with_clock(message, None)
    }

    /// [`Self::decrypt`] at `now_ms`, the current unix time in milliseconds. The keys this
    /// message skips are stored with that time; a skipped key older than
    /// [`crate::MAX_SKIPPED_KEY_AGE_MS`] no longer opens its message (the error is
    /// [`DecryptError::Duplicate`], as for an evicted key); and when the message decrypts,
    /// every expired key in the record is deleted, as by [`Self::expire_skipped_keys`].
    /// On error nothing changes, expired keys included.
    pub fn decrypt_at<R: CryptoRng + ?Sized>(
        &mut self,
        _rng: &mut R,
        message: &Message,
        now_ms: u64,
    ) -> Result<Vec<u8>, DecryptError> {
        self.decrypt_with_clock(message, Some(now_ms))
    }

    /// Deletes every skipped message key of every session in the record that is older than
    /// [`crate::MAX_SKIPPED_KEY_AGE_MS`] at `now_ms` (unix ms), and starts the clock of keys
    /// whose time is unknown (skipped without a clock, or read from format 1) at `now_ms`.
    /// Returns how many keys were deleted. Store the record afterwards.
    pub fn expire_skipped_keys(&mut self, now_ms: u64) -> usize {
        self.current
            .iter_mut()
            .chain(self.archived.iter_mut())
            .map(|session| session.expire_skipped_keys(now_ms))
            .sum()
    }

    fn decrypt_with_clock(
        &mut self,
        message: &Message,
        now: Option<u64>,
    ) -> Result<Vec<u8>, DecryptError> {
        let Some(current) = self.current.as_mut() else {
            return Err(DecryptError::NoSession);
        };
        let identity = current.remote_identity;
        let plaintext = match current.decrypt(message, now) {
            Ok(plaintext) => plaintext,
            // The current session recognised the header: its answer stands.
            Err(DecryptError::UnknownHeaderKey) => {
                self.decrypt_in_archived(message, &identity, now)?
            }
            Err(error) => return Err(error),
        };
        if let Some(now) = now {
            self.expire_skipped_keys(now);
        }
        Ok(plaintext)
    }

    /// Tries the archived sessions with `identity` as their peer, newest first; the one
    /// that decrypts becomes current.
    fn decrypt_in_archived(
        &mut self,
        message: &Message,
        identity: &IdentityKey,
        now: Option<u64>,
    ) -> Result<Vec<u8>, DecryptError> {
        for index in 0..self.archived.len() {
            let Some(session) = self.archived.get_mut(index) else {
                break;
            };
            // Constant-time comparison (IdentityKey's PartialEq).
            if session.remote_identity != *identity {
                continue;
            }
            match session.decrypt(message, now) {
                Ok(plaintext) => {
                    self.promote(index);
                    return Ok(plaintext);
                }
                Err(DecryptError::UnknownHeaderKey) => {}
                Err(error) => return Err(error),
            }
        }
        Err(DecryptError::UnknownHeaderKey)
    }

    fn promote(&mut self, archived_index: usize) {
        if let Some(session) = self.archived.remove(archived_index) {
            self.install(session);
        }
    }

    /// Decrypts a prekey message. If a session from the same X3DH run exists, the message
    /// goes to it; otherwise X3DH runs as the responder with the keys the message names,
    /// which the caller loads by [`PreKeyMessage::signed_prekey_id`] and
    /// [`PreKeyMessage::one_time_prekey_id`] (`None` when it has no such key). The new
    /// session becomes current only if the message authenticates.
    ///
    /// Checking the sender's identity key against the pinned one is the caller's job:
    /// see [`PreKeyMessage::identity_key`]. After success, [`Self::remote_identity`] is
    /// that key (the session that decrypted is current).
    ///
    /// Like [`Self::decrypt`], this has no clock; [`Self::decrypt_prekey_at`] has.
    #[allow(clippy::too_many_arguments)]
    pub fn decrypt_prekey<R: CryptoRng + ?Sized>(
        &mut self,
        _rng: &mut R,
        local_identity: &IdentityKeyPair,
        local_email: &str,
        remote_email: &str,
        message: &PreKeyMessage,
        signed_prekey: Option<&SignedPreKeyPair>,
        one_time_prekey: Option<OneTimePreKeyPair>,
    ) -> Result<PreKeyDecryption, DecryptError> {
        let keys = ResponderKeys {
            local_identity,
            local_email,
            remote_email,
            signed_prekey,
        };
        self.decrypt_prekey_with_clock(&keys, message, one_time_prekey, None)
    }

    /// [`Self::decrypt_prekey`] at `now_ms` (unix ms), with the expiry rules of
    /// [`Self::decrypt_at`].
    #[allow(clippy::too_many_arguments)]
    pub fn decrypt_prekey_at<R: CryptoRng + ?Sized>(
        &mut self,
        _rng: &mut R,
        local_identity: &IdentityKeyPair,
        local_email: &str,
        remote_email: &str,
        message: &PreKeyMessage,
        signed_prekey: Option<&SignedPreKeyPair>,
        one_time_prekey: Option<OneTimePreKeyPair>,
        now_ms: u64,
    ) -> Result<PreKeyDecryption, DecryptError> {
        let keys = ResponderKeys {
            local_identity,
            local_email,
            remote_email,
            signed_prekey,
        };
        let decrypted =
            self.decrypt_prekey_with_clock(&keys, message, one_time_prekey, Some(now_ms))?;
        self.expire_skipped_keys(now_ms);
        Ok(decrypted)
    }

    fn decrypt_prekey_with_clock(
        &mut self,
        keys: &ResponderKeys<'_>,
        message: &PreKeyMessage,
        one_time_prekey: Option<OneTimePreKeyPair>,
        now: Option<u64>,
    ) -> Result<PreKeyDecryption, DecryptError> {
        let ResponderKeys {
            local_identity,
            local_email,
            remote_email,
            signed_prekey,
        } = *keys;
        if let Some(plaintext) = self.decrypt_in_existing(message, now)? {
            return Ok(PreKeyDecryption {
                plaintext,
                consumed_one_time_prekey: None,
                created_session: false,
            });
        }

        let signed_prekey = signed_prekey.ok_or(X3dhError::MissingSignedPreKey {
            id: message.signed_prekey_id,
        })?;
        if signed_prekey.id() != message.signed_prekey_id {
            return Err(X3dhError::SignedPreKeyMismatch {
                expected: message.signed_prekey_id,
                provided: signed_prekey.id(),
            }
            .into());
        }
        let provided = one_time_prekey.as_ref().map(OneTimePreKeyPair::id);
        match (message.one_time_prekey_id, provided) {
            (Some(id), None) => return Err(X3dhError::MissingOneTimePreKey { id }.into()),
            (expected, provided) if expected != provided => {
                return Err(X3dhError::OneTimePreKeyMismatch { expected, provided }.into());
            }
            _ => {}
        }

        let associated_data = x3dh::associated_data(
            remote_email,
            &message.identity_key,
            local_email,
            &local_identity.public_key(),
        )?;
        let secrets = x3dh::respond(
            local_identity,
            signed_prekey,
            one_time_prekey.as_ref(),
            &message.identity_key,
            &message.base_key,
        )?;
        let mut session = Session::new_responder(
            secrets,
            SessionParties {
                local_identity: local_identity.public_key(),
                remote_identity: message.identity_key,
                associated_data,
                base_key: message.base_key,
            },
            signed_prekey.key_pair().clone(),
        );
        let plaintext = session.decrypt(&message.message, now)?;
        self.install(session);
        Ok(PreKeyDecryption {
            plaintext,
            consumed_one_time_prekey: one_time_prekey.map(|key| key.id()),
            created_session: true,
        })
    }

    /// A repeated prekey message (same EK_A and identity) goes to the session it created.
    fn decrypt_in_existing(
        &mut self,
        message: &PreKeyMessage,
        now: Option<u64>,
    ) -> Result<Option<Vec<u8>>, DecryptError> {
        let same_run = |s: &Session| {
            s.has_base_key(&message.base_key) && s.remote_identity == message.identity_key
        };
        if let Some(current) = self.current.as_mut().filter(|s| same_run(s)) {
            return current.decrypt(&message.message, now).map(Some);
        }
        let Some(index) = self.archived.iter().position(same_run) else {
            return Ok(None);
        };
        let plaintext = match self.archived.get_mut(index) {
            Some(session) => session.decrypt(&message.message, now)?,
            None => return Ok(None),
        };
        self.promote(index);
        Ok(Some(plaintext))
    }

    /// Versioned encoding of the whole record, secrets included: store it encrypted.
    ///
    /// The buffer is allocated once, at its exact final size, so no copy of the secrets is
    /// left behind in memory freed by growing it.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::with_capacity(self.encoded_len());
        w.u8(RECORD_FORMAT_VERSION);
        match &self.current {
            Some(session) => {
                w.bool(true);
                session.write(&mut w);
            }
            None => w.bool(false),
        }
        w.u32(self.archived.len() as u32);
        for session in &self.archived {
            session.write(&mut w);
        }
        w.finish()
    }

    /// Exactly the length of [`Self::to_bytes`]: version, has-current flag, current
    /// session, archived count, archived sessions.
    fn encoded_len(&self) -> usize {
        1 + 1
            + self.current.as_ref().map_or(0, Session::encoded_len)
            + 4
            + self
                .archived
                .iter()
                .map(Session::encoded_len)
                .sum::<usize>()
    }

    /// Decodes [`Self::to_bytes`], of this format or format 1 (which it upgrades: the
    /// skipped keys' time is unknown, and closed chains beyond the cap are dropped with
    /// their keys). Any malformed input is an error, never a panic.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, "session record");
        let format = match r.version_in(&READABLE_RECORD_FORMATS, RECORD_FORMAT_VERSION)? {
            1 => RecordFormat::V1,
            2 => RecordFormat::V2,
            _ => RecordFormat::V3,
        };
        let current = if r.bool()? {
            Some(Session::read(&mut r, format)?)
        } else {
            None
        };
        let count = r.count(MAX_ARCHIVED_SESSIONS)?;
        let mut archived = VecDeque::with_capacity(count);
        for _ in 0..count {
            archived.push_back(Session::read(&mut r, format)?);
        }
        r.finish()?;
        Ok(Self { current, archived })
    }
}

impl std::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRecord")
            .field("current", &self.current)
            .field("archived", &self.archived.len())
            .finish()
    }
}
