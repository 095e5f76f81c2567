-- GitHub's deliveries API (issue 16) names each attempt by an integer id (a JavaScript-safe
-- one: octokit reads ids as numbers). Attempts are keyed (delivery_id, number); the ids are
-- given here, on first listing through /api/v3, so that the outbox's paths pay nothing for
-- them. Removed with their attempts (retention, a deleted hook).
CREATE TABLE github_delivery_ids (
    id          bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id uuid    NOT NULL,
    number      integer NOT NULL,
    UNIQUE (delivery_id, number),
    FOREIGN KEY (delivery_id, number) REFERENCES delivery_attempts (delivery_id, number)
        ON DELETE CASCADE
);
