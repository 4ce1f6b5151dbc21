//! Deleting expired rows: every table whose rows expire, what makes a row expired, and one
//! statement that deletes a bounded batch of them.

use sqlx::{Any, Executor};

/// A table whose rows expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiring {
    /// Audit entries older than the retention period.
    AuditLog,
    /// Login attempts past their 15 minutes.
    LoginAttempts,
    /// Sessions past their end.
    Sessions,
    /// Rate-limit counters whose window ended.
    RateLimits,
    /// Mails sent, failed or skipped before the cut-off (queued mails never expire).
    Outbox,
}

impl Expiring {
    /// Every table the purge goes through, in its order.
    pub const ALL: [Expiring; 5] = [
        Expiring::AuditLog,
        Expiring::LoginAttempts,
        Expiring::Sessions,
        Expiring::RateLimits,
        Expiring::Outbox,
    ];

    /// Deletes at most `$2` rows that expired before `$1`. A bounded batch keeps each write
    /// short; instances running it at the same time delete disjoint or already-deleted rows.
    fn statement(self) -> &'static str {
        match self {
            Expiring::AuditLog => {
                "DELETE FROM audit_log WHERE id IN \
                 (SELECT id FROM audit_log WHERE at < $1 LIMIT $2)"
            }
            Expiring::LoginAttempts => {
                "DELETE FROM login_attempts WHERE nonce IN \
                 (SELECT nonce FROM login_attempts WHERE expires_at < $1 LIMIT $2)"
            }
            Expiring::Sessions => {
                "DELETE FROM sessions WHERE id IN \
                 (SELECT id FROM sessions WHERE expires_at < $1 LIMIT $2)"
            }
            Expiring::RateLimits => {
                "DELETE FROM rate_limits WHERE bucket IN \
                 (SELECT bucket FROM rate_limits WHERE expires_at < $1 LIMIT $2)"
            }
            Expiring::Outbox => {
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE status <> 'queued' \
                 AND created_at < $1 LIMIT $2)"
            }
        }
    }
}

/// Deletes up to `limit` rows of `table` that expired before `before`; returns how many.
pub async fn delete_batch<'c>(
    db: impl Executor<'c, Database = Any>,
    table: Expiring,
    before: i64,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(table.statement())
        .bind(before)
        .bind(limit)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}
