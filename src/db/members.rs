//! The `members` table.

use sqlx::{Any, AnyConnection, Executor, FromRow, Row};

use super::Db;

/// The lock that serializes changes to the member list's roles and statuses on Postgres (an
/// advisory lock: a number the site chooses, unrelated to any row).
const MEMBER_CHANGE_LOCK: i64 = 0x636c_7562_686f_7573; // "clubhous"

/// A write transaction for changing roles, statuses or removing members: the one guarded
/// place for every change that could take away the last active admin. Only one such
/// transaction runs at a time: SQLite has one writer (`BEGIN IMMEDIATE`), and on Postgres each
/// takes an advisory lock first. So the last-admin conditions in its statements count the
/// admins as they are, not as a concurrent change (two admins demoting each other at the same
/// moment, under READ COMMITTED) left them a moment before. Sign-ins never take it: they can
/// make admins but not unmake them.
pub struct MemberChange {
    tx: super::WriteTx,
}

impl MemberChange {
    /// Begins the transaction and waits for the lock.
    pub async fn begin(db: &Db) -> Result<MemberChange, sqlx::Error> {
        let mut tx = super::begin_write(db).await?;
        if db.engine() == super::Engine::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(MEMBER_CHANGE_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        Ok(MemberChange { tx })
    }

    /// Commits the change.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    /// Undoes the change.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }

    /// The transaction, for the other writes that go with the change (audit, mail).
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    /// The transaction itself (the mailer queues through it).
    pub fn tx(&mut self) -> &mut super::WriteTx {
        &mut self.tx
    }
}

/// What a member may do, stored as `member` or `admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads the members' pages.
    Member,
    /// Also manages the member list.
    Admin,
}

/// Where a member stands, stored as `invited`, `pending`, `active` or `suspended`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Invited by an admin, not signed in yet.
    Invited,
    /// Asked to join; waits for an admin's approval.
    Pending,
    /// May sign in.
    Active,
    /// Stopped by an admin.
    Suspended,
}

/// The stored names of an enum's values, both ways.
macro_rules! stored_as {
    ($ty:ident { $($value:ident => $name:literal),* $(,)? }) => {
        impl $ty {
            /// Every value, in the order the admin pages list them.
            pub const ALL: &[$ty] = &[$($ty::$value),*];

            /// The name stored in the database (and shown and typed in CSV files).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$value => $name),*
                }
            }

            /// The value stored as `name`, if any.
            pub fn parse(name: &str) -> Option<$ty> {
                match name {
                    $($name => Some($ty::$value),)*
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl TryFrom<String> for $ty {
            type Error = String;

            fn try_from(name: String) -> Result<$ty, String> {
                $ty::parse(&name)
                    .ok_or_else(|| format!("{name:?} is not a {}", stringify!($ty).to_lowercase()))
            }
        }
    };
}

stored_as!(Role { Member => "member", Admin => "admin" });
stored_as!(Status {
    Invited => "invited",
    Pending => "pending",
    Active => "active",
    Suspended => "suspended",
});

/// A member, as stored.
#[derive(Debug, Clone, FromRow, serde::Serialize, serde::Deserialize)]
pub struct Member {
    /// A uuid, stable for the member's lifetime (also across address changes).
    pub id: String,
    /// The normalized address.
    pub email: String,
    /// The name shown to other members.
    pub display_name: String,
    /// `member` or `admin`.
    #[sqlx(try_from = "String")]
    pub role: Role,
    /// `invited`, `pending`, `active` or `suspended`.
    #[sqlx(try_from = "String")]
    pub status: Status,
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

/// The condition that protects the last active admin from losing that standing. Part of the
/// same statement as the change, so the count and the change cannot drift apart.
macro_rules! not_last_admin {
    () => {
        "NOT (role = 'admin' AND status = 'active' AND \
         (SELECT COUNT(*) FROM members AS m WHERE m.role = 'admin' AND m.status = 'active') <= 1)"
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

/// The member with this normalized address.
pub async fn find_by_email<'c>(
    db: impl Executor<'c, Database = Any>,
    email: &str,
) -> Result<Option<Member>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM members WHERE email = $1"
    ))
    .bind(email)
    .fetch_optional(db)
    .await
}

