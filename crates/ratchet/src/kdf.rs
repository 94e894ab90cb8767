//! The protocol's key derivations: HKDF-SHA256 and HMAC-SHA256 with fixed labels.

use std::sync::LazyLock;

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// HKDF info for the X3DH output `SK || HK_A || NHK_B`.
pub(crate) const X3DH_INFO: &[u8] = b"e2ee-v1/x3dh";
/// HKDF info for `KDF_RK`.
pub(crate) const ROOT_INFO: &[u8] = b"e2ee-v1/root";
/// HKDF info for a message key's AEAD key and nonce.
pub(crate) const MESSAGE_INFO: &[u8] = b"e2ee-v1/msg";
/// Prefix of the associated data bound into every message.
pub(crate) const AD_LABEL: &[u8] = b"e2ee-v1/ad";
/// Prefix of the bytes an identity key signs to vouch for a signed prekey.
pub(crate) const SIGNED_PREKEY_LABEL: &[u8] = b"e2ee-v1/spk";

/// HMAC input that derives a message key from a chain key.
const MESSAGE_KEY_SEED: u8 = 0x01;
/// HMAC input that derives the next chain key.
const CHAIN_KEY_SEED: u8 = 0x02;

/// HKDF-SHA256 with output length `L`. `salt: None` is the all-zero salt of hash length.
pub(crate) fn hkdf<const L: usize>(
    salt: Option<&[u8]>,
    ikm: &[&[u8]],
    info: &[u8],
) -> Zeroizing<[u8; L]> {
    // Extract is HMAC(salt, IKM); the all-zero salt's keyed state is computed once,
    // which saves two of the SHA-256 compressions every message key costs.
    let mut extract = match salt {
        Some(salt) => keyed_hmac(salt),
        None => ZERO_SALT.clone(),
    };
    for part in ikm {
        extract.update(part);
    }
    let prk = Zeroizing::new(<[u8; 32]>::from(extract.finalize().into_bytes()));
    let Ok(hkdf) = Hkdf::<Sha256>::from_prk(prk.as_slice()) else {
        unreachable_prk_length()
    };
    let mut okm = Zeroizing::new([0u8; L]);
    // The protocol's L (44 or 96 bytes) is far below HKDF's 255 * 32 limit.
    let _ = hkdf.expand(info, okm.as_mut_slice());
    okm
}

/// HMAC-SHA256 keyed with the all-zero salt HKDF uses when none is given.
static ZERO_SALT: LazyLock<Hmac<Sha256>> = LazyLock::new(|| keyed_hmac(&[0u8; 32]));

fn keyed_hmac(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable_hmac_key())
}

/// A PRK is one SHA-256 output, exactly the length `from_prk` wants.
#[cold]
fn unreachable_prk_length() -> ! {
    unreachable!("HMAC-SHA256 output is a valid HKDF-SHA256 PRK")
}

/// `KDF_CK`: returns (message key seed, next chain key) from one keyed HMAC state.
pub(crate) fn chain_step(chain_key: &[u8; 32]) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    // Keying once and cloning saves the second pass over the padded key.
    let keyed = keyed_hmac(chain_key);
    let mut message = keyed.clone();
    message.update(&[MESSAGE_KEY_SEED]);
    let mut next = keyed;
    next.update(&[CHAIN_KEY_SEED]);
    (
        Zeroizing::new(message.finalize().into_bytes().into()),
        Zeroizing::new(next.finalize().into_bytes().into()),
    )
}

/// HMAC accepts keys of any length, so keying never fails; this only satisfies the type.
#[cold]
fn unreachable_hmac_key() -> Hmac<Sha256> {
    <Hmac<Sha256> as KeyInit>::new(&Default::default())
}

/// Splits a 96-byte HKDF output into three 32-byte keys, each wiped when dropped: the
/// caller moves them into key types, and no named copy outlives this call unwiped.
pub(crate) type Split3 = (
    Zeroizing<[u8; 32]>,
    Zeroizing<[u8; 32]>,
    Zeroizing<[u8; 32]>,
);

/// See [`Split3`].
pub(crate) fn split3(okm: &[u8; 96]) -> Split3 {
    let mut a = Zeroizing::new([0u8; 32]);
    let mut b = Zeroizing::new([0u8; 32]);
    let mut c = Zeroizing::new([0u8; 32]);
    a.copy_from_slice(&okm[..32]);
    b.copy_from_slice(&okm[32..64]);
    c.copy_from_slice(&okm[64..]);
    (a, b, c)
}
