-- Login sessions. Every access token (claim "sid") and refresh token belongs to one. Logout,
-- or a refresh token used twice (a replay), revokes the whole session, so its access tokens
-- stop working at once instead of at expiry.
CREATE TABLE sessions (
    id         uuid        PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
ALTER TABLE refresh_tokens
    ADD COLUMN session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE;
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);
