//! Join links and the join requests made with them.
//!
//! An admin puts a random link secret into the group state ([`crate::Action::SetJoinLink`]),
//! so every member can check requests the same way, and hands out the link
//! `e2ee:join?g=<group id>&k=<secret>` (base64url, no padding). Whoever has it sends a
//! [`JoinRequest`], signed by its identity key and carrying an HMAC under the secret over
//! its address and key: the request proves both that the requester holds the link and
//! that the key is its own, and cannot be replayed for someone else.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use e2ee_ratchet::{IdentityKey, IdentityKeyPair, SIGNATURE_LEN};
use hmac::{Hmac, KeyInit, Mac};
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::codec::{Reader, Writer, check_email, check_text};
use crate::{
    ChangeError, DecodeError, FORMAT_VERSION, GROUP_ID_LEN, GroupId, HASH_LEN, JoinLinkError,
    MAX_NOTE_LEN,
};

/// Bytes of a join link secret.
pub const LINK_SECRET_LEN: usize = 32;
/// What every join link's text starts with.
pub const JOIN_LINK_PREFIX: &str = "e2ee:join?";

const PROOF_LABEL: &[u8] = b"e2ee-v1/group-join";
const REQUEST_SIGN_LABEL: &[u8] = b"e2ee-v1/group-join-request";
const LINK_ID_LABEL: &[u8] = b"e2ee-v1/group-link-id";

/// A join link's secret. Wiped on drop, compared in constant time, never printed.
#[derive(Clone)]
pub struct LinkSecret(Zeroizing<[u8; LINK_SECRET_LEN]>);

impl LinkSecret {
    /// A fresh random secret.
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut secret = Zeroizing::new([0u8; LINK_SECRET_LEN]);
        rng.fill_bytes(secret.as_mut());
        Self(secret)
    }

    /// A secret from its bytes.
    pub fn from_bytes(bytes: [u8; LINK_SECRET_LEN]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The secret's bytes.
    pub fn as_bytes(&self) -> &[u8; LINK_SECRET_LEN] {
        &self.0
    }

    /// A one-way digest of the secret, which the state's canonical encoding carries in
    /// its place: the state hash travels in messages and must not reveal the secret.
    pub(crate) fn digest(&self) -> [u8; HASH_LEN] {
        let mut h = Sha256::new();
        h.update(LINK_ID_LABEL);
        h.update(self.0.as_ref());
        h.finalize().into()
    }

    /// HMAC-SHA256 accepts keys of any length, so this is always `Some`; callers still
    /// fail closed on `None` rather than fall back to a fixed value.
    fn proof(&self, group_id: &GroupId, email: &str, key: &IdentityKey) -> Option<[u8; HASH_LEN]> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.0.as_ref()).ok()?;
        mac.update(PROOF_LABEL);
        mac.update(&group_id.0);
        mac.update(&[u8::try_from(email.len()).unwrap_or(u8::MAX)]);
        mac.update(email.as_bytes());
        mac.update(key.as_bytes());
        Some(mac.finalize().into_bytes().into())
    }
}

impl PartialEq for LinkSecret {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_ref().ct_eq(other.0.as_ref()).into()
    }
}

impl Eq for LinkSecret {}

impl std::fmt::Debug for LinkSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSecret(..)")
    }
}

/// A join link: the group and the secret that lets its holder ask to join.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinLink {
    /// The group it opens.
    pub group_id: GroupId,
    /// The secret the group state holds.
    pub secret: LinkSecret,
}

impl std::fmt::Debug for JoinLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinLink")
            .field("group_id", &self.group_id)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Display for JoinLink {
    /// The link's text. It holds the secret: show it only to whoever should be able to join.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{JOIN_LINK_PREFIX}g={}&k={}",
            URL_SAFE_NO_PAD.encode(self.group_id.0),
            URL_SAFE_NO_PAD.encode(self.secret.as_bytes())
        )
    }
}

impl std::str::FromStr for JoinLink {
    type Err = JoinLinkError;

    /// Parses exactly `e2ee:join?g=<22 chars>&k=<43 chars>`; anything else is refused, so
    /// a link has one text form.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let query = text
            .strip_prefix(JOIN_LINK_PREFIX)
            .ok_or(JoinLinkError::NotAJoinLink)?;
        let (g, k) = query.split_once('&').ok_or(JoinLinkError::Malformed)?;
        let g = g.strip_prefix("g=").ok_or(JoinLinkError::Malformed)?;
        let k = k.strip_prefix("k=").ok_or(JoinLinkError::Malformed)?;
        let group_id: [u8; GROUP_ID_LEN] = URL_SAFE_NO_PAD
            .decode(g)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(JoinLinkError::BadGroupId)?;
        let secret = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(k)
                .map_err(|_| JoinLinkError::BadSecret)?,
        );
        let secret: [u8; LINK_SECRET_LEN] = secret
            .as_slice()
            .try_into()
            .map_err(|_| JoinLinkError::BadSecret)?;
        Ok(Self {
            group_id: GroupId(group_id),
            secret: LinkSecret::from_bytes(secret),
        })
    }
}

