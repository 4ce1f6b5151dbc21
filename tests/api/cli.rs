//! The command line, run as a user would, against a temporary database.

use std::path::Path;
use std::process::{Command, Output};

use crate::helpers::TestDb;

fn clubhouse(db: &TestDb, dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clubhouse"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run clubhouse")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("clubhouse-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[actix_web::test]
async fn a_site_owner_manages_members_from_the_command_line() {
    let db = TestDb::new().await;
    let dir = temp_dir();

    let out = clubhouse(&db, &dir, &["migrate"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("migrations applied"));

    let out = clubhouse(&db, &dir, &["admin", "add", "Boss@Example.COM"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("boss@example.com is now an active admin"));

    std::fs::write(
        dir.join("new.csv"),
        "status,email,display_name,notes\nactive,ann@example.com,Ann,x\n,bob@example.com,,\n",
    )
    .unwrap();
    let out = clubhouse(&db, &dir, &["members", "import", "new.csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("2 created, 0 updated"),
        "{}",
        stdout(&out)
    );

    let out = clubhouse(&db, &dir, &["members", "list"]);
    let list = stdout(&out);
    assert!(
        list.contains("boss@example.com") && list.contains("admin"),
        "{list}"
    );
    assert!(list.contains("ann@example.com") && list.contains("bob@example.com"));
    assert!(list.contains("3 members"));

    let out = clubhouse(&db, &dir, &["members", "export"]);
    let csv = stdout(&out);
    assert!(
        csv.starts_with("email,display_name,role,status,created_at,last_login_at\n"),
        "{csv}"
    );
    assert!(csv.contains("ann@example.com,Ann,member,active,"));
    assert!(csv.contains("bob@example.com,bob,member,invited,"));

    // The export imports back: nothing new, nothing lost.
    std::fs::write(dir.join("export.csv"), &csv).unwrap();
    let out = clubhouse(&db, &dir, &["members", "import", "export.csv"]);
    assert!(
        stdout(&out).contains("0 created, 3 updated"),
        "{}",
        stdout(&out)
    );
    assert_eq!(stdout(&clubhouse(&db, &dir, &["members", "export"])), csv);
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_web::test]
async fn an_import_with_a_bad_row_writes_nothing_and_names_the_lines() {
    let db = TestDb::new().await;
    let dir = temp_dir();
    std::fs::write(
        dir.join("bad.csv"),
        "email,role\ngood@example.com,member\nnot-an-address,member\nalso@example.com,emperor\n",
    )
    .unwrap();
    let out = clubhouse(&db, &dir, &["members", "import", "bad.csv"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("line 3: not-an-address"), "{err}");
    assert!(err.contains("line 4: also@example.com"), "{err}");
    assert!(err.contains("nothing was written"));
    let list = stdout(&clubhouse(&db, &dir, &["members", "list"]));
    assert!(list.contains("0 members"), "{list}");

    let out = clubhouse(&db, &dir, &["members", "import", "missing.csv"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("could not read missing.csv"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_web::test]
async fn command_line_errors_are_clear_and_exit_non_zero() {
    let db = TestDb::new().await;
    let dir = temp_dir();
    let out = clubhouse(&db, &dir, &["admin", "add", "not-an-address"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not-an-address"), "{}", stderr(&out));

    let out = Command::new(env!("CARGO_BIN_EXE_clubhouse"))
        .args(["members", "list"])
        .current_dir(&dir)
        .env_clear()
        .env("DATABASE_URL", "mysql://nope")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("DATABASE_URL"), "{}", stderr(&out));

    let out = clubhouse(&db, &dir, &["members", "frobnicate"]);
    assert!(!out.status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_web::test]
async fn an_admin_added_on_the_command_line_runs_an_invite_only_site_in_the_browser() {
    let db = TestDb::new().await;
    let dir = temp_dir();
    let out = clubhouse(&db, &dir, &["admin", "add", "owner@example.com"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let broker = crate::broker::TestBroker::start("127.0.0.1");
    let app = crate::helpers::spawn_app_on(db, broker, &[("SIGNUP_MODE", "invite")], &[]).await;
    let owner = app.signed_in_browser("owner@example.com").await;
    assert_eq!(
        owner.get("/admin").await.status,
        actix_web::http::StatusCode::OK
    );
    owner
        .submit("/admin/invite", &[("addresses", "guest@example.com")])
        .await;
    app.signed_in_browser("guest@example.com").await;
    let stranger = app.sign_in(&app.browser(), "stranger@example.com").await;
    assert_eq!(stranger.status, actix_web::http::StatusCode::FORBIDDEN);
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_web::test]
async fn copy_to_moves_a_site_from_sqlite_to_postgres_and_back_with_its_sessions() {
    if std::env::var("TEST_DATABASE_URL").is_err() {
        eprintln!("copy_to: needs Postgres; runs with TEST_DATABASE_URL");
        return;
    }
    // A site on SQLite, with an admin, a member signed in, and an audit log.
    let sqlite = crate::helpers::TestDb::sqlite();
    let broker = crate::broker::TestBroker::start("127.0.0.1");
    let origin = broker.origin.clone();
    let old = crate::helpers::spawn_app_on(
        sqlite.shared(),
        broker.clone(),
        &[("BROKER_URL", &origin)],
        &[("ADMIN_EMAILS", "boss@example.com")],
    )
    .await;
    old.signed_in_browser("boss@example.com").await;
    let member = old.signed_in_browser("gus@example.com").await;
    let dir = temp_dir();

    // Copied into a new Postgres database...
    let postgres = TestDb::new().await;
    let out = clubhouse(&sqlite, &dir, &["copy-to", &postgres.url]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("members: 2 rows"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("sessions: 2 rows"),
        "{}",
        stdout(&out)
    );

    // ...a server on it takes the member's cookie: the session key came along.
    let new = crate::helpers::spawn_app_on(
        postgres.shared(),
        broker,
        &[("BROKER_URL", &origin)],
        &[("PUBLIC_URL", &old.public_url)],
    )
    .await;
    member.route_to(&new.address);
    member.assert_signed_in_as("gus@example.com").await;

    // A second copy into the same database is refused and changes nothing.
    let again = clubhouse(&sqlite, &dir, &["copy-to", &postgres.url]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("not empty"), "{}", stderr(&again));

    // And back into a new SQLite file: the same member list and audit log all round.
    let back = crate::helpers::TestDb::sqlite();
    let out = clubhouse(&postgres, &dir, &["copy-to", &back.url]);
    assert!(out.status.success(), "{}", stderr(&out));
    let export = |db: &TestDb| stdout(&clubhouse(db, &dir, &["members", "export"]));
    assert_eq!(export(&sqlite), export(&postgres));
    assert_eq!(export(&postgres), export(&back));
    assert!(export(&back).contains("gus@example.com"));
    let audit = |url: String| async move {
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    };
    let entries = audit(sqlite.url.clone()).await;
    assert!(entries >= 2);
    assert_eq!(audit(back.url.clone()).await, entries);
    std::fs::remove_dir_all(dir).ok();
}

#[actix_web::test]
async fn admin_add_refuses_an_address_the_broker_would_refuse_and_stores_nothing() {
    let db = TestDb::new().await;
    let dir = temp_dir();
    for bad in [
        "someone@example.com%'",
        "a@exa_mple.com",
        "\"a@b\"@example.com",
    ] {
        let out = clubhouse(&db, &dir, &["admin", "add", bad]);
        assert!(!out.status.success(), "{bad}");
        let err = stderr(&out);
        assert!(err.contains(bad), "names the address: {err}");
        assert!(
            err.contains("cannot have") || err.contains("not a domain name"),
            "says why: {err}"
        );
    }
    let out = clubhouse(&db, &dir, &["members", "list"]);
    assert!(stdout(&out).contains("0 members"), "{}", stdout(&out));
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_web::test]
async fn copy_to_names_every_table_and_column_that_the_migrations_make() {
    use std::collections::{BTreeMap, BTreeSet};
    let app = crate::helpers::spawn_app().await;
    let sql = if app.db.url.starts_with("sqlite:") {
        "SELECT m.name, p.name FROM sqlite_master AS m JOIN pragma_table_info(m.name) AS p \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> '_sqlx_migrations'"
    } else {
        "SELECT CAST(table_name AS TEXT), CAST(column_name AS TEXT) FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'"
    };
    let rows: Vec<(String, String)> = sqlx::query_as(sql).fetch_all(&app.pool).await.unwrap();
    let mut schema: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (table, column) in rows {
        schema.entry(table).or_default().insert(column);
    }
    let copied: BTreeMap<String, BTreeSet<String>> = clubhouse::db::copy::tables()
        .into_iter()
        .map(|(t, cs)| (t.to_owned(), cs.into_iter().map(str::to_owned).collect()))
        .collect();
    assert!(schema.len() >= 7, "{schema:?}");
    assert_eq!(
        schema, copied,
        "`clubhouse copy-to` (src/db/copy.rs) must copy every table and column of the schema"
    );
}
