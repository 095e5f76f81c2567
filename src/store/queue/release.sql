-- Gives back deliveries $1 that worker $2 claimed but did not attempt, due at once.
UPDATE deliveries
SET lease_owner = NULL, lease_expire_time = NULL, next_attempt_time = now()
WHERE id = ANY ($1::uuid[]) AND lease_owner = $2
