-- Process metrics of AI jobs (issue #14: seed 000 section 3.5) and the status `suspended`.
--
-- A job stopped by SIGSTOP or SIGTSTP (state T) is suspended: not ended, running again after
-- SIGCONT (backend.job_events).
ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check
    CHECK (status IN ('running', 'exited', 'killed', 'stopped', 'lost', 'unknown',
                      'suspended'));

-- The job's last sample (JOB_METRICS), whichever store keeps its samples.
ALTER TABLE jobs ADD COLUMN latest_metrics jsonb;
ALTER TABLE jobs ADD COLUMN latest_metrics_at timestamptz;

-- Samples, when no InfluxDB is configured (with one, they go to its measurement
-- xpu_process: backend.process_metrics). One row a job and sample time, so a message applied
-- twice stores each sample once. Kept settings.retention_days (backend.retention).
CREATE TABLE job_metrics (
    job_id             uuid             NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    time               timestamptz      NOT NULL,
    state              text             NOT NULL,  -- /proc/<pid>/stat field 3
    cpu_percent        double precision,           -- null at a job's first sample
    rss_bytes          bigint           NOT NULL,
    threads            integer          NOT NULL,
    read_bytes         bigint,
    write_bytes        bigint,
    open_files         integer,
    accel_memory_bytes bigint,
    PRIMARY KEY (job_id, time)
);
CREATE INDEX job_metrics_time_idx ON job_metrics (time);
