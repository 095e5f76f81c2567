-- The console's 24-hour chart (issue 19): each subscription's attempts per hour, how many
-- succeeded and how long they took, added to by the batchers in the same once-a-second write
-- as subscription_activity (see dispatch/activity.rs), so the delivery path pays one small
-- write a second, and reading a page of charts reads at most 25 rows a subscription. Each
-- write drops the written subscriptions' hours older than a day: a subscription keeps at
-- most 25 rows.
CREATE TABLE subscription_hourly (
    webhook_id      uuid        NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    hour            timestamptz NOT NULL,
    attempts        bigint      NOT NULL,
    successes       bigint      NOT NULL,
    duration_ms_sum bigint      NOT NULL,
    duration_ms_max integer     NOT NULL,
    PRIMARY KEY (webhook_id, hour)
);
