-- Delivery state of outgoing messages (docs/CLIENT.md, "Delivery states"), and the
-- bookkeeping of decryption-error receipts (docs/PROTOCOL.md, "Content records").

-- delivery: NULL for incoming messages; for outgoing ones 'outbox' (not yet accepted
-- by the relay), 'sent' (accepted), 'failed' (refused by the relay, or reported
-- undecryptable by the recipient; delivery_error says why).
-- body_sha256: SHA-256 of the envelope body last posted for it, which a recipient's
-- decryption-error receipt names. resends: how often it was re-sent after such a
-- receipt (at most once). resend_due = 1: a receipt asked for a re-send that has not
-- gone out yet (it waits for `trust` when the recipient's identity key changed).
ALTER TABLE messages ADD COLUMN delivery TEXT
    CHECK (delivery IN ('outbox', 'sent', 'failed'));
ALTER TABLE messages ADD COLUMN delivery_error TEXT;
ALTER TABLE messages ADD COLUMN body_sha256 BLOB;
ALTER TABLE messages ADD COLUMN resends INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN resend_due INTEGER NOT NULL DEFAULT 0;
-- A received record of a kind (or version) this client cannot show, kept as received
-- so that nothing a newer client sent is lost; text then holds a placeholder.
ALTER TABLE messages ADD COLUMN raw_content TEXT;
UPDATE messages SET delivery = 'sent' WHERE direction = 'out';
CREATE INDEX messages_by_body ON messages (peer, body_sha256) WHERE body_sha256 IS NOT NULL;
CREATE INDEX messages_resend_due ON messages (peer) WHERE resend_due = 1;

-- Outbox rows now come in kinds: 'text' (a message of the history, whose row in
-- `messages` is 'outbox' until the relay accepts it) and 'receipt' (a
-- decryption-error receipt, kept out of the history).
ALTER TABLE outbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'text'
    CHECK (kind IN ('text', 'receipt'));
-- Messages already waiting in the outbox appear in the history as not yet accepted.
INSERT OR IGNORE INTO messages (peer, direction, message_id, text, sent_at, received_at, shown, delivery)
    SELECT recipient, 'out', message_id, text, sent_at, sent_at, 1, 'outbox' FROM outbox;

-- Envelopes from a sender that could not be decrypted, waiting for a receipt to be
-- sent back to that sender (committed with the envelope id, so a crash before the
-- receipt goes out sends it on the next poll).
CREATE TABLE receipts_due (
    peer TEXT NOT NULL,
    envelope_sha256 BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (peer, envelope_sha256)
) WITHOUT ROWID;

-- When a receipt last made us fetch a peer's bundle: receipts to one peer start at
-- most one new session per interval, so a flood of garbage cannot fan out fetches.
CREATE TABLE receipt_sessions (
    peer TEXT PRIMARY KEY NOT NULL,
    started_at INTEGER NOT NULL
);
