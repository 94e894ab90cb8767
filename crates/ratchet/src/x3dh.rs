//! X3DH key agreement (Signal's X3DH specification), initiator and responder.

use rand_core::CryptoRng;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::{
    IdentityKey, IdentityKeyPair, MAX_EMAIL_LEN, OneTimePreKeyPair, PreKeyBundle, SignedPreKeyPair,
    X3dhError,
    dh::{PeerKey, SharedSecret},
    header::HeaderKey,
    kdf,
    root_key::RootKey,
};

/// X3DH's output: the first root key and the two shared header keys of the
/// header-encryption variant of the Double Ratchet.
pub(crate) struct X3dhSecrets {
    /// SK: the first root key.
    pub(crate) root_key: RootKey,
    /// HK_A: the initiator's first sending header key.
    pub(crate) initiator_header_key: HeaderKey,
    /// NHK_B: the responder's first next-sending header key.
    pub(crate) responder_next_header_key: HeaderKey,
}

/// The initiator's side: its secrets and the ephemeral public key EK_A it must send.
pub(crate) struct Initiation {
    pub(crate) secrets: X3dhSecrets,
    pub(crate) base_key: PublicKey,
    /// SPK_B, prepared for DH: the first ratchet step uses it once more.
    pub(crate) signed_prekey: PeerKey,
}

fn checked_dh(
    secret: &StaticSecret,
    peer: &PeerKey,
    which: &'static str,
) -> Result<SharedSecret, X3dhError> {
    peer.diffie_hellman(secret)
        .ok_or(X3dhError::NonContributory { which })
}

/// `HKDF(salt = 0^32, ikm = 0xFF^32 || DH1 || DH2 || DH3 [|| DH4], info = "e2ee-v1/x3dh", 96)`.
fn derive(dhs: &[&SharedSecret]) -> X3dhSecrets {
    const DOMAIN_SEPARATOR: [u8; 32] = [0xFF; 32];
    let mut ikm: Vec<&[u8]> = Vec::with_capacity(5);
    ikm.push(&DOMAIN_SEPARATOR);
    ikm.extend(dhs.iter().map(|s| s.as_bytes().as_slice()));
    let okm = kdf::hkdf::<96>(None, &ikm, kdf::X3DH_INFO);
    let (root, header, next_header) = kdf::split3(&okm);
    X3dhSecrets {
        root_key: RootKey::new(*root),
        initiator_header_key: HeaderKey::new(*header),
        responder_next_header_key: HeaderKey::new(*next_header),
    }
}

/// Initiator A: verifies B's bundle, makes EK_A and runs the three or four DHs.
pub(crate) fn initiate<R: CryptoRng + ?Sized>(
    rng: &mut R,
    identity: &IdentityKeyPair,
    bundle: &PreKeyBundle,
) -> Result<Initiation, X3dhError> {
    bundle.verify()?;
    if matches!(bundle.one_time_prekey, Some((0, _))) {
        return Err(X3dhError::ZeroOneTimePreKeyId);
    }
    let ephemeral = StaticSecret::random_from_rng(rng);
    // Each peer key is mapped for DH once, however many DHs use it.
    let signed_prekey = PeerKey::new(&bundle.signed_prekey_public());
    let dh1 = checked_dh(&identity.to_x25519(), &signed_prekey, "signed prekey")?;
    let dh2 = checked_dh(
        &ephemeral,
        &bundle.identity_key.to_x25519_peer(),
        "identity key",
    )?;
    let dh3 = checked_dh(&ephemeral, &signed_prekey, "signed prekey")?;
    let secrets = match bundle.one_time_prekey {
        Some((_, one_time)) => {
            let one_time = PeerKey::new(&PublicKey::from(one_time));
            let dh4 = checked_dh(&ephemeral, &one_time, "one-time prekey")?;
            derive(&[&dh1, &dh2, &dh3, &dh4])
        }
        None => derive(&[&dh1, &dh2, &dh3]),
    };
    Ok(Initiation {
        secrets,
        base_key: PublicKey::from(&ephemeral),
        signed_prekey,
    })
}

/// Responder B: the same DHs from its side.
pub(crate) fn respond(
    identity: &IdentityKeyPair,
    signed_prekey: &SignedPreKeyPair,
    one_time_prekey: Option<&OneTimePreKeyPair>,
    initiator_identity: &IdentityKey,
    base_key: &PublicKey,
) -> Result<X3dhSecrets, X3dhError> {
    let spk = &signed_prekey.key_pair().secret;
    let base_key = PeerKey::new(base_key);
    let dh1 = checked_dh(spk, &initiator_identity.to_x25519_peer(), "identity key")?;
    let dh2 = checked_dh(&identity.to_x25519(), &base_key, "base key")?;
    let dh3 = checked_dh(spk, &base_key, "base key")?;
    Ok(match one_time_prekey {
        Some(one_time) => {
            let dh4 = checked_dh(&one_time.key_pair().secret, &base_key, "base key")?;
            derive(&[&dh1, &dh2, &dh3, &dh4])
        }
        None => derive(&[&dh1, &dh2, &dh3]),
    })
}

/// The address bytes bound into the AD and the safety number: trimmed and lower-cased,
/// so that two ends handed `Bob@X` and `bob@x` bind the same bytes.
///
/// Not an address check: callers validate addresses (`e2ee_proto::normalize_email`
/// does, and its output is unchanged by this function); this only keeps the ratchet's
/// own bytes independent of how a caller spelled an address it did not normalize.
pub(crate) fn canonical_address(email: &str) -> String {
    email.trim().to_lowercase()
}

fn checked_email(email: &str) -> Result<String, X3dhError> {
    let email = canonical_address(email);
    if email.is_empty() || email.len() > MAX_EMAIL_LEN {
        return Err(X3dhError::BadEmail { len: email.len() });
    }
    Ok(email)
}

/// `AD = "e2ee-v1/ad" || len(email_A) || email_A || IK_A || len(email_B) || email_B || IK_B`.
pub(crate) fn associated_data(
    initiator_email: &str,
    initiator_identity: &IdentityKey,
    responder_email: &str,
    responder_identity: &IdentityKey,
) -> Result<Vec<u8>, X3dhError> {
    let initiator_email = checked_email(initiator_email)?;
    let responder_email = checked_email(responder_email)?;
    let mut ad = Vec::with_capacity(
        kdf::AD_LABEL.len() + 2 + initiator_email.len() + responder_email.len() + 64,
    );
    ad.extend_from_slice(kdf::AD_LABEL);
    for (email, identity) in [
        (&initiator_email, initiator_identity),
        (&responder_email, responder_identity),
    ] {
        // checked_email bounds the length to MAX_EMAIL_LEN = 255.
        ad.push(email.len() as u8);
        ad.extend_from_slice(email.as_bytes());
        ad.extend_from_slice(identity.as_bytes());
    }
    Ok(ad)
}
