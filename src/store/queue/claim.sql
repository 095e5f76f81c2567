-- Tops up a claim (see fair_claim.sql): up to $2 more due deliveries of active webhooks, oldest
-- first, for worker $1, for $3 seconds, skipping
-- the webhooks in $4 and those of the owners in $6 and, with $5, deliveries due before it (see store::deliveries::claim).
-- Every lookup is by key whatever the statistics say: the candidates come off the due index
-- in order and stop at the limit; the claimed rows are found by primary key (an array, not a
-- join the planner could turn around); each event is read by a correlated lookup.
WITH candidates AS (
    SELECT d2.id, d2.next_attempt_time AS due
    FROM deliveries d2
    WHERE d2.state = 'pending'
      AND d2.next_attempt_time <= now()
      AND d2.next_attempt_time >= COALESCE($5::timestamptz, '-infinity')
      AND d2.webhook_id <> ALL ($4::uuid[])
      AND EXISTS (SELECT 1 FROM webhooks w2
                  WHERE w2.id = d2.webhook_id AND w2.state = 'active'
                    AND w2.owner_name <> ALL ($6::text[]))
    ORDER BY d2.next_attempt_time
    LIMIT $2
    FOR UPDATE OF d2 SKIP LOCKED
), claimed AS (
    UPDATE deliveries d
    SET lease_owner = $1,
        lease_expire_time = now() + make_interval(secs => $3),
        next_attempt_time = now() + make_interval(secs => $3)
    WHERE d.id = ANY (ARRAY(SELECT id FROM candidates))
    RETURNING d.id, d.event_id, d.webhook_id, d.attempt_count, d.schedule_start
)
SELECT c.id, c.webhook_id, c.attempt_count, c.attempt_count - c.schedule_start AS "scheduled_attempts!",
       (SELECT e.payload FROM events e WHERE e.id = c.event_id) AS payload,
       (SELECT CASE WHEN count(*) = $2 THEN max(due) END FROM candidates) AS full_at
FROM claimed c
