//! The `outbox` table: mail waiting to be sent, sent, or given up on.

use sqlx::{Any, Executor, FromRow};

/// A mail as stored.
#[derive(Debug, Clone, FromRow)]
pub struct Mail {
    /// Its id, also the local part of its Message-ID.
    pub id: String,
    /// `invitation`, `approved` or `pending_digest`.
    pub kind: String,
    /// The address it goes to.
    pub recipient: String,
    /// The subject (empty for a digest not yet written).
    pub subject: String,
    /// The plain-text part.
    pub body_text: String,
    /// The HTML part.
    pub body_html: String,
    /// `queued`, `sent`, `failed` or `skipped`.
    pub status: String,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// When it was queued (unix seconds).
    pub created_at: i64,
    /// When it is tried next, while queued.
    pub next_attempt_at: i64,
    /// When a mail still not delivered is failed for good.
    pub give_up_at: i64,
    /// When it was accepted by the mail server.
    pub sent_at: Option<i64>,
    /// The mail server's last answer, or why it could not be reached.
    pub last_response: Option<String>,
}

macro_rules! columns {
    () => {
        "id, kind, recipient, subject, body_text, body_html, status, attempts, created_at, \
         next_attempt_at, give_up_at, sent_at, last_response"
    };
}

/// Queues a mail, due at once.
pub async fn insert<'c>(
    db: impl Executor<'c, Database = Any>,
    mail: &Mail,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO outbox (id, kind, recipient, subject, body_text, body_html, status, \
         attempts, created_at, next_attempt_at, give_up_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'queued', 0, $7, $8, $9)",
    )
    .bind(&mail.id)
    .bind(&mail.kind)
    .bind(&mail.recipient)
    .bind(&mail.subject)
    .bind(&mail.body_text)
    .bind(&mail.body_html)
    .bind(mail.created_at)
    .bind(mail.next_attempt_at)
    .bind(mail.give_up_at)
    .execute(db)
    .await?;
    Ok(())
}

// The admins' digest for the window `$window` (a text), queued at `$now`, due at `$due`, given
// up at `$give_up`: one row per active admin, its id naming the admin and the window (so a
// digest already queued for the window is kept by `ON CONFLICT (id) DO NOTHING`). Without its
// `ON CONFLICT`, so that the sign-in statement (`members::sign_in`) adds its condition first. A macro so that `concat!` keeps every query a static string.
macro_rules! digest_rows {
    ($window:literal, $now:literal, $due:literal, $give_up:literal) => {
        concat!(
            "INSERT INTO outbox (id, kind, recipient, subject, body_text, body_html, status, \
             attempts, created_at, next_attempt_at, give_up_at) \
             SELECT 'digest-' || ",
            $window,
            " || '-' || id, 'pending_digest', email, '', '', '', 'queued', 0, ",
            $now,
            ", ",
            $due,
            ", ",
            $give_up,
            " FROM members WHERE role = 'admin' AND status = 'active'"
        )
    };
}
pub(crate) use digest_rows;

/// When the next queued mail is due (or its lease, held by a sender, ends), if any is queued.
pub async fn next_due<'c>(
    db: impl Executor<'c, Database = Any>,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT MIN(CASE WHEN claimed_until IS NOT NULL AND claimed_until > next_attempt_at \
         THEN claimed_until ELSE next_attempt_at END) FROM outbox WHERE status = 'queued'",
    )
    .fetch_one(db)
    .await
}

/// Claims the mail due first, for `lease` seconds, counting an attempt; `None` when nothing is
/// due or another sender holds it. The outer condition repeats the inner one, so that of two
/// senders racing for one row only one gets it (on Postgres the second sees the row as the
/// first left it, and no longer matches).
pub async fn claim_due<'c>(
    db: impl Executor<'c, Database = Any>,
    now: i64,
    lease: i64,
) -> Result<Option<Mail>, sqlx::Error> {
    sqlx::query_as(concat!(
        "UPDATE outbox SET claimed_until = $2, attempts = attempts + 1 \
         WHERE id = (SELECT id FROM outbox WHERE status = 'queued' AND next_attempt_at <= $1 \
         AND (claimed_until IS NULL OR claimed_until < $1) ORDER BY next_attempt_at, id LIMIT 1) \
         AND status = 'queued' AND (claimed_until IS NULL OR claimed_until < $1) RETURNING ",
        columns!()
    ))
    .bind(now)
    .bind(now + lease)
    .fetch_optional(db)
    .await
}

/// Fills in a digest's text just before it is sent.
pub async fn set_content<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    subject: &str,
    text: &str,
    html: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE outbox SET subject = $2, body_text = $3, body_html = $4 WHERE id = $1")
        .bind(id)
        .bind(subject)
        .bind(text)
        .bind(html)
        .execute(db)
        .await?;
    Ok(())
}

/// Ends a claimed mail: `sent`, `failed` or `skipped`, with the server's answer.
pub async fn finish<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    status: &str,
    now: i64,
    response: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE outbox SET status = $2, sent_at = CASE WHEN $2 = 'sent' THEN $3 ELSE NULL END, \
         last_response = $4, claimed_until = NULL WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(now)
    .bind(response)
    .execute(db)
    .await?;
    Ok(())
}

/// Puts a claimed mail back in the queue, to be tried again at `next_attempt_at`.
pub async fn retry_later<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    next_attempt_at: i64,
    response: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE outbox SET next_attempt_at = $2, last_response = $3, claimed_until = NULL \
         WHERE id = $1",
    )
    .bind(id)
    .bind(next_attempt_at)
    .bind(response)
    .execute(db)
    .await?;
    Ok(())
}

/// An admin asks for a failed mail to be tried again, now, with a new delivery window.
/// Returns whether there was such a failed mail.
pub async fn requeue_failed<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    now: i64,
    give_up_at: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE outbox SET status = 'queued', next_attempt_at = $2, give_up_at = $3, \
         claimed_until = NULL WHERE id = $1 AND status = 'failed'",
    )
    .bind(id)
    .bind(now)
    .bind(give_up_at)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Drops the queued mail to an address (a member removed before their invitation went out).
pub async fn drop_queued_to<'c>(
    db: impl Executor<'c, Database = Any>,
    recipient: &str,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM outbox WHERE recipient = $1 AND status = 'queued'")
        .bind(recipient)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}

/// One page of the outbox, newest first; `status` empty for all.
pub async fn list<'c>(
    db: impl Executor<'c, Database = Any>,
    status: &str,
    limit: i64,
    offset: i64,
) -> Result<Vec<Mail>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM outbox WHERE ($1 = '' OR status = $1) ORDER BY created_at DESC, id DESC \
         LIMIT $2 OFFSET $3"
    ))
    .bind(status)
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await
}

/// The mail with this id.
pub async fn find<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<Option<Mail>, sqlx::Error> {
    sqlx::query_as(concat!("SELECT ", columns!(), " FROM outbox WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// How many mails are in each status: (queued, sent, failed).
pub async fn counts<'c>(
    db: impl Executor<'c, Database = Any>,
) -> Result<(i64, i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT \
         COALESCE(SUM(CASE WHEN status = 'queued' THEN 1 ELSE 0 END), 0), \
         COALESCE(SUM(CASE WHEN status = 'sent' THEN 1 ELSE 0 END), 0), \
         COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0) FROM outbox",
    )
    .fetch_one(db)
    .await
}
