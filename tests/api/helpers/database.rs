//! The database a test runs on: a temporary SQLite file, or a Postgres database of its own.

use std::path::PathBuf;

use sqlx::{Connection, Executor, PgConnection};

/// A database that exists for one test: a temporary SQLite file, or a new Postgres database
/// when `TEST_DATABASE_URL` is set. Removed when dropped.
pub struct TestDb {
    /// The URL the app is given.
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(PathBuf),
    Postgres {
        admin_url: String,
        name: String,
    },
    /// Another handle owns the database.
    None,
}

impl TestDb {
    /// Creates the database.
    pub async fn new() -> TestDb {
        let id = uuid::Uuid::new_v4().simple().to_string();
        match std::env::var("TEST_DATABASE_URL") {
            Ok(admin_url) if !admin_url.is_empty() => {
                let name = format!("clubhouse_test_{id}");
                let mut conn = PgConnection::connect(&admin_url)
                    .await
                    .expect("connect to TEST_DATABASE_URL");
                conn.execute(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
                    .await
                    .expect("create test database");
                let mut url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
                url.set_path(&name);
                TestDb {
                    url: url.to_string(),
                    cleanup: Cleanup::Postgres { admin_url, name },
                }
            }
            _ => {
                let path = std::env::temp_dir().join(format!("clubhouse-test-{id}.db"));
                TestDb {
                    url: format!("sqlite://{}?mode=rwc", path.display()),
                    cleanup: Cleanup::Sqlite(path),
                }
            }
        }
    }
}

impl TestDb {
    /// A temporary SQLite database, whatever `TEST_DATABASE_URL` says.
    pub fn sqlite() -> TestDb {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let path = std::env::temp_dir().join(format!("clubhouse-test-{id}.db"));
        TestDb {
            url: format!("sqlite://{}?mode=rwc", path.display()),
            cleanup: Cleanup::Sqlite(path),
        }
    }

    /// A handle on the database at `url`, which it never removes.
    pub fn sqlite_at(url: &str) -> TestDb {
        TestDb {
            url: url.to_owned(),
            cleanup: Cleanup::None,
        }
    }

    /// Another handle on the same database, which leaves removing it to this one.
    pub fn shared(&self) -> TestDb {
        TestDb {
            url: self.url.clone(),
            cleanup: Cleanup::None,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
                }
            }
            Cleanup::None => {}
            Cleanup::Postgres { admin_url, name } => {
                // Drop runs inside the test's runtime, which cannot be blocked on: use a
                // thread with a runtime of its own.
                let (admin_url, name) = (admin_url.clone(), name.clone());
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime");
                    rt.block_on(async {
                        if let Ok(mut conn) = PgConnection::connect(&admin_url).await {
                            let _ = conn
                                .execute(sqlx::AssertSqlSafe(format!(
                                    r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
                                )))
                                .await;
                        }
                    });
                })
                .join();
            }
        }
    }
}
