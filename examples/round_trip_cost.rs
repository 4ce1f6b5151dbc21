//! What one database round trip costs this process through sqlx, without HTTP: the floor
//! under every request that reads or writes.
//!
//! ```text
//! cargo build --release --example round_trip_cost
//! target/release/examples/round_trip_cost [--statements 40000] [--concurrency 32] [--database sqlite|postgres://…]
//! ```
//!
//! On a fresh table of 1000 rows it runs the same statement (a read by primary key, then an
//! update by primary key) `--statements` times from `--concurrency` tasks on one
//! single-threaded runtime, as one HTTP worker runs its requests, three ways:
//!
//! - **pool**: each statement on the pool, as the server runs its statements: the pool hands
//!   the connection out, the statement runs, and the pool tests the connection (a ping) as it
//!   takes it back;
//! - **held**: each statement on one connection taken from the pool once and held behind an
//!   async lock, so no hand-out and no ping;
//! - **batch of 2**: two statements sent as one text on the held connection (SQLite only), the
//!   cost of the second statement in a batch.
//!
//! It prints CPU microseconds per statement (user + system, this process's threads only: on
//! Postgres the database server's own CPU is not in it), statements per second and context
//! switches per statement.

#[path = "common/proc.rs"]
mod proc;

use std::time::Instant;

use proc::{context_switches, cpu_seconds};

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, Executor};

#[derive(Clone, Copy)]
enum Way {
    Pool,
    Held,
    Batch,
}

#[derive(Clone, Copy)]
enum Statement {
    Read,
    Update,
}

struct Args {
    statements: usize,
    concurrency: usize,
    database: String,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        statements: 40_000,
        concurrency: 32,
        database: "sqlite".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--statements" => args.statements = value.parse().map_err(|e| format!("{e}"))?,
            "--concurrency" => args.concurrency = value.parse().map_err(|e| format!("{e}"))?,
            "--database" => args.database = value,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(args)
}

fn sql(statement: Statement, way: Way) -> &'static str {
    match (statement, way) {
        (Statement::Read, Way::Batch) => {
            "SELECT v FROM cost WHERE id = $1; SELECT v FROM cost WHERE id = $1"
        }
        (Statement::Read, _) => "SELECT v FROM cost WHERE id = $1",
        (Statement::Update, Way::Batch) => {
            "UPDATE cost SET n = n + 1 WHERE id = $1; UPDATE cost SET n = n + 1 WHERE id = $1"
        }
        (Statement::Update, _) => "UPDATE cost SET n = n + 1 WHERE id = $1",
    }
}

async fn run(
    pool: &sqlx::AnyPool,
    args: &Args,
    statement: Statement,
    way: Way,
) -> Result<(), sqlx::Error> {
    // The held connection, taken from the pool only for the ways that hold it (SQLite's pool
    // has one connection).
    let held = match way {
        Way::Pool => None,
        Way::Held | Way::Batch => Some(std::rc::Rc::new(tokio::sync::Mutex::new(
            pool.acquire().await?,
        ))),
    };
    let per_task = args.statements / args.concurrency;
    let (cpu0, cs0, t0) = (
        cpu_seconds("self"),
        context_switches("self"),
        Instant::now(),
    );
    let local = tokio::task::LocalSet::new();
    for task in 0..args.concurrency {
        let pool = pool.clone();
        let held = held.clone();
        local.spawn_local(async move {
            for i in 0..per_task {
                let id = format!("row-{}", (task * per_task + i) % 1000);
                let query = sqlx::query(sql(statement, way)).bind(id);
                let done = match &held {
                    None => query.fetch_all(&pool).await,
                    Some(held) => {
                        let mut conn = held.lock().await;
                        let conn: &mut AnyConnection = &mut conn;
                        query.fetch_all(conn).await
                    }
                };
                if let Err(e) = done {
                    eprintln!("statement failed: {e}");
                    std::process::exit(1);
                }
            }
        });
    }
    local.await;
    drop(held);
    let (cpu, cs, wall) = (
        cpu_seconds("self") - cpu0,
        context_switches("self") - cs0,
        t0.elapsed().as_secs_f64(),
    );
    let n = (per_task * args.concurrency) as f64;
    let (name, statements) = match way {
        Way::Pool => ("pool", n),
        Way::Held => ("held", n),
        Way::Batch => ("batch of 2", 2.0 * n),
    };
    let what = match statement {
        Statement::Read => "read",
        Statement::Update => "update",
    };
    println!(
        "{what:<6} {name:<10} {:>7.1} µs CPU per statement, {:>6.0} statements/s, {:>4.1} context switches per statement",
        cpu * 1e6 / statements,
        statements / wall,
        cs as f64 / statements
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    sqlx::any::install_default_drivers();
    let dir = std::env::temp_dir().join(format!("round-trip-cost-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let sqlite = args.database == "sqlite";
    let url = if sqlite {
        format!("sqlite://{}?mode=rwc", dir.join("cost.db").display())
    } else {
        args.database.clone()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // As the server opens them: one SQLite connection, WAL, no test before a hand-out.
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 1 } else { 10 })
            .test_before_acquire(!sqlite)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        pool.execute("DROP TABLE IF EXISTS cost").await?;
        pool.execute("CREATE TABLE cost (id TEXT PRIMARY KEY, v TEXT NOT NULL, n BIGINT NOT NULL)")
            .await?;
        for i in 0..1000 {
            sqlx::query("INSERT INTO cost (id, v, n) VALUES ($1, $2, 0)")
                .bind(format!("row-{i}"))
                .bind("x".repeat(200))
                .execute(&pool)
                .await?;
        }
        let ways: &[Way] = if sqlite {
            &[Way::Pool, Way::Held, Way::Batch]
        } else {
            &[Way::Pool, Way::Held]
        };
        for statement in [Statement::Read, Statement::Update] {
            for way in ways {
                run(&pool, &args, statement, *way).await?;
            }
        }
        pool.execute("DROP TABLE cost").await?;
        pool.close().await;
        Ok::<(), sqlx::Error>(())
    })?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
