-- The first-in-first-out part of a claim (see store::queue::claim), or the whole of a plain
-- one: the candidates among up to $1 due deliveries of active webhooks, oldest first, locked
-- for this transaction (those the fair walk locked before it come again, and are known),
-- skipping the webhooks in $2 and those of the owners in $4 and, with
-- $3, deliveries due before it. Leased deliveries whose lease expired are due here (a claim
-- moves next_attempt_time to the lease's end), and only here. Must change with
-- fair_claim.sql: both skip the same webhooks.
-- Every lookup is by key whatever the statistics say: the candidates come off the due index
-- in order and stop at the limit; each candidate's webhook is checked by a correlated lookup.
WITH candidates AS (
    SELECT d2.id, d2.webhook_id, d2.next_attempt_time AS due
    FROM deliveries d2
    WHERE d2.state = 'pending'
      AND d2.next_attempt_time <= now()
      AND d2.next_attempt_time >= COALESCE($3::timestamptz, '-infinity')
      AND d2.webhook_id <> ALL ($2::uuid[])
      AND EXISTS (SELECT 1 FROM webhooks w2
                  WHERE w2.id = d2.webhook_id AND w2.state = 'active'
                    AND w2.owner_name <> ALL ($4::text[]))
    ORDER BY d2.next_attempt_time
    LIMIT $1
    FOR UPDATE OF d2 SKIP LOCKED
)
SELECT c.id, c.webhook_id,
       (SELECT CASE WHEN count(*) = $1 THEN max(due) END FROM candidates) AS full_at
FROM candidates c
ORDER BY c.due
