-- The two foreign keys on the delivery path go (measured in BENCHMARKS.md).
--
-- A foreign key is checked by a trigger that runs a query per inserted row: 100,000
-- deliveries to one webhook took 2.2 s to insert with the key to `webhooks` and 1.3 s without
-- it; 100,000 attempt records 1.2 s with the key to `deliveries` and 0.3 s without it.
-- What the keys guaranteed is now kept by the statements that write these rows:
--
-- * deliveries -> webhooks. Publish locks the webhooks it fans out to (FOR KEY SHARE, once
--   per webhook instead of once per delivery), so a concurrent DeleteWebhook waits for the
--   publish to commit; DeleteWebhook then deletes the webhook's deliveries itself, in its
--   own transaction, after the webhook row (whose lock is what it waited on).
-- * delivery_attempts -> deliveries. Attempts are only inserted by the statement that
--   updates their delivery under its lease (the row exists and is locked); DeleteWebhook
--   deletes the attempts of the deliveries it deleted, in a later statement of the same
--   transaction, so that an attempt recorded while it waited is seen and deleted too.

ALTER TABLE deliveries DROP CONSTRAINT deliveries_webhook_id_fkey;
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_delivery_id_fkey;
