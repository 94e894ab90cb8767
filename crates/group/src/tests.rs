//! Unit tests: one per rule and one per refusal; every refusal leaves the group
//! byte-identical.

use e2ee_ratchet::IdentityKeyPair;
use sha2::{Digest, Sha256};

use crate::*;

fn party(seed: u8) -> IdentityKeyPair {
    IdentityKeyPair::from_bytes(&[seed; 32])
}

const ALICE: &str = "alice@x";
const BOB: &str = "bob@x";
const CAROL: &str = "carol@x";
const DAVE: &str = "dave@x";

struct World {
    alice: IdentityKeyPair,
    bob: IdentityKeyPair,
    carol: IdentityKeyPair,
    dave: IdentityKeyPair,
    group: Group,
    genesis: GroupChange,
    secret: LinkSecret,
}

fn policy(join: JoinRule, history_on_join: HistoryOnJoin) -> Policy {
    Policy {
        join,
        history_on_join,
    }
}

/// Alice (admin) and Bob (member) in a group with a join link; Carol and Dave outside.
fn world(join: JoinRule) -> World {
    let alice = party(1);
    let bob = party(2);
    let secret = LinkSecret::from_bytes([9; 32]);
    let (group, genesis) = Group::create(
        &alice,
        ALICE,
        GroupDraft {
            id: GroupId([7; 16]),
            title: "team".into(),
            topic: "plans".into(),
            policy: policy(join, HistoryOnJoin::LastN(20)),
            extra: vec![
                Action::AddMember {
                    email: BOB.into(),
                    identity_key: bob.public_key(),
                },
                Action::SetJoinLink(Some(secret.clone())),
            ],
        },
    )
    .unwrap();
    World {
        alice,
        bob,
        carol: party(3),
        dave: party(4),
        group,
        genesis,
        secret,
    }
}

impl World {
    fn link(&self) -> JoinLink {
        JoinLink {
            group_id: self.group.state().id(),
            secret: self.secret.clone(),
        }
    }

    /// A change on the group's current heads, signed by `who`, not yet received.
    fn draft(&self, who: &IdentityKeyPair, email: &str, actions: Vec<Action>) -> GroupChange {
        let state = self.group.state();
        GroupChange::sign(
            who,
            ChangeDraft {
                group_id: state.id(),
                version: state.version() + 1,
                parents: state.heads().to_vec(),
                prev_hash: state.hash(),
                author_email: email.into(),
                actions,
            },
        )
        .unwrap()
    }

    fn alice_does(&mut self, actions: Vec<Action>) -> Effects {
        let alice = party(1);
        self.group.propose(&alice, ALICE, actions).unwrap().1
    }
}

type Snapshot = (Vec<u8>, usize, Vec<Vec<u8>>);

fn snapshot(group: &Group) -> Snapshot {
    (
        group.state().canonical_bytes(),
        group.held_count(),
        group.changes().map(GroupChange::to_bytes).collect(),
    )
}

/// Receiving `change` fails with `expected`, and the group is exactly as before.
fn refused(group: &mut Group, change: GroupChange, expected: ChangeError) {
    let before = snapshot(group);
    let hash = group.state().hash();
    assert_eq!(group.receive(change), Err(expected));
    assert_eq!(snapshot(group), before);
    assert_eq!(group.state().hash(), hash);
}

/// Proposing fails with `expected`, and the group is exactly as before.
fn propose_refused(
    group: &mut Group,
    who: &IdentityKeyPair,
    email: &str,
    actions: Vec<Action>,
    expected: ChangeError,
) {
    let before = snapshot(group);
    assert_eq!(
        group.propose(who, email, actions).map(|_| ()),
        Err(expected)
    );
    assert_eq!(snapshot(group), before);
}

// ---- rules ----

#[test]
fn create_makes_the_author_the_only_admin() {
    let w = world(JoinRule::Request);
    let s = w.group.state();
    assert_eq!(s.version(), 1);
    assert_eq!(s.title(), "team");
    assert_eq!(s.topic(), "plans");
    assert_eq!(s.member(ALICE).unwrap().role, Role::Admin);
    assert_eq!(s.member(BOB).unwrap().role, Role::Member);
    assert_eq!(s.heads(), [w.genesis.id()]);
    // Bob, given only the creation, holds the same state.
    let at_bob = Group::from_genesis(w.genesis.clone(), BOB).unwrap();
    assert_eq!(at_bob.state().hash(), s.hash());
}

#[test]
fn add_then_kick_tells_the_removed_member_and_makes_the_rest_rotate() {
    let mut w = world(JoinRule::Invite);
    let carol_key = w.carol.public_key();
    let effects = w.alice_does(vec![Action::AddMember {
        email: CAROL.into(),
        identity_key: carol_key,
    }]);
    assert_eq!(effects.added, [CAROL]);
    assert!(!effects.rotate_sender_key, "an add needs no rotation");
    let mut at_carol = Group::from_genesis(w.genesis.clone(), CAROL).unwrap();
    let mut at_bob = Group::from_genesis(w.genesis.clone(), BOB).unwrap();
    let add = w.group.changes().last().unwrap().clone();
    let Received::Applied(joined) = at_carol.receive(add.clone()).unwrap() else {
        panic!("applies");
    };
    assert!(joined.we_joined);
    at_bob.receive(add).unwrap();

    let (kick, effects) = w
        .group
        .propose(
            &w.alice,
            ALICE,
            vec![Action::RemoveMember {
                email: CAROL.into(),
            }],
        )
        .unwrap();
    assert_eq!(effects.removed, [CAROL]);
    assert!(effects.rotate_sender_key);
    let Received::Applied(at_carol_effects) = at_carol.receive(kick.clone()).unwrap() else {
        panic!("applies");
    };
    assert!(at_carol_effects.we_were_removed);
    assert!(!at_carol_effects.rotate_sender_key, "carol no longer sends");
    let Received::Applied(at_bob_effects) = at_bob.receive(kick).unwrap() else {
        panic!("applies");
    };
    assert!(at_bob_effects.rotate_sender_key && !at_bob_effects.we_were_removed);
    assert_eq!(at_bob.state().hash(), w.group.state().hash());
    assert_eq!(at_carol.state().hash(), w.group.state().hash());
}

