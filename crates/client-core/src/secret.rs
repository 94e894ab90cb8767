//! The store key: how secrets are sealed at rest, and where the key itself lives.
//!
//! Secret columns are `nonce (24) || XChaCha20-Poly1305(ciphertext || tag)` with
//! associated data naming the table and the row, so a row copied over another one
//! (say, Carol's session over Bob's) fails to authenticate instead of being used.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead as _, Payload};
use chacha20poly1305::{KeyInit as _, XChaCha20Poly1305, XNonce};
use rand::Rng as _;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use crate::StoreError;

/// Bytes of the store key.
pub const STORE_KEY_LEN: usize = 32;
/// File holding the raw store key, mode 0600.
pub const KEY_FILE: &str = "store.key";
/// File holding the store key wrapped under a passphrase.
pub const WRAPPED_KEY_FILE: &str = "store.key.wrapped";

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const AAD_PREFIX: &[u8] = b"e2ee-client/v1/";
const WRAP_AAD: &[u8] = b"e2ee-client/v1/wrapped-store-key";
const WRAP_VERSION: u8 = 1;
const SALT_LEN: usize = 16;
/// Argon2id memory cost in KiB (OWASP's 19 MiB minimum for Argon2id).
const ARGON2_M_COST_KIB: u32 = 19 * 1024;
/// Argon2id passes.
const ARGON2_T_COST: u32 = 2;
/// Argon2id lanes.
const ARGON2_P_COST: u32 = 1;
const WRAPPED_LEN: usize = 1 + 12 + SALT_LEN + NONCE_LEN + STORE_KEY_LEN + TAG_LEN;
/// Permission bits that must be clear on a key file: nothing for group or others.
const FORBIDDEN_MODE_BITS: u32 = 0o077;

/// The 32-byte key every secret column is sealed under. Zeroized on drop.
pub struct StoreKey(Zeroizing<[u8; STORE_KEY_LEN]>);

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreKey(..)")
    }
}

fn aad(table: &str, row: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(AAD_PREFIX.len() + table.len() + 1 + row.len());
    out.extend_from_slice(AAD_PREFIX);
    out.extend_from_slice(table.as_bytes());
    out.push(b'/');
    out.extend_from_slice(row.as_bytes());
    out
}

fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand::rng().fill_bytes(&mut out);
    out
}

fn seal_with(cipher: &XChaCha20Poly1305, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let nonce_bytes = random::<NONCE_LEN>();
    let nonce = XNonce::from(nonce_bytes);
    // XChaCha20-Poly1305 only fails on inputs over 256 GiB; nothing we store is near it.
    let ciphertext = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .unwrap_or_default();
    let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(&ciphertext);
    out
}

