//! Reading groups: a user-given name to a group, what a group looks like, the list,
//! and a group conversation's history. Local only: no relay needed.

use e2ee_group::HistoryOnJoin;

use super::conversation;
use crate::client::Client;
use crate::engine::group as engine;
use crate::groups::{
    GroupHistoryMessage, GroupInfo, GroupMember, GroupPolicy, GroupStatus, GroupSummary,
    PendingJoin,
};
use crate::ids::{Email, GroupId, MessageId};
use crate::store::groups::GroupRow;
use crate::{ClientError, JoinRule};

impl Client {
    /// The id of the group `name` names: `#team`, `team`, a clash-suffixed title
    /// (`team-2`) or the group's id.
    pub async fn resolve_group(&self, name: &str) -> Result<GroupId, ClientError> {
        let mut conn = self.store.read().await?;
        let row = Self::group_row(&mut conn, name).await?;
        Ok(GroupId::from_bytes(&row.group_id))
    }

    /// Every group of this profile, oldest first.
    pub async fn groups(&self) -> Result<Vec<GroupSummary>, ClientError> {
        let me = self.own_email().await?;
        let mut conn = self.store.read().await?;
        let mut out = Vec::new();
        for row in conn.groups().await? {
            let members = if row.changes.is_empty() {
                0
            } else {
                engine::restore(&row.changes, &me)?.state().member_count()
            };
            out.push(GroupSummary {
                id: GroupId::from_bytes(&row.group_id),
                title: row.title,
                members,
                status: row.status,
            });
        }
        Ok(out)
    }

    /// Members with their roles, pending requests, banned addresses, the policy and
    /// where we stand.
    pub async fn group_info(&self, group: &str) -> Result<GroupInfo, ClientError> {
        let me = self.own_email().await?;
        let mut conn = self.store.read().await?;
        let row = Self::group_row(&mut conn, group).await?;
        info(&row, &me)
    }

    /// The last `limit` messages of the group conversation, oldest first.
    pub async fn group_history(
        &self,
        group: &str,
        limit: u32,
    ) -> Result<Vec<GroupHistoryMessage>, ClientError> {
        let mut conn = self.store.read().await?;
        let row = Self::group_row(&mut conn, group).await?;
        let rows = conn
            .group_history(&conversation(&row.group_id), limit)
            .await?;
        rows.into_iter()
            .map(|m| {
                Ok(GroupHistoryMessage {
                    id: MessageId::new(m.message_id),
                    from: Email::from_stored(&m.from)?,
                    outgoing: m.outgoing,
                    text: m.text,
                    sent_at: m.sent_at,
                    received_at: m.received_at,
                    shared_by: m.shared_by.as_deref().map(Email::from_stored).transpose()?,
                })
            })
            .collect()
    }

    /// Our address, from the store alone (reads work without a relay).
    async fn own_email(&self) -> Result<String, ClientError> {
        let mut conn = self.store.read().await?;
        Ok(conn
            .account()
            .await?
            .ok_or(ClientError::NotRegistered)?
            .email)
    }
}

fn info(row: &GroupRow, me: &str) -> Result<GroupInfo, ClientError> {
    let id = GroupId::from_bytes(&row.group_id);
    if row.changes.is_empty() {
        return Ok(GroupInfo {
            id,
            title: row.title.clone(),
            group_title: String::new(),
            topic: String::new(),
            policy: GroupPolicy {
                join: JoinRule::Request,
                history: 0,
            },
            members: Vec::new(),
            pending: Vec::new(),
            banned: Vec::new(),
            status: row.status,
            role: None,
            version: 0,
            state_hash: String::new(),
        });
    }
    let group = engine::restore(&row.changes, me)?;
    let state = group.state();
    let policy = state.policy();
    Ok(GroupInfo {
        id,
        title: row.title.clone(),
        group_title: state.title().to_owned(),
        topic: state.topic().to_owned(),
        policy: GroupPolicy {
            join: policy.join,
            history: match policy.history_on_join {
                HistoryOnJoin::LastN(n) => n,
                _ => 0,
            },
        },
        members: state
            .members()
            .filter_map(|m| {
                Some(GroupMember {
                    email: Email::parse(&m.email).ok()?,
                    role: m.role,
                })
            })
            .collect(),
        pending: state
            .pending()
            .filter_map(|p| {
                Some(PendingJoin {
                    email: Email::parse(&p.email).ok()?,
                    note: p.note.clone(),
                })
            })
            .collect(),
        banned: state
            .banned()
            .filter_map(|b| Email::parse(&b.email).ok())
            .collect(),
        status: row.status,
        role: (row.status == GroupStatus::Member)
            .then(|| state.member(me).map(|m| m.role))
            .flatten(),
        version: state.version(),
        state_hash: state.hash().0.iter().map(|b| format!("{b:02x}")).collect(),
    })
}
