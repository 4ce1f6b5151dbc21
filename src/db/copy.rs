//! Copying a whole site from one database to another (SQLite to Postgres, say), for
//! `clubhouse copy-to`.

use sqlx::{Any, AnyConnection, Row};

use super::Db;

/// What a column holds.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Integer,
}

/// The tables `copy_all` copies, each with its columns, in the order it copies them (a test
/// checks this list against the schema the migrations make, so a new table or column cannot be
/// forgotten here).
pub fn tables() -> Vec<(&'static str, Vec<&'static str>)> {
    TABLES
        .iter()
        .map(|(table, columns)| (*table, columns.iter().map(|(c, _)| *c).collect()))
        .collect()
}

/// Every table of the schema with its columns, parents before children (sessions refer to
/// members). `_sqlx_migrations` is not copied: the target gets the same migrations applied.
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    ("settings", &[("name", Kind::Text), ("value", Kind::Text)]),
    (
        "members",
        &[
            ("id", Kind::Text),
            ("email", Kind::Text),
            ("display_name", Kind::Text),
            ("role", Kind::Text),
            ("status", Kind::Text),
            ("created_at", Kind::Integer),
            ("last_login_at", Kind::Integer),
        ],
    ),
    (
        "sessions",
        &[
            ("id", Kind::Text),
            ("member_id", Kind::Text),
            ("state", Kind::Text),
            ("created_at", Kind::Integer),
            ("expires_at", Kind::Integer),
            ("handle", Kind::Text),
            ("user_agent", Kind::Text),
            ("ip", Kind::Text),
            ("last_seen_at", Kind::Integer),
        ],
    ),
    (
        "login_attempts",
        &[
            ("nonce", Kind::Text),
            ("email", Kind::Text),
            ("next_path", Kind::Text),
            ("created_at", Kind::Integer),
            ("expires_at", Kind::Integer),
            ("binding_hash", Kind::Text),
            ("purpose", Kind::Text),
            ("member_id", Kind::Text),
        ],
    ),
    (
        "rate_limits",
        &[
            ("bucket", Kind::Text),
            ("window_start", Kind::Integer),
            ("expires_at", Kind::Integer),
            ("hits", Kind::Integer),
        ],
    ),
    (
        "audit_log",
        &[
            ("id", Kind::Text),
            ("at", Kind::Integer),
            ("action", Kind::Text),
            ("actor_id", Kind::Text),
            ("subject_id", Kind::Text),
            ("email_hash", Kind::Text),
            ("detail", Kind::Text),
            ("occurrences", Kind::Integer),
        ],
    ),
    (
        "outbox",
        &[
            ("id", Kind::Text),
            ("kind", Kind::Text),
            ("recipient", Kind::Text),
            ("subject", Kind::Text),
            ("body_text", Kind::Text),
            ("body_html", Kind::Text),
            ("status", Kind::Text),
            ("attempts", Kind::Integer),
            ("created_at", Kind::Integer),
            ("next_attempt_at", Kind::Integer),
            ("give_up_at", Kind::Integer),
            ("claimed_until", Kind::Integer),
            ("sent_at", Kind::Integer),
            ("last_response", Kind::Text),
        ],
    ),
];

/// Why a copy was not made.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The target already holds a site; copying would mix two.
    #[error("the target database is not empty ({0} has rows); copy into a new database")]
    TargetNotEmpty(&'static str),
    /// A database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Copies every row of every table from `source` into `target` (whose migrations must already
/// be applied and which must hold no rows), in one transaction on the target: it has all the
/// data or none. Returns each table's row count.
pub async fn copy_all(source: &Db, target: &Db) -> Result<Vec<(&'static str, u64)>, CopyError> {
    let mut tx = super::begin_write(target).await?;
    for (table, _) in TABLES {
        if count_rows(&mut *tx, table).await? > 0 {
            return Err(CopyError::TargetNotEmpty(table));
        }
    }
    let mut counts = Vec::new();
    for (table, columns) in TABLES {
        counts.push((*table, copy_table(source, &mut tx, table, columns).await?));
    }
    tx.commit().await?;
    Ok(counts)
}

async fn copy_table(
    source: &Db,
    target: &mut AnyConnection,
    table: &str,
    columns: &[(&str, Kind)],
) -> Result<u64, sqlx::Error> {
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let select = format!("SELECT {} FROM {table}", names.join(", "));
    let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
    let insert = format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        names.join(", "),
        placeholders.join(", ")
    );
    // Both texts are made from the constant table list, never from input.
    let rows = sqlx::query(sqlx::AssertSqlSafe(select))
        .fetch_all(source)
        .await?;
    for row in &rows {
        let mut query = sqlx::query::<Any>(sqlx::AssertSqlSafe(insert.clone()));
        for (i, (_, kind)) in columns.iter().enumerate() {
            query = match kind {
                Kind::Text => query.bind(row.try_get::<Option<String>, _>(i)?),
                Kind::Integer => query.bind(row.try_get::<Option<i64>, _>(i)?),
            };
        }
        query.execute(&mut *target).await?;
    }
    Ok(rows.len() as u64)
}

/// Each table's row count, for checking a copy.
pub async fn counts(pool: &Db) -> Result<Vec<(&'static str, u64)>, sqlx::Error> {
    let mut counts = Vec::new();
    for (table, _) in TABLES {
        counts.push((*table, count_rows(pool, table).await?));
    }
    Ok(counts)
}

async fn count_rows<'c>(
    db: impl sqlx::Executor<'c, Database = Any>,
    table: &str,
) -> Result<u64, sqlx::Error> {
    // `table` comes from the constant table list above, never from input.
    let sql = format!("SELECT COUNT(*) FROM {table}");
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(db)
        .await?;
    Ok(n as u64)
}
