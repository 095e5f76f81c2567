-- Webhook subscriptions (the BSR's `Webhook`), the API tokens that manage them, and
-- server-side keys shared by every webhookd process on this database.

CREATE TABLE webhooks (
    id              uuid        PRIMARY KEY,
    owner_name      text        NOT NULL,
    repository_name text        NOT NULL,
    -- The buf.alpha.registry.v1alpha1.WebhookEvent number (1 = REPOSITORY_PUSH).
    event           integer     NOT NULL CHECK (event > 0),
    callback_url    text        NOT NULL,
    create_time     timestamptz NOT NULL,
    update_time     timestamptz NOT NULL,
    CONSTRAINT webhooks_subscription_key UNIQUE (owner_name, repository_name, event, callback_url)
);

-- ListWebhooks pages through one repository in (create_time, id) order.
CREATE INDEX webhooks_repository_page_idx
    ON webhooks (owner_name, repository_name, create_time, id);

CREATE TABLE api_tokens (
    id          uuid        PRIMARY KEY,
    -- SHA-256 of the token; the token itself is never stored.
    token_hash  bytea       NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    owners      text[]      NOT NULL,
    all_owners  boolean     NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    revoke_time timestamptz
);

CREATE TABLE server_keys (
    name text  PRIMARY KEY,
    key  bytea NOT NULL CHECK (length(key) >= 32)
);
