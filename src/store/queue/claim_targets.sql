-- Each claimed webhook's owner, callback URL and the secrets that sign (the current one and the one
-- it replaced, while in its overlap; newest first), by primary key, with what rendering its
-- deliveries needs (format, options, auth header, headers). A rotation leaves at most two;
-- LIMIT 2 keeps a claim from loading more should rows be added by hand.
--
-- The rendering columns are NULL for a plain BSR webhook (rendered as the BSR's request,
-- nothing added; as publish.sql's `handable`): a claim of 1,000 of them decodes nothing more
-- than it did before there were formats.
SELECT w.id, w.owner_name, w.callback_url,
       ARRAY(
           SELECT s.secret FROM webhook_secrets s
           WHERE s.webhook_id = w.id AND (s.expire_time IS NULL OR s.expire_time > now())
           ORDER BY s.create_time DESC
           LIMIT 2
       ) AS "sealed_secrets!",
       r.number AS "number?", r.repository_name AS "repository_name?",
       r.all_repositories AS "all_repositories?", r.event_types AS "event_types?",
       r.format AS "format?", r.format_options, r.sealed_auth_header,
       r.skip_tls_verify AS "skip_tls_verify?", r.custom_headers,
       r.omit_standard_headers AS "omit_standard_headers?", r.name AS "name?"
FROM webhooks w
LEFT JOIN LATERAL (
    -- The options and headers NULL when empty: nothing to parse.
    SELECT w.number, w.repository_name, w.all_repositories, w.event_types, w.format,
           NULLIF(w.format_options, '{}') AS format_options, w.sealed_auth_header,
           w.skip_tls_verify, NULLIF(w.custom_headers, '[]') AS custom_headers,
           w.omit_standard_headers, w.name
    WHERE NOT (w.face = 'bsr' AND w.format_options = '{}' AND w.sealed_auth_header IS NULL
               AND w.custom_headers = '[]' AND NOT w.skip_tls_verify
               AND NOT w.omit_standard_headers)
) r ON true
WHERE w.id = ANY ($1::uuid[])
