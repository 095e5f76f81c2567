-- A subscription whose failed attempts are not retried (issue 16): GitHub never retries, and
-- some receivers built for it cannot deduplicate.
ALTER TABLE webhooks ADD COLUMN no_retries boolean NOT NULL DEFAULT false;