/// Stores a new member unless the address is taken; returns whether it was stored.
pub async fn insert_if_absent<'c>(
    db: impl Executor<'c, Database = Any>,
    m: &Member,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO members (id, email, display_name, role, status, created_at, last_login_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (email) DO NOTHING",
    )
    .bind(&m.id)
    .bind(&m.email)
    .bind(&m.display_name)
    .bind(m.role.as_str())
    .bind(m.status.as_str())
    .bind(m.created_at)
    .bind(m.last_login_at)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The login attempt a sign-in consumes in the same round trip: the nonce of the broker's
/// token, the binding cookie's hash the request carries, and the address the sign-in was
/// started for (the token's `email_original`, or its `email`).
#[derive(Debug, Clone, Copy)]
pub struct Take<'a> {
    /// The token's nonce.
    pub nonce: &'a str,
    /// The hash of the binding cookie presented, if any.
    pub binding_hash: Option<&'a str>,
    /// The address the broker says the sign-in was started for.
    pub sent: &'a str,
}

/// A sign-in by address, as [`sign_in`] writes it.
#[derive(Debug, Clone, Copy)]
pub struct SignInWrite<'a> {
    /// The normalized address the broker vouched for.
    pub email: &'a str,
    /// Now (unix seconds).
    pub now: i64,
    /// Whether the address is one of the configured admins' (an active member is promoted).
    pub make_admin: bool,
    /// The row to add when no member has the address; `None` adds nobody (invite-only).
    pub fresh: Option<&'a Member>,
    /// The id of the entry that records the sign-in or its refusal.
    pub entry_id: &'a str,
    /// The id of the entry that records a request to join (a fresh member who is pending).
    pub request_entry_id: &'a str,
    /// The keyed hash of the address, for refusals and requests.
    pub email_hash: &'a str,
    /// For a request to join: the admins' digest to queue (window, due, give up at).
    pub digest: Option<(i64, i64, i64)>,
    /// The login attempt to consume with it; nothing is written unless it is taken.
    pub take: Option<Take<'a>>,
    /// The session to start when the member is admitted (stored with the rest).
    pub session: Option<&'a super::sessions::NewSession>,
}

/// What [`sign_in`] recorded.
#[derive(Debug)]
pub struct SignedIn {
    /// The member as they are afterwards; `None` when nobody has the address and nobody was
    /// added (invite-only, or another first sign-in of the address won a race on Postgres).
    pub member: Option<Member>,
    /// The local path the consumed attempt asked for (`None` without one).
    pub next_path: Option<String>,
    /// Whether the session was stored: one was given and the member is active.
    pub session_stored: bool,
}

