-- The fair walk of a claim (see store::queue::claim): the candidates for a fair share of up
-- to $1 due deliveries, locked for this transaction, oldest first per webhook, in walk order.
-- The webhooks with due deliveries are walked in id order from just after $3 (the last
-- webhook the previous claim reached; from the start when NULL), wrapping around, skipping
-- those in $2, those of the owners in $5 and inactive ones, up to $4 of them; each gets an
-- equal share of the limit, its oldest first. Finding the next webhook with a due delivery
-- and a webhook's oldest due ones are each one probe of deliveries_waiting_webhook_idx, so
-- a claim costs its webhooks and its rows, never the backlog of one of them. That index
-- holds the unleased deliveries only: one whose lease expired is left to the
-- first-in-first-out claim (claim.sql). Must change with claim.sql: both skip the same
-- webhooks.
WITH RECURSIVE after_cursor(webhook_id) AS (
    SELECT (SELECT d.webhook_id FROM deliveries d
            WHERE d.state = 'pending' AND d.lease_owner IS NULL AND d.next_attempt_time <= now()
              AND d.webhook_id > COALESCE($3::uuid, '00000000-0000-0000-0000-000000000000')
            ORDER BY d.webhook_id LIMIT 1)
    UNION ALL
    SELECT (SELECT d.webhook_id FROM deliveries d
            WHERE d.state = 'pending' AND d.lease_owner IS NULL AND d.next_attempt_time <= now()
              AND d.webhook_id > a.webhook_id
            ORDER BY d.webhook_id LIMIT 1)
    FROM after_cursor a
    WHERE a.webhook_id IS NOT NULL
), before_cursor(webhook_id) AS (
    SELECT (SELECT d.webhook_id FROM deliveries d
            WHERE d.state = 'pending' AND d.lease_owner IS NULL AND d.next_attempt_time <= now()
              AND d.webhook_id <= $3::uuid
            ORDER BY d.webhook_id LIMIT 1)
    UNION ALL
    SELECT (SELECT d.webhook_id FROM deliveries d
            WHERE d.state = 'pending' AND d.lease_owner IS NULL AND d.next_attempt_time <= now()
              AND d.webhook_id > b.webhook_id AND d.webhook_id <= $3::uuid
            ORDER BY d.webhook_id LIMIT 1)
    FROM before_cursor b
    WHERE b.webhook_id IS NOT NULL
), hooks AS (
    SELECT h.webhook_id, row_number() OVER () AS pos
    FROM (
        SELECT r.webhook_id
        FROM (
            SELECT a.webhook_id FROM after_cursor a WHERE a.webhook_id IS NOT NULL
            UNION ALL
            SELECT b.webhook_id FROM before_cursor b WHERE b.webhook_id IS NOT NULL
        ) r
        WHERE r.webhook_id <> ALL ($2::uuid[])
          AND EXISTS (SELECT 1 FROM webhooks w
                      WHERE w.id = r.webhook_id AND w.state = 'active'
                        AND w.owner_name <> ALL ($5::text[]))
        LIMIT $4
    ) h
), share AS (
    SELECT ($1::bigint + greatest(count(*), 1) - 1) / greatest(count(*), 1) AS n FROM hooks
), candidates AS (
    SELECT c.id, c.next_attempt_time, h.pos, h.webhook_id
    FROM hooks h
    CROSS JOIN LATERAL (
        SELECT d.id, d.next_attempt_time
        FROM deliveries d
        WHERE d.state = 'pending'
          AND d.lease_owner IS NULL
          AND d.webhook_id = h.webhook_id
          AND d.next_attempt_time <= now()
        ORDER BY d.next_attempt_time
        LIMIT (SELECT n FROM share)
        FOR UPDATE OF d SKIP LOCKED
    ) c
    ORDER BY h.pos, c.next_attempt_time
    LIMIT $1
)
SELECT c.id AS "id!", c.webhook_id AS "webhook_id!",
       -- The webhook the walk reached (where the next claim starts after).
       (SELECT x.webhook_id FROM candidates x ORDER BY x.pos DESC LIMIT 1) AS reached,
       -- Whether some webhook got its whole share (and so may have more due).
       (SELECT bool_or(x.taken >= s.n)
        FROM (SELECT count(*) AS taken FROM candidates GROUP BY pos) x, share s) AS "share_filled!"
FROM candidates c
ORDER BY c.pos, c.next_attempt_time
