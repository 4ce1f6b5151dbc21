-- One schema for SQLite and Postgres: ids are TEXT (uuid), times are BIGINT unix seconds.

-- Site-wide values the application keeps for itself (for example the session cookie key).
CREATE TABLE settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE members (
    id TEXT PRIMARY KEY,
    -- Normalized as the broker does (lowercase local part, ASCII domain).
    email TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('member', 'admin')),
    status TEXT NOT NULL DEFAULT 'active'
        CHECK (status IN ('invited', 'pending', 'active', 'suspended')),
    created_at BIGINT NOT NULL,
    last_login_at BIGINT
);

-- A sign-in that was started and not yet finished. The nonce is consumed exactly once.
CREATE TABLE login_attempts (
    nonce TEXT PRIMARY KEY,
    -- The address as sent to the broker (login_hint); tokens must echo it in email_original.
    email TEXT NOT NULL,
    next_path TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX login_attempts_expires_at ON login_attempts (expires_at);

-- Server-side sessions. The id is a SHA-256 of the cookie's session key, so a copy of the
-- database does not hold usable cookies.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    member_id TEXT REFERENCES members (id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
CREATE INDEX sessions_member_id ON sessions (member_id);