#[test]
fn ban_kicks_and_refuses_later_requests_by_address_or_key() {
    let mut w = world(JoinRule::Request);
    let bob_key = w.bob.public_key();
    let effects = w.alice_does(vec![Action::Ban {
        email: BOB.into(),
        identity_key: bob_key,
    }]);
    assert_eq!(effects.removed, [BOB]);
    assert_eq!(effects.banned, [BOB]);
    assert!(effects.rotate_sender_key);
    assert_eq!(w.group.state().join_status(BOB), JoinStatus::Banned);
    let link = w.link();
    let again = JoinRequest::new(&link, &w.bob, BOB, "sorry").unwrap();
    assert_eq!(
        w.group.state().check_join_request(&again),
        Err(ChangeError::BannedRequester)
    );
    // The same key under another address is refused too.
    let disguised = JoinRequest::new(&link, &w.bob, "bobby@y", "new me").unwrap();
    assert_eq!(
        w.group.state().check_join_request(&disguised),
        Err(ChangeError::BannedRequester)
    );
    let change = w.draft(&w.alice, ALICE, vec![Action::Join(again)]);
    refused(&mut w.group, change, ChangeError::BannedRequester);
    // Adding a banned member directly is refused as well: unban first.
    propose_refused(
        &mut w.group,
        &party(1),
        ALICE,
        vec![Action::AddMember {
            email: BOB.into(),
            identity_key: bob_key,
        }],
        ChangeError::TargetBanned,
    );
}

#[test]
fn unban_lets_the_address_ask_again() {
    let mut w = world(JoinRule::Request);
    let carol_key = w.carol.public_key();
    w.alice_does(vec![Action::Ban {
        email: CAROL.into(),
        identity_key: carol_key,
    }]);
    let effects = w.alice_does(vec![Action::Unban {
        email: CAROL.into(),
    }]);
    assert_eq!(effects.unbanned, [CAROL]);
    let request = JoinRequest::new(&w.link(), &w.carol, CAROL, "hello").unwrap();
    assert_eq!(
        w.group.state().check_join_request(&request),
        Ok(JoinDecision::Pending)
    );
    propose_refused(
        &mut w.group,
        &party(1),
        ALICE,
        vec![Action::Unban {
            email: CAROL.into(),
        }],
        ChangeError::NotBanned,
    );
    w.alice_does(vec![Action::Ban {
        email: CAROL.into(),
        identity_key: carol_key,
    }]);
    propose_refused(
        &mut w.group,
        &party(1),
        ALICE,
        vec![Action::Ban {
            email: CAROL.into(),
            identity_key: carol_key,
        }],
        ChangeError::AlreadyBanned,
    );
    // A change that would not encode is refused before it is signed.
    propose_refused(
        &mut w.group,
        &party(1),
        ALICE,
        vec![Action::SetTitle("x".repeat(MAX_TITLE_LEN + 1))],
        ChangeError::Encoding(DecodeError::TooLong {
            field: "title",
            max: MAX_TITLE_LEN,
        }),
    );
}

#[test]
fn promote_and_demote_and_the_last_admin_rule() {
    let mut w = world(JoinRule::Invite);
    let effects = w.alice_does(vec![Action::Promote { email: BOB.into() }]);
    assert_eq!(effects.promoted, [BOB]);
    propose_refused(
        &mut w.group,
        &party(1),
        ALICE,
        vec![Action::Promote { email: BOB.into() }],
        ChangeError::AlreadyHasRole,
    );
    let (_, effects) = w
        .group
        .propose(
            &w.bob,
            BOB,
            vec![Action::Demote {
                email: ALICE.into(),
            }],
        )
        .unwrap();
    assert_eq!(effects.demoted, [ALICE]);
    // Bob is now the only admin: he may not demote himself or leave.
    propose_refused(
        &mut w.group,
        &party(2),
        BOB,
        vec![Action::Demote { email: BOB.into() }],
        ChangeError::LastAdmin,
    );
    propose_refused(
        &mut w.group,
        &party(2),
        BOB,
        vec![Action::Leave],
        ChangeError::LastAdmin,
    );
    // Alice lost the role with the demotion.
    propose_refused(
        &mut w.group,
        &party(1),
        ALICE,
        vec![Action::SetTitle("mine".into())],
        ChangeError::AuthorLacksRole {
            needed: Role::Admin,
        },
    );
}

#[test]
fn leave_and_the_last_admin_promotes_first_in_the_same_change() {
    let mut w = world(JoinRule::Invite);
    propose_refused(
        &mut w.group,
        &party(1),
        ALICE,
        vec![Action::Leave],
        ChangeError::LastAdmin,
    );
    let effects = w.alice_does(vec![Action::Promote { email: BOB.into() }, Action::Leave]);
    assert_eq!(effects.removed, [ALICE]);
    assert!(effects.we_were_removed, "the group is held by alice");
    assert!(!effects.rotate_sender_key, "alice no longer sends");
    assert_eq!(w.group.state().member(BOB).unwrap().role, Role::Admin);
    // Bob leaving alone: the last member may leave; the group is then empty.
    let (_, effects) = w.group.propose(&w.bob, BOB, vec![Action::Leave]).unwrap();
    assert_eq!(effects.removed, [BOB]);
    assert_eq!(w.group.state().member_count(), 0);
}

#[test]
fn a_member_may_leave_and_the_rest_rotate() {
    let mut w = world(JoinRule::Invite);
    let mut at_alice = w.group.clone();
    let (leave, _) = w.group.propose(&w.bob, BOB, vec![Action::Leave]).unwrap();
    let Received::Applied(effects) = at_alice.receive(leave).unwrap() else {
        panic!("applies");
    };
    assert_eq!(effects.removed, [BOB]);
    assert!(effects.rotate_sender_key);
}

