-- Webhooks defined in the configuration file the Angos way (issue 18): one subscription of
-- face 'file' per [event_webhook.NAME] table, owned by no owner ('', which only an
-- all-owners token covers: a file webhook may be sent every owner's events), named by its
-- table, upserted by each serving process when it loads or reloads the file, and disabled
-- (not deleted: its delivery log stays) when its table goes. Publishing routes to them from
-- the loaded file, not from these rows (an event is never of owner ''); a delivery of one
-- is claimed, attempted and recorded as any other's, with Angos's per-request timeout and
-- retries (100 ms doubling to 10 s, max_retries of them, no jitter).
ALTER TABLE webhooks
    ADD COLUMN file_policy text CHECK (file_policy IN ('required', 'optional', 'async')),
    ADD COLUMN timeout_ms  integer CHECK (timeout_ms > 0),
    ADD COLUMN max_retries integer CHECK (max_retries BETWEEN 0 AND 16),
    ADD CONSTRAINT webhooks_file_check
        CHECK ((face = 'file') = (file_policy IS NOT NULL AND timeout_ms IS NOT NULL
                                  AND max_retries IS NOT NULL));

-- The view gains the two a delivery needs (NULL for every other subscription).
CREATE OR REPLACE VIEW webhook_targets AS
SELECT w.id, w.owner_name, w.callback_url,
       ARRAY(
           SELECT s.secret FROM webhook_secrets s
           WHERE s.webhook_id = w.id AND (s.expire_time IS NULL OR s.expire_time > now())
           ORDER BY s.create_time DESC
           LIMIT 2
       ) AS sealed_secrets,
       w.number, w.repository_name, w.all_repositories, w.event_types, w.format,
       NULLIF(w.format_options, '{}') AS format_options, w.sealed_auth_header,
       w.skip_tls_verify, NULLIF(w.custom_headers, '[]') AS custom_headers,
       w.omit_standard_headers, w.name, w.face, w.sealed_hub_secret, w.no_retries,
       '/projects/' || w.harbor_project_id || '/webhook/policies/' || w.harbor_policy_id
           AS harbor_source,
       w.timeout_ms, w.max_retries
FROM webhooks w;
