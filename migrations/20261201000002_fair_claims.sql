-- Fair claims (issue 13, item 9): a claim walks the webhooks that have due deliveries, in
-- rotation, and takes a share of each one's oldest; this index finds, for one webhook, its
-- due deliveries in order, and the next webhook after a given id that has any.
CREATE INDEX deliveries_pending_webhook_idx
    ON deliveries (webhook_id, next_attempt_time) WHERE state = 'pending';
