-- CreateWebhook writes a webhook and its first secret in one statement; the secret's
-- foreign key cost a trigger query and a row lock (a WAL record) per create, and its
-- per-webhook index a third index insert. At 32 concurrent creates (pgbench, the create
-- statement alone) dropping both took ~5,000 to ~6,700 creates/s (BENCHMARKS.md).
--
-- * The primary key becomes (webhook_id, id): it serves the per-webhook lookups the
--   separate index served, so that index goes.
-- * The foreign key to `webhooks` goes. Secrets are inserted with their webhook (same
--   statement) or by a rotation, which locks the webhook row (FOR KEY SHARE) first;
--   DeleteWebhook deletes a webhook's secrets itself, after the webhook row, as it does
--   its deliveries (migration 6).

ALTER TABLE webhook_secrets DROP CONSTRAINT webhook_secrets_webhook_id_fkey;
ALTER TABLE webhook_secrets DROP CONSTRAINT webhook_secrets_pkey;
ALTER TABLE webhook_secrets ADD PRIMARY KEY (webhook_id, id);
DROP INDEX webhook_secrets_webhook_idx;
