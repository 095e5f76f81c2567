-- How many webhooks each repository has, kept by CreateWebhook and DeleteWebhook in the
-- same statement as the webhook itself. CreateWebhook takes a slot with one conditional
-- upsert (`webhooks < cap`): the row lock serialises concurrent creates in one repository
-- and READ COMMITTED re-checks the condition on the newest count, so the cap holds without
-- an advisory lock, a count(*) and a multi-statement transaction (BENCHMARKS.md).

CREATE TABLE repository_webhook_counts (
    owner_name      text    NOT NULL,
    repository_name text    NOT NULL,
    webhooks        integer NOT NULL CHECK (webhooks >= 0),
    PRIMARY KEY (owner_name, repository_name)
);

INSERT INTO repository_webhook_counts (owner_name, repository_name, webhooks)
SELECT owner_name, repository_name, count(*)
FROM webhooks
GROUP BY owner_name, repository_name;
