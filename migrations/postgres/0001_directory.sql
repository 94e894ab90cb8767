-- Relay directory: accounts, their signed prekey and one-time prekeys.
-- Keys are raw bytes; times are unix milliseconds.
CREATE TABLE accounts (
    email TEXT PRIMARY KEY,
    identity_key BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    banned BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE signed_prekeys (
    email TEXT PRIMARY KEY REFERENCES accounts (email) ON DELETE CASCADE,
    id BIGINT NOT NULL,
    public_key BYTEA NOT NULL,
    signature BYTEA NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE one_time_prekeys (
    email TEXT NOT NULL REFERENCES accounts (email) ON DELETE CASCADE,
    id BIGINT NOT NULL,
    public_key BYTEA NOT NULL,
    PRIMARY KEY (email, id)
);
