-- Accelerators (issue #15): what each machine's manager samples of its GPUs and NPUs
-- (DEVICE_METRICS, xpucore.device_wire; backend.device_samples says every field's meaning).
-- devices: one row per (machine, kind, index), its inventory and latest sample, replaced at
-- each sample (GET /machines/{id}/devices). Values are the wire's, in its units (W, C, %,
-- bytes, MHz, bytes/s, counts); NULL where the device's library does not say.
CREATE TABLE devices (
    machine_id             text        NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    kind                   text        NOT NULL CHECK (kind IN ('gpu', 'npu')),
    index                  integer     NOT NULL CHECK (index >= 0),
    uuid                   text,
    name                   text,
    bus_id                 text,
    health                 text        NOT NULL
                           CHECK (health IN ('ok', 'warning', 'critical', 'unknown')),
    health_detail          text,
    power_w                double precision,
    temperature_c          double precision,
    utilization_pct        double precision,
    memory_utilization_pct double precision,
    memory_used_bytes      bigint,
    memory_total_bytes     bigint,
    hbm_used_bytes         bigint,
    hbm_total_bytes        bigint,
    sm_clock_mhz           bigint,
    pcie_tx_bytes_per_s    bigint,
    pcie_rx_bytes_per_s    bigint,
    xid_errors             bigint,
    retired_pages          bigint,
    sampled_at             timestamptz NOT NULL,   -- the machine's clock (sampled_at)
    PRIMARY KEY (machine_id, kind, index)
);

-- The processes holding memory on each device at its latest sample, replaced with it; job_id:
-- the machine's live job (running or unknown) of that pid, if any.
CREATE TABLE device_processes (
    machine_id   text    NOT NULL,
    kind         text    NOT NULL,
    index        integer NOT NULL,
    pid          integer NOT NULL,
    memory_bytes bigint,
    job_id       uuid,
    PRIMARY KEY (machine_id, kind, index, pid),
    FOREIGN KEY (machine_id, kind, index) REFERENCES devices ON DELETE CASCADE
);

-- What each manager last reported failing (no library, a library that crashed or hung):
-- replaced at each sample, so an empty list says every library answered.
ALTER TABLE machines ADD COLUMN device_errors jsonb;

-- The history of samples, kept only when InfluxDB is not configured (else InfluxDB holds it),
-- so GET /device-metrics and the metrics summary answer all the same. Bounded by age:
-- backend.retention deletes rows older than settings.device_retention_days. job_id: the job
-- whose process holds the most memory on the device (as InfluxDB's job tag).
CREATE TABLE device_metrics (
    machine_id             text        NOT NULL,
    kind                   text        NOT NULL,
    index                  integer     NOT NULL,
    time                   timestamptz NOT NULL,
    uuid                   text,
    job_id                 uuid,
    health                 text        NOT NULL,
    power_w                double precision,
    temperature_c          double precision,
    utilization_pct        double precision,
    memory_utilization_pct double precision,
    memory_used_bytes      bigint,
    memory_total_bytes     bigint,
    hbm_used_bytes         bigint,
    hbm_total_bytes        bigint,
    sm_clock_mhz           bigint,
    pcie_tx_bytes_per_s    bigint,
    pcie_rx_bytes_per_s    bigint,
    xid_errors             bigint,
    retired_pages          bigint,
    PRIMARY KEY (machine_id, kind, index, time)
);
CREATE INDEX device_metrics_time_idx ON device_metrics (time);
CREATE INDEX device_metrics_job_idx ON device_metrics (job_id, time) WHERE job_id IS NOT NULL;
