//! The profile's own account row: address, relay, sealed identity, prekey id counters.

use e2ee_ratchet::IdentityKeyPair;
use sqlx::Row as _;

use super::{Tx, key32, to_i64, to_u32};
use crate::StoreError;
use crate::secret::StoreKey;

/// The profile's own account row.
#[derive(Debug, Clone)]
pub(crate) struct AccountRow {
    pub(crate) email: String,
    pub(crate) relay_url: String,
    pub(crate) identity_sealed: Vec<u8>,
    pub(crate) next_one_time_prekey_id: u32,
    pub(crate) next_signed_prekey_id: u32,
}

pub(super) fn open_identity(
    key: &StoreKey,
    account: &AccountRow,
) -> Result<IdentityKeyPair, StoreError> {
    let seed = key.open("account", &account.email, &account.identity_sealed)?;
    let seed: [u8; 32] = key32(&seed, "identity key")?;
    let identity = IdentityKeyPair::from_bytes(&seed);
    let mut seed = seed;
    zeroize::Zeroize::zeroize(&mut seed);
    Ok(identity)
}

impl Tx {
    pub(crate) async fn account(&mut self) -> Result<Option<AccountRow>, StoreError> {
        let conn = self.conn();
        let row = sqlx::query(
            "SELECT email, relay_url, identity_sealed, next_one_time_prekey_id, \
         next_signed_prekey_id FROM account WHERE id = 1",
        )
        .fetch_optional(conn)
        .await?;
        row.map(|row| {
            Ok(AccountRow {
                email: row.try_get(0)?,
                relay_url: row.try_get(1)?,
                identity_sealed: row.try_get(2)?,
                next_one_time_prekey_id: to_u32(row.try_get(3)?, "next one-time prekey id")?,
                next_signed_prekey_id: to_u32(row.try_get(4)?, "next signed prekey id")?,
            })
        })
        .transpose()
    }

    pub(crate) async fn insert_account(
        &mut self,
        email: &str,
        relay_url: &str,
        identity: &IdentityKeyPair,
        (next_one_time_prekey_id, next_signed_prekey_id): (u32, u32),
        now: u64,
    ) -> Result<(), StoreError> {
        let (conn, key) = self.parts();
        let sealed = key.seal("account", email, &*identity.to_bytes());
        sqlx::query(
        "INSERT INTO account (id, email, relay_url, identity_key, identity_sealed, \
         next_one_time_prekey_id, next_signed_prekey_id, created_at) VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(email)
    .bind(relay_url)
    .bind(identity.public_key().to_bytes().to_vec())
    .bind(sealed)
    .bind(i64::from(next_one_time_prekey_id))
    .bind(i64::from(next_signed_prekey_id))
    .bind(to_i64(now))
    .execute(conn)
    .await?;
        Ok(())
    }

    pub(crate) async fn set_next_ids(
        &mut self,
        next_one_time_prekey_id: u32,
        next_signed_prekey_id: u32,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        sqlx::query(
        "UPDATE account SET next_one_time_prekey_id = ?, next_signed_prekey_id = ? WHERE id = 1",
    )
    .bind(i64::from(next_one_time_prekey_id))
    .bind(i64::from(next_signed_prekey_id))
    .execute(conn)
    .await?;
        Ok(())
    }

    pub(crate) async fn set_relay_url(&mut self, url: &str) -> Result<(), StoreError> {
        let conn = self.conn();
        sqlx::query("UPDATE account SET relay_url = ? WHERE id = 1")
            .bind(url)
            .execute(conn)
            .await?;
        Ok(())
    }
}
