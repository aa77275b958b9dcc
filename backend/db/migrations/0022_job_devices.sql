-- What each job has held on the accelerators (issue #15, GET /stats/jobs), accumulated at each
-- device sample (backend.repo.job_devices says how), so the top jobs by device time or memory
-- are one index scan, with or without InfluxDB. A job's device time on a device: the sum of
-- the intervals between consecutive samples of the device at both of which a process of the
-- job held memory there (an interval over 300 s counts 0: unobserved).
CREATE TABLE job_devices (
    job_id            uuid        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    machine_id        text        NOT NULL,
    kind              text        NOT NULL,
    index             integer     NOT NULL,
    device_seconds    double precision NOT NULL DEFAULT 0,
    peak_memory_bytes bigint      NOT NULL DEFAULT 0,  -- the most its processes held at a sample
    first_seen        timestamptz NOT NULL,            -- samples' times (the machine's clock)
    last_seen         timestamptz NOT NULL,
    PRIMARY KEY (job_id, machine_id, kind, index)
);

-- Per job, over its devices: device_seconds summed; peak_memory_bytes the most its processes
-- held on all its devices together at one sample.
CREATE TABLE job_device_totals (
    job_id            uuid        PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    machine_id        text        NOT NULL,
    device_seconds    double precision NOT NULL DEFAULT 0,
    peak_memory_bytes bigint      NOT NULL DEFAULT 0,
    last_seen         timestamptz NOT NULL
);
CREATE INDEX job_device_totals_time_idx ON job_device_totals (device_seconds DESC, job_id);
CREATE INDEX job_device_totals_peak_idx ON job_device_totals (peak_memory_bytes DESC, job_id);
CREATE INDEX job_device_totals_machine_idx
    ON job_device_totals (machine_id, device_seconds DESC, job_id);

-- GET /stats/trends counts the jobs running in each interval: those ending after its start.
CREATE INDEX jobs_end_idx ON jobs ((COALESCE(end_time, 'infinity'::timestamptz)));
-- device_processes by job (the job's memory now, GET /stats/jobs)
CREATE INDEX device_processes_job_idx ON device_processes (job_id) WHERE job_id IS NOT NULL;
