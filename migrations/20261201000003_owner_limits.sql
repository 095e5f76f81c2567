-- Per-owner limits (issue 13, item 9): how many deliveries each owner has pending, for
-- `--max-queued-per-owner`, and how many webhooks, for `--max-webhooks-per-owner`.
--
-- The statements that change either (publish, the recorder, redeliver, CreateWebhook,
-- DeleteWebhook) append their change per owner to owner_count_changes, an insert that never
-- waits for another; `serve` folds the changes into owner_counts every second (one
-- transaction: a reader sees a change in one table or the other, never both or neither). A
-- single counter row per owner, updated in place, would make every publish and every
-- recorded batch of an owner wait for the one before it to commit (its row lock is held to
-- the commit), and a producer publishing inside a long transaction would hold up the
-- batchers. Publish checks the folded count: at most a second or so behind.
CREATE TABLE owner_counts (
    owner_name text   NOT NULL PRIMARY KEY,
    queued     bigint NOT NULL DEFAULT 0,
    webhooks   bigint NOT NULL DEFAULT 0
);

-- No index: only ever appended to, and read whole by the fold, which deletes what it read.
CREATE TABLE owner_count_changes (
    owner_name text   NOT NULL,
    queued     bigint NOT NULL DEFAULT 0,
    webhooks   bigint NOT NULL DEFAULT 0
);

INSERT INTO owner_counts (owner_name, webhooks)
SELECT owner_name, count(*)
FROM webhooks
GROUP BY owner_name;

UPDATE owner_counts c
SET queued = q.queued
FROM (
    SELECT w.owner_name, count(*) AS queued
    FROM deliveries d
    JOIN webhooks w ON w.id = d.webhook_id
    WHERE d.state = 'pending'
    GROUP BY w.owner_name
) q
WHERE q.owner_name = c.owner_name;