// The parts of the sign-in statement, shared by its SQLite and Postgres forms. The arguments:
// $1 email, $2 now, $3 make_admin, $4 to $8 the fresh row's id, display name, role, status and
// last sign-in, $9 whether to add it, $10 the entry's id, $11 the address hash, $12 the
// request's entry id, $13 to $16 the digest's window, due time, give-up time and whether to
// queue it, $17 to $19 the attempt's nonce, binding hash and address, $20 whether to take it,
// $21 to $27 the session's id, state before and after the member's id, expiry, handle,
// User-Agent and IP, $28 whether to start it.
// Macros so that `concat!` keeps every query a static string.
macro_rules! sign_in_update {
    () => {
        "UPDATE members SET \
         last_login_at = CASE WHEN status IN ('active', 'invited') THEN $2 ELSE last_login_at END, \
         role = CASE WHEN $3 = 1 AND status IN ('active', 'invited') THEN 'admin' ELSE role END, \
         status = CASE WHEN status = 'invited' THEN 'active' ELSE status END \
         WHERE email = $1"
    };
}
// The fresh row, to be followed by the condition on which it is added.
macro_rules! fresh_row {
    () => {
        "INSERT INTO members (id, email, display_name, role, status, created_at, last_login_at) \
         SELECT $4, $1, $5, $6, $7, $2, $8 "
    };
}
macro_rules! sign_in_insert {
    () => {
        concat!(fresh_row!(), "WHERE $9 = 1 AND NOT EXISTS ")
    };
}
// The member's entry: a sign-in for an active member, a refusal naming the status otherwise.
macro_rules! sign_in_entry {
    ($m:literal) => {
        concat!(
            "INSERT INTO audit_log (id, at, action, actor_id, subject_id, email_hash, detail, \
             occurrences) SELECT $10, $2, \
             CASE WHEN m.status = 'active' THEN 'sign_in' ELSE 'sign_in_refused' END, \
             CASE WHEN m.status = 'active' THEN m.id END, m.id, \
             CASE WHEN m.status = 'active' THEN NULL ELSE $11 END, \
             CASE WHEN m.status = 'active' THEN '' ELSE m.status END, 1 FROM ",
            $m,
            " AS m"
        )
    };
}
// The session of an admitted (active) member.
macro_rules! session_insert {
    ($m:literal) => {
        concat!(
            "INSERT INTO sessions (id, member_id, state, created_at, expires_at, handle, \
             user_agent, ip, last_seen_at) SELECT $21, m.id, \
             CAST($22 AS TEXT) || m.id || CAST($23 AS TEXT), $2, $24, $25, $26, $27, $2 FROM ",
            $m,
            " AS m WHERE $28 = 1 AND m.status = 'active'"
        )
    };
}
// A fresh pending member's request to join.
macro_rules! request_entry {
    ($m:literal) => {
        concat!(
            "INSERT INTO audit_log (id, at, action, actor_id, subject_id, email_hash, detail, \
             occurrences) SELECT $12, $2, 'member_requested', NULL, m.id, $11, '', 1 FROM ",
            $m,
            " AS m WHERE m.id = $4 AND m.status = 'pending'"
        )
    };
}
// The attempt `a` that the sign-in takes: its nonce, a binding it was started with presented,
// not expired, started for this address, and to sign in (an address change goes another way).
macro_rules! attempt_matches {
    () => {
        "a.nonce = $17 AND (a.binding_hash IS NULL OR a.binding_hash = $18) \
         AND a.expires_at > $2 AND a.email = $19 AND a.purpose = 'sign_in'"
    };
}
// The member's columns from `m`, by their names.
macro_rules! m_columns {
    () => {
        "m.id AS id, m.email AS email, m.display_name AS display_name, m.role AS role, \
         m.status AS status, m.created_at AS created_at, m.last_login_at AS last_login_at"
    };
}

// While the attempt is there to take (or when none is to be taken).
macro_rules! while_taking {
    () => {
        concat!(
            "($20 = 0 OR EXISTS (SELECT 1 FROM login_attempts AS a WHERE ",
            attempt_matches!(),
            "))"
        )
    };
}
// The SQLite batch: `$pending` (the statements of a fresh pending member) and `$tail` (the
// attempt taken and the member read back, or only the member read) after the writes every
// sign-in makes. The member is added, or an active member signing in again has the time of
// the sign-in set, by one upsert that assigns nothing else: SQLite writes a column's index
// entries again whenever the column is assigned, even to its own value, and for `role` and
// `status` that is two more index pages per sign-in, which cost more than the statement
// after it (BENCHMARKS.md). That statement makes an invited member active and promotes an
// address in ADMIN_EMAILS, the only sign-ins that change `role` or `status`.
macro_rules! sqlite_sign_in {
    ($pending:expr, $tail:expr) => {
        concat!(
            "SAVEPOINT batch; ",
            fresh_row!(),
            "WHERE ($9 = 1 OR EXISTS (SELECT 1 FROM members WHERE email = $1)) AND ",
            while_taking!(),
            " ON CONFLICT (email) DO UPDATE SET last_login_at = $2 \
             WHERE members.status = 'active' AND NOT ($3 = 1 AND members.role <> 'admin'); ",
            sign_in_update!(),
            " AND (status = 'invited' OR ($3 = 1 AND role <> 'admin' AND status = 'active')) \
             AND ",
            while_taking!(),
            "; ",
            sign_in_entry!("members"),
            " WHERE m.email = $1 AND ",
            while_taking!(),
            "; ",
            session_insert!("members"),
            " AND m.email = $1 AND ",
            while_taking!(),
            "; ",
            $pending,
            $tail,
            " RELEASE batch;"
        )
    };
}
// A fresh pending member's request to join and the admins' digest.
macro_rules! sqlite_pending {
    () => {
        concat!(
            request_entry!("members"),
            " AND m.email = $1; ",
            super::outbox::digest_rows!("$13", "$2", "$14", "$15"),
            " AND $16 = 1 AND EXISTS (SELECT 1 FROM members AS m \
             WHERE m.id = $4 AND m.status = 'pending') ON CONFLICT (id) DO NOTHING;"
        )
    };
}
// The attempt taken, and the member as they are now, in one row (none when the attempt was
// not there: then nothing else was written either).
macro_rules! sqlite_taking {
    () => {
        concat!(
            " DELETE FROM login_attempts AS a WHERE ",
            attempt_matches!(),
            " RETURNING next_path, \
             (SELECT id FROM members WHERE email = $1) AS id, \
             (SELECT email FROM members WHERE email = $1) AS email, \
             (SELECT display_name FROM members WHERE email = $1) AS display_name, \
             (SELECT role FROM members WHERE email = $1) AS role, \
             (SELECT status FROM members WHERE email = $1) AS status, \
             (SELECT created_at FROM members WHERE email = $1) AS created_at, \
             (SELECT last_login_at FROM members WHERE email = $1) AS last_login_at;"
        )
    };
}
// Without an attempt: the member as they are now (a row of NULLs when nobody has the address).
macro_rules! sqlite_reading {
    () => {
        concat!(
            " SELECT NULL AS next_path, ",
            m_columns!(),
            " FROM (SELECT 1) AS one LEFT JOIN members AS m ON m.email = $1;"
        )
    };
}

