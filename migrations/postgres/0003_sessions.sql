-- Open sessions (docs/API.md, "Sessions") of a relay without Redis: the MAC key of
-- each, the account and the identity key that opened it. Times are unix
-- milliseconds. Not tied to accounts by a foreign key: revocation deletes an
-- account's sessions explicitly (logout, deletion, re-registration, ban).
CREATE TABLE sessions (
    id BYTEA PRIMARY KEY,
    email TEXT NOT NULL,
    identity_key BYTEA NOT NULL,
    mac_key BYTEA NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_by_email ON sessions (email, expires_at);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
