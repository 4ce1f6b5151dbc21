//! The `settings` table: named values the application keeps for itself.

use sqlx::{Any, Executor};

/// Stores `value` under `name` unless a value is there already, and returns the stored one.
/// Safe when several instances start at once: all of them end up with the same value.
pub async fn get_or_insert<'c, E>(db: E, name: &str, value: &str) -> Result<String, sqlx::Error>
where
    E: Executor<'c, Database = Any> + Copy,
{
    sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .bind(value)
        .execute(db)
        .await?;
    sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
        .bind(name)
        .fetch_one(db)
        .await
}

/// The value stored under `name`, if any.
pub async fn get<'c>(
    db: impl Executor<'c, Database = Any>,
    name: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
        .bind(name)
        .fetch_optional(db)
        .await
}

/// Stores `value` under `name`, replacing any value there.
pub async fn set<'c>(
    db: impl Executor<'c, Database = Any>,
    name: &str,
    value: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO settings (name, value) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )
    .bind(name)
    .bind(value)
    .execute(db)
    .await?;
    Ok(())
}
