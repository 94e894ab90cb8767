-- Group changes held because their parents never arrived (issue 14; docs/CLIENT.md,
-- "Groups in the client"): kept here, not only in memory, so that a restart does not
-- lose them. change_id is the change's id (SHA-256 of its bytes, e2ee_group::ChangeId),
-- change its wire bytes (signed, not secret, like groups.changes). A row leaves when
-- its parents arrive and it is applied, or is refused. While rows wait, the client asks
-- members for the missing parents (docs/PROTOCOL.md, `change_request`).
CREATE TABLE group_held_changes (
    local_id INTEGER NOT NULL REFERENCES groups (local_id) ON DELETE CASCADE,
    change_id BLOB NOT NULL,
    change BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (local_id, change_id)
) WITHOUT ROWID;