#[test]
fn request_policy_keeps_requests_pending_until_an_admin_answers() {
    let mut w = world(JoinRule::Request);
    let carol_req = JoinRequest::new(&w.link(), &w.carol, CAROL, "it's carol").unwrap();
    let dave_req = JoinRequest::new(&w.link(), &w.dave, DAVE, "dave here").unwrap();
    // Bob, a plain member, passes Carol's request on; Alice records Dave's.
    let (_, effects) = w
        .group
        .propose(&w.bob, BOB, vec![Action::Join(carol_req)])
        .unwrap();
    assert_eq!(effects.requested, [CAROL]);
    assert!(effects.added.is_empty());
    w.alice_does(vec![Action::Join(dave_req.clone())]);
    let pending: Vec<_> = w.group.state().pending().map(|p| p.email.clone()).collect();
    assert_eq!(pending, [CAROL, DAVE], "one list for every admin");
    assert_eq!(w.group.state().pending().next().unwrap().note, "it's carol");
    assert_eq!(w.group.state().join_status(CAROL), JoinStatus::Pending);
    // Recording the same request twice is refused.
    propose_refused(
        &mut w.group,
        &party(1),
        ALICE,
        vec![Action::Join(dave_req)],
        ChangeError::AlreadyPending,
    );
    // Bob may not answer requests.
    propose_refused(
        &mut w.group,
        &party(2),
        BOB,
        vec![Action::AcceptRequest {
            email: CAROL.into(),
        }],
        ChangeError::AuthorLacksRole {
            needed: Role::Admin,
        },
    );
    let effects = w.alice_does(vec![Action::AcceptRequest {
        email: CAROL.into(),
    }]);
    assert_eq!(effects.added, [CAROL]);
    assert_eq!(
        effects.send_history,
        Some(HistoryDuty {
            to: vec![CAROL.into()],
            last_n: 20
        })
    );
    assert_eq!(
        w.group.state().join_status(CAROL),
        JoinStatus::Member(Role::Member)
    );
    let effects = w.alice_does(vec![Action::RejectRequest { email: DAVE.into() }]);
    assert_eq!(effects.rejected, [DAVE]);
    assert_eq!(w.group.state().join_status(DAVE), JoinStatus::Outside);
    propose_refused(
        &mut w.group,
        &party(1),
        ALICE,
        vec![Action::RejectRequest { email: DAVE.into() }],
        ChangeError::NotPending,
    );
}

#[test]
fn open_policy_admits_at_once_and_history_follows_the_policy() {
    let mut w = world(JoinRule::Open);
    let req = JoinRequest::new(&w.link(), &w.carol, CAROL, "").unwrap();
    assert_eq!(
        w.group.state().check_join_request(&req),
        Ok(JoinDecision::Admit)
    );
    let effects = w.alice_does(vec![Action::Join(req)]);
    assert_eq!(effects.added, [CAROL]);
    assert_eq!(effects.send_history.unwrap().to, [CAROL]);
    // Under history None, no history duty.
    w.alice_does(vec![Action::SetPolicy(policy(
        JoinRule::Open,
        HistoryOnJoin::None,
    ))]);
    let req = JoinRequest::new(&w.link(), &w.dave, DAVE, "").unwrap();
    let effects = w.alice_does(vec![Action::Join(req)]);
    assert_eq!(effects.added, [DAVE]);
    assert_eq!(effects.send_history, None);
}

#[test]
fn history_duty_is_only_for_the_admitting_admin() {
    let mut w = world(JoinRule::Open);
    let mut at_bob = w.group.clone();
    let req = JoinRequest::new(&w.link(), &w.carol, CAROL, "").unwrap();
    let (change, _) = w
        .group
        .propose(&w.alice, ALICE, vec![Action::Join(req)])
        .unwrap();
    let Received::Applied(effects) = at_bob.receive(change).unwrap() else {
        panic!("applies");
    };
    assert_eq!(effects.added, [CAROL]);
    assert_eq!(effects.send_history, None);
}

#[test]
fn invite_policy_and_disabled_or_rotated_links_refuse_requests() {
    let mut w = world(JoinRule::Invite);
    let req = JoinRequest::new(&w.link(), &w.carol, CAROL, "").unwrap();
    let change = w.draft(&w.alice, ALICE, vec![Action::Join(req.clone())]);
    refused(&mut w.group, change, ChangeError::JoinsDisabled);

    let mut w = world(JoinRule::Request);
    let old_link = w.link();
    w.alice_does(vec![Action::SetJoinLink(Some(LinkSecret::from_bytes(
        [10; 32],
    )))]);
    let stale = JoinRequest::new(&old_link, &w.carol, CAROL, "").unwrap();
    let change = w.draft(&w.alice, ALICE, vec![Action::Join(stale)]);
    refused(&mut w.group, change, ChangeError::BadJoinProof);
    w.alice_does(vec![Action::SetJoinLink(None)]);
    assert!(w.group.state().join_link().is_none());
    let req = JoinRequest::new(&old_link, &w.carol, CAROL, "").unwrap();
    let change = w.draft(&w.alice, ALICE, vec![Action::Join(req)]);
    refused(&mut w.group, change, ChangeError::JoinsDisabled);
}

#[test]
fn forged_join_requests_are_refused() {
    let mut w = world(JoinRule::Request);
    let link = w.link();
    // Carol's proof under Dave's key and signature: the proof binds the key.
    let carol = JoinRequest::new(&link, &w.carol, CAROL, "").unwrap();
    let mut bytes = carol.to_bytes();
    bytes[17..49].copy_from_slice(w.dave.public_key().as_bytes());
    let swapped = JoinRequest::from_bytes(&bytes).unwrap();
    let change = w.draft(&w.alice, ALICE, vec![Action::Join(swapped)]);
    refused(&mut w.group, change, ChangeError::BadJoinRequestSignature);
    // Signed by Dave, with a proof made under some other secret.
    let wrong_link = JoinLink {
        group_id: link.group_id,
        secret: LinkSecret::from_bytes([1; 32]),
    };
    let no_link = JoinRequest::new(&wrong_link, &w.dave, DAVE, "").unwrap();
    let change = w.draft(&w.alice, ALICE, vec![Action::Join(no_link)]);
    refused(&mut w.group, change, ChangeError::BadJoinProof);
    // A request for another group.
    let other = JoinLink {
        group_id: GroupId([8; 16]),
        secret: w.secret.clone(),
    };
    let elsewhere = JoinRequest::new(&other, &w.dave, DAVE, "").unwrap();
    let change = w.draft(&w.alice, ALICE, vec![Action::Join(elsewhere)]);
    refused(&mut w.group, change, ChangeError::JoinRequestWrongGroup);
}

