//! The directory's statements that SQLite and PostgreSQL share, written once: both
//! bind `$N`, both decode `bool` (SQLite from INTEGER 0/1), `i64` and byte strings
//! alike. [`shared_statements!`] expands them into the `sqlite` and `postgres` modules,
//! which add only what really differs (connecting, the `IN` list, locking the
//! one-time prekey a bundle fetch takes).

/// Expands the shared statements for one database: `$Pool`, its connection and row
/// types.
macro_rules! shared_statements {
    ($Pool:ty, $Conn:ty, $Row:ty) => {
        fn to_i64(v: u64) -> i64 {
            i64::try_from(v).unwrap_or(i64::MAX)
        }

        fn account_from_row(row: &$Row) -> Result<Account, DirectoryError> {
            let key: Vec<u8> = row.try_get("identity_key")?;
            let created_at: i64 = row.try_get("created_at")?;
            let banned: bool = row.try_get("banned")?;
            Ok(Account {
                email: row.try_get("email")?,
                identity_key: key32(&key, "identity key")?,
                created_at: u64::try_from(created_at).unwrap_or(0),
                banned,
            })
        }

        pub(super) async fn register(pool: &$Pool, new: NewAccount<'_>) -> Result<(), DirectoryError> {
            let mut tx = pool.begin().await?;
            sqlx::query("INSERT INTO accounts (email, identity_key, created_at) VALUES ($1, $2, $3)")
                .bind(new.email)
                .bind(&new.identity_key[..])
                .bind(to_i64(new.now_ms))
                .execute(&mut *tx)
                .await?;
            upsert_signed_prekey(&mut tx, new.email, new.signed_prekey, new.now_ms).await?;
            for opk in new.one_time_prekeys {
                insert_one_time_prekey(&mut tx, new.email, opk).await?;
            }
            tx.commit().await?;
            Ok(())
        }

        async fn upsert_signed_prekey(
            tx: &mut $Conn,
            email: &str,
            spk: &SignedPreKey,
            now_ms: u64,
        ) -> Result<(), DirectoryError> {
            sqlx::query(
                "INSERT INTO signed_prekeys (email, id, public_key, signature, updated_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (email) DO UPDATE SET id = excluded.id, public_key = excluded.public_key,
                     signature = excluded.signature, updated_at = excluded.updated_at",
            )
            .bind(email)
            .bind(i64::from(spk.id))
            .bind(&spk.public_key.0[..])
            .bind(&spk.signature.0[..])
            .bind(to_i64(now_ms))
            .execute(tx)
            .await?;
            Ok(())
        }

        async fn insert_one_time_prekey(
            tx: &mut $Conn,
            email: &str,
            opk: &OneTimePreKey,
        ) -> Result<(), DirectoryError> {
            sqlx::query(
                "INSERT INTO one_time_prekeys (email, id, public_key) VALUES ($1, $2, $3)
                 ON CONFLICT (email, id) DO NOTHING",
            )
            .bind(email)
            .bind(i64::from(opk.id))
            .bind(&opk.public_key.0[..])
            .execute(tx)
            .await?;
            Ok(())
        }

        pub(super) async fn account(
            pool: &$Pool,
            email: &str,
        ) -> Result<Option<Account>, DirectoryError> {
            let row = sqlx::query(
                "SELECT email, identity_key, created_at, banned FROM accounts WHERE email = $1",
            )
            .bind(email)
            .fetch_optional(pool)
            .await?;
            row.as_ref().map(account_from_row).transpose()
        }

        /// The accounts among `emails` (one statement, whatever their number).

        pub(super) async fn signed_prekey(
            pool: &$Pool,
            email: &str,
        ) -> Result<SignedPreKey, DirectoryError> {
            let row = sqlx::query("SELECT id, public_key, signature FROM signed_prekeys WHERE email = $1")
                .bind(email)
                .fetch_optional(pool)
                .await?
                .ok_or(DirectoryError::Corrupt("account without signed prekey"))?;
            let public_key: Vec<u8> = row.try_get(1)?;
            let signature: Vec<u8> = row.try_get(2)?;
            Ok(SignedPreKey {
                id: id_u32(row.try_get(0)?)?,
                public_key: Base64Key(key32(&public_key, "signed prekey")?),
                signature: Base64Signature(key64(&signature, "signed prekey signature")?),
            })
        }


        pub(super) async fn upload_prekeys(
            pool: &$Pool,
            email: &str,
            signed_prekey: Option<&SignedPreKey>,
            one_time_prekeys: &[OneTimePreKey],
            now_ms: u64,
        ) -> Result<u64, DirectoryError> {
            let mut tx = pool.begin().await?;
            if let Some(spk) = signed_prekey {
                upsert_signed_prekey(&mut tx, email, spk, now_ms).await?;
            }
            for opk in one_time_prekeys {
                insert_one_time_prekey(&mut tx, email, opk).await?;
            }
            let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM one_time_prekeys WHERE email = $1")
                .bind(email)
                .fetch_one(&mut *tx)
                .await?;
            let count = u64::try_from(count).unwrap_or(0);
            if count > MAX_STORED_ONE_TIME_PREKEYS {
                tx.rollback().await?;
                return Err(DirectoryError::TooManyPreKeys);
            }
            tx.commit().await?;
            Ok(count)
        }

        pub(super) async fn prekey_count(pool: &$Pool, email: &str) -> Result<u64, DirectoryError> {
            let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM one_time_prekeys WHERE email = $1")
                .bind(email)
                .fetch_one(pool)
                .await?;
            Ok(u64::try_from(count).unwrap_or(0))
        }

        /// `Some(changed)` when the account exists, `None` when it does not.
        pub(super) async fn set_banned(
            pool: &$Pool,
            email: &str,
            banned: bool,
        ) -> Result<Option<bool>, DirectoryError> {
            let done = sqlx::query("UPDATE accounts SET banned = $2 WHERE email = $1 AND banned <> $2")
                .bind(email)
                .bind(banned)
                .execute(pool)
                .await?;
            if done.rows_affected() == 1 {
                return Ok(Some(true));
            }
            let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM accounts WHERE email = $1")
                .bind(email)
                .fetch_optional(pool)
                .await?;
            Ok(exists.map(|_| false))
        }

        /// Whether an account was deleted. The prekeys are deleted explicitly rather than
        /// left to `ON DELETE CASCADE`, which SQLite honours only with foreign keys enabled.
        pub(super) async fn delete(pool: &$Pool, email: &str) -> Result<bool, DirectoryError> {
            let mut tx = pool.begin().await?;
            for statement in [
                "DELETE FROM one_time_prekeys WHERE email = $1",
                "DELETE FROM signed_prekeys WHERE email = $1",
            ] {
                sqlx::query(statement).bind(email).execute(&mut *tx).await?;
            }
            let done = sqlx::query("DELETE FROM accounts WHERE email = $1")
                .bind(email)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(done.rows_affected() == 1)
        }

        pub(super) async fn list(pool: &$Pool) -> Result<Vec<AccountSummary>, DirectoryError> {
            let rows = sqlx::query(
                "SELECT a.email, a.identity_key, a.created_at, a.banned,
                        (SELECT COUNT(*) FROM one_time_prekeys o WHERE o.email = a.email) AS opks
                 FROM accounts a ORDER BY a.email",
            )
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| {
                    let opks: i64 = row.try_get("opks")?;
                    Ok(AccountSummary {
                        account: account_from_row(row)?,
                        one_time_prekeys: u64::try_from(opks).unwrap_or(0),
                    })
                })
                .collect()
        }

        pub(super) async fn pending(
            pool: &$Pool,
            email: &str,
        ) -> Result<Option<PendingRegistration>, DirectoryError> {
            let row = sqlx::query("SELECT * FROM pending_registrations WHERE email = $1")
                .bind(email)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(super::pending_from_row).transpose()
        }

        pub(super) async fn put_pending(
            pool: &$Pool,
            p: &PendingRegistration,
        ) -> Result<(), DirectoryError> {
            sqlx::query(
                "INSERT INTO pending_registrations (email, identity_key, prekeys, code_hash, expires_at,
                     attempts, codes_sent, codes_window_start, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (email) DO UPDATE SET identity_key = excluded.identity_key,
                     prekeys = excluded.prekeys, code_hash = excluded.code_hash,
                     expires_at = excluded.expires_at, attempts = excluded.attempts,
                     codes_sent = excluded.codes_sent, codes_window_start = excluded.codes_window_start,
                     created_at = excluded.created_at",
            )
            .bind(&p.email)
            .bind(&p.identity_key[..])
            .bind(p.prekeys_json()?)
            .bind(&p.code_hash[..])
            .bind(to_i64(p.expires_at))
            .bind(i64::from(p.attempts))
            .bind(i64::from(p.codes_sent))
            .bind(to_i64(p.codes_window_start))
            .bind(to_i64(p.created_at))
            .execute(pool)
            .await?;
            Ok(())
        }

        pub(super) async fn set_pending_attempts(
            pool: &$Pool,
            email: &str,
            attempts: u32,
        ) -> Result<(), DirectoryError> {
            sqlx::query("UPDATE pending_registrations SET attempts = $2 WHERE email = $1")
                .bind(email)
                .bind(i64::from(attempts))
                .execute(pool)
                .await?;
            Ok(())
        }

        pub(super) async fn delete_pending(pool: &$Pool, email: &str) -> Result<(), DirectoryError> {
            sqlx::query("DELETE FROM pending_registrations WHERE email = $1")
                .bind(email)
                .execute(pool)
                .await?;
            Ok(())
        }

        pub(super) async fn activate(
            pool: &$Pool,
            p: &PendingRegistration,
            now_ms: u64,
        ) -> Result<bool, DirectoryError> {
            let mut tx = pool.begin().await?;
            let replaced = sqlx::query("UPDATE accounts SET identity_key = $2 WHERE email = $1")
                .bind(&p.email)
                .bind(&p.identity_key[..])
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if !replaced {
                sqlx::query("INSERT INTO accounts (email, identity_key, created_at) VALUES ($1, $2, $3)")
                    .bind(&p.email)
                    .bind(&p.identity_key[..])
                    .bind(to_i64(now_ms))
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("DELETE FROM one_time_prekeys WHERE email = $1")
                .bind(&p.email)
                .execute(&mut *tx)
                .await?;
            upsert_signed_prekey(&mut tx, &p.email, &p.signed_prekey, now_ms).await?;
            for opk in &p.one_time_prekeys {
                insert_one_time_prekey(&mut tx, &p.email, opk).await?;
            }
            sqlx::query("DELETE FROM pending_registrations WHERE email = $1")
                .bind(&p.email)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(replaced)
        }

    };
}

pub(super) use shared_statements;
