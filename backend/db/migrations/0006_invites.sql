-- Invitations: with registration closed, an admin invites an e-mail address with a role; the
-- invitee registers with the token (stored as its SHA-256 only), once, before it expires.
CREATE TABLE invites (
    token_hash bytea       PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    email      text        NOT NULL CHECK (email = lower(email) AND email <> ''),
    role       text        NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    created_by uuid        REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX invites_email_idx ON invites (email);