/// Records a sign-in by address in one round trip, all of it or none: the member signing in
/// again (for an `active` or `invited` member the time, `invited` becomes `active`, and
/// `make_admin` promotes; a `pending` or `suspended` member is left as they are), or `fresh`
/// added when nobody has the address; the audit entry (the sign-in, or its refusal for a
/// pending or suspended member); for a fresh pending member the entry of the request to join
/// and the admins' digest; with `session`, an admitted member's session; and, with `take`, the
/// login attempt consumed (at most one request takes it). Returns what was recorded; `None`
/// when `take` was given and no such attempt was there to take, and then nothing was written.
pub async fn sign_in(db: &Db, w: &SignInWrite<'_>) -> Result<Option<SignedIn>, sqlx::Error> {
    let sql = match db.engine() {
        // Several statements in one batch (see `atomic_batch`). Each
        // write holds while the attempt is there; it is deleted last. Only a fresh pending
        // member can bring a request to join and the admins' digest: other sign-ins leave
        // those two statements out.
        super::Engine::Sqlite => {
            let pending = w.fresh.is_some_and(|f| f.status == Status::Pending);
            match (pending, w.take.is_some()) {
                (false, true) => sqlite_sign_in!("", sqlite_taking!()),
                (true, true) => sqlite_sign_in!(sqlite_pending!(), sqlite_taking!()),
                (false, false) => sqlite_sign_in!("", sqlite_reading!()),
                (true, false) => sqlite_sign_in!(sqlite_pending!(), sqlite_reading!()),
            }
        }
        // One statement, its writes in WITH clauses: `t` the attempt taken, `m` the member
        // afterwards.
        super::Engine::Postgres => concat!(
            "WITH t AS (DELETE FROM login_attempts AS a WHERE $20 = 1 AND ",
            attempt_matches!(),
            " RETURNING a.next_path), u AS (",
            sign_in_update!(),
            " AND ($20 = 0 OR EXISTS (SELECT 1 FROM t)) RETURNING ",
            columns!(),
            "), i AS (",
            sign_in_insert!(),
            "(SELECT 1 FROM u) AND ($20 = 0 OR EXISTS (SELECT 1 FROM t)) \
             ON CONFLICT (email) DO NOTHING RETURNING ",
            columns!(),
            "), m AS (SELECT * FROM u UNION ALL SELECT * FROM i), r AS (",
            request_entry!("m"),
            "), e AS (",
            sign_in_entry!("m"),
            "), s AS (",
            session_insert!("m"),
            "), d AS (",
            super::outbox::digest_rows!("$13", "$2", "$14", "$15"),
            " AND $16 = 1 AND EXISTS (SELECT 1 FROM m WHERE m.id = $4 AND m.status = 'pending') \
             ON CONFLICT (id) DO NOTHING) SELECT t.next_path AS next_path, ",
            m_columns!(),
            " FROM (SELECT 1) AS one LEFT JOIN t ON true LEFT JOIN m ON true \
             WHERE $20 = 0 OR t.next_path IS NOT NULL"
        ),
    };
    let (window, due, give_up) = w.digest.unwrap_or_default();
    let query = sqlx::query(sql)
        .bind(w.email)
        .bind(w.now)
        .bind(i32::from(w.make_admin))
        .bind(w.fresh.map_or("", |f| f.id.as_str()))
        .bind(w.fresh.map_or("", |f| f.display_name.as_str()))
        // Without a fresh row, values its checks accept: SQLite checks them before it finds
        // the member that the upsert updates instead.
        .bind(w.fresh.map_or(Role::Member.as_str(), |f| f.role.as_str()))
        .bind(
            w.fresh
                .map_or(Status::Invited.as_str(), |f| f.status.as_str()),
        )
        .bind(w.fresh.and_then(|f| f.last_login_at))
        .bind(i32::from(w.fresh.is_some()))
        .bind(w.entry_id)
        .bind(w.email_hash)
        .bind(w.request_entry_id)
        .bind(window.to_string())
        .bind(due)
        .bind(give_up)
        .bind(i32::from(w.digest.is_some()))
        .bind(w.take.map_or("", |t| t.nonce))
        // No cookie: an empty string, which no hash equals.
        .bind(w.take.and_then(|t| t.binding_hash).unwrap_or(""))
        .bind(w.take.map_or("", |t| t.sent))
        .bind(i32::from(w.take.is_some()))
        .bind(w.session.map_or("", |s| s.id.as_str()))
        .bind(w.session.map_or("", |s| s.state_before.as_str()))
        .bind(w.session.map_or("", |s| s.state_after.as_str()))
        .bind(w.session.map_or(0, |s| s.expires_at))
        .bind(w.session.map_or("", |s| s.handle.as_str()))
        .bind(w.session.map_or("", |s| s.user_agent.as_str()))
        .bind(w.session.map_or("", |s| s.ip.as_str()))
        .bind(i32::from(w.session.is_some()));
    let rows = super::atomic_batch(db, query).await?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let member = match row.try_get::<Option<String>, _>("id")? {
        Some(_) => Some(Member::from_row(row)?),
        None => None,
    };
    let session_stored =
        w.session.is_some() && member.as_ref().is_some_and(|m| m.status == Status::Active);
    Ok(Some(SignedIn {
        member,
        next_path: row.try_get("next_path")?,
        session_stored,
    }))
}

