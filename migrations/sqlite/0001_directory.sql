-- Relay directory: accounts, their signed prekey and one-time prekeys.
-- Keys are raw bytes; times are unix milliseconds.
CREATE TABLE accounts (
    email TEXT PRIMARY KEY NOT NULL,
    identity_key BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    banned INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE signed_prekeys (
    email TEXT PRIMARY KEY NOT NULL REFERENCES accounts (email) ON DELETE CASCADE,
    id INTEGER NOT NULL,
    public_key BLOB NOT NULL,
    signature BLOB NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE one_time_prekeys (
    email TEXT NOT NULL REFERENCES accounts (email) ON DELETE CASCADE,
    id INTEGER NOT NULL,
    public_key BLOB NOT NULL,
    PRIMARY KEY (email, id)
) WITHOUT ROWID;
