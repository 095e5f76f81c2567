-- Delivery: webhook state and signing secrets, the transactional outbox (events and one
-- delivery row per matching webhook), and the record of every attempt.

ALTER TABLE webhooks
    ADD COLUMN state text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'disabled')),
    ADD COLUMN disabled_reason text,
    ADD COLUMN disabled_time timestamptz;

CREATE TABLE webhook_secrets (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id  uuid        NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    -- The whsec_ secret, encrypted (ChaCha20-Poly1305, nonce first) under the server's key.
    secret      bytea       NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    -- NULL for the current secret; a rotated-out secret keeps signing until then.
    expire_time timestamptz
);
CREATE INDEX webhook_secrets_webhook_idx ON webhook_secrets (webhook_id);
CREATE UNIQUE INDEX webhook_secrets_one_current_idx ON webhook_secrets (webhook_id) WHERE expire_time IS NULL;

CREATE TABLE events (
    id              uuid        PRIMARY KEY,
    owner_name      text        NOT NULL,
    repository_name text        NOT NULL,
    event           integer     NOT NULL,
    -- The encoded buf.alpha.webhook.v1alpha1.EventRequest, sent as is.
    payload         bytea       NOT NULL,
    idempotency_key text,
    create_time     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_idempotency_key UNIQUE (owner_name, idempotency_key)
);

CREATE TABLE deliveries (
    id                uuid        PRIMARY KEY,
    event_id          uuid        NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    webhook_id        uuid        NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    state             text        NOT NULL DEFAULT 'pending'
                                  CHECK (state IN ('pending', 'delivered', 'failed')),
    attempt_count     integer     NOT NULL DEFAULT 0,
    next_attempt_time timestamptz NOT NULL DEFAULT now(),
    -- The claim: which process holds the delivery, and until when. An expired lease is
    -- claimable again (its holder died or hangs).
    lease_owner       uuid,
    lease_expire_time timestamptz,
    create_time       timestamptz NOT NULL DEFAULT now(),
    last_attempt_time timestamptz,
    last_http_status  integer
);
-- The batcher's claim scans due pending deliveries in due order.
CREATE INDEX deliveries_due_idx ON deliveries (next_attempt_time) WHERE state = 'pending';
-- ListDeliveries: a webhook's deliveries, newest first.
CREATE INDEX deliveries_webhook_idx ON deliveries (webhook_id, create_time DESC, id DESC);
CREATE INDEX deliveries_event_idx ON deliveries (event_id);

CREATE TABLE delivery_attempts (
    delivery_id   uuid        NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    number        integer     NOT NULL,
    start_time    timestamptz NOT NULL,
    duration_ms   integer     NOT NULL,
    http_status   integer,
    connect_code  text,
    -- The first 4 KiB of the answer.
    response_body bytea,
    error         text,
    PRIMARY KEY (delivery_id, number)
);