/// What the admin list shows: a search text, filters and a page.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    /// Part of the address or display name (case-insensitive); empty for all.
    pub search: String,
    /// A status, or empty for all.
    pub status: String,
    /// A role, or empty for all.
    pub role: String,
}

fn like_pattern(search: &str) -> String {
    let escaped = search
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

macro_rules! list_where {
    () => {
        " WHERE (lower(email) LIKE $1 ESCAPE '\\' OR lower(display_name) LIKE $1 ESCAPE '\\') \
         AND ($2 = '' OR status = $2) AND ($3 = '' OR role = $3)"
    };
}

/// One page of members matching `filter`, by address.
pub async fn list<'c>(
    db: impl Executor<'c, Database = Any>,
    filter: &ListFilter,
    limit: i64,
    offset: i64,
) -> Result<Vec<Member>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM members",
        list_where!(),
        " ORDER BY email LIMIT $4 OFFSET $5"
    ))
    .bind(like_pattern(&filter.search))
    .bind(&filter.status)
    .bind(&filter.role)
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await
}

/// How many members match `filter`.
pub async fn count<'c>(
    db: impl Executor<'c, Database = Any>,
    filter: &ListFilter,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(concat!("SELECT COUNT(*) FROM members", list_where!()))
        .bind(like_pattern(&filter.search))
        .bind(&filter.status)
        .bind(&filter.role)
        .fetch_one(db)
        .await
}

/// Every member, by address (for export).
pub async fn all<'c>(db: impl Executor<'c, Database = Any>) -> Result<Vec<Member>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT ",
        columns!(),
        " FROM members ORDER BY email"
    ))
    .fetch_all(db)
    .await
}

