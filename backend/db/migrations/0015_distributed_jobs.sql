-- Distributed jobs (issue #14 section 3): processes that share a launcher identity (Slurm job,
-- torchelastic run, Ray job, Kubernetes indexed job, MASTER_ADDR:PORT with WORLD_SIZE) are
-- the ranks of one job across machines (backend.job_groups says how the identity is read).
-- A distributed job is a jobs row of kind 'distributed', without pid or start_ticks; its
-- machine_id is the machine of its rank 0 (else its first rank), its description that of
-- that rank, its status derived from its ranks' (backend.job_events). Its ranks are the
-- 'process' rows whose group_id is its id.
ALTER TABLE jobs
    ADD COLUMN kind       text    NOT NULL DEFAULT 'process'
                          CHECK (kind IN ('process', 'distributed')),
    ADD COLUMN group_id   uuid    REFERENCES jobs (id),
    ADD COLUMN group_key  text,   -- distributed: the launcher identity its ranks share
    ADD COLUMN launcher   jsonb,  -- {"kind", "id"}: on a distributed job and on its ranks
    ADD COLUMN rank       integer,
    ADD COLUMN local_rank integer,
    ADD COLUMN world_size integer,
    ADD COLUMN device     text,   -- a rank's accelerator index, from its visible devices
    ADD COLUMN ranks_seen integer,  -- distributed: distinct ranks that have appeared
    ADD COLUMN node_ids   text[],   -- distributed: the machines of its ranks
    ALTER COLUMN pid DROP NOT NULL,
    ALTER COLUMN start_ticks DROP NOT NULL,
    ADD CONSTRAINT jobs_kind_key CHECK (
        (kind = 'process') = (pid IS NOT NULL AND start_ticks IS NOT NULL)),
    ADD CONSTRAINT jobs_group_of_process CHECK (group_id IS NULL OR kind = 'process');
CREATE INDEX jobs_group_idx ON jobs (group_id, rank, start_time) WHERE group_id IS NOT NULL;
CREATE INDEX jobs_group_key_idx ON jobs (group_key, created_at) WHERE kind = 'distributed';
