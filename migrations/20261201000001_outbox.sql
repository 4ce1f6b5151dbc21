-- Mail to members and admins. A mail is written here in the same transaction as what causes
-- it (an invitation, an approval, a request to join); a background sender delivers it, with
-- retries, and several instances share the work through a lease (claimed_until).
CREATE TABLE outbox (
    -- Also the Message-ID's local part, so a mail sent twice (a crash between the server's
    -- answer and our update) can be recognised as one. A digest's id names its admin and its
    -- window, which makes it unique per admin and window.
    id TEXT PRIMARY KEY,
    -- invitation, approved or pending_digest.
    kind TEXT NOT NULL,
    recipient TEXT NOT NULL,
    -- Empty for a digest until it is sent: it lists the requests waiting at that moment.
    subject TEXT NOT NULL,
    body_text TEXT NOT NULL,
    body_html TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued', 'sent', 'failed', 'skipped')),
    attempts BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    -- After this, a mail that could not be delivered is failed for good.
    give_up_at BIGINT NOT NULL,
    -- While in the future, one sender is delivering this mail and the others leave it alone.
    claimed_until BIGINT,
    sent_at BIGINT,
    -- The mail server's last answer, or why it could not be reached.
    last_response TEXT
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_created_at ON outbox (created_at);
