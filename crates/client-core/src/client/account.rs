//! The profile's account: registration (resumable on a relay that verifies addresses),
//! unregistration, and the relay URL.

use std::path::PathBuf;
use std::time::Instant;

use e2ee_proto::{Base64Key, ErrorCode, RegisterRequest, VerifyRequest};
use e2ee_ratchet::{IdentityKeyPair, OneTimePreKeyPair, SignedPreKeyPair};
use serde::{Deserialize, Serialize};

use super::profile::write_synced;
use super::{Client, lock, normalize_email};
use crate::engine::upkeep::ONE_TIME_PREKEY_TARGET;
use crate::relay::{Signer, now_ms};
use crate::{AccountInfo, ClientError, RelayError, StoreError, wire};

/// Written in the profile directory once the relay deleted the profile's account
/// ([`Client::unregister`]); holds the email. Its presence makes every command that
/// needs the account fail with [`ClientError::Unregistered`], while the store, and so
/// the history, stays as it was.
pub const UNREGISTERED_FILE: &str = "unregistered";
/// The file in the profile directory that says the account is registered but waits
/// for the relay's verification code; it holds the registration (public keys only)
/// so it can be sent again for a fresh code.
const PENDING_REGISTRATION_FILE: &str = "pending_registration.json";

/// What [`PENDING_REGISTRATION_FILE`] holds.
#[derive(Debug, Serialize, Deserialize)]
struct PendingRegistration {
    request: RegisterRequest,
}

impl Client {
    /// Creates an identity, a signed prekey and one-time prekeys, registers them on
    /// the relay and saves the relay URL in the profile. On a relay that verifies
    /// addresses this returns [`ClientError::VerificationPending`]; see
    /// [`Client::register_with_code`].
    pub async fn register(&self, email: &str) -> Result<AccountInfo, ClientError> {
        self.register_with_code(email, None).await
    }

    /// [`Client::register`], resumable on a relay that verifies addresses. The first
    /// call stores the new identity, registers it and, when the relay mails a code,
    /// remembers that the registration is pending and returns
    /// [`ClientError::VerificationPending`]. A later call for the same address with
    /// `code` confirms it (the account is then active); without `code` it registers the
    /// same keys again, which mails a fresh code.
    pub async fn register_with_code(
        &self,
        email: &str,
        code: Option<&str>,
    ) -> Result<AccountInfo, ClientError> {
        let email = normalize_email(email)?;
        if let Some(pending) = self.pending_registration()? {
            return self.resume_registration(pending, &email, code).await;
        }
        // A registered profile is told so before anything else (a missing relay, say).
        let mut tx = self.store.write().await?;
        if let Some(existing) = tx.account().await? {
            if self.is_unregistered() {
                return Err(ClientError::Unregistered {
                    email: existing.email,
                });
            }
            return Err(ClientError::AlreadyRegisteredLocally {
                email: existing.email,
            });
        }
        let relay_url = self.relay_override.clone().ok_or(ClientError::NoRelay)?;
        let relay = self.relay_client(&relay_url)?;
        let relay_url = relay.url().to_owned();
        let (identity, signed_prekey, one_time_prekeys) = {
            let mut rng = rand::rng();
            let identity = IdentityKeyPair::generate(&mut rng);
            let signed_prekey = SignedPreKeyPair::generate(&mut rng, &identity, 1);
            let one_time_prekeys =
                OneTimePreKeyPair::generate_batch(&mut rng, 1, ONE_TIME_PREKEY_TARGET);
            (identity, signed_prekey, one_time_prekeys)
        };
        let now = now_ms();
        // The keys are stored before the relay learns them and the transaction only
        // commits once it accepted them: a refusal leaves the profile unregistered.
        tx.insert_account(
            &email,
            &relay_url,
            &identity,
            (ONE_TIME_PREKEY_TARGET + 1, 2),
            now,
        )
        .await?;
        tx.insert_signed_prekey(&signed_prekey, now).await?;
        tx.insert_one_time_prekeys(&one_time_prekeys).await?;
        let request = RegisterRequest {
            email: email.clone(),
            identity_key: Base64Key::new(identity.public_key().to_bytes()),
            signed_prekey: wire::wire_signed_prekey(&signed_prekey),
            one_time_prekeys: wire::wire_one_time_prekeys(&one_time_prekeys),
        };
        let signer = Signer {
            email: &email,
            identity: &identity,
        };
        let answer = match relay.register(&signer, &request).await {
            Ok(answer) => answer,
            Err(RelayError::Status { status: 409, .. }) => {
                return Err(ClientError::EmailTaken { email });
            }
            Err(other) => return Err(other.into()),
        };
        if answer.verification.is_some() {
            // The marker goes first: a profile whose account committed always knows
            // whether it is still pending. A marker without an account is ignored.
            self.save_pending_registration(&PendingRegistration { request })?;
            tx.commit().await?;
            return Err(ClientError::VerificationPending { email });
        }
        tx.commit().await?;
        *lock(&self.last_prekey_check) = Some(Instant::now());
        Ok(AccountInfo {
            email,
            relay_url,
            identity_key: e2ee_proto::encode_b64(&identity.public_key().to_bytes()),
            outbox: 0,
        })
    }

    /// Whether [`Client::unregister`] deleted this profile's account.
    pub fn is_unregistered(&self) -> bool {
        self.dir.join(UNREGISTERED_FILE).exists()
    }