fn open_with(cipher: &XChaCha20Poly1305, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let nonce = XNonce::try_from(nonce).ok()?;
    cipher
        .decrypt(
            &nonce,
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
}

impl StoreKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self(Zeroizing::new(random()))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&*self.0).into())
    }

    /// Seals `plaintext` for the column of `table` in the row named `row`.
    pub fn seal(&self, table: &str, row: &str, plaintext: &[u8]) -> Vec<u8> {
        seal_with(&self.cipher(), &aad(table, row), plaintext)
    }

    /// Opens what [`Self::seal`] produced for the same table and row.
    pub fn open(
        &self,
        table: &'static str,
        row: &str,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        open_with(&self.cipher(), &aad(table, row), sealed)
            .map(Zeroizing::new)
            .ok_or(StoreError::Corrupt { what: table })
    }

    /// Loads the profile's key from `dir`, creating it on first use: a 0600
    /// [`KEY_FILE`], or a [`WRAPPED_KEY_FILE`] when a passphrase is given.
    ///
    /// A passphrase given for a store whose key is still a plain [`KEY_FILE`] wraps
    /// that key: the wrapped file is written and synced first, then the plain one is
    /// overwritten and removed, so from then on the store needs the passphrase. The
    /// key itself stays the same (every sealed row still opens). A crash in between
    /// leaves both files; the next open with the passphrase finishes the removal.
    pub fn load_or_create(dir: &Path, passphrase: Option<&[u8]>) -> Result<Self, StoreError> {
        let wrapped = dir.join(WRAPPED_KEY_FILE);
        let plain = dir.join(KEY_FILE);
        if wrapped.exists() {
            let passphrase = passphrase.ok_or(StoreError::PassphraseRequired)?;
            let key = Self::unwrap(&wrapped, passphrase)?;
            if plain.exists() {
                key.remove_plain_copy(&plain)?;
            }
            return Ok(key);
        }
        // A new protection must protect: an empty passphrase is refused when it would
        // wrap a key (an existing wrapped key still opens with whatever wrapped it).
        if passphrase.is_some_and(<[u8]>::is_empty) {
            return Err(StoreError::EmptyPassphrase);
        }
        if plain.exists() {
            let key = Self::read_plain(&plain)?;
            let Some(passphrase) = passphrase else {
                return Ok(key);
            };
            match write_new_private(&wrapped, &Zeroizing::new(key.wrap(passphrase)?)) {
                Ok(()) => {}
                // Another process wrapped it at the same time: it must be under this
                // passphrase for us to go on.
                Err(StoreError::Io { source, .. }) if source.kind() == ErrorKind::AlreadyExists => {
                    return Self::load_or_create(dir, Some(passphrase));
                }
                Err(other) => return Err(other),
            }
            key.remove_plain_copy(&plain)?;
            return Ok(key);
        }
        let key = Self::generate();
        let (path, contents) = match passphrase {
            Some(passphrase) => (wrapped, Zeroizing::new(key.wrap(passphrase)?)),
            None => (plain, Zeroizing::new(key.0.to_vec())),
        };
        match write_new_private(&path, &contents) {
            Ok(()) => Ok(key),
            // Another process created the key first: use theirs.
            Err(StoreError::Io { source, .. }) if source.kind() == ErrorKind::AlreadyExists => {
                Self::load_or_create(dir, passphrase)
            }
            Err(other) => Err(other),
        }
    }

    /// Overwrites and deletes the plain key file once the key is wrapped, after
    /// checking it holds this very key (a different one would mean two stores' keys
    /// got mixed up, and deleting it could lose data).
    fn remove_plain_copy(&self, plain: &Path) -> Result<(), StoreError> {
        let io = |source| StoreError::Io {
            path: plain.to_path_buf(),
            source,
        };
        let on_disk = Self::read_plain(plain)?;
        if !bool::from(on_disk.0.as_slice().ct_eq(self.0.as_slice())) {
            return Err(StoreError::BadKeyFile {
                path: plain.to_path_buf(),
                reason: "it holds a different key than the wrapped key file next to it; \
                         remove the one that does not belong to this profile",
            });
        }
        // Overwriting in place does not reach every copy on journaling or flash file
        // systems, but it keeps the key out of the file's blocks on the common ones.
        let mut file = OpenOptions::new().write(true).open(plain).map_err(io)?;
        file.write_all(&[0u8; STORE_KEY_LEN]).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::remove_file(plain).map_err(io)?;
        if let Some(dir) = plain.parent() {
            // The removal is durable once the directory entry is.
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        Ok(())
    }

    fn read_plain(path: &Path) -> Result<Self, StoreError> {
        let io = |source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let mode = file.metadata().map_err(io)?.permissions().mode();
        if mode & FORBIDDEN_MODE_BITS != 0 {
            return Err(StoreError::KeyFilePermissions {
                path: path.to_path_buf(),
                mode: mode & 0o777,
            });
        }
        let mut bytes = Zeroizing::new(Vec::new());
        file.read_to_end(&mut bytes).map_err(io)?;
        let key: [u8; STORE_KEY_LEN] =
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::BadKeyFile {
                    path: path.to_path_buf(),
                    reason: "it must hold exactly 32 bytes",
                })?;
        Ok(Self(Zeroizing::new(key)))
    }

    fn passphrase_key(
        passphrase: &[u8],
        salt: &[u8],
        m_cost: u32,
        t_cost: u32,
        p_cost: u32,
    ) -> Result<Zeroizing<[u8; STORE_KEY_LEN]>, StoreError> {
        let params = argon2::Params::new(m_cost, t_cost, p_cost, Some(STORE_KEY_LEN))
            .map_err(|e| StoreError::Kdf(e.to_string()))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; STORE_KEY_LEN]);
        argon
            .hash_password_into(passphrase, salt, &mut *out)
            .map_err(|e| StoreError::Kdf(e.to_string()))?;
        Ok(out)
    }

    /// `version || m_cost || t_cost || p_cost (u32 BE) || salt || sealed key`.
    fn wrap(&self, passphrase: &[u8]) -> Result<Vec<u8>, StoreError> {
        let salt = random::<SALT_LEN>();
        let kek = Self::passphrase_key(
            passphrase,
            &salt,
            ARGON2_M_COST_KIB,
            ARGON2_T_COST,
            ARGON2_P_COST,
        )?;
        let cipher = XChaCha20Poly1305::new((&*kek).into());
        let mut out = Vec::with_capacity(WRAPPED_LEN);
        out.push(WRAP_VERSION);
        out.extend_from_slice(&ARGON2_M_COST_KIB.to_be_bytes());
        out.extend_from_slice(&ARGON2_T_COST.to_be_bytes());
        out.extend_from_slice(&ARGON2_P_COST.to_be_bytes());
        out.extend_from_slice(&salt);
        out.extend_from_slice(&seal_with(&cipher, WRAP_AAD, &*self.0));
        Ok(out)
    }

    fn unwrap(path: &Path, passphrase: &[u8]) -> Result<Self, StoreError> {
        let bytes = std::fs::read(path).map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |reason| StoreError::BadKeyFile {
            path: path.to_path_buf(),
            reason,
        };
        if bytes.len() != WRAPPED_LEN {
            return Err(bad("wrong length"));
        }
        if bytes[0] != WRAP_VERSION {
            return Err(bad("unknown version"));
        }
        let cost = |at: usize| {
            let mut word = [0u8; 4];
            word.copy_from_slice(&bytes[at..at + 4]);
            u32::from_be_bytes(word)
        };
        let salt = &bytes[13..13 + SALT_LEN];
        let kek = Self::passphrase_key(passphrase, salt, cost(1), cost(5), cost(9))?;
        let cipher = XChaCha20Poly1305::new((&*kek).into());
        let key = open_with(&cipher, WRAP_AAD, &bytes[13 + SALT_LEN..])
            .map(Zeroizing::new)
            .ok_or(StoreError::WrongPassphrase)?;
        let key: [u8; STORE_KEY_LEN] = key
            .as_slice()
            .try_into()
            .map_err(|_| bad("wrapped key has the wrong length"))?;
        Ok(Self(Zeroizing::new(key)))
    }
}