/// A request to join, made with a join link and signed by the requester.
///
/// The requester sends it pairwise to the group's admins; a member records it in a
/// change ([`crate::Action::Join`]), and the group's policy decides: admitted at once
/// (`Open`) or pending until an admin accepts or rejects it (`Request`).
#[derive(Clone, PartialEq, Eq)]
pub struct JoinRequest {
    group_id: GroupId,
    identity_key: IdentityKey,
    email: String,
    note: String,
    proof: [u8; HASH_LEN],
    signature: [u8; SIGNATURE_LEN],
}

impl std::fmt::Debug for JoinRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinRequest")
            .field("group_id", &self.group_id)
            .field("email", &self.email)
            .field("identity_key", &self.identity_key)
            .field("note", &self.note)
            .finish_non_exhaustive()
    }
}

impl JoinRequest {
    /// Makes and signs a request to join the link's group as `email` (lower-cased) with
    /// a note for the admins.
    pub fn new(
        link: &JoinLink,
        identity: &IdentityKeyPair,
        email: &str,
        note: &str,
    ) -> Result<Self, DecodeError> {
        check_email(email)?;
        check_text("note", note, MAX_NOTE_LEN, true)?;
        let identity_key = identity.public_key();
        // Without a proof the request is refused everywhere: the zero proof never matches.
        let proof = link
            .secret
            .proof(&link.group_id, email, &identity_key)
            .unwrap_or([0u8; HASH_LEN]);
        let mut request = Self {
            group_id: link.group_id,
            identity_key,
            email: email.to_owned(),
            note: note.to_owned(),
            proof,
            signature: [0u8; SIGNATURE_LEN],
        };
        request.signature = identity.sign(&request.signed_bytes());
        Ok(request)
    }

    /// The group it asks to join.
    pub fn group_id(&self) -> GroupId {
        self.group_id
    }

    /// The requester's address.
    pub fn email(&self) -> &str {
        &self.email
    }

    /// The requester's identity key.
    pub fn identity_key(&self) -> IdentityKey {
        self.identity_key
    }

    /// The requester's note to the admins (peer text: escape before printing).
    pub fn note(&self) -> &str {
        &self.note
    }

    fn body(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.u8(FORMAT_VERSION);
        w.bytes(&self.group_id.0);
        w.key(&self.identity_key);
        w.email(&self.email);
        w.text(&self.note);
        w.bytes(&self.proof);
        w.finish()
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut bytes = REQUEST_SIGN_LABEL.to_vec();
        bytes.extend_from_slice(&self.body());
        bytes
    }

    /// The wire form: format byte, group id, key, email, note, proof, signature.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = self.body();
        bytes.extend_from_slice(&self.signature);
        bytes
    }

    /// Parses the wire form; refuses unknown formats, oversize fields and trailing bytes.
    /// The signature and proof are checked when the request is used, against the group.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let request = Self::decode(&mut r)?;
        r.finish()?;
        Ok(request)
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let format = r.u8()?;
        if format != FORMAT_VERSION {
            return Err(DecodeError::UnknownFormat(format));
        }
        Ok(Self {
            group_id: GroupId(r.array()?),
            identity_key: r.key()?,
            email: r.email()?,
            note: r.text("note", MAX_NOTE_LEN, true)?,
            proof: r.array()?,
            signature: r.array()?,
        })
    }

    /// Checks the request against a group and its current link secret: right group,
    /// the requester's signature, and the proof (in constant time).
    pub(crate) fn verify(
        &self,
        group_id: &GroupId,
        secret: &LinkSecret,
    ) -> Result<(), ChangeError> {
        if self.group_id != *group_id {
            return Err(ChangeError::JoinRequestWrongGroup);
        }
        self.identity_key
            .verify(&self.signed_bytes(), &self.signature)
            .map_err(|_| ChangeError::BadJoinRequestSignature)?;
        let expected = secret
            .proof(group_id, &self.email, &self.identity_key)
            .ok_or(ChangeError::BadJoinProof)?;
        if bool::from(expected.ct_eq(&self.proof)) {
            Ok(())
        } else {
            Err(ChangeError::BadJoinProof)
        }
    }
}