#[test]
fn join_links_have_one_text_form() {
    let w = world(JoinRule::Request);
    let link = w.group.state().join_link().unwrap();
    let text = link.to_string();
    assert_eq!(
        text,
        "e2ee:join?g=BwcHBwcHBwcHBwcHBwcHBw&k=CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk"
    );
    assert_eq!(text.parse::<JoinLink>().unwrap(), link);
    for (bad, error) in [
        ("https://x/join?g=a&k=b", JoinLinkError::NotAJoinLink),
        ("e2ee:join?k=CQkJ&g=BwcH", JoinLinkError::Malformed),
        ("e2ee:join?g=BwcH", JoinLinkError::Malformed),
        ("e2ee:join?g=BwcH&k=CQkJ", JoinLinkError::BadGroupId),
        (
            "e2ee:join?g=BwcHBwcHBwcHBwcHBwcHBw&k=CQkJ",
            JoinLinkError::BadSecret,
        ),
        (
            "e2ee:join?g=BwcHBwcHBwcHBwcHBwcHBw==&k=CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk",
            JoinLinkError::BadGroupId,
        ),
    ] {
        assert_eq!(bad.parse::<JoinLink>(), Err(error), "{bad}");
    }
    // Secrets never reach Debug output.
    let secret_b64 = "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk";
    let debug = format!("{link:?} {:?} {:?}", w.group.state(), w.group);
    assert!(!debug.contains(secret_b64));
    assert!(!debug.contains("9, 9, 9, 9"));
}

// ---- refusals of changes ----

#[test]
fn a_bad_signature_is_refused() {
    let mut w = world(JoinRule::Invite);
    let change = w.draft(&w.alice, ALICE, vec![Action::SetTitle("t".into())]);
    let mut bytes = change.to_bytes();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let forged = GroupChange::from_bytes(&bytes).unwrap();
    refused(&mut w.group, forged, ChangeError::BadSignature);
    // Signed by Bob's key while claiming to be Alice: Alice's key is not the signer.
    let mut bytes = change.to_bytes();
    let body = bytes.len() - 64;
    let sig = w.bob.sign(b"anything");
    bytes[body..].copy_from_slice(&sig);
    refused(
        &mut w.group,
        GroupChange::from_bytes(&bytes).unwrap(),
        ChangeError::BadSignature,
    );
}

#[test]
fn a_non_member_or_impostor_author_is_refused() {
    let mut w = world(JoinRule::Invite);
    let outsider = w.draft(&w.carol, CAROL, vec![Action::SetTitle("mine".into())]);
    refused(&mut w.group, outsider, ChangeError::NotAMember);
    // Carol's key claiming Alice's address.
    let impostor = w.draft(&w.carol, ALICE, vec![Action::SetTitle("mine".into())]);
    refused(&mut w.group, impostor, ChangeError::NotAMember);
}

#[test]
fn every_admin_action_from_a_plain_member_is_refused() {
    let mut w = world(JoinRule::Request);
    let carol = w.carol.public_key();
    let actions = [
        Action::AddMember {
            email: CAROL.into(),
            identity_key: carol,
        },
        Action::RemoveMember {
            email: ALICE.into(),
        },
        Action::Ban {
            email: CAROL.into(),
            identity_key: carol,
        },
        Action::Unban {
            email: CAROL.into(),
        },
        Action::Promote { email: BOB.into() },
        Action::Demote {
            email: ALICE.into(),
        },
        Action::SetTitle("x".into()),
        Action::SetTopic("x".into()),
        Action::SetPolicy(Policy::default()),
        Action::SetJoinLink(None),
        Action::AcceptRequest {
            email: CAROL.into(),
        },
        Action::RejectRequest {
            email: CAROL.into(),
        },
    ];
    for action in actions {
        assert_eq!(action.required_role(), Some(Role::Admin));
        let change = w.draft(&w.bob, BOB, vec![action]);
        refused(
            &mut w.group,
            change,
            ChangeError::AuthorLacksRole {
                needed: Role::Admin,
            },
        );
    }
}

#[test]
fn wrong_versions_are_refused() {
    let mut w = world(JoinRule::Invite);
    w.alice_does(vec![Action::SetTitle("v2".into())]);
    let state = w.group.state().clone();
    for version in [state.version(), state.version() + 2, 0, u64::MAX] {
        let change = GroupChange::sign(
            &w.alice,
            ChangeDraft {
                group_id: state.id(),
                version,
                parents: state.heads().to_vec(),
                prev_hash: state.hash(),
                author_email: ALICE.into(),
                actions: vec![Action::SetTitle("x".into())],
            },
        )
        .unwrap();
        refused(
            &mut w.group,
            change,
            ChangeError::WrongVersion {
                expected: 3,
                got: version,
            },
        );
    }
}

#[test]
fn a_stale_or_wrong_previous_state_hash_is_refused() {
    let mut w = world(JoinRule::Invite);
    let stale_hash = w.group.state().hash();
    w.alice_does(vec![Action::SetTitle("v2".into())]);
    let state = w.group.state().clone();
    let change = GroupChange::sign(
        &w.alice,
        ChangeDraft {
            group_id: state.id(),
            version: state.version() + 1,
            parents: state.heads().to_vec(),
            prev_hash: stale_hash,
            author_email: ALICE.into(),
            actions: vec![Action::SetTopic("x".into())],
        },
    )
    .unwrap();
    refused(&mut w.group, change, ChangeError::PrevHashMismatch);
}

#[test]
fn other_groups_second_creations_and_empty_changes_are_refused() {
    let mut w = world(JoinRule::Invite);
    let state = w.group.state().clone();
    let sign = |draft: ChangeDraft| GroupChange::sign(&party(1), draft).unwrap();
    let base = ChangeDraft {
        group_id: state.id(),
        version: 2,
        parents: state.heads().to_vec(),
        prev_hash: state.hash(),
        author_email: ALICE.into(),
        actions: vec![Action::SetTitle("x".into())],
    };
    let mut other = base.clone();
    other.group_id = GroupId([1; 16]);
    refused(&mut w.group, sign(other), ChangeError::WrongGroup);
    let mut second = base.clone();
    second.actions = vec![Action::Create {
        title: "again".into(),
        topic: String::new(),
        policy: Policy::default(),
    }];
    refused(&mut w.group, sign(second), ChangeError::NotGenesis);
    let mut rootless = base.clone();
    rootless.parents.clear();
    rootless.version = 1;
    refused(&mut w.group, sign(rootless), ChangeError::NotGenesis);
    let mut empty = base;
    empty.actions.clear();
    refused(&mut w.group, sign(empty), ChangeError::NoActions);
    // A creation handed to from_genesis must be one.
    let later = w.draft(&w.alice, ALICE, vec![Action::SetTitle("x".into())]);
    assert_eq!(
        Group::from_genesis(later, ALICE).map(|_| ()),
        Err(ChangeError::NotGenesis)
    );
}

