-- Conversations and the event log (issue 13; docs/CLIENT.md, "Events").
--
-- messages: keyed by conversation. conversation_id is 'direct:<email>' for a
-- one-to-one conversation ('group:<id>' is reserved for groups); peer stays the other
-- party of the row (the sender of an incoming message, the recipient of an outgoing
-- one). kind is the content record's kind as received: 'text', or the name of a kind
-- this version cannot show (raw_content then keeps the record). The global `shown`
-- bit is gone: each consumer has its own cursor into `events` (below).
CREATE TABLE messages_v6 (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL,
    peer TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    message_id TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'text',
    text TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    sender_identity_key BLOB,
    identity_changed INTEGER NOT NULL DEFAULT 0,
    new_contact INTEGER NOT NULL DEFAULT 0,
    delivery TEXT CHECK (delivery IN ('outbox', 'sent', 'failed')),
    delivery_error TEXT,
    body_sha256 BLOB,
    resends INTEGER NOT NULL DEFAULT 0,
    resend_due INTEGER NOT NULL DEFAULT 0,
    raw_content TEXT,
    UNIQUE (conversation_id, peer, direction, message_id)
);
INSERT INTO messages_v6 (seq, conversation_id, peer, direction, message_id, kind, text,
    sent_at, received_at, sender_identity_key, identity_changed, new_contact, delivery,
    delivery_error, body_sha256, resends, resend_due, raw_content)
SELECT seq, 'direct:' || peer, peer, direction, message_id,
    CASE
        WHEN raw_content IS NULL THEN 'text'
        WHEN NOT json_valid(raw_content) THEN 'unknown'
        ELSE coalesce(nullif(json_extract(raw_content, '$.kind'), ''),
                      'v' || json_extract(raw_content, '$.v'), 'unknown')
    END,
    text, sent_at, received_at, sender_identity_key, identity_changed, new_contact,
    delivery, delivery_error, body_sha256, resends, resend_due, raw_content
FROM messages;

-- The ordered log every consumer reads (CLI poll, an embedding app, later the chat
-- UI and the IRC gateway). Each row is written in the same transaction as what it
-- reports, so a consumer never sees an event whose cause was rolled back, and never
-- misses one whose cause committed. kind:
--   'message'          a received message; message_seq names its row
--   'delivery'         delivery state of outgoing messages changed (detail: JSON)
--   'identity_changed' peer's identity key changed (detail: the new key, base64url)
--   'contact_added'    peer became a contact, its key pinned on first use (detail: key)
--   'dropped'          an envelope was dropped (peer: its sender if it has a valid
--                      address; detail: the typed reason, JSON)
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL
        CHECK (kind IN ('message', 'delivery', 'identity_changed', 'contact_added', 'dropped')),
    message_seq INTEGER REFERENCES messages_v6 (seq) ON DELETE CASCADE,
    peer TEXT,
    detail TEXT,
    created_at INTEGER NOT NULL
);

-- Messages received and not yet shown become events, oldest first, so the first
-- consumer after the upgrade (the CLI's poll) still sees each of them once.
INSERT INTO events (kind, message_seq, peer, created_at)
SELECT 'message', seq, peer, received_at FROM messages WHERE direction = 'in' AND shown = 0
ORDER BY seq;

DROP INDEX messages_unshown;
DROP INDEX messages_by_peer;
DROP INDEX messages_by_body;
DROP INDEX messages_resend_due;
DROP TABLE messages;
ALTER TABLE messages_v6 RENAME TO messages;
CREATE INDEX messages_by_conversation ON messages (conversation_id, seq);
CREATE INDEX messages_by_peer ON messages (peer, seq);
CREATE INDEX messages_by_body ON messages (peer, body_sha256) WHERE body_sha256 IS NOT NULL;
CREATE INDEX messages_resend_due ON messages (peer) WHERE resend_due = 1;

-- Per consumer, the seq of the last event it committed (`Client::commit`): it is
-- handed the events after it. A consumer without a row starts at the log's beginning.
CREATE TABLE cursors (
    consumer TEXT PRIMARY KEY NOT NULL,
    seq INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- outbox: one row per (message, recipient), so one message can go to several
-- recipients (group fan-out, issue 14); conversation_id says where it belongs.
CREATE TABLE outbox_v6 (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    message_id TEXT NOT NULL,
    body BLOB NOT NULL,
    text TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    kind TEXT NOT NULL DEFAULT 'text' CHECK (kind IN ('text', 'receipt')),
    UNIQUE (message_id, recipient)
);
INSERT INTO outbox_v6 (seq, conversation_id, recipient, message_id, body, text, sent_at, kind)
SELECT seq, 'direct:' || recipient, recipient, message_id, body, text, sent_at, kind FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_v6 RENAME TO outbox;
