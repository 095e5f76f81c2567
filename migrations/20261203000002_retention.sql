-- Retention (--retention, issue 15): finished deliveries and unreferenced events are removed
-- by walking the tables' primary keys, whose UUIDv7s are time-ordered (see
-- store/retention.rs); no index is added, so the delivery path pays nothing for it.

-- The smallest UUIDv7 of the millisecond t.
CREATE FUNCTION webhookd_uuid_v7_floor(t timestamptz) RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN encode(
        overlay('\x00000000000070000000000000000000'::bytea
                PLACING substring(int8send(floor(extract(epoch FROM t) * 1000)::bigint) FROM 3)
                FROM 1 FOR 6),
        'hex')::uuid;
