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

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use futures_core::future::BoxFuture;
use futures_core::stream::BoxStream;
use secrecy::{ExposeSecret, SecretString};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::any::{AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo};
use sqlx::pool::PoolConnection;
use sqlx::{AnyConnection, AnyPool, Executor};

/// The database: its connection pool and which engine it runs on. Cheap to clone (the pool is
/// shared). The SQL functions of the submodules take it, or a transaction begun on it.
///
/// It counts its round trips (see [`Db::round_trips`]): every statement run on it, and the
/// `BEGIN` and `COMMIT` of every [`WriteTx`].
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    engine: Engine,
    url: Arc<SecretString>,
    round_trips: Arc<AtomicU64>,
    /// SQLite: the connection statements run on, held instead of taken from the pool for each
    /// (see [`Held`]). `None` on Postgres, and for an in-memory SQLite database.
    held: Option<Arc<Held>>,
}

/// The SQLite connection that the server's statements run on, one at a time, held here
/// rather than given back to the pool after each. sqlx's pool tests a connection (a ping, a
/// round trip to sqlx's database thread) every time one is given back: that doubled the
/// hand-offs of every statement, and cost about 40% of its CPU (`examples/round_trip_cost`,
/// in BENCHMARKS.md). SQLite has one writer, so one connection at a time loses nothing.
///
/// The connection comes from the pool when first needed. It is closed (and the next use takes
/// another) when a statement fails in a way that may have broken it, or a batch fails or is
/// dropped half-way outside a group (which could leave its transaction open); it goes back to
/// the pool when the database is closed. Write transactions ([`begin_write`]) take a second
/// connection from the pool, as do the migrations.
///
/// **Group commit.** Each commit writes every page it changed to the WAL, and a sign-in's
/// batch changes some twenty pages, most of them the same for every sign-in (the last leaves
/// of tables and indexes). So when other batches ([`atomic_batch`]) are already waiting for
/// the connection, a batch does not commit alone: it opens a *group*, one write transaction
/// that the waiting batches join, each in a savepoint of its own, and the last of them (when
/// none waits any more, or after [`GROUP_MAX`] batches) commits them all at once
/// (BENCHMARKS.md: about a quarter less CPU per sign-in under load). What each request sees
/// stays as it was:
/// - a batch answers only once the commit that holds its writes is done, and fails if that
///   commit fails;
/// - a batch that fails is undone alone (`ROLLBACK TO` its savepoint), and one dropped
///   half-way is undone by the next use of the connection, the others' writes untouched;
/// - any other statement commits an open group before it runs, so it never sees writes that
///   are not committed;
/// - while a write transaction of this process waits for the write lock, no group is opened
///   or extended, so it gets the lock between two batches as it would without groups.
///
/// A batch that waits for its group's commit longer than [`GROUP_WAIT`] (the batch that was
/// to follow it was dropped before it had the connection) takes the connection and commits
/// the group itself. Alone, a batch runs as before: one round trip, its own transaction.
#[derive(Debug, Default)]
pub struct Held {
    slot: tokio::sync::Mutex<Slot>,
    /// Batches waiting for the connection.
    batches_waiting: AtomicUsize,
    /// Write transactions of this process waiting for the write lock ([`begin_write`]).
    writers_waiting: AtomicUsize,
    /// The number of the next group.
    next_group: AtomicU64,
}

/// The most batches one group commits.
pub const GROUP_MAX: usize = 32;

/// How long a batch waits for its group's commit before it commits the group itself.
pub const GROUP_WAIT: Duration = Duration::from_millis(20);

/// What [`Held`] guards: the connection, and the group open on it.
#[derive(Debug, Default)]
struct Slot {
    conn: Option<PoolConnection<sqlx::Any>>,
    group: Option<Group>,
    /// A batch of the open group was dropped while it ran: its savepoint may still be open.
    interrupted: bool,
}

/// A write transaction that several batches share.
#[derive(Debug)]
struct Group {
    /// Which group this is, so that a batch that commits late commits its own.
    number: u64,
    /// The batches it holds.
    batches: usize,
    /// `Some(true)` once committed, `Some(false)` once rolled back; dropped without a value
    /// (its connection was closed, which rolls it back) it is rolled back too.
    outcome: tokio::sync::watch::Sender<Option<bool>>,
}

