//! Safety numbers: 60 digits both parties compare to detect a man in the middle.

use sha2::{Digest, Sha512};

use crate::{IdentityKey, x3dh::canonical_address};

/// SHA-512 rounds per party; slows down a search for a colliding key.
pub const SAFETY_NUMBER_ITERATIONS: usize = 5200;
/// Format version hashed into the first round.
const FINGERPRINT_VERSION: [u8; 2] = [0x00, 0x00];

/// The 60-digit safety number of a pair of identities. Both parties compute the same one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafetyNumber {
    digits: String,
}

impl SafetyNumber {
    /// The safety number of `(local_email, local_identity)` and `(remote_email,
    /// remote_identity)`; symmetric in the two parties.
    pub fn new(
        local_email: &str,
        local_identity: &IdentityKey,
        remote_email: &str,
        remote_identity: &IdentityKey,
    ) -> Self {
        let mut halves = [
            party_digits(local_email, local_identity),
            party_digits(remote_email, remote_identity),
        ];
        halves.sort();
        Self {
            digits: halves.concat(),
        }
    }

    /// The 60 digits, without spaces.
    pub fn digits(&self) -> &str {
        &self.digits
    }

    /// Twelve groups of five digits separated by spaces, as people read them out.
    pub fn grouped(&self) -> String {
        self.digits
            .as_bytes()
            .chunks(5)
            .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl std::fmt::Display for SafetyNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.grouped())
    }
}

/// 30 digits for one party: `SHA-512(0x00 0x00 || IK || email)`, then
/// `SHA-512(previous || IK)` for the remaining rounds; the first 30 bytes as six
/// 5-byte big-endian chunks, each mod 100000.
fn party_digits(email: &str, identity: &IdentityKey) -> String {
    let email = canonical_address(email);
    let mut hash = Sha512::new()
        .chain_update(FINGERPRINT_VERSION)
        .chain_update(identity.as_bytes())
        .chain_update(email.as_bytes())
        .finalize();
    for _ in 1..SAFETY_NUMBER_ITERATIONS {
        hash = Sha512::new()
            .chain_update(hash)
            .chain_update(identity.as_bytes())
            .finalize();
    }
    hash[..30]
        .chunks(5)
        .map(|chunk| {
            let value = chunk.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
            format!("{:05}", value % 100_000)
        })
        .collect()
}
