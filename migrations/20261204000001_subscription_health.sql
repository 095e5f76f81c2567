-- Auto-disable (issue 15): each subscription's run of failed attempts, kept in its activity
-- row of event type '' and written with it by the batchers (see dispatch/activity.rs). A
-- success ends the run; so does resuming or re-enabling the subscription.
--
-- failing_since is when the run's first failed attempt started (NULL: no run), failures how
-- many attempts of it failed, failing_announced whether webhookd.subscription.failing was
-- published for it. The health sweep (store/health.rs) announces runs and disables the
-- subscriptions whose run lasted --auto-disable-after with --auto-disable-min-failures.
ALTER TABLE subscription_activity
    ADD COLUMN last_success_time timestamptz,
    ADD COLUMN last_failure_time timestamptz,
    ADD COLUMN failing_since     timestamptz,
    ADD COLUMN failures          bigint  NOT NULL DEFAULT 0,
    ADD COLUMN failing_announced boolean NOT NULL DEFAULT false;

-- The sweep's one lookup: the runs there are, oldest first.
CREATE INDEX subscription_activity_failing_idx
    ON subscription_activity (failing_since) WHERE failing_since IS NOT NULL;