/// The held connection, locked for one use.
struct HeldUse<'a> {
    slot: tokio::sync::MutexGuard<'a, Slot>,
    /// Whether the connection goes back to the slot when this use ends: a use that stops
    /// before it is done (an error that may have broken the connection, a batch dropped
    /// half-way) closes it instead, and the next use takes another from the pool.
    keep: bool,
}

/// Counts a waiter for as long as it waits (a waiter dropped while it waits is no longer one).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The error of a batch whose group could not be committed: nothing of it was stored.
fn group_rolled_back() -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::other(
        "the transaction this batch was committed with was rolled back",
    ))
}

/// Whether `e` is SQLite's answer to a savepoint that is not there.
fn no_such_savepoint(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.message().contains("no such savepoint"))
}

impl Held {
    /// Locks the connection, taking one from the pool if there is none.
    async fn lock_slot<'a>(&'a self, pool: &AnyPool) -> Result<HeldUse<'a>, sqlx::Error> {
        let mut slot = self.slot.lock().await;
        if slot.conn.is_none() {
            // A connection closed took its group with it (`HeldUse`'s drop).
            slot.conn = Some(pool.acquire().await?);
        }
        Ok(HeldUse { slot, keep: false })
    }

    /// Locks the connection for a statement that is not a batch: an open group is committed
    /// first, so that the statement sees only what is committed.
    async fn lock<'a>(&'a self, db: &Db) -> Result<HeldUse<'a>, sqlx::Error> {
        let mut using = self.lock_slot(&db.pool).await?;
        using.recover().await?;
        using.commit_group(db).await?;
        Ok(using)
    }

    /// Commits what is open and gives the connection back to the pool (before the pool
    /// closes).
    async fn release(&self, db: &Db) {
        if let Ok(mut using) = self.lock(db).await {
            using.keep = true;
            using.slot.conn.take();
        }
    }

    /// Runs a batch on the held connection: alone, or in a group (see [`Held`]).
    async fn batch<'q>(
        &self,
        db: &Db,
        query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<Vec<AnyRow>, sqlx::Error> {
        let waiting = Waiting::new(&self.batches_waiting);
        let mut using = self.lock_slot(&db.pool).await?;
        drop(waiting);
        using.recover().await?;
        let writer_waits = self.writers_waiting.load(Ordering::SeqCst) > 0;
        if writer_waits {
            using.commit_group(db).await?;
        }
        let others = self.batches_waiting.load(Ordering::SeqCst) > 0;
        if using.slot.group.is_none() && (!others || writer_waits) {
            // Alone: the batch is its own transaction (its SAVEPOINT begins it and its RELEASE
            // commits it). Stopped half-way, it may have left it open: the connection is then
            // closed, which rolls it back.
            let rows = query.fetch_all(using.conn()?).await;
            using.keep = rows.is_ok();
            return rows;
        }
        if using.slot.group.is_none() {
            db.count_round_trip();
            using.conn()?.execute("BEGIN IMMEDIATE").await?;
            using.slot.group = Some(Group {
                number: self.next_group.fetch_add(1, Ordering::Relaxed),
                batches: 0,
                outcome: tokio::sync::watch::Sender::new(None),
            });
        }
        // Dropped while it runs, the use leaves the connection (and the group) to the next
        // use, which undoes what the batch did.
        using.keep = true;
        using.slot.interrupted = true;
        let rows = match query.fetch_all(using.conn()?).await {
            Ok(rows) => {
                using.slot.interrupted = false;
                Ok(rows)
            }
            Err(e) => {
                // Undo this batch alone; dropped meanwhile, the next use undoes it. If it
                // cannot be undone, the connection closes with the group (not kept).
                if using.recover().await.is_err() {
                    return Err(e);
                }
                // Undone: the group goes on without it.
                Err(e)
            }
        };
        let Some(group) = using.slot.group.as_mut() else {
            return Err(group_rolled_back());
        };
        if rows.is_ok() {
            group.batches += 1;
        }
        let full = group.batches >= GROUP_MAX;
        if full || writer_waits || self.batches_waiting.load(Ordering::SeqCst) == 0 {
            using.commit_group(db).await?;
            return rows;
        }
        // A failed batch wrote nothing: it need not wait for the commit.
        let rows = rows?;
        let (number, mut outcome) = (group.number, group.outcome.subscribe());
        drop(using);
        loop {
            match tokio::time::timeout(GROUP_WAIT, outcome.wait_for(Option::is_some)).await {
                Ok(Ok(committed)) if *committed == Some(true) => return Ok(rows),
                Ok(_) => return Err(group_rolled_back()),
                Err(_) => {
                    let mut using = self.lock_slot(&db.pool).await?;
                    if using
                        .slot
                        .group
                        .as_ref()
                        .is_some_and(|g| g.number == number)
                    {
                        using.recover().await?;
                        using.commit_group(db).await?;
                        using.keep = true;
                        return Ok(rows);
                    }
                    // Settled meanwhile: the next wait answers at once.
                    using.keep = true;
                }
            }
        }
    }
}