/// One page of the display names of active members, by name (the directory).
pub async fn active_names<'c>(
    db: impl Executor<'c, Database = Any>,
    limit: i64,
    offset: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT display_name FROM members WHERE status = 'active' \
         ORDER BY lower(display_name), id LIMIT $1 OFFSET $2",
    )
    .bind(limit)
    .bind(offset)
    .fetch_all(db)
    .await
}

/// How many requests to join are waiting for approval.
pub async fn count_pending<'c>(db: impl Executor<'c, Database = Any>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM members WHERE status = 'pending'")
        .fetch_one(db)
        .await
}

/// The addresses waiting for approval, oldest request first, at most `limit`.
pub async fn pending_emails<'c>(
    db: impl Executor<'c, Database = Any>,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT email FROM members WHERE status = 'pending' ORDER BY created_at, email LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db)
    .await
}

/// How many active admins there are.
pub async fn active_admins<'c>(db: impl Executor<'c, Database = Any>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM members WHERE role = 'admin' AND status = 'active'")
        .fetch_one(db)
        .await
}

/// Moves a member from status `from` to `to`. Taking an admin out of `active` is refused for
/// the last active admin. Returns whether the row changed.
pub async fn set_status(
    change: &mut MemberChange,
    id: &str,
    from: Status,
    to: Status,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(concat!(
        "UPDATE members SET status = $3 WHERE id = $1 AND status = $2 AND ($3 = 'active' OR ",
        not_last_admin!(),
        ")"
    ))
    .bind(id)
    .bind(from.as_str())
    .bind(to.as_str())
    .execute(change.conn())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Sets a member's role; demoting the last active admin is refused. Returns whether the row
/// changed.
pub async fn set_role(
    change: &mut MemberChange,
    id: &str,
    role: Role,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(concat!(
        "UPDATE members SET role = $2 WHERE id = $1 AND role <> $2 AND ($2 = 'admin' OR ",
        not_last_admin!(),
        ")"
    ))
    .bind(id)
    .bind(role.as_str())
    .execute(change.conn())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes a member (their sessions go with them); the last active admin is refused.
/// Returns whether the row was deleted.
pub async fn delete(change: &mut MemberChange, id: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(concat!(
        "DELETE FROM members WHERE id = $1 AND ",
        not_last_admin!()
    ))
    .bind(id)
    .execute(change.conn())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Deletes a member only if their status is still `status` (what the admin saw when they
/// chose to). Returns whether the row was deleted.
pub async fn delete_if_status(
    change: &mut MemberChange,
    id: &str,
    status: Status,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(concat!(
        "DELETE FROM members WHERE id = $1 AND status = $2 AND ",
        not_last_admin!()
    ))
    .bind(id)
    .bind(status.as_str())
    .execute(change.conn())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Sets a member's display name.
pub async fn set_display_name<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    name: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE members SET display_name = $2 WHERE id = $1")
        .bind(id)
        .bind(name)
        .execute(db)
        .await?;
    Ok(())
}

/// Changes the address of an active member. Fails with a unique violation when another member
/// has it; returns false when there is no such active member.
pub async fn set_email<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    email: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE members SET email = $2 WHERE id = $1 AND status = 'active'")
        .bind(id)
        .bind(email)
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Creates or updates a member by address (imports and the CLI). `role` and `status` of an
/// existing member change only when given. Returns whether a new member was created.
pub async fn upsert(
    change: &mut MemberChange,
    new: &Member,
    set_role: bool,
    set_status: bool,
) -> Result<bool, sqlx::Error> {
    let stored_id: String = sqlx::query_scalar(
        "INSERT INTO members (id, email, display_name, role, status, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (email) DO UPDATE SET \
         display_name = excluded.display_name, \
         role = CASE WHEN $7 = 1 THEN excluded.role ELSE members.role END, \
         status = CASE WHEN $8 = 1 THEN excluded.status ELSE members.status END \
         RETURNING id",
    )
    .bind(&new.id)
    .bind(&new.email)
    .bind(&new.display_name)
    .bind(new.role.as_str())
    .bind(new.status.as_str())
    .bind(new.created_at)
    .bind(i32::from(set_role))
    .bind(i32::from(set_status))
    .fetch_one(change.conn())
    .await?;
    Ok(stored_id == new.id)
}
