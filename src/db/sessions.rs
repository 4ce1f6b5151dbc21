//! The `sessions` table, behind [`crate::sessions::DbSessionStore`].

use sqlx::{Any, Executor};

/// A live session's state and expiry.
#[derive(Debug, sqlx::FromRow)]
pub struct LiveSession {
    /// The session state as JSON.
    pub state: String,
    /// When it ends unless used (unix seconds).
    pub expires_at: i64,
}

/// The session with this id, if it has not expired and was created after `created_after`.
pub async fn load<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    now: i64,
    created_after: i64,
) -> Result<Option<LiveSession>, sqlx::Error> {
    sqlx::query_as(
        "SELECT state, expires_at FROM sessions \
         WHERE id = $1 AND expires_at > $2 AND created_at > $3",
    )
    .bind(id)
    .bind(now)
    .bind(created_after)
    .fetch_optional(db)
    .await
}

/// Stores a new session.
pub async fn insert<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    member_id: Option<&str>,
    state: &str,
    now: i64,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sessions (id, member_id, state, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(member_id)
    .bind(state)
    .bind(now)
    .bind(expires_at)
    .execute(db)
    .await?;
    Ok(())
}

/// Replaces the state of a live session; returns false when it no longer exists.
pub async fn update<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    member_id: Option<&str>,
    state: &str,
    now: i64,
    expires_at: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE sessions SET member_id = $2, state = $3, expires_at = $5 \
         WHERE id = $1 AND expires_at > $4",
    )
    .bind(id)
    .bind(member_id)
    .bind(state)
    .bind(now)
    .bind(expires_at)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Moves the expiry of a live session.
pub async fn touch<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    now: i64,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sessions SET expires_at = $3 WHERE id = $1 AND expires_at > $2")
        .bind(id)
        .bind(now)
        .bind(expires_at)
        .execute(db)
        .await?;
    Ok(())
}

/// Deletes one session.
pub async fn delete<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sessions WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

/// Deletes up to `limit` sessions that expired before `now`; returns how many.
pub async fn delete_expired<'c>(
    db: impl Executor<'c, Database = Any>,
    now: i64,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM sessions WHERE id IN \
         (SELECT id FROM sessions WHERE expires_at < $1 LIMIT $2)",
    )
    .bind(now)
    .bind(limit)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
