//! The `login_attempts` table: sign-ins started and not yet finished.

use sqlx::{Any, Executor, FromRow};

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
    .bind(&attempt.nonce)
    .bind(&attempt.email)
    .bind(&attempt.next_path)
    .bind(attempt.created_at)
    .bind(attempt.expires_at)
    .bind(&attempt.binding_hash)
    .bind(&attempt.purpose)
    .bind(&attempt.member_id)
    .execute(db)
    .await?;
    Ok(())
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
