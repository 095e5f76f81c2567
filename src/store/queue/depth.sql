-- The queue's depth and lag for /metrics: the unfinished deliveries by where they stand
-- (pending: waiting for an attempt; held: their subscription is paused or disabled;
-- in_flight: leased, the lease not run out) and how long the oldest due one of an active
-- subscription has been due. One pass over the pending deliveries, grouped by webhook before
-- each webhook's state is looked up (once per webhook, not per delivery).
SELECT COALESCE(sum(d.waiting) FILTER (WHERE w.state = 'active'), 0)::bigint AS "pending!",
       COALESCE(sum(d.waiting + d.leased) FILTER (WHERE w.state <> 'active'), 0)::bigint
           AS "held!",
       COALESCE(sum(d.leased) FILTER (WHERE w.state = 'active'), 0)::bigint AS "in_flight!",
       COALESCE(EXTRACT(epoch FROM now() - min(d.oldest_due) FILTER (WHERE w.state = 'active')),
                0)::float8 AS "lag_seconds!"
FROM (
    SELECT webhook_id,
           count(*) FILTER (WHERE NOT leased) AS waiting,
           count(*) FILTER (WHERE leased) AS leased,
           min(next_attempt_time) FILTER (WHERE NOT leased AND next_attempt_time <= now())
               AS oldest_due
    FROM (SELECT webhook_id, next_attempt_time,
                 lease_owner IS NOT NULL AND lease_expire_time > now() AS leased
          FROM deliveries
          WHERE state = 'pending') p
    GROUP BY webhook_id
) d
JOIN webhooks w ON w.id = d.webhook_id
