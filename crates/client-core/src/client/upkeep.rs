//! Prekey upkeep: the engine plans, the shell generates, stores (private halves
//! first) and uploads.

use std::time::Instant;

use e2ee_proto::UploadPreKeysRequest;
use e2ee_ratchet::{OneTimePreKeyPair, SignedPreKeyPair};

use super::{Client, Me, PREKEY_CHECK_INTERVAL, lock};
use crate::engine::upkeep::{self, UpkeepInput};
use crate::relay::now_ms;
use crate::{ClientError, wire};

impl Client {
    /// Refills one-time prekeys when the relay holds fewer than
    /// [`crate::ONE_TIME_PREKEY_LOW_WATER`] and rotates the signed prekey when it is older
    /// than [`crate::SIGNED_PREKEY_ROTATION`]. Runs at most every few minutes per client.
    pub async fn maintain_prekeys_now(&self) -> Result<(), ClientError> {
        let me = self.me().await?;
        *lock(&self.last_prekey_check) = None;
        self.maintain_prekeys(&me).await
    }

    pub(crate) async fn maintain_prekeys(&self, me: &Me) -> Result<(), ClientError> {
        if lock(&self.last_prekey_check).is_some_and(|at| at.elapsed() < PREKEY_CHECK_INTERVAL) {
            return Ok(());
        }
        let count = me.relay.prekey_count(&me.signer()).await?.one_time_prekeys;
        let now = now_ms();
        let mut upload = UploadPreKeysRequest::default();
        let mut tx = self.store.write().await?;
        let row = tx.account().await?.ok_or(ClientError::NotRegistered)?;
        let plan = upkeep::plan(UpkeepInput {
            relay_one_time_prekeys: count,
            next_one_time_prekey_id: row.next_one_time_prekey_id,
            next_signed_prekey_id: row.next_signed_prekey_id,
            current_signed_prekey: tx.current_signed_prekey().await?,
            now,
        });
        let mut rng = rand::rng();
        if let Some((first, count)) = plan.one_time_prekeys {
            let fresh = OneTimePreKeyPair::generate_batch(&mut rng, first, count);
            tx.insert_one_time_prekeys(&fresh).await?;
            upload.one_time_prekeys = Some(wire::wire_one_time_prekeys(&fresh));
        }
        if let Some(id) = plan.signed_prekey {
            let fresh = SignedPreKeyPair::generate(&mut rng, &me.identity, id);
            tx.insert_signed_prekey(&fresh, now).await?;
            upload.signed_prekey = Some(wire::wire_signed_prekey(&fresh));
        }
        let mut deleted_secrets = tx
            .delete_retired_signed_prekeys(plan.delete_signed_retired_before)
            .await?;
        let excess = upkeep::excess_one_time_prekeys(
            tx.one_time_prekey_ids().await?,
            plan.next_one_time_prekey_id,
        );
        for id in &excess {
            tx.delete_one_time_prekey(*id).await?;
        }
        deleted_secrets |= !excess.is_empty();
        tx.prune_seen(plan.forget_seen_before).await?;
        tx.set_next_ids(plan.next_one_time_prekey_id, plan.next_signed_prekey_id)
            .await?;
        // Private halves are committed before the relay hands out the public ones.
        tx.commit().await?;
        if deleted_secrets {
            self.store.checkpoint().await?;
        }
        if upload.one_time_prekeys.is_some() || upload.signed_prekey.is_some() {
            me.relay.upload_prekeys(&me.signer(), &upload).await?;
        }
        *lock(&self.last_prekey_check) = Some(Instant::now());
        Ok(())
    }
}
