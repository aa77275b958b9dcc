-- The target policy (issue #20): the Unix accounts whose processes an operator may trace,
-- named as on the machines; set by admins (PATCH /users/{id}). Admins trace any process but
-- the platform's; an operator with none granted traces nothing.
ALTER TABLE users ADD COLUMN unix_accounts text[] NOT NULL DEFAULT '{}';
