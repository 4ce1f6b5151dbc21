-- What a member sees of their own sessions: a public handle (for revoking one), the device
-- and address it signed in from, and when it was last used.
ALTER TABLE sessions ADD COLUMN handle TEXT;
ALTER TABLE sessions ADD COLUMN user_agent TEXT;
ALTER TABLE sessions ADD COLUMN ip TEXT;
ALTER TABLE sessions ADD COLUMN last_seen_at BIGINT;

-- A login attempt either signs in, or confirms a member's new address.
ALTER TABLE login_attempts ADD COLUMN purpose TEXT NOT NULL DEFAULT 'sign_in';
ALTER TABLE login_attempts ADD COLUMN member_id TEXT;

-- Who did what. Addresses are kept only as SHA-256 hashes, and member ids are not foreign
-- keys, so entries outlive the members they mention without keeping their data.
CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    action TEXT NOT NULL,
    actor_id TEXT,
    subject_id TEXT,
    email_hash TEXT,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_action ON audit_log (action);

CREATE INDEX members_status_role ON members (status, role);
