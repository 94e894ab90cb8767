-- Groups (issue 14; docs/CLIENT.md, "Groups in the client").
--
-- groups: one row per group this profile knows. group_id is the e2ee_group id (16
-- bytes); title is the local name, unique per profile: a second group whose own title
-- is "team" is stored as "team-2", so two groups are told apart and never merged.
-- changes: every accepted signed change, in the state's order, each as u32 length ||
-- bytes (empty while a join request is pending). status: 'member', 'removed' (an admin
-- removed or banned us), 'left', 'pending' (our join request waits), 'rejected'.
-- admin: for a pending join, the admin the request went to (only it may answer).
-- rotate: a member left the membership since our last send: our sender key is
-- replaced before the next one.
CREATE TABLE groups (
    local_id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id BLOB NOT NULL UNIQUE,
    title TEXT NOT NULL UNIQUE,
    changes BLOB NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('member', 'removed', 'left', 'pending', 'rejected')),
    admin TEXT,
    rotate INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);

-- Our sender key for a group (an OutboundGroupSession, sealed like every secret).
CREATE TABLE group_outbound (
    local_id INTEGER PRIMARY KEY REFERENCES groups (local_id) ON DELETE CASCADE,
    session_sealed BLOB NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Members known to hold our current sender key (its distribution is in their queue or
-- read). Cleared when the key rotates.
CREATE TABLE group_key_holders (
    local_id INTEGER NOT NULL REFERENCES groups (local_id) ON DELETE CASCADE,
    member TEXT NOT NULL,
    PRIMARY KEY (local_id, member)
) WITHOUT ROWID;

-- Inbound sender keys per (group, sender, device): SenderKeyRecord, sealed. One device
-- per account today; the column keeps room for more.
CREATE TABLE group_sender_keys (
    local_id INTEGER NOT NULL REFERENCES groups (local_id) ON DELETE CASCADE,
    sender TEXT NOT NULL,
    device TEXT NOT NULL DEFAULT '',
    record_sealed BLOB NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (local_id, sender, device)
) WITHOUT ROWID;

-- Group messages encrypted and waiting for `POST /v1/messages/multi`: one body for the
-- recipients left (a retry carries the same fan-out id, which the relay deduplicates).
CREATE TABLE group_fanout (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    local_id INTEGER NOT NULL REFERENCES groups (local_id) ON DELETE CASCADE,
    fanout_id TEXT NOT NULL UNIQUE,
    message_id TEXT NOT NULL,
    body BLOB NOT NULL,
    recipients TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- Newcomers another admin added whom we owe our change list (a change of ours made
-- at the same time may not have reached them): sent once a session with them exists.
CREATE TABLE group_welcome_due (
    local_id INTEGER NOT NULL REFERENCES groups (local_id) ON DELETE CASCADE,
    member TEXT NOT NULL,
    PRIMARY KEY (local_id, member)
) WITHOUT ROWID;

-- Recipients the relay refused for good for one of our group messages (no account,
-- banned): they will not read it, and `send_group` says so.
CREATE TABLE group_fanout_refused (
    message_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    PRIMARY KEY (message_id, recipient)
) WITHOUT ROWID;

-- Receipts and re-sends find an outgoing message by (peer, direction, message_id)
-- without its conversation: without this index they walked every message with the
-- peer (the chat engineer's measurement: 3.8 s for 20 receipts over 100,000 messages).
CREATE INDEX messages_by_message_id ON messages (peer, direction, message_id);

-- History rows shared by an admin when we joined carry that admin's address.
ALTER TABLE messages ADD COLUMN shared_by TEXT;

-- Outbox rows gain the kind 'control': pairwise group traffic (changes, sender keys,
-- join requests and results, shared history), never in the history, failing silently.
CREATE TABLE outbox_v8 (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    message_id TEXT NOT NULL,
    body BLOB NOT NULL,
    text TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    kind TEXT NOT NULL DEFAULT 'text' CHECK (kind IN ('text', 'receipt', 'control')),
    UNIQUE (message_id, recipient)
);
INSERT INTO outbox_v8 (seq, conversation_id, recipient, message_id, body, text, sent_at, kind)
SELECT seq, conversation_id, recipient, message_id, body, text, sent_at, kind FROM outbox
ORDER BY seq;
DROP TABLE outbox;
ALTER TABLE outbox_v8 RENAME TO outbox;

-- events: the log gains the kind 'group' (detail: the typed group event, JSON), rebuilt
-- as in 0007 with the same rows and seqs.
CREATE TABLE events_v8 (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL
        CHECK (kind IN ('message', 'delivery', 'identity_changed', 'contact_added', 'dropped',
                        'receipt', 'group')),
    message_seq INTEGER REFERENCES messages (seq) ON DELETE CASCADE,
    peer TEXT,
    detail TEXT,
    created_at INTEGER NOT NULL
);
INSERT INTO events_v8 (seq, kind, message_seq, peer, detail, created_at)
SELECT seq, kind, message_seq, peer, detail, created_at FROM events ORDER BY seq;
DROP TABLE events;
ALTER TABLE events_v8 RENAME TO events;
