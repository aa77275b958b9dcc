-- What each monitor's agent said it sent, with its final status (MONITOR_STATUS or STOP's
-- reply): events handed to the ingest socket, and events lost before (kernel, in-flight map,
-- no room to send). NULL: the agent said none (killed before its last line, an older manager).
ALTER TABLE monitors ADD COLUMN events_sent bigint CHECK (events_sent >= 0);
ALTER TABLE monitors ADD COLUMN events_dropped bigint CHECK (events_dropped >= 0);

-- A job trace's events, checked before its trace was generated: {monitor id: {"sent": n |
-- null, "stored": n}} for every rank's monitor; complete is true when each had stored what
-- its agent sent, false when one fell short by the deadline (backend.job_traces).
ALTER TABLE job_traces ADD COLUMN events jsonb;
ALTER TABLE job_traces ADD COLUMN complete boolean;
