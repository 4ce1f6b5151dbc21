//! Everything that speaks SQL. Each submodule holds small async functions for one family of
//! tables; they take an executor so that callers can group them in a transaction.
//!
//! One SQL text serves SQLite and Postgres through sqlx's `Any` driver: `$1` placeholders,
//! TEXT ids and BIGINT unix-second times.

pub mod audit;
pub mod copy;
pub mod login_attempts;
pub mod members;
pub mod outbox;
pub mod purge;
pub mod rate_limits;
pub mod sessions;
pub mod settings;

use std::time::Duration;

use futures_core::future::BoxFuture;
use futures_core::stream::BoxStream;
use secrecy::{ExposeSecret, SecretString};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::any::{AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo};
use sqlx::{AnyPool, Executor};

/// The database: its connection pool and which engine it runs on. Cheap to clone (the pool is
/// shared). The SQL functions of the submodules take it, or a transaction begun on it.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    engine: Engine,
}

impl Db {
    /// The connection pool, to run a statement on or to begin a transaction with.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which engine the database runs on.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Closes every connection; waits for those in use to be given back.
    pub async fn close(&self) {
        self.pool.close().await
    }
}

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A statement run on the database itself (`query.execute(&db)`) takes a connection from the
/// pool for that one statement, as it would on the pool.
impl<'d> sqlx::Executor<'d> for &'d Db {
    type Database = sqlx::Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<sqlx::Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'd: 'e,
        E: 'q + sqlx::Execute<'q, sqlx::Any>,
    {
        self.pool.fetch_many(query)
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'd: 'e,
        E: 'q + sqlx::Execute<'q, sqlx::Any>,
    {
        self.pool.fetch_optional(query)
    }

    fn prepare_with<'e>(
        self,
        sql: sqlx::SqlStr,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement, sqlx::Error>>
    where
        'd: 'e,
    {
        self.pool.prepare_with(sql, parameters)
    }

    fn describe<'e>(
        self,
        sql: sqlx::SqlStr,
    ) -> BoxFuture<'e, Result<sqlx::Describe<sqlx::Any>, sqlx::Error>>
    where
        'd: 'e,
    {
        self.pool.describe(sql)
    }
}

/// Which engine a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// A file (or memory) database through SQLite.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl Engine {
    /// The engine named by a `DATABASE_URL`.
    pub fn of_url(url: &str) -> Engine {
        if url.starts_with("sqlite:") {
            Engine::Sqlite
        } else {
            Engine::Postgres
        }
    }
}

/// Opens a pool on `url`. SQLite connections get WAL, a busy timeout and foreign keys.
pub async fn connect(url: &SecretString) -> Result<Db, sqlx::Error> {
    install_default_drivers();
    let url = url.expose_secret();
    let engine = Engine::of_url(url);
    let sqlite = engine == Engine::Sqlite;
    let options = AnyPoolOptions::new()
        // SQLite: one connection. It has one writer anyway, and every extra connection costs
        // lock hand-offs and re-reads of the pages another connection changed (measured in
        // BENCHMARKS.md: about a third less CPU per sign-in than with four).
        .max_connections(if sqlite { 1 } else { 10 })
        // A local file cannot drop the connection the way a server can, so the ping before
        // every use (a round trip to sqlx's worker thread) buys nothing there.
        .test_before_acquire(!sqlite)
        .acquire_timeout(Duration::from_secs(5))
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if sqlite {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
                    )
                    .await?;
                }
                Ok(())
            })
        });
    Ok(Db {
        pool: options.connect(url).await?,
        engine,
    })
}

/// Applies the migrations that have not run yet.
pub async fn migrate(db: &Db) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(db.pool()).await
}

/// Whether `e` means the database cannot be reached or used right now (a server that is down
/// or restarting, connections that were cut, a file another process holds locked), as opposed
/// to a fault in a query. Such failures are shown as "try again in a minute" (503), and the
/// pool recovers by itself once the database is back.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => {
            let code = d.code().unwrap_or_default();
            // Postgres: connection exceptions (08…), shutting down or starting up (57P0x),
            // too many connections (53300), a database that does not exist (3D000) or does
            // not accept connections now (55000, e.g. ALLOW_CONNECTIONS false during
            // maintenance). SQLite: busy or locked past the busy timeout (5, 6), I/O errors
            // (10), cannot open (14), a file that is no database (26); the extended codes
            // carry the primary code in their low byte.
            let sqlite_primary = code.parse::<i32>().ok().map(|c| c & 0xff);
            code.starts_with("08")
                || code.starts_with("57P0")
                || matches!(code.as_ref(), "53300" | "3D000" | "55000")
                || matches!(sqlite_primary, Some(5 | 6 | 10 | 14 | 26))
        }
        _ => false,
    }
}

/// Writes a consistent copy of a SQLite database to a new file at `path` (`VACUUM INTO`): it
/// reads in one transaction, so the site may go on writing meanwhile.
pub async fn backup_sqlite(db: &Db, path: &str) -> Result<(), sqlx::Error> {
    sqlx::query("VACUUM INTO $1")
        .bind(path)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Checks a SQLite copy of the database, opened read-only: SQLite's integrity check passes,
/// and the member table can be read. Returns the number of members.
pub async fn check_sqlite_copy(path: &str) -> Result<i64, sqlx::Error> {
    use sqlx::Connection;
    install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&format!("sqlite://{path}?mode=ro")).await?;
    let verdict: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await?;
    if verdict != "ok" {
        return Err(sqlx::Error::Protocol(format!("integrity check: {verdict}")));
    }
    let members = sqlx::query_scalar("SELECT COUNT(*) FROM members")
        .fetch_one(&mut conn)
        .await;
    let _ = conn.close().await;
    members
}

/// Whether the database answers, within two seconds.
pub async fn ping(db: &Db) -> Result<(), sqlx::Error> {
    let answer = tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query("SELECT 1").execute(db.pool()),
    )
    .await;
    match answer {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(sqlx::Error::PoolTimedOut),
    }
}

/// The current time as unix seconds, the unit of every time column.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Begins a transaction that will write. On SQLite it takes the write lock at once
/// (`BEGIN IMMEDIATE`): a transaction that reads first and writes later would otherwise fail
/// with "database is locked" whenever another writer committed in between, and the busy
/// timeout cannot help with that upgrade. Postgres needs nothing special.
pub async fn begin_write(db: &Db) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
    match db.engine {
        Engine::Sqlite => db.pool.begin_with("BEGIN IMMEDIATE").await,
        Engine::Postgres => db.pool.begin().await,
    }
}
