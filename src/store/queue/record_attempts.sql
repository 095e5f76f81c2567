-- Records one attempt per input row and applies its verdict, for the deliveries whose lease
-- worker $1 still holds (see store::deliveries::record_attempts). The deliveries are found
-- by primary key from the array $2 whatever the statistics say; the input is joined to those
-- rows alone (at most one per input row), and the attempt rows come from the update's own
-- RETURNING, so no statement here reads more than the batch. $12-$16 are what each attempt
-- sent and received (see migration 20261203000001); empty and -1 stand for none.
WITH input AS (
    SELECT *
    FROM UNNEST($2::uuid[], $3::text[], $4::float8[], $5::timestamptz[], $6::int[],
                $7::int[], $8::text[], $9::bytea[], $10::text[], $11::text[], $12::bytea[],
                $13::bytea[], $14::bool[], $15::int[], $16::bytea[])
         AS t(id, state, retry_in, start_time, duration_ms, http_status, connect_code,
              response_body, error, owner_name, request_headers, request_body,
              request_body_kept, request_body_size, response_headers)
), updated AS (
    UPDATE deliveries d
    SET state = i.state,
        attempt_count = d.attempt_count + 1,
        next_attempt_time = CASE WHEN i.state = 'pending'
                                 THEN now() + make_interval(secs => i.retry_in)
                                 ELSE d.next_attempt_time END,
        lease_owner = NULL,
        lease_expire_time = NULL,
        last_attempt_time = i.start_time,
        last_http_status = NULLIF(i.http_status, 0)
    FROM input i
    WHERE d.id = ANY ($2::uuid[]) AND d.id = i.id AND d.lease_owner = $1
    RETURNING d.id, d.attempt_count, i.state, i.start_time, i.duration_ms, i.http_status,
              i.connect_code, i.response_body, i.error, i.owner_name, i.request_headers,
              i.request_body, i.request_body_kept, i.request_body_size, i.response_headers
), counted AS (
    -- Deliveries that are done leave their owners' queued counts (a leased delivery is
    -- pending until this update; the batcher gives each one's owner, $11).
    INSERT INTO owner_count_changes (owner_name, queued)
    SELECT u.owner_name, -count(*)
    FROM updated u
    WHERE u.state <> 'pending'
    GROUP BY u.owner_name
), inserted AS (
    INSERT INTO delivery_attempts
        (delivery_id, number, start_time, duration_ms, http_status, connect_code, response_body,
         error, request_headers, request_body, request_body_size, response_headers)
    SELECT id, attempt_count, start_time, duration_ms, NULLIF(http_status, 0),
           NULLIF(connect_code, ''), response_body, NULLIF(error, ''),
           NULLIF(request_headers, ''::bytea), CASE WHEN request_body_kept THEN request_body END,
           NULLIF(request_body_size, -1), NULLIF(response_headers, ''::bytea)
    FROM updated
    RETURNING delivery_id, number
), notified AS (
    -- The live tail (api::tail): "id:number,..." on webhookd_attempts, sent at commit, 190
    -- attempts to a notification (each at most 48 bytes; a payload holds 8000), for the
    -- owners some reader follows alone (see migration 20261209000001: a transaction that
    -- notifies nothing takes no NOTIFY lock).
    SELECT pg_notify('webhookd_attempts', string_agg(id::text || ':' || attempt_count, ','))
    FROM (SELECT u.id, u.attempt_count, (row_number() OVER () - 1) / 190 AS chunk
          FROM updated u
          WHERE u.owner_name IN (SELECT f.owner_name FROM tail_follows f
                                 WHERE f.expire_time > now())) numbered
    GROUP BY chunk
)
-- Joined to the notifications' count so that they are sent (an unread CTE is not run).
SELECT delivery_id AS "delivery_id!"
FROM inserted, (SELECT count(*) FROM notified) AS sent
