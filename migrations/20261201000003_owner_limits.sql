-- Per-owner limits (issue 13, item 9). `--max-webhooks-per-owner` needs no table of its own:
-- CreateWebhook sums the owner's repository_webhook_counts.

-- How many pending deliveries each owner has, for `--max-queued-per-owner`. The statements
-- that change a delivery's pending count (publish, the recorder, redeliver, DeleteWebhook)
-- append their change per owner to owner_queue_changes, an insert that never waits for
-- another; `serve` folds the changes into owner_queue_counts every second (one transaction:
-- a reader sees a change in one table or the other, never both or neither). A single
-- counter row per owner, updated in place, would make every publish and every recorded
-- batch of an owner wait for the one before it to commit, and a producer publishing inside
-- a long transaction would hold up the batchers. Publish checks the folded count: at most
-- a second behind.
CREATE TABLE owner_queue_counts (
    owner_name text   NOT NULL PRIMARY KEY,
    queued     bigint NOT NULL
);

-- No index: only ever appended to, and read whole by the fold, which deletes what it read.
CREATE TABLE owner_queue_changes (
    owner_name text   NOT NULL,
    queued     bigint NOT NULL
);

INSERT INTO owner_queue_counts (owner_name, queued)
SELECT w.owner_name, count(*)
FROM deliveries d
JOIN webhooks w ON w.id = d.webhook_id
WHERE d.state = 'pending'
GROUP BY w.owner_name;
