-- Harbor's executions and tasks (issue 17): an execution is a delivery of a policy's target,
-- a task an attempt of it. Harbor's clients name both by integer ids. A task's is its
-- attempt's id (github_delivery_ids: the one id an attempt has, whichever face lists it);
-- an execution's is given here, on first listing, so that the outbox's paths pay nothing for
-- it. No foreign key to deliveries (whose delete paths stay free of triggers, see migration
-- 20261123000006): the row of a delivery since deleted names nothing, and is removed with
-- the policy's targets or by retention.
CREATE TABLE harbor_execution_ids (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id uuid   NOT NULL UNIQUE
);
