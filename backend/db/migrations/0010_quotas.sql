-- Per-user quotas and a fair trace job queue (issue #20 section 2).
--
-- A monitor belongs to the user who created it (POST monitors); its running monitors and the
-- events they stored count against that user's quotas. Monitors made before this version
-- belong to nobody and count against no one.
ALTER TABLE monitors ADD COLUMN created_by uuid REFERENCES users (id) ON DELETE SET NULL;
CREATE INDEX monitors_created_by_idx ON monitors (created_by, status) WHERE created_by IS NOT NULL;

-- Trace jobs are queued in this table and claimed by the runner's workers (FOR UPDATE SKIP
-- LOCKED), fairly between users (backend.repo.trace_jobs.claim_next). A PROCESSING job is
-- queued while running is false, and being built while it is true.
ALTER TABLE trace_jobs ADD COLUMN running boolean NOT NULL DEFAULT false;
-- each user's queued and running jobs, oldest first; and when each user's jobs last started
CREATE INDEX trace_jobs_queue_idx ON trace_jobs (user_id, create_time, id)
    WHERE status = 'PROCESSING';
CREATE INDEX trace_jobs_user_start_idx ON trace_jobs (user_id, start_time);
