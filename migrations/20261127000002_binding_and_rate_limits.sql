-- Each sign-in is bound to the browser that started it: the SHA-256 of a cookie set by
-- POST /login. NULL when binding is switched off (LOGIN_BINDING=off).
ALTER TABLE login_attempts ADD COLUMN binding_hash TEXT;

-- Fixed-window counters for rate limits, shared by every instance on the database.
CREATE TABLE rate_limits (
    -- What is counted, e.g. 'login-ip:192.0.2.1' or 'login-email:<sha256 of the address>'.
    bucket TEXT PRIMARY KEY,
    window_start BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    hits BIGINT NOT NULL
);
CREATE INDEX rate_limits_expires_at ON rate_limits (expires_at);
