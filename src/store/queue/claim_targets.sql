-- Each claimed webhook's target (see migration 20261206000001), by primary key.
SELECT t AS "target!: TargetRow"
FROM webhook_targets t
WHERE t.id = ANY ($1::uuid[])
