-- Redeliver gives a delivery the whole retry schedule again while its attempt numbers go on:
-- the schedule counts the attempts made since attempt number `schedule_start`. Adding a
-- column with a constant default rewrites nothing.
ALTER TABLE deliveries ADD COLUMN schedule_start integer NOT NULL DEFAULT 0;
