//! The `audit_log` table.

use sqlx::{Any, Executor, FromRow};

/// One entry.
#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct Entry {
    /// A uuid.
    pub id: String,
    /// When (unix seconds).
    pub at: i64,
    /// What happened, e.g. `sign_in`, `member_suspended`.
    pub action: String,
    /// The member who did it, if any.
    pub actor_id: Option<String>,
    /// The member it was done to, if any.
    pub subject_id: Option<String>,
    /// SHA-256 of the address concerned, if any.
    pub email_hash: Option<String>,
    /// A reason or a value (never an address).
    pub detail: String,
    /// How many times it happened: 1, or more for a folded entry (see
    /// `audit::record_folded`).
    pub occurrences: i64,
}

/// Appends an entry. An entry whose id is there already (a folded one: see
/// `audit::record_folded`) counts its occurrences into that one instead; ordinary entries have
/// ids of their own (uuid v7) and never meet one.
pub async fn insert<'c>(
    db: impl Executor<'c, Database = Any>,
    e: &Entry,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log \
         (id, at, action, actor_id, subject_id, email_hash, detail, occurrences) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (id) DO UPDATE \
         SET occurrences = audit_log.occurrences + excluded.occurrences",
    )
    .bind(&e.id)
    .bind(e.at)
    .bind(&e.action)
    .bind(&e.actor_id)
    .bind(&e.subject_id)
    .bind(&e.email_hash)
    .bind(&e.detail)
    .bind(e.occurrences)
    .execute(db)
    .await?;
    Ok(())
}

/// Every entry that holds an address hash: its id and the hash.
pub async fn email_hashes<'c>(
    db: impl Executor<'c, Database = Any>,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT id, email_hash FROM audit_log WHERE email_hash IS NOT NULL")
        .fetch_all(db)
        .await
}

/// Replaces an entry's address hash.
pub async fn set_email_hash<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    hash: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE audit_log SET email_hash = $2 WHERE id = $1")
        .bind(id)
        .bind(hash)
        .execute(db)
        .await?;
    Ok(())
}

/// The newest entries, optionally of one action and about one member, newest first.
pub async fn list<'c>(
    db: impl Executor<'c, Database = Any>,
    action: &str,
    member_id: &str,
    limit: i64,
    offset: i64,
) -> Result<Vec<Entry>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, at, action, actor_id, subject_id, email_hash, detail, occurrences \
         FROM audit_log \
         WHERE ($1 = '' OR action = $1) \
         AND ($2 = '' OR actor_id = $2 OR subject_id = $2) \
         ORDER BY at DESC, id DESC LIMIT $3 OFFSET $4",
    )
    .bind(action)
    .bind(member_id)
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await
}

/// Entries about or by one member (for their data export).
pub async fn for_member<'c>(
    db: impl Executor<'c, Database = Any>,
    member_id: &str,
) -> Result<Vec<Entry>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, at, action, actor_id, subject_id, email_hash, detail, occurrences \
         FROM audit_log \
         WHERE actor_id = $1 OR subject_id = $1 ORDER BY at DESC, id DESC",
    )
    .bind(member_id)
    .fetch_all(db)
    .await
}