#[test]
fn target_rules_are_refused() {
    let mut w = world(JoinRule::Invite);
    let alice_key = w.alice.public_key();
    for (action, error) in [
        (
            Action::RemoveMember {
                email: ALICE.into(),
            },
            ChangeError::TargetIsAuthor,
        ),
        (
            Action::Ban {
                email: ALICE.into(),
                identity_key: alice_key,
            },
            ChangeError::TargetIsAuthor,
        ),
        (
            Action::RemoveMember {
                email: CAROL.into(),
            },
            ChangeError::UnknownMember,
        ),
        (
            Action::Promote {
                email: CAROL.into(),
            },
            ChangeError::UnknownMember,
        ),
        (
            Action::AddMember {
                email: BOB.into(),
                identity_key: party(2).public_key(),
            },
            ChangeError::AlreadyMember,
        ),
        // A second address for a member's key is refused: a key names one member.
        (
            Action::AddMember {
                email: "bob2@x".into(),
                identity_key: party(2).public_key(),
            },
            ChangeError::AlreadyMember,
        ),
        (
            Action::AcceptRequest {
                email: CAROL.into(),
            },
            ChangeError::NotPending,
        ),
    ] {
        let change = w.draft(&w.alice, ALICE, vec![action]);
        refused(&mut w.group, change, error);
    }
    // All or nothing: a valid action followed by a refused one applies neither.
    let change = w.draft(
        &w.alice,
        ALICE,
        vec![
            Action::SetTitle("half".into()),
            Action::RemoveMember {
                email: CAROL.into(),
            },
        ],
    );
    refused(&mut w.group, change, ChangeError::UnknownMember);
    assert_eq!(w.group.state().title(), "team");
}

#[test]
fn the_member_limit_is_enforced() {
    let mut w = world(JoinRule::Invite);
    let mut n = 0u32;
    while w.group.state().member_count() < MAX_MEMBERS {
        let actions = (0..MAX_ACTIONS_PER_CHANGE)
            .take(MAX_MEMBERS - w.group.state().member_count())
            .map(|_| {
                n += 1;
                let mut seed = [0u8; 32];
                seed[..4].copy_from_slice(&n.to_be_bytes());
                seed[31] = 0xee;
                Action::AddMember {
                    email: format!("m{n}@x"),
                    identity_key: IdentityKeyPair::from_bytes(&seed).public_key(),
                }
            })
            .collect();
        w.alice_does(actions);
    }
    let change = w.draft(
        &w.alice,
        ALICE,
        vec![Action::AddMember {
            email: CAROL.into(),
            identity_key: w.carol.public_key(),
        }],
    );
    refused(
        &mut w.group,
        change,
        ChangeError::LimitReached {
            what: "members",
            max: MAX_MEMBERS,
        },
    );
}

// ---- history: held, duplicate, concurrent ----

#[test]
fn a_change_with_unknown_parents_is_held_then_applied() {
    let mut w = world(JoinRule::Invite);
    let mut at_bob = Group::from_genesis(w.genesis.clone(), BOB).unwrap();
    let (first, _) = w
        .group
        .propose(&w.alice, ALICE, vec![Action::SetTitle("one".into())])
        .unwrap();
    let (second, _) = w
        .group
        .propose(&w.alice, ALICE, vec![Action::SetTopic("two".into())])
        .unwrap();
    let before = snapshot(&at_bob).0;
    assert_eq!(at_bob.receive(second.clone()), Ok(Received::Held));
    assert_eq!(
        at_bob.state().canonical_bytes(),
        before,
        "held, not applied"
    );
    assert_eq!(at_bob.missing_parents(), [first.id()]);
    assert_eq!(w.group.change(&first.id()), Some(&first));
    assert_eq!(at_bob.receive(second.clone()), Ok(Received::Duplicate));
    let Received::Applied(effects) = at_bob.receive(first.clone()).unwrap() else {
        panic!("applies");
    };
    assert_eq!(effects.accepted, [first.id(), second.id()]);
    assert_eq!(at_bob.held_count(), 0);
    assert_eq!(at_bob.state().hash(), w.group.state().hash());
    assert_eq!(at_bob.receive(first), Ok(Received::Duplicate));
}

#[test]
fn held_changes_are_bounded() {
    let mut w = world(JoinRule::Invite);
    let mut at_bob = Group::from_genesis(w.genesis.clone(), BOB).unwrap();
    let mut later = Vec::new();
    for i in 0..=MAX_HELD_CHANGES {
        let (c, _) = w
            .group
            .propose(&w.alice, ALICE, vec![Action::SetTitle(format!("t{i}"))])
            .unwrap();
        later.push(c);
    }
    for c in &later[1..] {
        assert_eq!(at_bob.receive(c.clone()), Ok(Received::Held));
    }
    let (extra, _) = w
        .group
        .propose(&w.alice, ALICE, vec![Action::SetTitle("extra".into())])
        .unwrap();
    refused(
        &mut at_bob,
        extra.clone(),
        ChangeError::TooManyHeld {
            max: MAX_HELD_CHANGES,
        },
    );
    at_bob.receive(later[0].clone()).unwrap();
    at_bob.receive(extra).unwrap();
    assert_eq!(at_bob.held_count(), 0);
    assert_eq!(at_bob.state().hash(), w.group.state().hash());
}

#[test]
fn held_changes_built_on_a_refused_change_are_dropped() {
    let w = world(JoinRule::Invite);
    let mut at_bob = Group::from_genesis(w.genesis.clone(), BOB).unwrap();
    // Bob, a plain member, makes an admin change, then builds on it in his own copy of
    // the history (which the rules refuse everywhere).
    let bad = w.draft(&w.bob, BOB, vec![Action::SetTitle("bob's".into())]);
    let child = GroupChange::sign(
        &w.bob,
        ChangeDraft {
            group_id: bad.group_id(),
            version: 3,
            parents: vec![bad.id()],
            prev_hash: StateHash([0; 32]),
            author_email: BOB.into(),
            actions: vec![Action::Leave],
        },
    )
    .unwrap();
    assert_eq!(at_bob.receive(child), Ok(Received::Held));
    assert_eq!(
        at_bob.receive(bad),
        Err(ChangeError::AuthorLacksRole {
            needed: Role::Admin
        })
    );
    assert_eq!(at_bob.held_count(), 0);
}

