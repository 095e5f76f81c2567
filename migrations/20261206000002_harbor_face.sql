-- Harbor's face (issue 17): project webhook policies under /api/v2.0. A Harbor project is a
-- webhookd owner, numbered here on first use (Harbor's clients name projects by name or by
-- numeric id). A policy is a row here, and one subscription of face 'harbor' per target
-- (webhooks.harbor_policy_id, in target order): its targets are delivered, retried and
-- recorded as every subscription is, and the native API shows them.
CREATE TABLE harbor_projects (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_name text   NOT NULL UNIQUE
);

CREATE TABLE harbor_policies (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_name    text        NOT NULL,
    name          text        NOT NULL,
    description   text        NOT NULL DEFAULT '',
    creator       text        NOT NULL DEFAULT '',
    -- Harbor's names (PUSH_ARTIFACT, ...), as given.
    event_types   text[]      NOT NULL,
    enabled       boolean     NOT NULL,
    creation_time timestamptz NOT NULL DEFAULT now(),
    update_time   timestamptz NOT NULL DEFAULT now(),
    -- Harbor's UNIQUE(name, project_id).
    UNIQUE (owner_name, name)
);

ALTER TABLE webhooks
    ADD COLUMN harbor_policy_id bigint REFERENCES harbor_policies (id),
    -- The target's place in its policy's targets.
    ADD COLUMN harbor_target smallint,
    -- Its project's id (the owner's: harbor_projects), for its CloudEvents `source`.
    ADD COLUMN harbor_project_id bigint;
CREATE INDEX webhooks_harbor_policy_idx ON webhooks (harbor_policy_id, harbor_target)
    WHERE harbor_policy_id IS NOT NULL;

-- A Harbor policy's CloudEvents `source` is /projects/{project id}/webhook/policies/{policy
-- id}: the targets' rendering reads it here (NULL for every other subscription; no lookup).
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
           AS harbor_source
FROM webhooks w;
