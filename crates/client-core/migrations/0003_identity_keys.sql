-- Identity keys awaiting the user's decision, as a set (review 2026-12, M2). Before
-- this, a contact had one pending_identity_key and one pending session, and each new
-- key overwrote both: whichever key arrived last was the one `trust` accepted.
--
-- A row is a key seen for the contact's address (in a prekey message or a bundle)
-- that is not the pinned one. While a contact has any, it is shown as
-- identity_changed and sending to it is blocked; `trust EMAIL NUMBER` pins the key
-- whose safety number NUMBER is and drops the others, `reject EMAIL` drops them all.
-- record_sealed is the session that key started by writing to us (sealed for row
-- "<email>/<base64url key>"), NULL when the key only came in a bundle.
CREATE TABLE pending_identity_keys (
    email TEXT NOT NULL REFERENCES contacts (email) ON DELETE CASCADE,
    identity_key BLOB NOT NULL,
    first_seen_at INTEGER NOT NULL,
    record_sealed BLOB,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (email, identity_key)
) WITHOUT ROWID;

INSERT INTO pending_identity_keys (email, identity_key, first_seen_at, updated_at)
SELECT email, pending_identity_key, added_at, added_at
FROM contacts WHERE pending_identity_key IS NOT NULL;

-- contacts.trust is now the trust of the pinned key only ('tofu' or 'verified');
-- identity_changed is derived from pending_identity_keys, so that `reject` can return
-- the contact to the state it had. What a changed contact had before is not recorded
-- in the old schema: 'tofu', the one that claims nothing.
UPDATE contacts SET trust = 'tofu' WHERE trust = 'identity_changed';
ALTER TABLE contacts DROP COLUMN pending_identity_key;

-- pending_sessions (0002) rows stay where they are: they are sealed for their old row
-- and only the store key opens them, so the client moves each one next to its key in
-- pending_identity_keys the next time it touches that contact's pending keys.

-- Per received message (review 2026-12, L7): the identity key of the session that
-- decrypted it, whether that was not the pinned key at the time (identity_changed),
-- and whether the message made its sender a contact (new_contact, trust on first use).
-- Outgoing messages, and messages stored before this migration, have no key.
ALTER TABLE messages ADD COLUMN sender_identity_key BLOB;
ALTER TABLE messages ADD COLUMN identity_changed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN new_contact INTEGER NOT NULL DEFAULT 0;
