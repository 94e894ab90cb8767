//! Creating a group and changing its membership and roles: each a signed change of
//! ours, applied, stored and queued pairwise to the members in one transaction.

use std::collections::{BTreeMap, BTreeSet};

use e2ee_group::{Action, Group, GroupDraft, GroupState, HistoryOnJoin, JoinRule, Policy};
use e2ee_ratchet::IdentityKey;

use super::GroupChanged;
use crate::client::{Client, Me, normalize_email};
use crate::engine::group as engine;
use crate::groups::{GroupError, GroupEvent, GroupInfo, GroupStatus, MAX_SHARED_HISTORY};
use crate::ids::GroupId;
use crate::relay::now_ms;
use crate::{ClientError, ErrorKind};

/// What an admin call asks for, given the group state and the keys of the targets.
type MakeActions<'a> = dyn Fn(&GroupState, &BTreeMap<String, [u8; 32]>) -> Result<Vec<Action>, GroupError>
    + Send
    + Sync
    + 'a;

impl Client {
    /// Creates a group titled `title` with us as its only admin; `history` messages are
    /// shared with each newcomer an admin admits (0: none, at most
    /// [`MAX_SHARED_HISTORY`]). The local title gets a `-2` suffix when another group
    /// of this profile has it.
    pub async fn create_group(
        &self,
        title: &str,
        join: JoinRule,
        history: u16,
    ) -> Result<GroupInfo, ClientError> {
        if title.is_empty() || title.len() > e2ee_group::MAX_TITLE_LEN {
            return Err(GroupError::BadTitle {
                max: e2ee_group::MAX_TITLE_LEN,
            }
            .into());
        }
        let me = self.me().await?;
        let mut rng = rand::rng();
        let policy = Policy {
            join,
            history_on_join: match history.min(MAX_SHARED_HISTORY) {
                0 => HistoryOnJoin::None,
                n => HistoryOnJoin::LastN(n),
            },
        };
        let (group, _) = Group::create(
            &me.identity,
            &me.row.email,
            GroupDraft {
                id: e2ee_group::GroupId::random(&mut rng),
                title: title.to_owned(),
                topic: String::new(),
                policy,
                extra: Vec::new(),
            },
        )
        .map_err(|e| engine::refusal(title, e))?;
        let now = now_ms();
        let id = group.state().id().0;
        let mut tx = self.store.write().await?;
        let row = tx
            .insert_group(
                &id,
                title,
                &engine::encode_changes(&engine::change_list(&group)),
                GroupStatus::Member,
                None,
                now,
            )
            .await?;
        Self::log_group_events(&mut tx, &row, vec![GroupEvent::Created], now).await?;
        tx.commit().await?;
        self.group_info(&GroupId::from_bytes(&id).to_string()).await
    }

    /// Admin: adds `emails` as members. Each key comes from the relay's directory and
    /// is pinned on first use (a contact's pinned key is used as it is). The new
    /// members get every change so far; the others get this one.
    pub async fn group_add(
        &self,
        group: &str,
        emails: &[&str],
    ) -> Result<GroupChanged, ClientError> {
        let targets = emails
            .iter()
            .map(|e| normalize_email(e))
            .collect::<Result<Vec<_>, _>>()?;
        let make = |state: &GroupState, keys: &BTreeMap<String, [u8; 32]>| {
            let mut actions = Vec::new();
            for email in &targets {
                if state.member(email).is_some() {
                    continue;
                }
                let key = keys
                    .get(email)
                    .and_then(|k| IdentityKey::from_bytes(k).ok())
                    .ok_or_else(|| GroupError::MemberKeyMismatch {
                        email: email.clone(),
                    })?;
                actions.push(Action::AddMember {
                    email: email.clone(),
                    identity_key: key,
                });
            }
            Ok(actions)
        };
        self.own_change(group, &targets, &make).await
    }

    /// Admin: removes (kicks) `email`. It is told; every remaining member rotates its
    /// sender key before its next send, so nothing sent after can be read with what it
    /// holds. It may ask to join again.
    pub async fn group_remove(
        &self,
        group: &str,
        email: &str,
    ) -> Result<GroupChanged, ClientError> {
        let email = normalize_email(email)?;
        self.single_action(group, Action::RemoveMember { email })
            .await
    }

    /// Admin: removes `email` if it is a member and bans its address and key: its join
    /// requests are refused from then on.
    pub async fn group_ban(&self, group: &str, email: &str) -> Result<GroupChanged, ClientError> {
        let email = normalize_email(email)?;
        let target = email.clone();
        let make = move |state: &GroupState, keys: &BTreeMap<String, [u8; 32]>| {
            let key = state
                .member(&email)
                .map(|m| m.identity_key)
                .or_else(|| {
                    state
                        .pending()
                        .find(|p| p.email == email)
                        .map(|p| p.identity_key)
                })
                .or_else(|| {
                    keys.get(&email)
                        .and_then(|k| IdentityKey::from_bytes(k).ok())
                })
                .ok_or_else(|| GroupError::MemberKeyMismatch {
                    email: email.clone(),
                })?;
            Ok(vec![Action::Ban {
                email: email.clone(),
                identity_key: key,
            }])
        };
        self.own_change(group, &[target], &make).await
    }

