-- xputrace schema, version 1. Applied once, in one transaction, by backend.db.migrate.
-- Works on PostgreSQL 15 and later (gen_random_uuid is core since 13).

-- Users and the refresh tokens issued to them (stored as SHA-256 digests, never in clear).
CREATE TABLE users (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    email         text        NOT NULL UNIQUE CHECK (email = lower(email) AND email <> ''),
    display_name  text        NOT NULL DEFAULT '',
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE refresh_tokens (
    token_hash bytea       PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    rotated_to bytea       -- token_hash of the token this one was swapped for
);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);

-- Machines, as their manager reports them. id: the manager's hashed machine id.
CREATE TABLE machines (
    id                   text        PRIMARY KEY CHECK (id <> ''),
    hostname             text        NOT NULL DEFAULT '',
    os_info              text        NOT NULL DEFAULT '',
    accelerators         jsonb       NOT NULL DEFAULT '[]',
    agent_manager_status text        NOT NULL DEFAULT 'UNKNOWN'
                                     CHECK (agent_manager_status IN ('RUNNING', 'STOPPED', 'UNKNOWN')),
    manager_version      text        NOT NULL DEFAULT '',
    last_seen            timestamptz,
    public_key           text        UNIQUE,  -- the manager's CURVE public key (Z85)
    created_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE monitors (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    machine_id    text        NOT NULL REFERENCES machines (id),
    monitor_type  text        NOT NULL
                              CHECK (monitor_type IN ('CUDA', 'ACL', 'PYTHON', 'SYSCALL', 'OLLAMA')),
    target        jsonb       NOT NULL DEFAULT '{}',
    config        jsonb       NOT NULL DEFAULT '{}',
    display_name  text        NOT NULL DEFAULT '',
    status        text        NOT NULL DEFAULT 'STARTING'
                              CHECK (status IN ('STARTING', 'RUNNING', 'STOPPING', 'STOPPED',
                                                'ERROR', 'FAILED_TO_START')),
    error_code    text,       -- control channel code, e.g. TARGET_NOT_FOUND
    error_message text,
    create_time   timestamptz NOT NULL DEFAULT now(),
    start_time    timestamptz,
    stop_time     timestamptz,
    agent_pid     integer
);
CREATE INDEX monitors_machine_idx ON monitors (machine_id, create_time);

-- One row per agent batch written to events: what makes re-delivery idempotent, and where
-- the agent's drop counters (running totals) are kept. (monitor_id, agent_pid, seq) names a
-- batch: seq restarts at 0 with each agent run, the agent's pid tells the runs apart.
CREATE TABLE event_batches (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    monitor_id      uuid        NOT NULL,
    agent_pid       integer     NOT NULL,
    seq             bigint      NOT NULL CHECK (seq >= 0),
    machine_id      text        NOT NULL,
    event_count     integer     NOT NULL CHECK (event_count >= 0),
    kernel_drops    bigint      NOT NULL,
    inflight_drops  bigint      NOT NULL,
    send_drops      bigint      NOT NULL,
    mono_to_real_ns bigint      NOT NULL,
    final           boolean     NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (monitor_id, agent_pid, seq)
);

-- Events: one row per traced call. Range-partitioned by ts, one partition per UTC day,
-- created on demand by the writer (backend.db.events_copy) as events_YYYYMMDD.
--
-- ts is wall-clock nanoseconds since the Unix epoch (bigint), not timestamptz: probes stamp
-- nanoseconds and calls nanoseconds apart must keep their order and durations (Perfetto
-- export), timestamptz keeps microseconds. The REST layer converts RFC 3339 to and from ns.
--
-- id is (event_batches.id << 24) | index of the event in its batch: unique across the table,
-- so (ts, id) is a stable cursor key, and assigned without a per-row sequence call.
-- event_type is the probe's function name (cudaLaunchKernel, ...); event_data holds the
-- call's arguments, named per argument class (backend.abi.CUDA_ARGS), as compact JSON text.
-- It is json, not jsonb: jsonb parses every document into its binary form on insert, which
-- measured 1.7 us per row here, more than a third of the whole cost of a row with its four
-- indexes; json only validates the text. Queries still use ->, ->> and json_* functions, and
-- event_data::jsonb where a jsonb operator is needed.
CREATE TABLE events (
    ts          bigint  NOT NULL,
    id          bigint  NOT NULL,
    duration_ns bigint  NOT NULL,
    ret         bigint  NOT NULL,
    monitor_id  uuid    NOT NULL,
    pid         integer NOT NULL,
    tid         integer NOT NULL,
    cpu         integer NOT NULL,
    flags       integer NOT NULL,  -- XPU_EV_* (1: incomplete, the call had not returned)
    machine_id  text    NOT NULL,
    comm        text    NOT NULL,
    event_type  text    NOT NULL,
    event_data  json    NOT NULL,
    PRIMARY KEY (ts, id)
) PARTITION BY RANGE (ts);
COMMENT ON COLUMN events.ts IS 'wall clock, nanoseconds since 1970-01-01T00:00:00Z';
COMMENT ON COLUMN events.id IS '(event_batches.id << 24) | index in the batch';

CREATE INDEX events_pid_ts_idx ON events (pid, ts);
CREATE INDEX events_monitor_ts_idx ON events (monitor_id, ts);
CREATE INDEX events_type_ts_idx ON events (event_type, ts);
