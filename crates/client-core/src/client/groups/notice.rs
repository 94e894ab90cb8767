//! Typing notices to a group: one group message under our sender key, posted once
//! through the relay's fan-out and marked ephemeral (delivered only to members polling
//! now, never stored), only in groups of at most [`MAX_GROUP_NOTICE_MEMBERS`] members.
//!
//! A notice never distributes or rotates a sender key and never enters the outbox or
//! the fan-out queue: one that cannot go now is of no use later. The receiver shows it
//! as [`crate::Event::Typing`] in the group's conversation, in-process only.

use e2ee_proto::MultiSendRequest;

use super::manage::require_member;
use crate::ClientError;
use crate::client::Client;
use crate::engine::group as engine;
use crate::engine::{Content, Kind};
use crate::groups::{GroupError, MAX_GROUP_NOTICE_MEMBERS};
use crate::relay::now_ms;

impl Client {
    /// Tells the other members of `group` that we started or stopped typing. Returns
    /// how many members the relay took it for; 0 when it was not sent: the group has
    /// more than [`MAX_GROUP_NOTICE_MEMBERS`] members, or a member lacks our current
    /// sender key (or it is due to rotate), which only the next `send_group` hands out.
    pub async fn group_typing(&self, group: &str, started: bool) -> Result<usize, ClientError> {
        let me = self.me().await?;
        let now = now_ms();
        let mut rng = rand::rng();
        let (body, recipients) = {
            let mut tx = self.store.write().await?;
            let row = Self::group_row(&mut tx, group).await?;
            require_member(&row)?;
            let state = engine::restore(&row.changes, &me.row.email)?;
            if state.state().members().count() > MAX_GROUP_NOTICE_MEMBERS {
                return Ok(0);
            }
            let Some(mut session) = tx.outbound_session(row.local_id).await? else {
                return Ok(0);
            };
            let holders = tx.key_holders(row.local_id).await?;
            let plan = engine::plan_send(state.state(), &me.row.email, &holders, row.rotate)
                .ok_or_else(|| GroupError::NotAMember {
                    title: row.title.clone(),
                    status: "not a member",
                })?;
            if plan.rotate || !plan.distribute_to.is_empty() || plan.recipients.is_empty() {
                return Ok(0);
            }
            let content = Content::new(&mut rng, now, Kind::Typing { started });
            let plaintext = content.plaintext()?;
            let message = session
                .encrypt(&mut rng, &plaintext, &engine::context(&row.group_id))
                .map_err(|e| ClientError::Inconsistent(format!("group encryption failed: {e}")))?;
            // The chain advanced: saved before anything leaves, so no message key
            // serves twice.
            tx.save_outbound_session(row.local_id, &session, now)
                .await?;
            tx.commit().await?;
            (engine::envelope(message), plan.recipients)
        };
        let request = MultiSendRequest {
            id: uuid::Builder::from_random_bytes(rand::random())
                .into_uuid()
                .to_string(),
            to: recipients.clone(),
            body: e2ee_proto::Base64Bytes(body),
            ephemeral: true,
        };
        let answer = me.relay.send_multi(&me.signer(), &request).await?;
        Ok(recipients.len().saturating_sub(answer.failed.len()))
    }
}