/// Receives the changes into a fresh copy from the genesis, in the order given.
fn replica(genesis: &GroupChange, changes: &[GroupChange], me: &str) -> Group {
    let mut g = Group::from_genesis(genesis.clone(), me).unwrap();
    for c in changes {
        g.receive(c.clone()).unwrap();
    }
    g
}

#[test]
fn concurrent_changes_converge_in_either_order() {
    let mut w = world(JoinRule::Invite);
    w.alice_does(vec![
        Action::Promote { email: BOB.into() },
        Action::AddMember {
            email: CAROL.into(),
            identity_key: party(3).public_key(),
        },
    ]);
    let base: Vec<GroupChange> = w.group.changes().skip(1).cloned().collect();
    let mut at_bob = w.group.clone();
    // Alice kicks Carol while Bob, concurrently, retitles and promotes Carol.
    let (kick, _) = w
        .group
        .propose(
            &w.alice,
            ALICE,
            vec![Action::RemoveMember {
                email: CAROL.into(),
            }],
        )
        .unwrap();
    let (promote, _) = at_bob
        .propose(
            &w.bob,
            BOB,
            vec![
                Action::SetTitle("bob's".into()),
                Action::Promote {
                    email: CAROL.into(),
                },
            ],
        )
        .unwrap();
    let mut one = base.clone();
    one.extend([kick.clone(), promote.clone()]);
    let mut two = base;
    two.extend([promote.clone(), kick.clone()]);
    let a = replica(&w.genesis, &one, CAROL);
    let b = replica(&w.genesis, &two, CAROL);
    assert_eq!(a.state().hash(), b.state().hash());
    assert_eq!(a.state().canonical_bytes(), b.state().canonical_bytes());
    assert_eq!(a.state().heads().len(), 2);
    // The later of the two in (version, id) order is the one skipped if they clash:
    // a kicked member cannot be promoted.
    let (first, second) = if kick.id() < promote.id() {
        (&kick, &promote)
    } else {
        (&promote, &kick)
    };
    assert!(!a.is_skipped(&first.id()));
    assert!(a.is_skipped(&second.id()));
    assert!(b.is_skipped(&second.id()));
    // A change on both heads merges the branches.
    let mut merged = a.clone();
    let (merge, _) = merged
        .propose(&w.alice, ALICE, vec![Action::SetTopic("merged".into())])
        .unwrap();
    assert_eq!(merge.parents().len(), 2);
    assert_eq!(merged.state().heads(), [merge.id()]);
}

#[test]
fn a_late_change_that_sorts_early_reorders_history_the_same_everywhere() {
    let mut w = world(JoinRule::Invite);
    w.alice_does(vec![Action::Promote { email: BOB.into() }]);
    let mut at_bob = w.group.clone();
    // Alice demotes Bob; Bob, not knowing, renames the group and goes on with a second
    // change on top of his own.
    let (demote, _) = w
        .group
        .propose(&w.alice, ALICE, vec![Action::Demote { email: BOB.into() }])
        .unwrap();
    let (rename, _) = at_bob
        .propose(&w.bob, BOB, vec![Action::SetTitle("bob's".into())])
        .unwrap();
    let (retopic, _) = at_bob
        .propose(&w.bob, BOB, vec![Action::SetTopic("bob's".into())])
        .unwrap();
    let mut a = w.group.clone();
    let mut b = at_bob.clone();
    a.receive(rename.clone()).unwrap();
    a.receive(retopic.clone()).unwrap();
    let Received::Applied(effects) = b.receive(demote.clone()).unwrap() else {
        panic!("applies");
    };
    assert_eq!(a.state().hash(), b.state().hash());
    assert_eq!(effects.demoted, [BOB]);
    // Both of Bob's changes are concurrent with his demotion: void, in every order,
    // whichever sorts first (removal wins).
    for id in [rename.id(), retopic.id()] {
        assert!(a.is_skipped(&id) && b.is_skipped(&id));
    }
    assert_eq!(b.state().title(), "team");
    assert_eq!(b.state().topic(), "plans");
    assert!(effects.newly_skipped.contains(&retopic.id()));
}

// ---- encodings ----

#[test]
fn changes_round_trip_and_refuse_bad_encodings() {
    let w = world(JoinRule::Request);
    let req = JoinRequest::new(&w.link(), &w.carol, CAROL, "line one\nline two").unwrap();
    let change = w.draft(
        &w.alice,
        ALICE,
        vec![
            Action::Join(req.clone()),
            Action::SetPolicy(policy(JoinRule::Open, HistoryOnJoin::LastN(7))),
            Action::SetJoinLink(None),
            Action::Leave,
        ],
    );
    let bytes = change.to_bytes();
    assert_eq!(GroupChange::from_bytes(&bytes).unwrap(), change);
    assert_eq!(JoinRequest::from_bytes(&req.to_bytes()).unwrap(), req);

    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(
        GroupChange::from_bytes(&trailing),
        Err(DecodeError::TrailingBytes)
    );
    assert_eq!(
        GroupChange::from_bytes(&bytes[..bytes.len() - 1]),
        Err(DecodeError::Truncated)
    );
    let mut format = bytes.clone();
    format[0] = 2;
    assert_eq!(
        GroupChange::from_bytes(&format),
        Err(DecodeError::UnknownFormat(2))
    );
    let mut req_trailing = req.to_bytes();
    req_trailing.push(1);
    assert_eq!(
        JoinRequest::from_bytes(&req_trailing),
        Err(DecodeError::TrailingBytes)
    );
}

