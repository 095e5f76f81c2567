-- The idempotency constraint indexed every event, with or without a key: an event published
-- without one still wrote an index entry (its owner name and a NULL) that no lookup can ever
-- find, since NULLs never conflict. A partial unique index holds only the events that have a
-- key, so a keyless event writes one index entry (its primary key) instead of two. Publish
-- names the index's columns and predicate in its ON CONFLICT clause; the lookup of
-- originals (owner_name = ? AND idempotency_key = ?) implies the predicate and keeps using
-- the index.

CREATE UNIQUE INDEX events_idempotency_key_idx ON events (owner_name, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
ALTER TABLE events DROP CONSTRAINT events_idempotency_key;
