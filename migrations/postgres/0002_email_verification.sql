-- Registrations waiting for proof of the address (--email-verification required).
-- Not accounts: nothing reads this table but registration and verification.
-- prekeys is the JSON {signed_prekey, one_time_prekeys} of the registration (public
-- keys only); code_hash is SHA-256 over the code and what it is bound to; times are
-- unix milliseconds.
CREATE TABLE pending_registrations (
    email TEXT PRIMARY KEY,
    identity_key BYTEA NOT NULL,
    prekeys TEXT NOT NULL,
    code_hash BYTEA NOT NULL,
    expires_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    codes_sent BIGINT NOT NULL,
    codes_window_start BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
