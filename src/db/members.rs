//! The `members` table.

use sqlx::{Any, Executor, FromRow};

/// A member, as stored.
#[derive(Debug, Clone, FromRow)]
pub struct Member {
    /// A uuid, stable for the member's lifetime.
    pub id: String,
    /// The normalized address.
    pub email: String,
    /// The name shown to other members.
    pub display_name: String,
    /// `member` or `admin`.
    pub role: String,
    /// `invited`, `pending`, `active` or `suspended`.
    pub status: String,
    /// When the row was created (unix seconds).
    pub created_at: i64,
    /// When the member last signed in (unix seconds).
    pub last_login_at: Option<i64>,
}

// A macro rather than a const so that `concat!` keeps every query a static string.
macro_rules! columns {
    () => {
        "id, email, display_name, role, status, created_at, last_login_at"
    };
}

/// The member with this id.
pub async fn find_by_id<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
) -> Result<Option<Member>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM members WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(db)
    .await
}

/// Records a sign-in: creates the member (active, with `role`) if the address is new, or
/// updates the last sign-in time. An `admin` role is applied to existing members too; a
/// `member` role never demotes anyone. Returns the row as it is afterwards.
pub async fn record_sign_in<'c>(
    db: impl Executor<'c, Database = Any>,
    new: &Member,
) -> Result<Member, sqlx::Error> {
    sqlx::query_as(concat!(
        "INSERT INTO members (id, email, display_name, role, status, created_at, last_login_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6) \
         ON CONFLICT (email) DO UPDATE SET last_login_at = excluded.last_login_at, \
         role = CASE WHEN excluded.role = 'admin' THEN 'admin' ELSE members.role END \
         RETURNING ",
        columns!()
    ))
    .bind(&new.id)
    .bind(&new.email)
    .bind(&new.display_name)
    .bind(&new.role)
    .bind(&new.status)
    .bind(new.created_at)
    .fetch_one(db)
    .await
}
