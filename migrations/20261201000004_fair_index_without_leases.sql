-- The fair walk's index (migration 20261201000002) leaves out leased deliveries. Every
-- index a delivery is in costs an entry at each insert and at each update that is not HOT,
-- and a claim (which moves next_attempt_time) is never HOT: with the leased rows in it, this
-- index took an entry at the publish and another at every claim, and the throughput of the
-- slow-subscriber and scale-out scenarios fell 5-10% (BENCHMARKS.md). Without them it takes
-- one at the publish (none for a delivery the publish hands to its batcher) and one per
-- retry; the walk no longer steps over leased rows either. A delivery whose claimant died
-- (leased, its lease expired) is not in it: the first-in-first-out claim, on
-- deliveries_due_idx, takes it again.
DROP INDEX deliveries_pending_webhook_idx;
CREATE INDEX deliveries_waiting_webhook_idx
    ON deliveries (webhook_id, next_attempt_time) WHERE state = 'pending' AND lease_owner IS NULL;
