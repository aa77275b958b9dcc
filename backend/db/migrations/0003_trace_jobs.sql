-- Trace jobs: POST /api/v1/traces:generate turns the events matching a filter into a trace
-- file (backend.trace_jobs). The file is <data_dir>/traces/<trace_id>: its path is derived
-- from the trace id, never stored or taken from a request. trace_id is assigned when the
-- job is created and shown once the job is COMPLETED.
--
-- attempts counts the runs started and not ended cleanly: a job left PROCESSING by a
-- backend that died is run again from scratch at the next start, up to 3 runs.
CREATE TABLE trace_jobs (
    id            uuid        PRIMARY KEY,
    user_id       uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    trace_id      uuid        NOT NULL UNIQUE,
    trace_name    text        NOT NULL CHECK (length(trace_name) BETWEEN 1 AND 200),
    filter        text        NOT NULL,
    format        text        NOT NULL CHECK (format IN ('perfetto', 'chrome')),
    gzip          boolean     NOT NULL DEFAULT false,
    status        text        NOT NULL DEFAULT 'PROCESSING'
                              CHECK (status IN ('PROCESSING', 'COMPLETED', 'FAILED')),
    progress      real        NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
    events_total  bigint,     -- events matching the filter when the run started
    events_done   bigint      NOT NULL DEFAULT 0,
    error_message text,
    file_size     bigint,     -- bytes of the finished file
    stats         jsonb,      -- what the exporter wrote: slices, flows, counter_points
    attempts      integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    create_time   timestamptz NOT NULL DEFAULT now(),
    start_time    timestamptz,  -- of the latest run
    end_time      timestamptz
);
CREATE INDEX trace_jobs_user_idx ON trace_jobs (user_id, create_time);
CREATE INDEX trace_jobs_processing_idx ON trace_jobs (create_time) WHERE status = 'PROCESSING';
