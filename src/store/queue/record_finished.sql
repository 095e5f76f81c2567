-- Records deliveries made before their event was stored (the configuration file's
-- `required` and `optional` webhooks, delivered at publish time; see
-- store::queue::record_finished), finished already: one row per delivery ($1-$9; delivered
-- or failed, never pending, so no owner's queued count changes) and one per attempt
-- ($10-$22, each delivery's attempts numbered from 1 in order). Run in the publish's
-- transaction, after its events are inserted. Empty and -1 stand for none, as in
-- record_attempts.sql, whose notification for the live tail this sends too.
-- (A data-modifying CTE runs whether or not it is read.)
WITH delivered AS (
    INSERT INTO deliveries
        (id, event_id, webhook_id, part, state, attempt_count, next_attempt_time, create_time,
         last_attempt_time, last_http_status)
    SELECT d.id, d.event_id, d.webhook_id, d.part, d.state, d.attempts, d.last_start,
           d.first_start, d.last_start, NULLIF(d.last_status, 0)
    FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::smallint[], $5::text[], $6::int[],
                $7::timestamptz[], $8::timestamptz[], $9::int[])
         AS d(id, event_id, webhook_id, part, state, attempts, first_start, last_start,
              last_status)
    RETURNING id, webhook_id
), attempted AS (
    INSERT INTO delivery_attempts
        (delivery_id, number, start_time, duration_ms, http_status, connect_code, response_body,
         error, request_headers, request_body, request_body_size, response_headers)
    SELECT a.delivery_id, a.number, a.start_time, a.duration_ms, NULLIF(a.http_status, 0),
           NULLIF(a.connect_code, ''), a.response_body, NULLIF(a.error, ''),
           NULLIF(a.request_headers, ''::bytea),
           CASE WHEN a.request_body_kept THEN a.request_body END,
           NULLIF(a.request_body_size, -1), NULLIF(a.response_headers, ''::bytea)
    FROM UNNEST($10::uuid[], $11::int[], $12::timestamptz[], $13::int[], $14::int[], $15::text[],
                $16::bytea[], $17::text[], $18::bytea[], $19::bytea[], $20::bool[], $21::int[],
                $22::bytea[])
         AS a(delivery_id, number, start_time, duration_ms, http_status, connect_code,
              response_body, error, request_headers, request_body, request_body_kept,
              request_body_size, response_headers)
    RETURNING delivery_id, number
), notified AS (
    SELECT pg_notify('webhookd_attempts', string_agg(delivery_id::text || ':' || number, ','))
    FROM (SELECT a.delivery_id, a.number, (row_number() OVER () - 1) / 190 AS chunk
          FROM attempted a
          JOIN delivered d ON d.id = a.delivery_id
          JOIN webhooks w ON w.id = d.webhook_id
          WHERE w.owner_name IN (SELECT f.owner_name FROM tail_follows f
                                 WHERE f.expire_time > now())) numbered
    GROUP BY chunk
)
SELECT count(*) AS "notifications!" FROM notified
