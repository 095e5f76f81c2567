-- Who follows the live tail (issue 19): one row per serving process's tail hub and owner
-- its readers follow, renewed while they do (see api/tail.rs). The recorders notify an
-- attempt only when its owner is followed here, because PostgreSQL's NOTIFY takes a
-- database-wide lock from a notifying transaction's commit until it ends: notifying every
-- attempt would serialise every batcher's commits whether anyone reads the tail or not.
-- A row past its expire_time is ignored (its process died) and deleted by the next renewal
-- of any hub. Owner '' is the configuration file's webhooks, as in webhooks.owner_name.
CREATE TABLE tail_follows (
    hub_id      uuid        NOT NULL,
    owner_name  text        NOT NULL,
    expire_time timestamptz NOT NULL,
    PRIMARY KEY (hub_id, owner_name)
);
