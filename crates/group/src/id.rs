//! Identifiers: the group's id, a change's id, a state's hash.

use rand_core::CryptoRng;

/// Bytes of a [`GroupId`].
pub const GROUP_ID_LEN: usize = 16;
/// Bytes of a [`ChangeId`] and a [`StateHash`] (SHA-256).
pub const HASH_LEN: usize = 32;

/// A group's id: 16 random bytes chosen by its creator.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(pub [u8; GROUP_ID_LEN]);

impl GroupId {
    /// A fresh random id.
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut id = [0u8; GROUP_ID_LEN];
        rng.fill_bytes(&mut id);
        Self(id)
    }
}

impl std::fmt::Debug for GroupId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GroupId({})", hex(&self.0))
    }
}

/// A change's id: SHA-256 over its signed body (not the signature, so one change has one
/// id however it was signed).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChangeId(pub [u8; HASH_LEN]);

impl std::fmt::Debug for ChangeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChangeId({})", hex(&self.0))
    }
}

/// The hash of a group state's canonical encoding ([`crate::GroupState::hash`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StateHash(pub [u8; HASH_LEN]);

impl std::fmt::Debug for StateHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateHash({})", hex(&self.0))
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