impl HeldUse<'_> {
    fn conn(&mut self) -> Result<&mut AnyConnection, sqlx::Error> {
        match self.slot.conn.as_mut() {
            Some(conn) => Ok(&mut **conn),
            None => Err(sqlx::Error::PoolClosed),
        }
    }

    /// Keeps the connection for the next use unless `result` says it may be broken: a
    /// database error (a constraint, a syntax error, busy) leaves it as it was.
    fn settle<T>(&mut self, result: &Result<T, sqlx::Error>) {
        self.keep = matches!(result, Ok(_) | Err(sqlx::Error::Database(_)));
    }

    /// Undoes what a batch of the open group left when it failed, or was dropped, while it
    /// ran: its savepoint, if it is still there (if not, the batch had not begun, or had run to
    /// its end and its writes are the group's). Dropped meanwhile, it leaves that to the next
    /// use.
    async fn recover(&mut self) -> Result<(), sqlx::Error> {
        if !self.slot.interrupted {
            return Ok(());
        }
        let undone = self
            .conn()?
            .execute("ROLLBACK TO batch; RELEASE batch")
            .await;
        self.slot.interrupted = false;
        match undone {
            Ok(_) => Ok(()),
            Err(e) if no_such_savepoint(&e) => Ok(()),
            Err(e) => {
                // The group cannot be trusted: closing the connection rolls it back.
                self.keep = false;
                Err(e)
            }
        }
    }

    /// Commits the open group, if there is one, and tells its batches.
    async fn commit_group(&mut self, db: &Db) -> Result<(), sqlx::Error> {
        let Some(group) = self.slot.group.take() else {
            return Ok(());
        };
        db.count_round_trip();
        // Dropped while the COMMIT runs, the use closes the connection: then the group is
        // either committed or rolled back by the close, and its batches are told it was not
        // committed.
        let keep = std::mem::replace(&mut self.keep, false);
        let committed = self.conn()?.execute("COMMIT").await;
        group.outcome.send_replace(Some(committed.is_ok()));
        // Failed, what is left of the transaction goes with the connection.
        self.keep = keep && committed.is_ok();
        committed.map(|_| ())
    }
}

impl Drop for HeldUse<'_> {
    fn drop(&mut self) {
        // A batch dropped while it ran, alone in its group: closing the connection undoes it
        // and leaves no transaction open with nobody to commit it.
        if self.slot.interrupted && self.slot.group.as_ref().is_some_and(|g| g.batches == 0) {
            self.keep = false;
        }
        if !self.keep {
            // Dropping the group tells its batches it was rolled back.
            self.slot.group = None;
            self.slot.interrupted = false;
            if let Some(mut conn) = self.slot.conn.take() {
                conn.close_on_drop();
            }
        }
    }
}

