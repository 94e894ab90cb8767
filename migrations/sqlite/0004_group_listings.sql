-- The public group directory (docs/API.md "Group directory"): listings an admin's
-- client published, keyed by the group id in the join link. Times are unix
-- milliseconds; a listing past expires_at is not listed and is swept by the next
-- publish. Not tied to accounts by a foreign key: a listing of a deleted account
-- simply expires.
CREATE TABLE group_listings (
    group_id BLOB PRIMARY KEY NOT NULL,
    title TEXT NOT NULL,
    topic TEXT NOT NULL,
    member_count INTEGER NOT NULL,
    join_link TEXT NOT NULL,
    published_by TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX group_listings_by_publisher ON group_listings (published_by, expires_at);
CREATE INDEX group_listings_by_expiry ON group_listings (expires_at);
