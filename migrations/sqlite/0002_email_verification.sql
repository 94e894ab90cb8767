-- Registrations waiting for proof of the address (--email-verification required).
-- Not accounts: nothing reads this table but registration and verification.
-- prekeys is the JSON {signed_prekey, one_time_prekeys} of the registration (public
-- keys only); code_hash is SHA-256 over the code and what it is bound to; times are
-- unix milliseconds.
CREATE TABLE pending_registrations (
    email TEXT PRIMARY KEY NOT NULL,
    identity_key BLOB NOT NULL,
    prekeys TEXT NOT NULL,
    code_hash BLOB NOT NULL,
    expires_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    codes_sent INTEGER NOT NULL,
    codes_window_start INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