impl Db {
    /// The connection pool, to run a statement on or to begin a transaction with. A statement
    /// run on the pool itself is not counted in [`Db::round_trips`], and on SQLite runs on
    /// another connection than the site's; run it on the `Db`.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which engine the database runs on.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// How many round trips to the database this `Db` and every `Db` made from it
    /// ([`Db::for_worker`]) have made since start: statements (a batch of several in one
    /// [`atomic_batch`] is one), and each transaction's `BEGIN` and `COMMIT`. Statements inside
    /// a transaction are not counted one by one; a request that needs a transaction pays two
    /// round trips for it before its first statement. The round-trip budget test reads it.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    fn count_round_trip(&self) {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
    }

    /// The database for one HTTP worker. Each actix-web worker is a runtime of its own, and a
    /// Postgres connection belongs to the runtime that opened it: a worker that stops during a
    /// graceful shutdown takes the connections it opened with it. So on Postgres each worker
    /// gets a pool of its own (`max_connections` of them, opened when first needed) and never
    /// uses another worker's connections. SQLite's connection lives on sqlx's own thread, not
    /// in a runtime: every worker shares the one connection. The round trips of every worker
    /// count into the same total.
    pub fn for_worker(&self, max_connections: u32) -> Result<Db, sqlx::Error> {
        match self.engine {
            Engine::Sqlite => Ok(self.clone()),
            Engine::Postgres => Ok(Db {
                pool: pool_options(self.engine, max_connections)
                    .connect_lazy(self.url.expose_secret())?,
                engine: self.engine,
                url: self.url.clone(),
                round_trips: self.round_trips.clone(),
                held: None,
            }),
        }
    }

    /// Closes every connection; waits for those in use to be given back.
    pub async fn close(&self) {
        if let Some(held) = &self.held {
            held.release(self).await;
        }
        self.pool.close().await
    }
}

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A statement run on the database itself (`query.execute(&db)`) runs on the held SQLite
/// connection ([`Held`]), or on Postgres takes a connection from the pool for that one
/// statement, as it would on the pool.
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
        use futures_util::{StreamExt, TryStreamExt};
        self.count_round_trip();
        let Some(held) = &self.held else {
            return self.pool.fetch_many(query);
        };
        // The results are gathered while the connection is locked, then handed on.
        let all = async move {
            let mut using = held.lock(self).await?;
            let result: Result<Vec<_>, sqlx::Error> =
                using.conn()?.fetch_many(query).try_collect().await;
            using.settle(&result);
            result
        };
        Box::pin(
            futures_util::stream::once(all)
                .map(|result| match result {
                    Ok(items) => {
                        futures_util::stream::iter(items.into_iter().map(Ok)).left_stream()
                    }
                    Err(e) => futures_util::stream::iter([Err(e)]).right_stream(),
                })
                .flatten(),
        )
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'd: 'e,
        E: 'q + sqlx::Execute<'q, sqlx::Any>,
    {
        self.count_round_trip();
        let Some(held) = &self.held else {
            return self.pool.fetch_optional(query);
        };
        Box::pin(async move {
            let mut using = held.lock(self).await?;
            let result = using.conn()?.fetch_optional(query).await;
            using.settle(&result);
            result
        })
    }

    fn prepare_with<'e>(
        self,
        sql: sqlx::SqlStr,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement, sqlx::Error>>
    where
        'd: 'e,
    {
        self.count_round_trip();
        self.pool.prepare_with(sql, parameters)
    }

    fn describe<'e>(
        self,
        sql: sqlx::SqlStr,
    ) -> BoxFuture<'e, Result<sqlx::Describe<sqlx::Any>, sqlx::Error>>
    where
        'd: 'e,
    {
        self.count_round_trip();
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

/// The pool's settings for `engine`. On Postgres a connection is pinged before it is handed
/// out, so that one the server closed (a restart, a cut) is replaced before a request meets
/// it (`operations::cut_database_connections_are_replaced_without_an_error`); that ping is
/// not counted in [`Db::round_trips`]. A local SQLite file cannot drop the connection the way
/// a server can, so the ping (a round trip to sqlx's worker thread) buys nothing there.
fn pool_options(engine: Engine, max_connections: u32) -> AnyPoolOptions {
    let sqlite = engine == Engine::Sqlite;
    AnyPoolOptions::new()
        .max_connections(max_connections)
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
        })
}

/// Connections on Postgres for the whole process: the HTTP workers share them out
/// ([`Db::for_worker`]), the rest serve the background tasks and the command line.
pub const POSTGRES_CONNECTIONS: u32 = 10;

