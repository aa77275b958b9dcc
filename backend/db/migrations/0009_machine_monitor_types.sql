-- What each machine's manager can run, as it announces in HELLO: {monitor type: {"target":
-- [keys], "config": [keys]}} (a type mapped to null: an older manager named the type only).
-- NULL: never announced. POST monitors refuses a type, or a key set, that is not announced.
ALTER TABLE machines ADD COLUMN monitor_types jsonb;
