-- Roles and the audit log (issue #21, "who may do what").
--
-- A user is an admin (manages users and invites, reads the audit log), an operator (also
-- starts and stops monitors, generates traces) or a viewer (reads). Accounts that existed
-- before roles could start and stop monitors: they become operators, and the oldest one
-- becomes the admin, as the first account registered on a new database does.
ALTER TABLE users
    ADD COLUMN role text NOT NULL DEFAULT 'viewer' CHECK (role IN ('admin', 'operator', 'viewer'));
UPDATE users SET role = 'operator';
UPDATE users SET role = 'admin'
    WHERE id = (SELECT id FROM users ORDER BY created_at, id LIMIT 1);

-- One row per control action (START_MONITOR, STOP_MONITOR, SET_ROLE, INVITE_USER), written
-- when the request arrives (result PENDING) and settled when its outcome is known: the
-- manager's reply for a monitor, the HTTP answer otherwise. Refused requests (403, 404, 400)
-- are rows too. actor_email and actor_role are kept as they were at the time.
CREATE TABLE audit_logs (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time        timestamptz NOT NULL DEFAULT now(),
    actor_id    uuid        REFERENCES users (id) ON DELETE SET NULL,
    actor_email text        NOT NULL,
    actor_role  text        NOT NULL,
    address     text        NOT NULL DEFAULT '',  -- the client's address
    action      text        NOT NULL,
    target      text        NOT NULL,             -- machines/<id>/monitors/<id>, users/<id>
    result      text        NOT NULL DEFAULT 'PENDING'
                            CHECK (result IN ('PENDING', 'SUCCESS', 'FAILURE')),
    http_status integer,
    error_code  text,                             -- PERMISSION_DENIED, AGENT_START_FAILED, ...
    message     text        NOT NULL DEFAULT '',
    settle_time timestamptz
);
CREATE INDEX audit_logs_actor_idx ON audit_logs (actor_id, id);
