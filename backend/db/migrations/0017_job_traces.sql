-- Traces of a job (issue #14 section 4): one monitor per rank of a job, on every machine,
-- started by one call and stopped together, then one Perfetto trace of them all in which each
-- rank is a process named "rank N (host)" on the backend's clock (backend.job_traces).
--
--   RUNNING ──:stop, every rank's monitor ended by itself (window closed, rank exited)──▶
--   STOPPING ──every monitor stopped, the trace job queued──▶ GENERATING ──▶ DONE | FAILED
--   (FAILED from any state, with the reason: no rank's monitor started, the trace failed)
CREATE TABLE job_traces (
    id            uuid        PRIMARY KEY,
    job_id        uuid        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    monitor_type  text        NOT NULL CHECK (monitor_type IN ('CUDA', 'ACL', 'PYTHON', 'SYSCALL')),
    config        jsonb       NOT NULL DEFAULT '{}',   -- each rank's monitor config, window in it
    "window"      jsonb,                               -- as asked (also config.window)
    name          text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    state         text        NOT NULL DEFAULT 'RUNNING'
                  CHECK (state IN ('RUNNING', 'STOPPING', 'GENERATING', 'DONE', 'FAILED')),
    state_reason  text        NOT NULL DEFAULT '',
    created_by    uuid        REFERENCES users (id) ON DELETE SET NULL,
    -- the clock alignment the trace was built with: {machine: {offset_ns, error_ns}}
    clocks        jsonb,
    trace_job_id  uuid        REFERENCES trace_jobs (id) ON DELETE SET NULL,
    create_time   timestamptz NOT NULL DEFAULT now(),
    stop_time     timestamptz,  -- when it left RUNNING
    end_time      timestamptz   -- DONE or FAILED
);
CREATE INDEX job_traces_job_idx ON job_traces (job_id, create_time, id);
CREATE INDEX job_traces_running_idx ON job_traces (id) WHERE state = 'RUNNING';
CREATE INDEX job_traces_trace_job_idx ON job_traces (trace_job_id) WHERE trace_job_id IS NOT NULL;

-- Each rank a job trace met (at the start, or later: a rank that joined while it ran) and
-- what came of its monitor: monitor_id once created; error when none could be (a quota, a
-- machine that cannot run the type). A START that failed is the monitor's own status.
CREATE TABLE job_trace_ranks (
    job_trace_id  uuid        NOT NULL REFERENCES job_traces (id) ON DELETE CASCADE,
    process_id    uuid        NOT NULL,  -- the rank's process (jobs.id)
    rank          integer,              -- NULL: a rank that said none
    machine_id    text        NOT NULL,
    hostname      text        NOT NULL DEFAULT '',
    pid           integer     NOT NULL,
    monitor_id    uuid,
    error         text,
    late          boolean     NOT NULL DEFAULT false,  -- joined while the trace ran
    create_time   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_trace_id, process_id)
);

ALTER TABLE monitors ADD COLUMN job_trace_id uuid REFERENCES job_traces (id) ON DELETE SET NULL;
CREATE INDEX monitors_job_trace_idx ON monitors (job_trace_id) WHERE job_trace_id IS NOT NULL;

-- What a trace job lays out beyond its filter: process names and labels per (machine, pid),
-- and the clock offset added to each machine's timestamps (backend.trace_build.TraceSpec).
ALTER TABLE trace_jobs ADD COLUMN layout jsonb;
