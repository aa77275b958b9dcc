-- AI jobs (issue #14, seed 000 section 3): every AI process on every machine, as its manager
-- reports it over the control channel (xpucore.job_wire). A process is one job for ever:
-- (machine_id, pid, start_ticks), start_ticks being its start time in clock ticks since boot,
-- so a reused pid never merges two jobs. id is derived from that key (backend.repo.jobs),
-- so reports applied twice (a snapshot after a reconnect) land on the same row.
CREATE TABLE jobs (
    id                uuid        PRIMARY KEY,
    machine_id        text        NOT NULL REFERENCES machines (id),
    pid               integer     NOT NULL,
    start_ticks       bigint      NOT NULL,
    job_name          text        NOT NULL DEFAULT '',
    job_type          text,                    -- training, inference, other
    framework         text,
    framework_version text,
    model_format      text,
    ppid              integer,
    pgid              integer,
    process_name      text        NOT NULL DEFAULT '',
    command_line      text        NOT NULL DEFAULT '',
    cwd               text,
    unix_user         text,                    -- the account it runs as, named on its machine
    start_time        timestamptz NOT NULL,
    end_time          timestamptz,
    -- running; ended: exited (exit_code), killed (signal), stopped (by a stop request),
    -- lost (its end was not seen); unknown: its manager is not heard from
    status            text        NOT NULL
                      CHECK (status IN ('running', 'exited', 'killed', 'stopped', 'lost',
                                        'unknown')),
    status_reason     text        NOT NULL DEFAULT '',
    exit_code         integer,
    signal            integer,
    core_dumped       boolean     NOT NULL DEFAULT false,
    details           jsonb       NOT NULL DEFAULT '{}',  -- accelerator, runtimes, evidence...
    parameters        jsonb,                   -- argv parsed, config files, allowed env vars
    code              jsonb,                   -- script, launching shell script, libraries
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (machine_id, pid, start_ticks),
    -- no value of a variable whose name looks secret is ever stored (managers do not read
    -- them, the backend drops any that arrive): asserted here too
    CONSTRAINT jobs_no_secret_env CHECK (parameters IS NULL OR NOT jsonb_path_exists(
        parameters, '$.envVars.keyvalue() ? (@.key like_regex "KEY|TOKEN|SECRET|PASSW(OR)?D|CREDENTIAL" flag "i")'))
);
-- GET /jobs: each order_by (and the filters most asked) served by an index, so a page costs
-- the same at 100k jobs as at 100 (bench/jobs_list.py)
CREATE INDEX jobs_start_idx ON jobs (start_time, id);
CREATE INDEX jobs_status_idx ON jobs (status, start_time, id);
CREATE INDEX jobs_machine_idx ON jobs (machine_id, id);
CREATE INDEX jobs_name_idx ON jobs (job_name, id);
CREATE INDEX jobs_updated_idx ON jobs (updated_at, id);

-- Every status a job has had, with when and why.
CREATE TABLE job_status_history (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id     uuid        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    old_status text,
    new_status text        NOT NULL,
    reason     text        NOT NULL DEFAULT '',
    changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX job_status_history_job_idx ON job_status_history (job_id, id);
