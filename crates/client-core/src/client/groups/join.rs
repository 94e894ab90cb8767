//! Join links and requests: an admin's link, a request carried pairwise to that
//! admin, the one list of pending requests every admin sees, and the answers.

use e2ee_group::{Action, JoinLink, JoinRequest, LinkSecret};

use super::GroupChanged;
use super::manage::require_member;
use crate::client::{Client, normalize_email};
use crate::engine::Kind;
use crate::engine::group as engine;
use crate::groups::{GroupError, GroupStatus, JoinPending, PendingJoin};
use crate::ids::{Email, GroupId};
use crate::relay::now_ms;
use crate::{ClientError, GroupRole};

/// What follows the group's own link text in ours: the admin the requests go to.
const ADMIN_PARAM: &str = "&a=";

/// Splits our link text into the group's link and the admin's address.
fn parse_link(text: &str) -> Result<(JoinLink, String), GroupError> {
    let bad = |reason: String| GroupError::BadLink { reason };
    let (link, admin) = text
        .trim()
        .rsplit_once(ADMIN_PARAM)
        .ok_or_else(|| bad("it names no admin to ask".to_owned()))?;
    let link: JoinLink = link
        .parse()
        .map_err(|e: e2ee_group::JoinLinkError| bad(e.to_string()))?;
    let admin = normalize_email(admin).map_err(|e| bad(e.to_string()))?;
    Ok((link, admin))
}

impl Client {
    /// Admin: the group's join link, made (a signed change) on the first call. It holds
    /// the secret that lets its holder ask to join, and our address, where the requests
    /// come: share it only with whoever may ask.
    pub async fn group_link(&self, group: &str) -> Result<String, ClientError> {
        let me = self.me().await?;
        let existing = {
            let mut conn = self.store.read().await?;
            let row = Self::group_row(&mut conn, group).await?;
            require_member(&row)?;
            let state = engine::restore(&row.changes, &me.row.email)?;
            if !matches!(
                state.state().member(&me.row.email).map(|m| m.role),
                Some(GroupRole::Admin)
            ) {
                return Err(GroupError::NotAdmin { title: row.title }.into());
            }
            state.state().join_link()
        };
        let link = match existing {
            Some(link) => link,
            None => {
                let secret = LinkSecret::random(&mut rand::rng());
                self.single_action(group, Action::SetJoinLink(Some(secret)))
                    .await?;
                let mut conn = self.store.read().await?;
                let row = Self::group_row(&mut conn, group).await?;
                engine::restore(&row.changes, &me.row.email)?
                    .state()
                    .join_link()
                    .ok_or_else(|| ClientError::Inconsistent("the join link vanished".to_owned()))?
            }
        };
        Ok(format!("{link}{ADMIN_PARAM}{}", me.row.email))
    }

    /// Asks to join the group of `link` with a note for its admins. The request goes
    /// pairwise to the link's admin; [`crate::GroupEvent::JoinAccepted`] or
    /// [`crate::GroupEvent::JoinRejected`] reports the answer.
    pub async fn group_join(&self, link: &str, note: &str) -> Result<JoinPending, ClientError> {
        let (link, admin) = parse_link(link)?;
        let me = self.me().await?;
        let request = JoinRequest::new(&link, &me.identity, &me.row.email, note).map_err(|e| {
            GroupError::BadLink {
                reason: e.to_string(),
            }
        })?;
        let id = link.group_id.0;
        {
            let mut conn = self.store.read().await?;
            if let Some(row) = conn.group_by_id(&id).await?
                && matches!(row.status, GroupStatus::Member | GroupStatus::Pending)
            {
                return Err(GroupError::AlreadyJoined {
                    title: row.title,
                    status: row.status.as_str(),
                }
                .into());
            }
        }
        let keys = self.ensure_sessions(&me, &[(admin.clone(), None)]).await?;
        if !keys.contains_key(&admin) {
            return Err(ClientError::UnknownAccount { email: admin });
        }
        let now = now_ms();
        let mut tx = self.store.write().await?;
        let row = match tx.group_by_id(&id).await? {
            Some(row) => {
                tx.set_group_pending(row.local_id, &admin).await?;
                row
            }
            None => {
                let title = format!("join-{}", &GroupId::from_bytes(&id).as_str()[..8]);
                tx.insert_group(&id, &title, &[], GroupStatus::Pending, Some(&admin), now)
                    .await?
            }
        };
        let kind = Kind::JoinRequest {
            request: request.to_bytes(),
        };
        if !Self::seal_control(&mut tx, &admin, None, kind, now).await? {
            return Err(ClientError::UnknownAccount { email: admin });
        }
        tx.commit().await?;
        self.post_group_traffic(&me).await?;
        Ok(JoinPending {
            group: GroupId::from_bytes(&id),
            title: row.title,
            admin: Email::parse(&admin)?,
        })
    }

    /// The join requests waiting for an admin of `group`: one list, the same for
    /// every admin.
    pub async fn group_requests(&self, group: &str) -> Result<Vec<PendingJoin>, ClientError> {
        let me = self.me().await?;
        let mut conn = self.store.read().await?;
        let row = Self::group_row(&mut conn, group).await?;
        let state = engine::restore(&row.changes, &me.row.email)?;
        Ok(state
            .state()
            .pending()
            .filter_map(|p| {
                Some(PendingJoin {
                    email: Email::parse(&p.email).ok()?,
                    note: p.note.clone(),
                })
            })
            .collect())
    }

    /// Admin: admits the pending requester `email`. It gets every change, and the last
    /// N messages when the policy shares history.
    pub async fn group_accept(
        &self,
        group: &str,
        email: &str,
    ) -> Result<GroupChanged, ClientError> {
        let email = normalize_email(email)?;
        self.single_action(group, Action::AcceptRequest { email })
            .await
    }

    /// Admin: refuses the pending request of `email`; it is told.
    pub async fn group_reject(
        &self,
        group: &str,
        email: &str,
    ) -> Result<GroupChanged, ClientError> {
        let email = normalize_email(email)?;
        self.single_action(group, Action::RejectRequest { email })
            .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn links_name_their_admin() {
        let link = JoinLink {
            group_id: e2ee_group::GroupId([1; 16]),
            secret: LinkSecret::from_bytes([2; 32]),
        };
        let text = format!("{link}{ADMIN_PARAM}alice@x");
        let (parsed, admin) = parse_link(&text).unwrap();
        assert_eq!(parsed, link);
        assert_eq!(admin, "alice@x");
        assert!(parse_link(&link.to_string()).is_err());
        assert!(parse_link("e2ee:join?g=x&k=y&a=alice@x").is_err());
        assert!(parse_link(&format!("{link}{ADMIN_PARAM}not an address")).is_err());
    }
}
