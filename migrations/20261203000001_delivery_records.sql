-- Delivery records GitHub users would recognise (issue 15): each attempt keeps the request
-- webhookd sent and the answer's headers.
--
-- request_headers and response_headers are the headers in the order sent or received,
-- encoded compactly (see src/domain/header_record.rs: common names and values as one byte),
-- secrets masked in the request's. request_body is the body as sent up to --record-request-bytes, NULL when it was
-- the event's stored payload sent as is (the BSR's Connect path: GetDelivery reads it from
-- the event, so the outbox's busiest path stores no second copy); request_body_size is the
-- whole body's size. All NULL for attempts recorded before this migration, and for an attempt
-- whose request could not be built.
ALTER TABLE delivery_attempts
    ADD COLUMN request_headers   bytea,
    ADD COLUMN request_body      bytea,
    ADD COLUMN request_body_size integer,
    ADD COLUMN response_headers  bytea;

-- What each subscription was last sent, per event type (Harbor's last trigger: the newest
-- event of that type attempted, by the time it was published), and its last answer
-- (GitHub's last_response: the newest attempt's time, HTTP status and message), in the row
-- of event type ''. Written by the batchers about once a second (see
-- dispatch/activity.rs), newest wins: a process that dies loses at most its last second of
-- it, never a delivery.
CREATE TABLE subscription_activity (
    webhook_id            uuid        NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_type            text        NOT NULL,
    last_trigger_time     timestamptz NOT NULL,
    last_response_time    timestamptz,
    -- NULL when no answer arrived (the message says why).
    last_response_code    integer,
    last_response_message text,
    PRIMARY KEY (webhook_id, event_type)
);
