-- Each claimed webhook's owner, callback URL and the secrets that sign (the current one and the one
-- it replaced, while in its overlap; newest first), by primary key, with what rendering its
-- deliveries needs (format, options, auth header, headers). A rotation leaves at most two;
-- LIMIT 2 keeps a claim from loading more should rows be added by hand.
SELECT w.id, w.owner_name, w.callback_url,
       ARRAY(
           SELECT s.secret FROM webhook_secrets s
           WHERE s.webhook_id = w.id AND (s.expire_time IS NULL OR s.expire_time > now())
           ORDER BY s.create_time DESC
           LIMIT 2
       ) AS "sealed_secrets!",
       -- The options and headers NULL when empty: nothing to parse for a plain webhook.
       w.number AS "number!", w.repository_name, w.all_repositories, w.event_types, w.format,
       NULLIF(w.format_options, '{}') AS format_options, w.sealed_auth_header,
       w.skip_tls_verify, NULLIF(w.custom_headers, '[]') AS custom_headers,
       w.omit_standard_headers, w.name, w.face, w.sealed_hub_secret, w.no_retries
FROM webhooks w
WHERE w.id = ANY ($1::uuid[])
