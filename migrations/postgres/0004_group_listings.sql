-- The public group directory (docs/API.md "Group directory"): listings an admin's
-- client published, keyed by the group id in the join link. Times are unix
-- milliseconds; a listing past expires_at is not listed and is swept by the next
-- publish. Not tied to accounts by a foreign key: a listing of a deleted account
-- simply expires.
CREATE TABLE group_listings (
    group_id BYTEA PRIMARY KEY,
    title TEXT NOT NULL,
    topic TEXT NOT NULL,
    member_count BIGINT NOT NULL,
    join_link TEXT NOT NULL,
    published_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX group_listings_by_publisher ON group_listings (published_by, expires_at);
CREATE INDEX group_listings_by_expiry ON group_listings (expires_at);
