-- GitHub's face (issue 16): hooks made through /api/v3 are subscriptions of face 'github'.
-- A GitHub hook's secret (config.secret, hub.secret) is the HMAC key of X-Hub-Signature and
-- X-Hub-Signature-256 as the user gave it, not a whsec_ signing secret: sealed here like the
-- auth header (bound to the webhook id). A github-face hook without one is sent unsigned,
-- as GitHub sends it; a native github-format subscription without one signs with its
-- signing secret's text.
ALTER TABLE webhooks ADD COLUMN sealed_hub_secret bytea;

