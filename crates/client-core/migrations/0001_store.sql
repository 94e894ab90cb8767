-- The client's local store. Times are unix milliseconds. Columns named *_sealed hold
-- XChaCha20-Poly1305 ciphertext under the store key (see src/secret.rs).

-- The profile's own account: exactly one row once registered.
CREATE TABLE account (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    email TEXT NOT NULL,
    relay_url TEXT NOT NULL,
    identity_key BLOB NOT NULL,
    identity_sealed BLOB NOT NULL,
    next_one_time_prekey_id INTEGER NOT NULL,
    next_signed_prekey_id INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

-- Signed prekeys: the current one, and old ones kept for late prekey messages.
CREATE TABLE signed_prekeys (
    id INTEGER PRIMARY KEY,
    key_sealed BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    -- When it stopped being the current one; NULL for the current one.
    retired_at INTEGER
);

CREATE TABLE one_time_prekeys (
    id INTEGER PRIMARY KEY,
    key_sealed BLOB NOT NULL
);

-- trust: 'tofu' (pinned on first use), 'verified' (trusted by the user),
-- 'identity_changed' (a new key was seen: pending_identity_key; sending is blocked).
CREATE TABLE contacts (
    email TEXT PRIMARY KEY NOT NULL,
    identity_key BLOB NOT NULL,
    trust TEXT NOT NULL CHECK (trust IN ('tofu', 'verified', 'identity_changed')),
    pending_identity_key BLOB,
    added_at INTEGER NOT NULL
);

CREATE TABLE sessions (
    email TEXT PRIMARY KEY NOT NULL,
    record_sealed BLOB NOT NULL,
    updated_at INTEGER NOT NULL
);

-- direction: 'in' or 'out'. message_id is the sender's content id; the UNIQUE
-- constraint makes storing a message idempotent. shown = 0: received but not yet
-- handed to the user by poll (a crash between store and display re-shows it once).
CREATE TABLE messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    peer TEXT NOT NULL,
    direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    message_id TEXT NOT NULL,
    text TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    shown INTEGER NOT NULL DEFAULT 1,
    UNIQUE (peer, direction, message_id)
);
CREATE INDEX messages_by_peer ON messages (peer, seq);
CREATE INDEX messages_unshown ON messages (shown) WHERE shown = 0;

-- Encrypted but not yet accepted by the relay; posted in seq order, never re-encrypted.
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient TEXT NOT NULL,
    message_id TEXT NOT NULL UNIQUE,
    body BLOB NOT NULL,
    text TEXT NOT NULL,
    sent_at INTEGER NOT NULL
);

-- Envelopes already processed, per relay account, so a redelivery after a crash
-- before the ack is acked without being decrypted again.
CREATE TABLE seen_envelopes (
    relay_account TEXT NOT NULL,
    envelope_id INTEGER NOT NULL,
    seen_at INTEGER NOT NULL,
    PRIMARY KEY (relay_account, envelope_id)
) WITHOUT ROWID;
