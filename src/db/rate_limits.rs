//! The `rate_limits` table: fixed-window counters.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, Executor, Row};

/// One hit to count: the counter's bucket and the window it falls in.
#[derive(Debug, Clone, Copy)]
pub struct Hit<'a> {
    /// What is counted, e.g. `login-ip:192.0.2.1`.
    pub bucket: &'a str,
    /// When the current window started (unix seconds).
    pub window_start: i64,
    /// When it ends (unix seconds); the counter may be purged after that.
    pub expires_at: i64,
}

// Counts a hit in the current window, or starts a new window at 1. A macro so that `concat!`
// keeps every query a static string.
macro_rules! count_hit {
    () => {
        " ON CONFLICT (bucket) DO UPDATE SET \
         hits = CASE WHEN rate_limits.window_start = excluded.window_start \
                THEN rate_limits.hits + 1 ELSE 1 END, \
         window_start = excluded.window_start, expires_at = excluded.expires_at \
         RETURNING bucket, hits"
    };
}

/// Counts one hit on each of `hits` (different buckets) and returns each bucket's hits in its
/// window, this one included, in the same order. At most two buckets are counted in one
/// statement, so concurrent hits from several instances are all counted, and a sign-in pays
/// for one statement rather than one per limit.
pub async fn hit<'c, E>(db: E, hits: &[Hit<'_>]) -> Result<Vec<i64>, sqlx::Error>
where
    E: Executor<'c, Database = Any> + Copy,
{
    let mut counts = Vec::with_capacity(hits.len());
    for chunk in hits.chunks(2) {
        let rows = match chunk {
            [a] => {
                sqlx::query(concat!(
                    "INSERT INTO rate_limits (bucket, window_start, expires_at, hits) \
                     VALUES ($1, $2, $3, 1)",
                    count_hit!()
                ))
                .bind(a.bucket)
                .bind(a.window_start)
                .bind(a.expires_at)
                .fetch_all(db)
                .await?
            }
            [a, b] => {
                sqlx::query(concat!(
                    "INSERT INTO rate_limits (bucket, window_start, expires_at, hits) \
                     VALUES ($1, $2, $3, 1), ($4, $5, $6, 1)",
                    count_hit!()
                ))
                .bind(a.bucket)
                .bind(a.window_start)
                .bind(a.expires_at)
                .bind(b.bucket)
                .bind(b.window_start)
                .bind(b.expires_at)
                .fetch_all(db)
                .await?
            }
            _ => Vec::new(),
        };
        // RETURNING gives no order: match the rows to the buckets.
        for h in chunk {
            let mut found = None;
            for row in &rows {
                if row.try_get::<String, _>("bucket")? == h.bucket {
                    found = Some(row.try_get::<i64, _>("hits")?);
                }
            }
            counts.push(found.ok_or(sqlx::Error::RowNotFound)?);
        }
    }
    Ok(counts)
}

// The statement of [`hit_with_ceiling`], without its RETURNING: the ceiling ($1 to $3), the
// two local buckets ($4 to $6, $7 to $9) and the local limits ($10, $11). Also part of the
// sign-in start that stores its attempt in the same round trip (`login_attempts`).
macro_rules! ceiling_upsert {
    () => {
        concat!(
            "INSERT INTO rate_limits (bucket, window_start, expires_at, hits) VALUES \
             ($1, $2, $3, CASE WHEN ",
            $crate::db::rate_limits::locals_allow!(),
            " THEN 1 ELSE 0 END), ($4, $5, $6, 1), ($7, $8, $9, 1) \
             ON CONFLICT (bucket) DO UPDATE SET hits = CASE \
             WHEN rate_limits.bucket <> $1 OR ",
            $crate::db::rate_limits::locals_allow!(),
            " THEN (CASE WHEN rate_limits.window_start = excluded.window_start \
                    THEN rate_limits.hits + 1 ELSE 1 END) \
             ELSE (CASE WHEN rate_limits.window_start = excluded.window_start \
                   THEN rate_limits.hits ELSE 0 END) END, \
             window_start = excluded.window_start, expires_at = excluded.expires_at"
        )
    };
}
pub(crate) use ceiling_upsert;

// The hits a bucket had in its current window before this statement: 0 when its window ended
// or it has none.
macro_rules! before {
    ($bucket:literal, $window:literal) => {
        concat!(
            "COALESCE((SELECT r.hits FROM rate_limits AS r WHERE r.bucket = ",
            $bucket,
            " AND r.window_start = ",
            $window,
            "), 0)"
        )
    };
}
pub(crate) use before;

// Whether both local buckets were under their limits before this statement.
macro_rules! locals_allow {
    () => {
        concat!(
            "(",
            $crate::db::rate_limits::before!("$4", "$5"),
            " < $10 AND ",
            $crate::db::rate_limits::before!("$7", "$8"),
            " < $11)"
        )
    };
}
pub(crate) use locals_allow;

/// Counts a hit on two local buckets and, in the same statement, on a ceiling bucket only when
/// both local buckets were under their limits before this hit (`local_limits`), so that
/// traffic the local limits refuse does not use up the ceiling. Returns the hits of
/// `[ceiling, locals[0], locals[1]]` in their windows, this one included.
///
/// The ceiling's row comes first in `VALUES`: SQLite inserts the rows in order, so its
/// condition reads the local counters before this statement changes them, as Postgres reads
/// them (from the snapshot the statement started with).
pub async fn hit_with_ceiling<'c, E>(
    db: E,
    ceiling: Hit<'_>,
    locals: [Hit<'_>; 2],
    local_limits: [i64; 2],
) -> Result<[i64; 3], sqlx::Error>
where
    E: Executor<'c, Database = Any>,
{
    let query = sqlx::query(concat!(ceiling_upsert!(), " RETURNING bucket, hits"));
    let rows = bind_ceiling(query, ceiling, locals, local_limits)
        .fetch_all(db)
        .await?;
    ceiling_counts(&rows, ceiling, locals)
}

/// Binds $1 to $11 of `ceiling_upsert!`.
pub(crate) fn bind_ceiling<'q>(
    query: sqlx::query::Query<'q, Any, AnyArguments>,
    ceiling: Hit<'q>,
    locals: [Hit<'q>; 2],
    local_limits: [i64; 2],
) -> sqlx::query::Query<'q, Any, AnyArguments> {
    query
        .bind(ceiling.bucket)
        .bind(ceiling.window_start)
        .bind(ceiling.expires_at)
        .bind(locals[0].bucket)
        .bind(locals[0].window_start)
        .bind(locals[0].expires_at)
        .bind(locals[1].bucket)
        .bind(locals[1].window_start)
        .bind(locals[1].expires_at)
        .bind(local_limits[0])
        .bind(local_limits[1])
}

/// The hits of `[ceiling, locals[0], locals[1]]` in `rows` (`bucket, hits`, in no order).
pub(crate) fn ceiling_counts(
    rows: &[AnyRow],
    ceiling: Hit<'_>,
    locals: [Hit<'_>; 2],
) -> Result<[i64; 3], sqlx::Error> {
    let mut counts = [0i64; 3];
    for (slot, bucket) in [ceiling.bucket, locals[0].bucket, locals[1].bucket]
        .iter()
        .enumerate()
    {
        let mut found = None;
        for row in rows {
            if row.try_get::<String, _>("bucket")? == *bucket {
                found = Some(row.try_get::<i64, _>("hits")?);
            }
        }
        counts[slot] = found.ok_or(sqlx::Error::RowNotFound)?;
    }
    Ok(counts)
}
