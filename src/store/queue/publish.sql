-- Stores events and queues one delivery per active webhook of each event's repository, in
-- one statement (see store::events::insert). An event whose idempotency key its owner used
-- before stores nothing. Each distinct (owner, repository, event) looks its webhooks up by
-- index and locks them FOR KEY SHARE (once per webhook, as a foreign key would once per
-- delivery): a concurrent DeleteWebhook waits for this statement's transaction, then deletes
-- what it queued; a webhook deleted or disabled first is skipped.
--
-- With a worker ($8), the deliveries of the webhooks it has room for are leased to it for
-- $10 seconds as they are inserted (handed to the publishing process's batcher, which
-- attempts them without a claim): a webhook's deliveries are handed when all of them fit in
-- its room ($12 for the webhooks in $11, $13 for the others), and webhooks are handed in
-- id order while the total fits in $9. What is not handed is queued as usual.
--
-- Returns a row per stored event (queued 0), a row per event with deliveries (with their
-- count), a row per handed delivery, a row per webhook with handed deliveries (its callback
-- URL and signing secrets, chosen as claim_targets.sql chooses them) and, when anything is
-- left for the batchers to claim, a row that woke the `--wake-on-publish` ones (NOTIFY is
-- sent at commit).
WITH input AS (
    SELECT *
    FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::int[], $5::bytea[], $6::text[])
         AS t(id, owner_name, repository_name, event, payload, key)
), stored AS (
    INSERT INTO events (id, owner_name, repository_name, event, payload, idempotency_key)
    SELECT id, owner_name, repository_name, event, payload, NULLIF(key, '')
    FROM input
    ON CONFLICT (owner_name, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id, owner_name, repository_name, event
), matched AS (
    SELECT w.id, w.callback_url, k.owner_name, k.repository_name, k.event, k.events,
           COALESCE(r.room, $13::int) AS room
    FROM (
        -- From the routing arrays, not from `input`: read once, `input` (with the payloads)
        -- is not materialized.
        SELECT owner_name, repository_name, event, count(*) AS events
        FROM UNNEST($2::text[], $3::text[], $4::int[]) AS r(owner_name, repository_name, event)
        GROUP BY owner_name, repository_name, event
    ) AS k
    CROSS JOIN LATERAL (
        SELECT w.id, w.callback_url
        FROM webhooks w
        WHERE w.owner_name = k.owner_name AND w.repository_name = k.repository_name
          AND w.event = k.event AND w.state = 'active'
        FOR KEY SHARE
    ) AS w
    LEFT JOIN UNNEST($11::uuid[], $12::int[]) AS r(webhook_id, room) ON r.webhook_id = w.id
), targets AS (
    SELECT m.*,
           $8::uuid IS NOT NULL AND m.events <= m.room
           AND sum(m.events) FILTER (WHERE m.events <= m.room)
                   OVER (ORDER BY m.id ROWS UNBOUNDED PRECEDING) <= $9::bigint AS handed
    FROM matched m
), queued AS (
    INSERT INTO deliveries (id, event_id, webhook_id, lease_owner, lease_expire_time,
                            next_attempt_time)
    SELECT webhookd_uuid_v7(), s.id, t.id,
           CASE WHEN t.handed THEN $8::uuid END,
           CASE WHEN t.handed THEN now() + make_interval(secs => $10) END,
           now() + CASE WHEN t.handed THEN make_interval(secs => $10) ELSE '0s' END
    FROM stored s
    JOIN targets t
      ON t.owner_name = s.owner_name AND t.repository_name = s.repository_name
     AND t.event = s.event
    RETURNING id, event_id, webhook_id, lease_owner IS NOT NULL AS handed
)
SELECT id AS event_id, 0::bigint AS queued, NULL::uuid AS delivery_id, NULL::uuid AS webhook_id,
       NULL::text AS callback_url, NULL::bytea[] AS sealed_secrets
FROM stored
UNION ALL
SELECT event_id, count(*), NULL, NULL, NULL, NULL FROM queued GROUP BY event_id
UNION ALL
SELECT event_id, 0, id, webhook_id, NULL, NULL FROM queued WHERE $8::uuid IS NOT NULL AND handed
UNION ALL
SELECT NULL, 0, NULL, t.id, t.callback_url,
       ARRAY(
           SELECT s.secret FROM webhook_secrets s
           WHERE s.webhook_id = t.id AND (s.expire_time IS NULL OR s.expire_time > now())
           ORDER BY s.create_time DESC
       )
FROM targets t
WHERE $8::uuid IS NOT NULL AND t.handed
UNION ALL
SELECT NULL, 0, NULL, NULL, NULL, NULL
FROM (SELECT pg_notify($7, '') FROM queued WHERE NOT handed LIMIT 1) AS woke