/// The bytes of a change on `w`'s heads by Alice with one raw action appended.
fn raw_change(w: &World, count: u16, actions: &[u8]) -> Vec<u8> {
    let state = w.group.state();
    let mut b = vec![FORMAT_VERSION];
    b.extend_from_slice(&state.id().0);
    b.extend_from_slice(&2u64.to_be_bytes());
    b.push(1);
    b.extend_from_slice(&state.heads()[0].0);
    b.extend_from_slice(&state.hash().0);
    b.extend_from_slice(w.alice.public_key().as_bytes());
    b.push(ALICE.len() as u8);
    b.extend_from_slice(ALICE.as_bytes());
    b.extend_from_slice(&count.to_be_bytes());
    b.extend_from_slice(actions);
    b.extend_from_slice(&[0u8; 64]);
    b
}

#[test]
fn oversize_and_unknown_fields_are_refused() {
    let w = world(JoinRule::Request);
    let text = |tag: u8, s: &[u8]| {
        let mut a = vec![tag];
        a.extend_from_slice(&(s.len() as u16).to_be_bytes());
        a.extend_from_slice(s);
        a
    };
    let cases: Vec<(Vec<u8>, DecodeError)> = vec![
        (
            raw_change(&w, 1, &text(9, &[b'a'; MAX_TITLE_LEN + 1])),
            DecodeError::TooLong {
                field: "title",
                max: MAX_TITLE_LEN,
            },
        ),
        (
            raw_change(&w, 1, &text(10, &[b'a'; MAX_TOPIC_LEN + 1])),
            DecodeError::TooLong {
                field: "topic",
                max: MAX_TOPIC_LEN,
            },
        ),
        (
            raw_change(&w, 1, &text(9, b"bell\x07")),
            DecodeError::ControlCharacter { field: "title" },
        ),
        (
            raw_change(&w, 1, &text(9, b"two\nlines")),
            DecodeError::ControlCharacter { field: "title" },
        ),
        (
            raw_change(&w, 1, &text(10, b"esc\x1b[2J")),
            DecodeError::ControlCharacter { field: "topic" },
        ),
        (
            raw_change(&w, 1, &text(9, b"\xff")),
            DecodeError::InvalidUtf8 { field: "title" },
        ),
        (raw_change(&w, 1, &[99]), DecodeError::UnknownAction(99)),
        (
            raw_change(&w, (MAX_ACTIONS_PER_CHANGE + 1) as u16, &[8]),
            DecodeError::TooMany {
                what: "actions",
                max: MAX_ACTIONS_PER_CHANGE,
            },
        ),
        (
            raw_change(&w, 1, &[3, 5, b'B', b'o', b'b', b'@', b'x']),
            DecodeError::InvalidEmail,
        ),
        (raw_change(&w, 1, &[3, 0]), DecodeError::InvalidEmail),
        (
            raw_change(&w, 1, &[11, 3, 0, 0, 0]),
            DecodeError::UnknownJoinRule(3),
        ),
        (
            raw_change(&w, 1, &[11, 0, 0, 0, 5]),
            DecodeError::UnknownHistoryRule(0),
        ),
        (raw_change(&w, 1, &[12, 2]), DecodeError::InvalidFlag),
    ];
    for (bytes, error) in cases {
        assert_eq!(
            GroupChange::from_bytes(&bytes),
            Err(error.clone()),
            "{error}"
        );
    }
    // Parents must be sorted and distinct.
    let mut dup = raw_change(&w, 1, &[8]);
    dup[25] = 2;
    let head = w.group.state().heads()[0].0;
    dup.splice(58..58, head);
    assert_eq!(
        GroupChange::from_bytes(&dup),
        Err(DecodeError::ParentsNotCanonical)
    );
    // An invalid identity key (not a point) is refused when parsing.
    let mut bad_key = raw_change(&w, 1, &[8]);
    // The identity point, of small order.
    let mut identity_point = [0u8; 32];
    identity_point[0] = 1;
    bad_key[90..122].copy_from_slice(&identity_point);
    assert!(matches!(
        GroupChange::from_bytes(&bad_key),
        Err(DecodeError::InvalidIdentityKey)
    ));
    // Building a change with an invalid field is refused before signing.
    let too_long = "x".repeat(MAX_TITLE_LEN + 1);
    assert_eq!(
        GroupChange::sign(
            &w.alice,
            ChangeDraft {
                group_id: w.group.state().id(),
                version: 2,
                parents: w.group.state().heads().to_vec(),
                prev_hash: w.group.state().hash(),
                author_email: ALICE.into(),
                actions: vec![Action::SetTitle(too_long)],
            }
        )
        .map(|_| ()),
        Err(DecodeError::TooLong {
            field: "title",
            max: MAX_TITLE_LEN
        })
    );
    assert_eq!(
        JoinRequest::new(&w.link(), &w.carol, "Carol@x", "").map(|_| ()),
        Err(DecodeError::InvalidEmail)
    );
    let too_many_parents = (0..=MAX_PARENTS)
        .map(|i| ChangeId([u8::try_from(i).unwrap(); 32]))
        .collect();
    assert_eq!(
        GroupChange::sign(
            &w.alice,
            ChangeDraft {
                group_id: w.group.state().id(),
                version: 2,
                parents: too_many_parents,
                prev_hash: w.group.state().hash(),
                author_email: ALICE.into(),
                actions: vec![Action::Leave],
            }
        )
        .map(|_| ()),
        Err(DecodeError::TooMany {
            what: "parents",
            max: MAX_PARENTS
        })
    );
    let long_note = "n".repeat(MAX_NOTE_LEN + 1);
    assert_eq!(
        JoinRequest::new(&w.link(), &w.carol, CAROL, &long_note).map(|_| ()),
        Err(DecodeError::TooLong {
            field: "note",
            max: MAX_NOTE_LEN
        })
    );
}

