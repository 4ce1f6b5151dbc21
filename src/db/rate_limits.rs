//! The `rate_limits` table: fixed-window counters.

use sqlx::{Any, Executor};

/// Counts one hit on `bucket` in the window starting at `window_start` (ending at
/// `expires_at`), and returns the hits in that window including this one. One statement, so
/// concurrent hits from several instances are all counted.
pub async fn hit<'c>(
    db: impl Executor<'c, Database = Any>,
    bucket: &str,
    window_start: i64,
    expires_at: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO rate_limits (bucket, window_start, expires_at, hits) VALUES ($1, $2, $3, 1) \
         ON CONFLICT (bucket) DO UPDATE SET \
         hits = CASE WHEN rate_limits.window_start = excluded.window_start \
                THEN rate_limits.hits + 1 ELSE 1 END, \
         window_start = excluded.window_start, expires_at = excluded.expires_at \
         RETURNING hits",
    )
    .bind(bucket)
    .bind(window_start)
    .bind(expires_at)
    .fetch_one(db)
    .await
}

/// Deletes up to `limit` counters whose window ended before `now`; returns how many.
pub async fn delete_expired<'c>(
    db: impl Executor<'c, Database = Any>,
    now: i64,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM rate_limits WHERE bucket IN \
         (SELECT bucket FROM rate_limits WHERE expires_at < $1 LIMIT $2)",
    )
    .bind(now)
    .bind(limit)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