    /// Admin: lifts the ban on `email`.
    pub async fn group_unban(&self, group: &str, email: &str) -> Result<GroupChanged, ClientError> {
        let email = normalize_email(email)?;
        self.single_action(group, Action::Unban { email }).await
    }

    /// Admin: makes member `email` an admin.
    pub async fn group_promote(
        &self,
        group: &str,
        email: &str,
    ) -> Result<GroupChanged, ClientError> {
        let email = normalize_email(email)?;
        self.single_action(group, Action::Promote { email }).await
    }

    /// Admin: makes admin `email` a plain member (never the last admin).
    pub async fn group_demote(
        &self,
        group: &str,
        email: &str,
    ) -> Result<GroupChanged, ClientError> {
        let email = normalize_email(email)?;
        self.single_action(group, Action::Demote { email }).await
    }

    /// Admin: sets the group's topic (empty clears it); every member sees
    /// [`GroupEvent::TopicChanged`].
    pub async fn group_set_topic(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<GroupChanged, ClientError> {
        if topic.len() > e2ee_group::MAX_TOPIC_LEN {
            return Err(GroupError::BadTopic {
                max: e2ee_group::MAX_TOPIC_LEN,
            }
            .into());
        }
        self.single_action(group, Action::SetTopic(topic.to_owned()))
            .await
    }

    /// Leaves the group. The last admin of a group with other members must promote
    /// someone first ([`GroupError::LastAdmin`]).
    pub async fn group_leave(&self, group: &str) -> Result<GroupChanged, ClientError> {
        self.single_action(group, Action::Leave).await
    }

    /// One action of ours that needs no key from the relay: [`Self::own_change`] of it.
    pub(super) async fn single_action(
        &self,
        group: &str,
        action: Action,
    ) -> Result<GroupChanged, ClientError> {
        let make = move |_: &GroupState, _: &BTreeMap<String, [u8; 32]>| Ok(vec![action.clone()]);
        self.own_change(group, &[], &make).await
    }

    /// One change of ours: sessions with every member (and `targets`) first, then
    /// propose, store and queue in one transaction, then post.
    pub(super) async fn own_change(
        &self,
        name: &str,
        targets: &[String],
        make: &MakeActions<'_>,
    ) -> Result<GroupChanged, ClientError> {
        let me = self.me().await?;
        let peers = {
            let mut conn = self.store.read().await?;
            let row = Self::group_row(&mut conn, name).await?;
            let group = engine::restore(&row.changes, &me.row.email)?;
            let mut peers: Vec<(String, Option<[u8; 32]>)> = group
                .state()
                .members()
                .map(|m| (m.email.clone(), Some(m.identity_key.to_bytes())))
                .collect();
            peers.extend(targets.iter().map(|t| (t.clone(), None)));
            peers
        };
        let keys = self.ensure_sessions(&me, &peers).await?;
        let now = now_ms();
        let mut tx = self.store.write().await?;
        let row = Self::group_row(&mut tx, name).await?;
        require_member(&row)?;
        let mut group = engine::restore(&row.changes, &me.row.email)?;
        let before = engine::member_set(group.state());
        let pending_before: BTreeSet<String> =
            group.state().pending().map(|p| p.email.clone()).collect();
        let actions = make(group.state(), &keys)?;
        if actions.is_empty() {
            return Ok(GroupChanged {
                group: GroupId::from_bytes(&row.group_id),
                title: row.title,
                not_reached: Vec::new(),
                queued: false,
            });
        }
        let (change, effects) = group
            .propose(&me.identity, &me.row.email, actions)
            .map_err(|e| engine::refusal(&row.title, e))?;
        let not_reached = Self::store_own_change(
            &mut tx,
            &me,
            &row,
            &group,
            &before,
            &pending_before,
            &change,
            &effects,
            now,
        )
        .await?;
        tx.commit().await?;
        self.hub().wake();
        let queued = self.post_group_traffic(&me).await?;
        Ok(GroupChanged {
            group: GroupId::from_bytes(&row.group_id),
            title: row.title,
            not_reached,
            queued,
        })
    }

    /// Posts the outbox, then the fan-outs. `true` when the relay could not be
    /// reached (everything stays queued); other failures are errors.
    pub(super) async fn post_group_traffic(&self, me: &Me) -> Result<bool, ClientError> {
        let result = async {
            for failure in self.flush_outbox(me).await? {
                tracing::warn!("{failure}");
            }
            self.flush_fanouts(me).await
        }
        .await;
        match result {
            Ok(()) => Ok(false),
            Err(error) if error.kind() == ErrorKind::Network => Ok(true),
            Err(error) => Err(error),
        }
    }
}

/// Refuses an operation on a group we are no member of.
pub(super) fn require_member(row: &crate::store::groups::GroupRow) -> Result<(), ClientError> {
    if row.status == GroupStatus::Member {
        Ok(())
    } else {
        Err(GroupError::NotAMember {
            title: row.title.clone(),
            status: row.status.as_str(),
        }
        .into())
    }
}