/// Known answer: the canonical state encoding, built here field by field as
/// docs/GROUPS.md lays it out, and its hash.
#[test]
fn canonical_state_encoding_and_hash_known_answer() {
    let w = world(JoinRule::Request);
    let s = w.group.state();
    let mut expected = vec![1u8];
    expected.extend_from_slice(&[7; 16]);
    expected.extend_from_slice(&1u64.to_be_bytes());
    expected.extend_from_slice(&1u16.to_be_bytes());
    expected.extend_from_slice(&w.genesis.id().0);
    expected.extend_from_slice(&4u16.to_be_bytes());
    expected.extend_from_slice(b"team");
    expected.extend_from_slice(&5u16.to_be_bytes());
    expected.extend_from_slice(b"plans");
    expected.extend_from_slice(&[1, 1, 0, 20]); // Request, LastN(20)
    expected.push(1);
    let mut h = Sha256::new();
    h.update(b"e2ee-v1/group-link-id");
    h.update([9u8; 32]);
    expected.extend_from_slice(&h.finalize());
    expected.extend_from_slice(&2u16.to_be_bytes());
    for (email, key, role) in [(ALICE, &w.alice, 1u8), (BOB, &w.bob, 0)] {
        expected.push(email.len() as u8);
        expected.extend_from_slice(email.as_bytes());
        expected.extend_from_slice(key.public_key().as_bytes());
        expected.push(role);
    }
    expected.extend_from_slice(&0u16.to_be_bytes());
    expected.extend_from_slice(&0u16.to_be_bytes());
    assert_eq!(s.canonical_bytes(), expected);
    let mut h = Sha256::new();
    h.update(b"e2ee-v1/group-state");
    h.update(&expected);
    let digest: [u8; 32] = h.finalize().into();
    assert_eq!(s.hash(), StateHash(digest));
    // Pinned values: a change to any encoding (change body, ids, state) breaks these.
    assert_eq!(hex::encode(w.genesis.id().0), GENESIS_ID_HEX);
    assert_eq!(hex::encode(s.hash().0), STATE_HASH_HEX);
}

const GENESIS_ID_HEX: &str = "0d503fef18d93f4ee7a5b292ace2f8020bcefd808f4f250a600bf66c0887d3e8";
const STATE_HASH_HEX: &str = "2f903c2f3993db4c584069876a31ec47af6b046cf0be87ba4a390f0d30d49ebd";

/// Alice and Bob, both admins, with Carol a member: the world, Bob's copy, and the
/// changes after the creation.
fn two_admins() -> (World, Group, Vec<GroupChange>) {
    let mut w = world(JoinRule::Invite);
    w.alice_does(vec![
        Action::Promote { email: BOB.into() },
        Action::AddMember {
            email: CAROL.into(),
            identity_key: party(3).public_key(),
        },
    ]);
    let base = w.group.changes().skip(1).cloned().collect();
    let at_bob = w.group.clone();
    (w, at_bob, base)
}

/// Carol's copy after receiving `base` then `x`, `y` in both orders; they agree.
fn both_orders(w: &World, base: &[GroupChange], x: &GroupChange, y: &GroupChange) -> [Group; 2] {
    let one: Vec<GroupChange> = base.iter().chain([x, y]).cloned().collect();
    let two: Vec<GroupChange> = base.iter().chain([y, x]).cloned().collect();
    let a = replica(&w.genesis, &one, CAROL);
    let b = replica(&w.genesis, &two, CAROL);
    assert_eq!(a.state().canonical_bytes(), b.state().canonical_bytes());
    [a, b]
}

#[test]
fn two_admins_removing_each_other_at_once_cancel_out() {
    let (mut w, mut at_bob, base) = two_admins();
    let (kick_bob, _) = w
        .group
        .propose(
            &w.alice,
            ALICE,
            vec![Action::RemoveMember { email: BOB.into() }],
        )
        .unwrap();
    let (kick_alice, _) = at_bob
        .propose(
            &w.bob,
            BOB,
            vec![Action::RemoveMember {
                email: ALICE.into(),
            }],
        )
        .unwrap();
    for g in both_orders(&w, &base, &kick_bob, &kick_alice) {
        assert!(g.is_skipped(&kick_bob.id()) && g.is_skipped(&kick_alice.id()));
        assert_eq!(g.state().member(ALICE).unwrap().role, Role::Admin);
        assert_eq!(g.state().member(BOB).unwrap().role, Role::Admin);
    }
}

#[test]
fn a_removed_admin_cannot_act_on_parents_from_before_its_removal() {
    let (mut w, at_bob, base) = two_admins();
    let (kick_bob, _) = w
        .group
        .propose(
            &w.alice,
            ALICE,
            vec![Action::RemoveMember { email: BOB.into() }],
        )
        .unwrap();
    // Bob, already removed, signs on the state he last saw: kicking Carol and renaming.
    let state = at_bob.state();
    let backdated = GroupChange::sign(
        &w.bob,
        ChangeDraft {
            group_id: state.id(),
            version: state.version() + 1,
            parents: state.heads().to_vec(),
            prev_hash: state.hash(),
            author_email: BOB.into(),
            actions: vec![
                Action::RemoveMember {
                    email: CAROL.into(),
                },
                Action::SetTitle("taken over".into()),
            ],
        },
    )
    .unwrap();
    // It is well formed and was authorized in the view it names, so it is accepted…
    let Received::Applied(effects) = w.group.receive(backdated.clone()).unwrap() else {
        panic!("accepted");
    };
    // …but it never applies, whichever of the two sorts first.
    assert!(effects.is_empty());
    assert!(w.group.is_skipped(&backdated.id()));
    for g in both_orders(&w, &base, &kick_bob, &backdated) {
        assert!(g.is_skipped(&backdated.id()));
        assert!(!g.is_skipped(&kick_bob.id()));
        assert!(g.state().member(BOB).is_none());
        assert!(g.state().member(CAROL).is_some());
        assert_eq!(g.state().title(), "team");
    }
}

#[test]
fn leaving_while_being_demoted_still_leaves() {
    let (mut w, mut at_bob, base) = two_admins();
    let (demote, _) = w
        .group
        .propose(&w.alice, ALICE, vec![Action::Demote { email: BOB.into() }])
        .unwrap();
    let (leave, _) = at_bob.propose(&w.bob, BOB, vec![Action::Leave]).unwrap();
    for g in both_orders(&w, &base, &demote, &leave) {
        assert!(g.state().member(BOB).is_none());
    }
}

#[test]
fn a_topic_change_is_an_effect_and_setting_the_same_topic_is_none() {
    let mut w = world(JoinRule::Invite);
    let effects = w.alice_does(vec![Action::SetTopic("friday".into())]);
    assert!(effects.topic_changed);
    assert!(!effects.is_empty());
    assert_eq!(w.group.state().topic(), "friday");
    let again = w.alice_does(vec![Action::SetTopic("friday".into())]);
    assert!(!again.topic_changed);
    assert!(again.is_empty());
}