/// Writes a new file that only its owner can read; fails if it exists.
fn write_new_private(path: &Path, contents: &[u8]) -> Result<(), StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Write to a temporary name and link it into place, so a crash never leaves a
    // half-written key that a later run would read.
    let tmp: PathBuf = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    linked.map_err(io)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn sealed_rows_cannot_be_swapped() {
        let key = StoreKey::generate();
        let sealed = key.seal("sessions", "bob@y", b"state");
        assert_eq!(&*key.open("sessions", "bob@y", &sealed).unwrap(), b"state");
        assert!(key.open("sessions", "carol@z", &sealed).is_err());
        assert!(key.open("contacts", "bob@y", &sealed).is_err());
        assert!(
            StoreKey::generate()
                .open("sessions", "bob@y", &sealed)
                .is_err()
        );
    }

    #[test]
    fn n10_an_empty_passphrase_never_wraps_a_key() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            StoreKey::load_or_create(dir.path(), Some(b"")),
            Err(StoreError::EmptyPassphrase)
        ));
        assert!(!dir.path().join(WRAPPED_KEY_FILE).exists());
        assert!(!dir.path().join(KEY_FILE).exists());
        let plain = StoreKey::load_or_create(dir.path(), None).unwrap();
        assert!(matches!(
            StoreKey::load_or_create(dir.path(), Some(b"")),
            Err(StoreError::EmptyPassphrase)
        ));
        let again = StoreKey::load_or_create(dir.path(), None).unwrap();
        assert_eq!(
            plain.0.as_slice(),
            again.0.as_slice(),
            "the plain key is untouched"
        );
    }

    #[test]
    fn plain_key_file_is_private_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let key = StoreKey::load_or_create(dir.path(), None).unwrap();
        let path = dir.path().join(KEY_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = StoreKey::load_or_create(dir.path(), None).unwrap();
        assert_eq!(*key.0, *again.0);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            StoreKey::load_or_create(dir.path(), None),
            Err(StoreError::KeyFilePermissions { .. })
        ));
    }

    #[test]
    fn wrapped_key_needs_the_right_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        let key = StoreKey::load_or_create(dir.path(), Some(b"correct horse")).unwrap();
        assert!(!dir.path().join(KEY_FILE).exists());
        let again = StoreKey::load_or_create(dir.path(), Some(b"correct horse")).unwrap();
        assert_eq!(*key.0, *again.0);
        assert!(matches!(
            StoreKey::load_or_create(dir.path(), Some(b"wrong")),
            Err(StoreError::WrongPassphrase)
        ));
        assert!(matches!(
            StoreKey::load_or_create(dir.path(), None),
            Err(StoreError::PassphraseRequired)
        ));
    }

    /// L6: a passphrase given for a profile whose key is a plain file used to be
    /// ignored, leaving the store unprotected. It now wraps the same key and removes
    /// the plain file, so the store needs the passphrase from then on.
    #[test]
    fn l6_passphrase_for_a_plain_key_wraps_it_and_removes_the_plain_file() {
        let dir = tempfile::tempdir().unwrap();
        let key = StoreKey::load_or_create(dir.path(), None).unwrap();
        let sealed = key.seal("sessions", "bob@y", b"state");
        let again = StoreKey::load_or_create(dir.path(), Some(b"correct horse")).unwrap();
        assert_eq!(*key.0, *again.0, "the key is kept, only wrapped");
        assert!(
            !dir.path().join(KEY_FILE).exists(),
            "plain key file left behind"
        );
        assert!(dir.path().join(WRAPPED_KEY_FILE).exists());
        assert!(matches!(
            StoreKey::load_or_create(dir.path(), None),
            Err(StoreError::PassphraseRequired)
        ));
        assert!(matches!(
            StoreKey::load_or_create(dir.path(), Some(b"wrong")),
            Err(StoreError::WrongPassphrase)
        ));
        let reopened = StoreKey::load_or_create(dir.path(), Some(b"correct horse")).unwrap();
        assert_eq!(
            &*reopened.open("sessions", "bob@y", &sealed).unwrap(),
            b"state"
        );
    }

    /// L6, crash between writing the wrapped file and removing the plain one: the next
    /// open with the passphrase removes it; one with another key in it is refused.
    #[test]
    fn l6_a_plain_key_left_beside_the_wrapped_one_is_removed_if_it_is_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = StoreKey::load_or_create(dir.path(), None).unwrap();
        let plain = dir.path().join(KEY_FILE);
        let saved = std::fs::read(&plain).unwrap();
        StoreKey::load_or_create(dir.path(), Some(b"pw")).unwrap();
        write_new_private(&plain, &saved).unwrap();
        let again = StoreKey::load_or_create(dir.path(), Some(b"pw")).unwrap();
        assert_eq!(*key.0, *again.0);
        assert!(!plain.exists());
        write_new_private(&plain, &[9u8; STORE_KEY_LEN]).unwrap();
        assert!(matches!(
            StoreKey::load_or_create(dir.path(), Some(b"pw")),
            Err(StoreError::BadKeyFile { .. })
        ));
        assert!(plain.exists(), "a foreign key file must not be deleted");
    }
}
