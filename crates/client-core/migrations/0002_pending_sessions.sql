-- A session started by a prekey message whose identity key is not the contact's
-- pinned one (contacts.trust = 'identity_changed'). It is kept beside the session with
-- the pinned identity, never over it, until the user accepts the new key with `trust`:
-- a relay that forges such a message under a key of its own cannot break the real
-- conversation, whose later messages still decrypt.
CREATE TABLE pending_sessions (
    email TEXT PRIMARY KEY NOT NULL,
    record_sealed BLOB NOT NULL,
    updated_at INTEGER NOT NULL
);
