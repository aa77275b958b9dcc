-- Each machine's wall clock against the backend's (xpucore.clock_sync): the estimate its
-- manager last reported in a HEARTBEAT. offset_ns added to a timestamp stamped on the machine
-- gives the backend's clock, within error_ns as of measured_at (on the backend's clock); the
-- bound grows with the measurement's age (backend.repo.machine_clocks). No row: unmeasured.
CREATE TABLE machine_clocks (
    machine_id  text        PRIMARY KEY REFERENCES machines (id) ON DELETE CASCADE,
    offset_ns   bigint      NOT NULL,
    error_ns    bigint      NOT NULL CHECK (error_ns >= 0),
    measured_at timestamptz NOT NULL
);
