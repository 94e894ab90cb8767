-- Delivery and read receipts (issue 15).
--
-- messages.receipt: how far the peer reports an outgoing message got. NULL until a
-- receipt arrives; 'read' is never lowered back to 'delivered'.
ALTER TABLE messages ADD COLUMN receipt TEXT CHECK (receipt IN ('delivered', 'read'));

-- events: the log gains the kind 'receipt'. SQLite cannot change a CHECK in place, so
-- the table is rebuilt with the same rows and seqs (consumers' cursors stay valid, and
-- AUTOINCREMENT carries on after the largest seq copied).
CREATE TABLE events_v7 (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL
        CHECK (kind IN ('message', 'delivery', 'identity_changed', 'contact_added', 'dropped',
                        'receipt')),
    message_seq INTEGER REFERENCES messages (seq) ON DELETE CASCADE,
    peer TEXT,
    detail TEXT,
    created_at INTEGER NOT NULL
);
INSERT INTO events_v7 (seq, kind, message_seq, peer, detail, created_at)
SELECT seq, kind, message_seq, peer, detail, created_at FROM events ORDER BY seq;
DROP TABLE events;
ALTER TABLE events_v7 RENAME TO events;
