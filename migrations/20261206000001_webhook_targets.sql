-- Where a leased delivery goes and how it is rendered, as one row per webhook: what a claim
-- reads of each webhook it leased (claim_targets.sql), and what a publish reads of each it
-- hands to its batcher (publish.sql), defined once. Read as one composite value (the view's
-- row type; store::queue::TargetRow). The signing secrets are the current one and the one it
-- replaced while in its overlap, newest first; a rotation leaves at most two, and LIMIT 2
-- keeps a claim from loading more should rows be added by hand. The options and headers are
-- NULL when empty: nothing to parse for a plain webhook.
CREATE VIEW webhook_targets AS
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
       w.omit_standard_headers, w.name, w.face, w.sealed_hub_secret, w.no_retries
FROM webhooks w;
