-- An envelope counts as already processed only if its id AND the SHA-256 of its body
-- match (see store::is_seen): a relay that lost writes can hand an id out again to a
-- new envelope, which must be decrypted, not dropped. NULL for rows stored before
-- this column existed; those match on the id alone until they expire (31 days).
ALTER TABLE seen_envelopes ADD COLUMN body_hash BLOB;
