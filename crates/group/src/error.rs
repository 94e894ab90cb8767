//! The crate's errors, one enum per concern: reading bytes, applying changes, join links.

use crate::Role;

/// Why bytes did not parse as a change, a join request or a state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended inside a field.
    #[error("input is truncated")]
    Truncated,
    /// Bytes were left after the last field.
    #[error("trailing bytes after the encoding")]
    TrailingBytes,
    /// The leading format byte names a version this code does not read.
    #[error("unknown format version {0}")]
    UnknownFormat(u8),
    /// An action tag this version does not know.
    #[error("unknown action tag {0}")]
    UnknownAction(u8),
    /// A join rule byte outside 0..=2.
    #[error("unknown join rule {0}")]
    UnknownJoinRule(u8),
    /// A history-on-join byte outside 0..=1.
    #[error("unknown history-on-join rule {0}")]
    UnknownHistoryRule(u8),
    /// A flag byte that is neither 0 nor 1.
    #[error("flag byte is neither 0 nor 1")]
    InvalidFlag,
    /// A text or email field longer than its limit.
    #[error("{field} is longer than {max} bytes")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its limit in bytes.
        max: usize,
    },
    /// A list longer than its limit.
    #[error("more than {max} {what}")]
    TooMany {
        /// Which list.
        what: &'static str,
        /// Its limit.
        max: usize,
    },
    /// A text field that is not UTF-8.
    #[error("{field} is not UTF-8")]
    InvalidUtf8 {
        /// Which field.
        field: &'static str,
    },
    /// A text field with a control character it may not hold.
    #[error("{field} contains a control character")]
    ControlCharacter {
        /// Which field.
        field: &'static str,
    },
    /// An email that is empty, not lower-case or holds control characters or spaces.
    #[error("invalid email address")]
    InvalidEmail,
    /// An identity key that is not a valid, non-weak Ed25519 point.
    #[error("invalid identity key")]
    InvalidIdentityKey,
    /// Parent hashes not in strictly ascending order (one encoding per change).
    #[error("parent hashes are not sorted and distinct")]
    ParentsNotCanonical,
}

/// Why a change (or a join request) was refused. A refused change never alters the group.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChangeError {
    /// The change would not encode within the format's limits (bad address, text too
    /// long, too many actions or parents).
    #[error(transparent)]
    Encoding(#[from] DecodeError),
    /// The author's signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The change belongs to another group.
    #[error("change is for another group")]
    WrongGroup,
    /// The version is not one more than the highest version among its parents.
    #[error("wrong version: expected {expected}, got {got}")]
    WrongVersion {
        /// One more than the parents' highest version.
        expected: u64,
        /// What the change claims.
        got: u64,
    },
    /// The previous-state hash does not match the state its parents define: the author
    /// computed a different state, or the change was grafted onto other parents.
    #[error("previous state hash does not match")]
    PrevHashMismatch,
    /// A change without parents that is not the group's creation, or a creation with
    /// parents, or a second creation.
    #[error("only the first change creates the group, and it has no parents")]
    NotGenesis,
    /// The change has no actions.
    #[error("change has no actions")]
    NoActions,
    /// The author is not a member of the group (with that identity key).
    #[error("author is not a member")]
    NotAMember,
    /// The author's role does not allow the action.
    #[error("author lacks the {needed:?} role")]
    AuthorLacksRole {
        /// The role the action needs.
        needed: Role,
    },
    /// The action targets its own author where that is not allowed (use `Leave`).
    #[error("the author cannot target itself with this action")]
    TargetIsAuthor,
    /// The target is not a member.
    #[error("no such member")]
    UnknownMember,
    /// The target is already a member.
    #[error("already a member")]
    AlreadyMember,
    /// The requester already has a pending request.
    #[error("a request is already pending")]
    AlreadyPending,
    /// No pending request from that address.
    #[error("no pending request")]
    NotPending,
    /// The target is already banned.
    #[error("already banned")]
    AlreadyBanned,
    /// The target is not banned.
    #[error("not banned")]
    NotBanned,
    /// The target of an add is banned (unban first).
    #[error("the target is banned")]
    TargetBanned,
    /// The requester (its address or its key) is banned: its request is refused.
    #[error("the requester is banned")]
    BannedRequester,
    /// The action would leave a group with members but no admin.
    #[error("the last admin must promote someone first")]
    LastAdmin,
    /// The member already has that role.
    #[error("member already has that role")]
    AlreadyHasRole,
    /// A list of the state would exceed its limit.
    #[error("more than {max} {what}")]
    LimitReached {
        /// Which list.
        what: &'static str,
        /// Its limit.
        max: usize,
    },
    /// The group admits no one by link (its policy is invite-only or it has no link).
    #[error("the group takes no join requests by link")]
    JoinsDisabled,
    /// The join request's proof does not match the group's link secret.
    #[error("join request proof does not match the link")]
    BadJoinProof,
    /// The join request's signature by the requester does not verify.
    #[error("join request signature does not verify")]
    BadJoinRequestSignature,
    /// The join request names another group.
    #[error("join request is for another group")]
    JoinRequestWrongGroup,
    /// Too many changes wait for parents that have not arrived; offer this one later.
    #[error("more than {max} changes are waiting for their parents")]
    TooManyHeld {
        /// The limit.
        max: usize,
    },
}

/// Why a text did not parse as a join link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinLinkError {
    /// It does not start with the join link prefix.
    #[error("not a join link")]
    NotAJoinLink,
    /// The parameters are not exactly `g` then `k`.
    #[error("join link parameters are malformed")]
    Malformed,
    /// The group id is not 16 bytes of base64url.
    #[error("join link group id is invalid")]
    BadGroupId,
    /// The secret is not 32 bytes of base64url.
    #[error("join link secret is invalid")]
    BadSecret,
}
