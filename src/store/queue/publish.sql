-- Stores events and queues one delivery per matching subscription, in one statement (see
-- store::events::insert). An event whose idempotency key its owner used before stores
-- nothing.
--
-- BSR webhooks (face 'bsr') are routed here: each distinct (owner, repository, event) looks
-- its webhooks up by index and locks them FOR KEY SHARE (once per webhook, as a foreign key
-- would once per delivery): a concurrent DeleteWebhook waits for this statement's
-- transaction, then deletes what it queued; a webhook deleted or disabled first is skipped;
-- a paused one is queued for, not handed. Native subscriptions are routed before, in Rust
-- (store::routing: filters are regular expressions, matched in linear time there): $16-$18
-- are the (event id, subscription id, part) deliveries it chose, each checked again here
-- (not disabled meanwhile, locked FOR KEY SHARE). $19 are the ids of every native
-- subscription it considered: should a batch's owner have one that is not among them (one
-- created since, or an owner routing did not know to look at), nothing is stored and a
-- row names the owner (`missed`), to route again and retry. $20 and $21 are the events'
-- families and types, empty for a batch of BSR events alone (UNNEST pads them with NULLs).
--
-- With a worker ($8), the deliveries of the active BSR webhooks it has room for are leased
-- to it for $10 seconds as they are inserted (handed to the publishing process's batcher,
-- which attempts them without a claim): a webhook's deliveries are handed when all of them
-- fit in its room ($12 for the webhooks in $11, $13 for the others), and webhooks are handed
-- in id order while the total fits in $9; none of the owners in $15 (at their
-- `--max-in-flight-per-owner` in that batcher) is handed anything. Routing chose the native
-- subscriptions to hand to by the same rules ($22; $9 is what they left): their deliveries
-- are handed unless the subscription is found paused here. What is not handed is queued as
-- usual.
--
-- With $14, an owner whose queued deliveries have reached it refuses the whole statement:
-- nothing is stored, and a row names each such owner with its count.
--
-- Returns a row per stored event (queued 0), a row per event with deliveries (with their
-- count), a row per handed delivery (with its part and its event's create_time), a row per
-- webhook with handed deliveries (its target, as a claim reads it: the webhook_targets
-- view) and, when anything is left for the batchers to claim, a row that woke the
-- `--wake-on-publish` ones (NOTIFY is sent at commit).
WITH input AS (
    SELECT *
    FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::int[], $5::bytea[], $6::text[],
                $20::text[], $21::text[])
         AS t(id, owner_name, repository_name, event, payload, key, family, event_type)
), matched AS (
    SELECT w.id, w.handable, k.owner_name, k.repository_name, k.event, k.events,
           COALESCE(r.room, $13::int) AS room
    FROM (
        -- From the routing arrays, not from `input`: read once, `input` (with the payloads)
        -- is not materialized.
        SELECT owner_name, repository_name, event, count(*) AS events
        FROM UNNEST($2::text[], $3::text[], $4::int[]) AS r(owner_name, repository_name, event)
        GROUP BY owner_name, repository_name, event
    ) AS k
    CROSS JOIN LATERAL (
        SELECT w.id, w.state = 'active' AS handable
        FROM webhooks w
        WHERE w.owner_name = k.owner_name AND w.repository_name = k.repository_name
          AND w.event = k.event AND w.face = 'bsr' AND w.state <> 'disabled'
        FOR KEY SHARE
    ) AS w
    LEFT JOIN UNNEST($11::uuid[], $12::int[]) AS r(webhook_id, room) ON r.webhook_id = w.id
), over AS (
    -- The owners of this publish that have reached `--max-queued-per-owner` ($14; no limit
    -- when NULL) by their folded queued counts (see migration 20261201000003), with those
    -- counts: when there is any, nothing is stored. (From the routing array, not from
    -- `matched`, which is then read once and not materialized.)
    SELECT o.owner_name, o.queued
    FROM (
        SELECT r.owner_name,
               (SELECT c.queued FROM owner_counts c WHERE c.owner_name = r.owner_name) AS queued
        FROM (SELECT DISTINCT owner_name FROM UNNEST($2::text[]) AS u(owner_name)) r
        WHERE $14::bigint IS NOT NULL
    ) o
    WHERE o.queued >= $14::bigint
), missed AS (
    -- The batch's owners with a native subscription routing did not consider: a lookup
    -- per owner; the considered ids are hashed, not compared one by one (an owner with
    -- 1,000 subscriptions would cost 1,000,000 comparisons).
    SELECT r.owner_name
    FROM (SELECT DISTINCT owner_name FROM UNNEST($2::text[]) AS u(owner_name)) r
    WHERE EXISTS (SELECT 1 FROM webhooks w
                  WHERE w.owner_name = r.owner_name AND w.face <> 'bsr'
                    AND w.state <> 'disabled'
                    AND w.id NOT IN (SELECT c.id FROM UNNEST($19::uuid[]) AS c(id)))
), stored AS (
    INSERT INTO events (id, owner_name, repository_name, event, payload, idempotency_key,
                        family, event_type)
    SELECT id, owner_name, repository_name, event, payload, NULLIF(key, ''),
           COALESCE(family, 'bsr'), NULLIF(event_type, '')
    FROM input
    WHERE NOT EXISTS (SELECT 1 FROM over) AND NOT EXISTS (SELECT 1 FROM missed)
    ON CONFLICT (owner_name, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id, owner_name, repository_name, event
), targets AS (
    SELECT m.*,
           $8::uuid IS NOT NULL AND m.handable AND m.events <= m.room
           AND m.owner_name <> ALL ($15::text[])
           AND sum(m.events) FILTER (WHERE m.handable AND m.events <= m.room
                                       AND m.owner_name <> ALL ($15::text[]))
                   OVER (ORDER BY m.id ROWS UNBOUNDED PRECEDING) <= $9::bigint AS handed
    FROM matched m
), routed AS (
    -- The native subscriptions' deliveries, each subscription checked again (not disabled
    -- meanwhile; handed only when still active) and locked.
    SELECT n.event_id, n.webhook_id, n.part, w.owner_name,
           $8::uuid IS NOT NULL AND w.active AND n.webhook_id = ANY ($22::uuid[]) AS handed
    FROM UNNEST($16::uuid[], $17::uuid[], $18::smallint[]) AS n(event_id, webhook_id, part)
    JOIN stored s ON s.id = n.event_id
    CROSS JOIN LATERAL (
        -- Its owner's queued count is charged (the event's owner's, but for the
        -- configuration file's webhooks, owned by '').
        SELECT w.state = 'active' AS active, w.owner_name
        FROM webhooks w
        WHERE w.id = n.webhook_id AND w.state <> 'disabled'
        FOR KEY SHARE
    ) AS w
), queued AS (
    -- One insert for both kinds (one more would open the table and its indexes again on
    -- every publish).
    INSERT INTO deliveries (id, event_id, webhook_id, lease_owner, lease_expire_time,
                            next_attempt_time, part)
    SELECT webhookd_uuid_v7(), q.event_id, q.webhook_id,
           CASE WHEN q.handed THEN $8::uuid END,
           CASE WHEN q.handed THEN now() + make_interval(secs => $10) END,
           now() + CASE WHEN q.handed THEN make_interval(secs => $10) ELSE '0s' END,
           q.part
    FROM (
        SELECT s.id AS event_id, t.id AS webhook_id, t.handed, 0::smallint AS part
        FROM stored s
        JOIN targets t
          ON t.owner_name = s.owner_name AND t.repository_name = s.repository_name
         AND t.event = s.event
        UNION ALL
        SELECT r.event_id, r.webhook_id, r.handed, r.part FROM routed r
    ) q
    RETURNING id, event_id, webhook_id, part, lease_owner IS NOT NULL AS handed
), counted AS (
    -- What joins each owner's queued count: each stored event's webhooks, counted per key
    -- (not per queued row: a fan-out queues far more rows than it has keys), and the
    -- routed deliveries.
    INSERT INTO owner_count_changes (owner_name, queued)
    SELECT c.owner_name, sum(c.n)::bigint
    FROM (
        SELECT s.owner_name, k.webhooks AS n
        FROM stored s
        JOIN (SELECT owner_name, repository_name, event, count(*) AS webhooks
              FROM targets GROUP BY owner_name, repository_name, event) k
          ON k.owner_name = s.owner_name AND k.repository_name = s.repository_name
         AND k.event = s.event
        UNION ALL
        SELECT r.owner_name, 1 FROM routed r
    ) c
    GROUP BY c.owner_name
)
SELECT id AS event_id, 0::bigint AS queued, NULL::uuid AS delivery_id, NULL::uuid AS webhook_id,
       NULL::smallint AS part, NULL::timestamptz AS create_time,
       NULL::webhook_targets AS "target: TargetRow", NULL::text AS owner_name,
       NULL::bigint AS over_queued, NULL::bool AS missed
FROM stored
UNION ALL
SELECT event_id, count(*), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM queued GROUP BY event_id
UNION ALL
-- The events' create_time is the transaction's now(), their column's default.
SELECT event_id, 0, id, webhook_id, part, now(), NULL, NULL, NULL, NULL
FROM queued WHERE $8::uuid IS NOT NULL AND handed
UNION ALL
-- A correlated lookup by primary key per handed webhook (a join could be turned around).
SELECT NULL, 0, NULL, h.id, NULL, NULL,
       (SELECT v FROM webhook_targets v WHERE v.id = h.id), NULL, NULL, NULL
FROM (
    SELECT t.id FROM targets t WHERE t.handed
    UNION
    SELECT r.webhook_id FROM routed r WHERE r.handed
) AS h
WHERE $8::uuid IS NOT NULL
UNION ALL
SELECT NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM (SELECT pg_notify($7, '') FROM queued WHERE NOT handed LIMIT 1) AS woke
UNION ALL
SELECT NULL, 0, NULL, NULL, NULL, NULL, NULL, o.owner_name, o.queued, NULL
FROM over o
UNION ALL
SELECT NULL, 0, NULL, NULL, NULL, NULL, NULL, m.owner_name, NULL, true
FROM missed m
