-- Leases the claim's candidates $2 (rows this transaction has locked, see claim.sql and
-- fair_claim.sql) to worker $1 for $3 seconds: not due until the lease ends, so another
-- claim passes over them. Found by primary key (an array, not a join the planner could turn
-- around); each event is read by a correlated lookup (what rendering needs of it, as one
-- composite value).
WITH leased AS (
    UPDATE deliveries d
    SET lease_owner = $1,
        lease_expire_time = now() + make_interval(secs => $3),
        next_attempt_time = now() + make_interval(secs => $3)
    WHERE d.id = ANY ($2::uuid[])
    RETURNING d.id, d.event_id, d.webhook_id, d.attempt_count, d.schedule_start, d.part
)
SELECT l.id, l.webhook_id, l.event_id, l.part, l.attempt_count,
       l.attempt_count - l.schedule_start AS "scheduled_attempts!",
       (SELECT ROW(e.payload, e.family, e.event_type, e.create_time)::webhookd_event_head
        FROM events e WHERE e.id = l.event_id) AS "head: EventHeadRow"
FROM leased l
