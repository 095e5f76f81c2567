-- The claim skips webhooks that already have many deliveries in flight (so that one slow
-- listener cannot take every slot); this index finds the in-flight deliveries.
CREATE INDEX deliveries_leased_idx ON deliveries (webhook_id) WHERE lease_owner IS NOT NULL;