    /// Deletes the profile's account from its relay (signed `DELETE /v1/account`): the
    /// relay drops the account, its prekeys and its queued envelopes, and the address
    /// can be registered again. The local store is kept, so [`Client::history`] still
    /// answers; every command that needs the account then fails with
    /// [`ClientError::Unregistered`]. An account its own relay no longer knows (deleted
    /// by the operator, or by an unregister whose answer was lost) counts as deleted.
    /// Returns the account as it was.
    pub async fn unregister(&self) -> Result<AccountInfo, ClientError> {
        let me = self.me().await?;
        match me.relay.unregister(&me.signer()).await {
            Ok(_) => {}
            // The profile's own relay no longer knows the account: an earlier unregister
            // whose answer was lost, or the operator's `admin delete`. The account is
            // gone either way. On another relay (an override) the same answer only means
            // the account was never there, so it stays an error.
            Err(RelayError::Status {
                code: ErrorCode::UnknownAccount,
                ..
            }) if me.relay.url() == me.row.relay_url.trim_end_matches('/') => {
                tracing::info!(email = %me.row.email, "the relay had already deleted the account");
            }
            Err(error) => return Err(error.into()),
        }
        let marker = self.dir.join(UNREGISTERED_FILE);
        write_synced(&marker, me.row.email.as_bytes()).map_err(|source| StoreError::Io {
            path: marker,
            source,
        })?;
        let mut conn = self.store.read().await?;
        let outbox = conn.outbox_len().await?;
        Ok(AccountInfo {
            email: me.row.email.clone(),
            relay_url: me.relay.url().to_owned(),
            identity_key: e2ee_proto::encode_b64(&me.identity.public_key().to_bytes()),
            outbox,
        })
    }

    fn pending_registration_path(&self) -> PathBuf {
        self.dir.join(PENDING_REGISTRATION_FILE)
    }

    /// The registration waiting for its code, when this profile has one and its
    /// account is stored.
    fn pending_registration(&self) -> Result<Option<PendingRegistration>, ClientError> {
        let path = self.pending_registration_path();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StoreError::Io { path, source }.into()),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ClientError::Inconsistent(format!("{}: {e}", path.display())))
    }

    fn save_pending_registration(&self, pending: &PendingRegistration) -> Result<(), ClientError> {
        let path = self.pending_registration_path();
        let bytes = serde_json::to_vec(pending)
            .map_err(|e| ClientError::Inconsistent(format!("encoding the registration: {e}")))?;
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, bytes)
            .and_then(|()| std::fs::rename(&temporary, &path))
            .map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(())
    }

    fn clear_pending_registration(&self) -> Result<(), ClientError> {
        let path = self.pending_registration_path();
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Io { path, source }.into()),
        }
    }

    /// The second half of a registration the relay wants confirmed.
    async fn resume_registration(
        &self,
        pending: PendingRegistration,
        email: &str,
        code: Option<&str>,
    ) -> Result<AccountInfo, ClientError> {
        let me = match self.me().await {
            Ok(me) => me,
            // A marker left by a registration whose store commit never happened.
            Err(ClientError::NotRegistered) => {
                self.clear_pending_registration()?;
                return Box::pin(self.register_with_code(email, code)).await;
            }
            Err(other) => return Err(other),
        };
        if me.row.email != email || pending.request.email != email {
            return Err(ClientError::AlreadyRegisteredLocally {
                email: me.row.email.clone(),
            });
        }
        let signer = me.signer();
        let answer = match code {
            Some(code) => {
                let request = VerifyRequest {
                    email: email.to_owned(),
                    code: code.to_owned(),
                };
                me.relay.verify_registration(&signer, &request).await?
            }
            None => match me.relay.register(&signer, &pending.request).await {
                Ok(answer) => answer,
                Err(RelayError::Status { status: 409, .. }) => {
                    return Err(ClientError::EmailTaken {
                        email: email.to_owned(),
                    });
                }
                Err(other) => return Err(other.into()),
            },
        };
        if answer.verification.is_some() {
            return Err(ClientError::VerificationPending {
                email: email.to_owned(),
            });
        }
        self.clear_pending_registration()?;
        *lock(&self.last_prekey_check) = Some(Instant::now());
        Ok(AccountInfo {
            email: email.to_owned(),
            relay_url: me.relay.url().to_owned(),
            identity_key: e2ee_proto::encode_b64(&me.identity.public_key().to_bytes()),
            outbox: 0,
        })
    }

    /// The profile's account.
    pub async fn whoami(&self) -> Result<AccountInfo, ClientError> {
        let me = self.me().await?;
        let mut conn = self.store.read().await?;
        let outbox = conn.outbox_len().await?;
        Ok(AccountInfo {
            email: me.row.email.clone(),
            relay_url: me.relay.url().to_owned(),
            identity_key: e2ee_proto::encode_b64(&me.identity.public_key().to_bytes()),
            outbox,
        })
    }

    /// Points the profile at another relay URL (same relay, new address).
    pub async fn set_relay_url(&self, url: &str) -> Result<(), ClientError> {
        let relay = self.relay_client(url)?;
        let mut conn = self.store.read().await?;
        conn.set_relay_url(relay.url()).await?;
        Ok(())
    }
}
