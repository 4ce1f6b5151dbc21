//! The `login_attempts` table: sign-ins started and not yet finished.

use sqlx::any::AnyArguments;
use sqlx::{Any, Executor, FromRow};

use super::Db;
use super::rate_limits::{self, Hit};

/// A started sign-in, as stored.
#[derive(Debug, Clone, FromRow)]
pub struct LoginAttempt {
    /// The random value the broker must echo in the token.
    pub nonce: String,
    /// The address as sent to the broker.
    pub email: String,
    /// Where to go after signing in (a local path).
    pub next_path: String,
    /// When it was started (unix seconds).
    pub created_at: i64,
    /// When it stops being usable (unix seconds).
    pub expires_at: i64,
    /// SHA-256 of the binding cookie of the browser that started it (`None`: not bound).
    pub binding_hash: Option<String>,
    /// `sign_in`, or `change_email` (confirming a member's new address).
    pub purpose: String,
    /// For `change_email`: the member whose address changes.
    pub member_id: Option<String>,
}

/// Stores a new attempt.
pub async fn insert<'c>(
    db: impl Executor<'c, Database = Any>,
    attempt: &LoginAttempt,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO login_attempts \
         (nonce, email, next_path, created_at, expires_at, binding_hash, purpose, member_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind_attempt(attempt)
    .execute(db)
    .await?;
    Ok(())
}

/// Binds an attempt's columns, in the order `insert` names them.
trait BindAttempt<'q> {
    fn bind_attempt(self, attempt: &'q LoginAttempt) -> Self;
}

impl<'q> BindAttempt<'q> for sqlx::query::Query<'q, Any, AnyArguments> {
    fn bind_attempt(self, attempt: &'q LoginAttempt) -> Self {
        self.bind(&attempt.nonce)
            .bind(&attempt.email)
            .bind(&attempt.next_path)
            .bind(attempt.created_at)
            .bind(attempt.expires_at)
            .bind(&attempt.binding_hash)
            .bind(&attempt.purpose)
            .bind(&attempt.member_id)
    }
}

// The attempt's columns and its arguments after the counters' ($12 the ceiling's limit, $13 to
// $20 the attempt).
macro_rules! attempt_values {
    () => {
        "INSERT INTO login_attempts \
         (nonce, email, next_path, created_at, expires_at, binding_hash, purpose, member_id) \
         SELECT $13, $14, $15, $16, $17, $18, $19, $20 WHERE "
    };
}

/// Counts a sign-in start like [`rate_limits::hit_with_ceiling`] and, in the same round trip,
/// stores `attempt` when no counter is over its limit (`limits`: the ceiling's, then the two
/// local ones), all of it or none. Returns the hits of `[ceiling, locals[0], locals[1]]`, as
/// `hit_with_ceiling` does: the attempt was stored when none is over its limit.
pub async fn insert_within_limits(
    db: &Db,
    ceiling: Hit<'_>,
    locals: [Hit<'_>; 2],
    limits: [i64; 3],
    attempt: &LoginAttempt,
) -> Result<[i64; 3], sqlx::Error> {
    let sql = match db.engine() {
        // The counters, then the attempt if they allow it, one batch (`atomic_batch`).
        super::Engine::Sqlite => concat!(
            "SAVEPOINT batch; ",
            rate_limits::ceiling_upsert!(),
            " RETURNING bucket, hits; ",
            attempt_values!(),
            "(SELECT hits FROM rate_limits WHERE bucket = $1) <= $12 \
             AND (SELECT hits FROM rate_limits WHERE bucket = $4) <= $10 \
             AND (SELECT hits FROM rate_limits WHERE bucket = $7) <= $11; RELEASE batch;"
        ),
        // One statement: the attempt reads the counters' new values from their RETURNING.
        super::Engine::Postgres => concat!(
            "WITH c AS (",
            rate_limits::ceiling_upsert!(),
            " RETURNING bucket, hits), a AS (",
            attempt_values!(),
            "NOT EXISTS (SELECT 1 FROM c WHERE (c.bucket = $1 AND c.hits > $12) \
             OR (c.bucket = $4 AND c.hits > $10) OR (c.bucket = $7 AND c.hits > $11))) \
             SELECT bucket, hits FROM c"
        ),
    };
    let query =
        rate_limits::bind_ceiling(sqlx::query(sql), ceiling, locals, [limits[1], limits[2]])
            .bind(limits[0])
            .bind_attempt(attempt);
    let rows = super::atomic_batch(db, query).await?;
    rate_limits::ceiling_counts(&rows, ceiling, locals)
}

/// Removes the attempt with this nonce and returns it, in one statement, so that two requests
/// carrying the same nonce can never both get it. A bound attempt is only taken with the hash
/// of its binding cookie, and stays untouched otherwise. The caller checks expiry and address.
pub async fn take<'c>(
    db: impl Executor<'c, Database = Any>,
    nonce: &str,
    binding_hash: Option<&str>,
) -> Result<Option<LoginAttempt>, sqlx::Error> {
    sqlx::query_as(
        "DELETE FROM login_attempts \
         WHERE nonce = $1 AND (binding_hash IS NULL OR binding_hash = $2) \
         RETURNING nonce, email, next_path, created_at, expires_at, binding_hash, purpose, member_id",
    )
    .bind(nonce)
    // No cookie: an empty string, which no hash equals.
    .bind(binding_hash.unwrap_or(""))
    .fetch_optional(db)
    .await
}

/// Whether an attempt with this nonce is stored.
pub async fn exists<'c>(
    db: impl Executor<'c, Database = Any>,
    nonce: &str,
) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM login_attempts WHERE nonce = $1")
        .bind(nonce)
        .fetch_one(db)
        .await?;
    Ok(n > 0)
}