/// Opens a pool on `url`. SQLite connections get WAL, a busy timeout and foreign keys.
pub async fn connect(url: &SecretString) -> Result<Db, sqlx::Error> {
    install_default_drivers();
    let engine = Engine::of_url(url.expose_secret());
    // A database in memory is one per connection: it keeps to one connection, from the pool.
    let in_memory = engine == Engine::Sqlite && {
        let u = url.expose_secret();
        u.contains(":memory:") || u.contains("mode=memory")
    };
    // SQLite: one connection serves the site (held, see `Held`). It has one writer anyway,
    // and every extra connection in use costs lock hand-offs and re-reads of the pages another
    // connection changed (measured in BENCHMARKS.md: about a third less CPU per sign-in than
    // with four). A second one serves write transactions and the migrations.
    let max = match engine {
        Engine::Sqlite if in_memory => 1,
        Engine::Sqlite => 2,
        Engine::Postgres => POSTGRES_CONNECTIONS,
    };
    Ok(Db {
        pool: pool_options(engine, max)
            .connect(url.expose_secret())
            .await?,
        engine,
        url: Arc::new(url.clone()),
        round_trips: Arc::new(AtomicU64::new(0)),
        held: (engine == Engine::Sqlite && !in_memory).then(|| Arc::new(Held::default())),
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
    sqlx::query("VACUUM INTO $1").bind(path).execute(db).await?;
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
    let answer =
        tokio::time::timeout(Duration::from_secs(2), sqlx::query("SELECT 1").execute(db)).await;
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
pub async fn begin_write(db: &Db) -> Result<WriteTx, sqlx::Error> {
    db.count_round_trip();
    let tx = match db.engine {
        Engine::Sqlite => {
            // No group is opened or extended while it waits for the write lock (see `Held`).
            let _waiting = db.held.as_ref().map(|h| Waiting::new(&h.writers_waiting));
            db.pool.begin_with("BEGIN IMMEDIATE").await?
        }
        Engine::Postgres => db.pool.begin().await?,
    };
    Ok(WriteTx { tx, db: db.clone() })
}

/// A write transaction ([`begin_write`]): its statements run on `&mut *tx`, and it ends with
/// [`WriteTx::commit`] or, dropped or [`WriteTx::rollback`]ed, rolls back.
pub struct WriteTx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    db: Db,
}

impl WriteTx {
    /// Commits.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.db.count_round_trip();
        self.tx.commit().await
    }

    /// Rolls back.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.db.count_round_trip();
        self.tx.rollback().await
    }
}

impl Deref for WriteTx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

/// Runs several statements that must all happen or none, in one round trip, and returns the
/// rows they give. On SQLite `sql` holds them between `SAVEPOINT batch;` and `RELEASE batch;`
/// (sqlx runs a text of several statements in one call to its SQLite thread, binding `$n` to
/// the same arguments in each): alone, that is the batch's own transaction (its first
/// statement must write, so that it takes the write lock at once, as `BEGIN IMMEDIATE` would);
/// in a group ([`Held`]), a savepoint in the group's transaction, committed with it. On
/// Postgres, which takes one statement per call, `sql` is one statement whose parts are
/// data-modifying `WITH` clauses: one statement is one transaction.
///
/// Should a SQLite batch stop half-way (a statement fails, or the request is dropped while
/// it runs), its transaction would stay open on the connection and swallow the writes of
/// whoever used the connection next. Alone, the connection is then closed instead of being
/// given back, which rolls the transaction back, and the pool opens a new one; in a group,
/// the batch is rolled back to its savepoint.
pub async fn atomic_batch<'q>(
    db: &Db,
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
) -> Result<Vec<AnyRow>, sqlx::Error> {
    db.count_round_trip();
    if let Some(held) = &db.held {
        return held.batch(db, query).await;
    }
    struct CloseUnlessFinished {
        conn: sqlx::pool::PoolConnection<sqlx::Any>,
        finished: bool,
    }
    impl Drop for CloseUnlessFinished {
        fn drop(&mut self) {
            if !self.finished {
                self.conn.close_on_drop();
            }
        }
    }
    let conn = db.pool.acquire().await?;
    let mut guard = CloseUnlessFinished {
        conn,
        // A Postgres statement cannot leave a transaction open.
        finished: db.engine != Engine::Sqlite,
    };
    let rows = query.fetch_all(&mut *guard.conn).await?;
    guard.finished = true;
    Ok(rows)
}
