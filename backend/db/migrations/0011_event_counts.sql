-- How many events each monitor stored on each UTC day (day = ts / 86400 s, the day of the
-- events partition that holds them). The writer (backend.db.events_copy) adds to it in the
-- transaction that stores the events; retention (backend.retention) takes away what it drops
-- in the transaction that drops them. Read for the per-user quota of events stored (summed
-- over the user's monitors) and by retention, to find which days hold which monitor types.
CREATE TABLE event_counts (
    monitor_id uuid    NOT NULL,
    day        integer NOT NULL,  -- days since 1970-01-01 (UTC)
    events     bigint  NOT NULL CHECK (events >= 0),
    PRIMARY KEY (monitor_id, day)
);
CREATE INDEX event_counts_day_idx ON event_counts (day);

-- The events stored before this version: counted once, here.
INSERT INTO event_counts (monitor_id, day, events)
    SELECT monitor_id, (ts / 86400000000000)::integer, count(*) FROM events GROUP BY 1, 2;
