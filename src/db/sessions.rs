//! The `sessions` table, behind [`crate::web::sessions::DbSessionStore`].

use sqlx::{Any, Executor};

use super::members::{Member, Role, Status};

/// A live session's state and expiry, with the member it belongs to.
#[derive(Debug)]
pub struct LiveSession {
    /// The session state as JSON.
    pub state: String,
    /// When it ends unless used (unix seconds).
    pub expires_at: i64,
    /// The member the session is signed in as, as stored now (`None`: anonymous, or the
    /// member is gone).
    pub member: Option<Member>,
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    state: String,
    expires_at: i64,
    id: Option<String>,
    email: Option<String>,
    display_name: Option<String>,
    role: Option<String>,
    status: Option<String>,
    created_at: Option<i64>,
    last_login_at: Option<i64>,
}

/// The session with this id, if it has not expired and was created after `created_after`,
/// and its member, in one statement: every members-only page needs both.
pub async fn load<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    now: i64,
    created_after: i64,
) -> Result<Option<LiveSession>, sqlx::Error> {
    let row: Option<SessionRow> = sqlx::query_as(
        "SELECT s.state, s.expires_at, m.id, m.email, m.display_name, m.role, m.status, \
         m.created_at, m.last_login_at \
         FROM sessions AS s LEFT JOIN members AS m ON m.id = s.member_id \
         WHERE s.id = $1 AND s.expires_at > $2 AND s.created_at > $3",
    )
    .bind(id)
    .bind(now)
    .bind(created_after)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| {
        let member = match (
            r.id,
            r.email,
            r.display_name,
            r.role.as_deref().and_then(Role::parse),
            r.status.as_deref().and_then(Status::parse),
            r.created_at,
        ) {
            (Some(id), Some(email), Some(display_name), Some(role), Some(status), Some(at)) => {
                Some(Member {
                    id,
                    email,
                    display_name,
                    role,
                    status,
                    created_at: at,
                    last_login_at: r.last_login_at,
                })
            }
            _ => None,
        };
        LiveSession {
            state: r.state,
            expires_at: r.expires_at,
            member,
        }
    }))
}

/// What a session row says about who it belongs to and where it came from, taken from the
/// session state when it is written.
#[derive(Debug, Default)]
pub struct Owner<'a> {
    /// The signed-in member.
    pub member_id: Option<&'a str>,
    /// A public handle for revoking it (not the secret key).
    pub handle: Option<&'a str>,
    /// The browser's User-Agent at sign-in.
    pub user_agent: Option<&'a str>,
    /// The client IP at sign-in.
    pub ip: Option<&'a str>,
}

/// A signed-in session to store with the sign-in that starts it, in the same round trip (see
/// [`super::members::sign_in`]): its row, but for the member, whose id the sign-in decides.
/// The stored state is `state_before`, the member's id, then `state_after`.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The table's id (the SHA-256 of the cookie's key).
    pub id: String,
    /// The state's JSON up to the member's id.
    pub state_before: String,
    /// The state's JSON after the member's id.
    pub state_after: String,
    /// When it ends unless used (unix seconds).
    pub expires_at: i64,
    /// The public handle.
    pub handle: String,
    /// The browser's User-Agent.
    pub user_agent: String,
    /// The client IP.
    pub ip: String,
}

/// Stores a new session.
pub async fn insert<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    owner: &Owner<'_>,
    state: &str,
    now: i64,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sessions \
         (id, member_id, state, created_at, expires_at, handle, user_agent, ip, last_seen_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $4)",
    )
    .bind(id)
    .bind(owner.member_id)
    .bind(state)
    .bind(now)
    .bind(expires_at)
    .bind(owner.handle)
    .bind(owner.user_agent)
    .bind(owner.ip)
    .execute(db)
    .await?;
    Ok(())
}

/// Replaces the state of a live session; returns false when it no longer exists.
pub async fn update<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    owner: &Owner<'_>,
    state: &str,
    now: i64,
    expires_at: i64,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE sessions SET member_id = $2, state = $3, expires_at = $5, last_seen_at = $4, \
         handle = $6, user_agent = $7, ip = $8 \
         WHERE id = $1 AND expires_at > $4",
    )
    .bind(id)
    .bind(owner.member_id)
    .bind(state)
    .bind(now)
    .bind(expires_at)
    .bind(owner.handle)
    .bind(owner.user_agent)
    .bind(owner.ip)
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
    sqlx::query(
        "UPDATE sessions SET expires_at = $3, last_seen_at = $2 WHERE id = $1 AND expires_at > $2",
    )
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

/// A member's live session, as the member sees it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct SessionInfo {
    /// The public handle, for revoking it.
    pub handle: String,
    /// The browser's User-Agent at sign-in.
    pub user_agent: Option<String>,
    /// The client IP at sign-in.
    pub ip: Option<String>,
    /// When it started (unix seconds).
    pub created_at: i64,
    /// When it was last used, to within the expiry refresh step (unix seconds).
    pub last_seen_at: Option<i64>,
}

/// A member's live sessions, newest first.
pub async fn for_member<'c>(
    db: impl Executor<'c, Database = Any>,
    member_id: &str,
    now: i64,
) -> Result<Vec<SessionInfo>, sqlx::Error> {
    sqlx::query_as(
        "SELECT handle, user_agent, ip, created_at, last_seen_at FROM sessions \
         WHERE member_id = $1 AND expires_at > $2 AND handle IS NOT NULL \
         ORDER BY created_at DESC",
    )
    .bind(member_id)
    .bind(now)
    .fetch_all(db)
    .await
}

/// Ends one of a member's sessions by handle; returns whether one was ended.
pub async fn delete_by_handle<'c>(
    db: impl Executor<'c, Database = Any>,
    member_id: &str,
    handle: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM sessions WHERE member_id = $1 AND handle = $2")
        .bind(member_id)
        .bind(handle)
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Ends all of a member's sessions except the one with handle `keep` (if given); returns how
/// many were ended.
pub async fn delete_for_member<'c>(
    db: impl Executor<'c, Database = Any>,
    member_id: &str,
    keep: Option<&str>,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM sessions WHERE member_id = $1 AND ($2 = '' OR handle IS NULL OR handle <> $2)",
    )
    .bind(member_id)
    .bind(keep.unwrap_or(""))
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
