-- Stores events and queues one delivery per active webhook of each event's repository, in
-- one statement (see store::events::insert). An event whose idempotency key its owner used
-- before stores nothing. Each distinct (owner, repository, event) looks its webhooks up by
-- index and locks them FOR KEY SHARE (once per webhook, as a foreign key would once per
-- delivery): a concurrent DeleteWebhook waits for this statement's transaction, then deletes
-- what it queued; a webhook deleted or disabled first is skipped. Returns one row per stored
-- event, one per event with deliveries (with their count) and, when anything was queued, a
-- row that woke the `--wake-on-publish` batchers (NOTIFY is sent at commit).
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
), targets AS (
    SELECT w.id, k.owner_name, k.repository_name, k.event
    FROM (SELECT DISTINCT owner_name, repository_name, event FROM input) AS k
    CROSS JOIN LATERAL (
        SELECT w.id
        FROM webhooks w
        WHERE w.owner_name = k.owner_name AND w.repository_name = k.repository_name
          AND w.event = k.event AND w.state = 'active'
        FOR KEY SHARE
    ) AS w
), queued AS (
    INSERT INTO deliveries (id, event_id, webhook_id)
    SELECT webhookd_uuid_v7(), s.id, t.id
    FROM stored s
    JOIN targets t
      ON t.owner_name = s.owner_name AND t.repository_name = s.repository_name
     AND t.event = s.event
    RETURNING event_id
)
SELECT id AS event_id, 0::bigint AS queued FROM stored
UNION ALL
SELECT event_id, count(*) FROM queued GROUP BY event_id
UNION ALL
SELECT NULL, 0 FROM (SELECT pg_notify($7, '') FROM queued LIMIT 1) AS woke
