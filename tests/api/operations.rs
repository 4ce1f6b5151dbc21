//! Running the site: readiness, metrics, and riding out a database that goes away.

use actix_web::http::StatusCode;
use sqlx::{Connection, Executor};

use crate::helpers::{Page, TestApp, free_port, spawn_app, spawn_app_with};
use crate::instances::metric;

#[actix_web::test]
async fn metrics_count_sign_ins_refusals_broker_fetches_and_requests() {
    let app = spawn_app().await;
    let browser = app.signed_in_browser("mo@example.com").await;
    // A replayed token is refused: unknown nonce.
    let auth = app.start_login(&browser, "mo@example.com", None).await;
    let token = app.token_for(&auth);
    app.post_token(&browser, &token)
        .await
        .assert_redirect_to("/members");
    let replay = app.post_token(&app.browser(), &token).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);

    let page = app.browser().get("/metrics").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        page.headers
    );
    let value = |line: &str| {
        page.body
            .lines()
            .find_map(|l| l.strip_prefix(line)?.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {line:?} in\n{}", page.body))
    };
    assert_eq!(value("clubhouse_signins_started_total "), 2);
    assert_eq!(value("clubhouse_signins_completed_total "), 2);
    assert_eq!(
        value("clubhouse_signins_refused_total{reason=\"unknown_nonce\"} "),
        1
    );
    assert_eq!(
        value("clubhouse_broker_fetches_total{document=\"discovery\"} "),
        1
    );
    assert_eq!(
        value("clubhouse_broker_fetches_total{document=\"keys\"} "),
        1
    );
    // Every request so far is in the histogram: the front page for the form token, two
    // logins, three verifies, the members page... at least eight.
    assert!(value("clubhouse_http_request_duration_seconds_count ") >= 8);
    assert!(value("clubhouse_http_request_duration_seconds_bucket{le=\"+Inf\"} ") >= 8);
}

#[actix_web::test]
async fn metrics_can_require_a_bearer_token() {
    let app = spawn_app_with(&[("METRICS_TOKEN", "s3cret-metrics")]).await;
    let client = awc::Client::default();
    let url = format!("{}/metrics", app.address);
    let without = client.get(&url).send().await.unwrap();
    assert_eq!(without.status(), StatusCode::UNAUTHORIZED);
    let wrong = client
        .get(&url)
        .insert_header(("authorization", "Bearer guess"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let mut right = client
        .get(&url)
        .insert_header(("authorization", "Bearer s3cret-metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), StatusCode::OK);
    let body = right.body().await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("clubhouse_signins_started_total"));
}

#[actix_web::test]
async fn readyz_needs_the_broker_and_healthz_does_not() {
    let app = spawn_app().await;
    let ready = app.browser().get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    assert_eq!(ready.body, "ready\n");

    // A broker that is not there, and nothing cached yet.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let app = spawn_app_with(&[("BROKER_URL", &nowhere), ("BROKER_TIMEOUT", "1s")]).await;
    let page = app.browser().get("/readyz").await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.body.contains("broker"), "{}", page.body);
    assert!(!page.body.contains("database"), "{}", page.body);
    assert_eq!(app.browser().get("/healthz").await.status, StatusCode::OK);
    // Starting a sign-in there says so in a page, at once.
    let login = app
        .browser()
        .submit("/login", &[("email", "nobody@example.com")])
        .await;
    assert_eq!(login.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(login.body.contains("The sign-in service is not answering"));

    // A broker that accepts connections and never answers: the check still answers in time.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let app = spawn_app_with(&[("BROKER_URL", &url), ("BROKER_TIMEOUT", "10s")]).await;
    let started = std::time::Instant::now();
    let page = app.browser().get("/readyz").await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    drop(silent);
}

/// Takes the app's database away until the guard is given back to [`end_outage`]. On
/// Postgres the database refuses connections and its current ones are cut: nothing works.
/// On SQLite another process holds the write lock (a long maintenance job, say): the file
/// cannot be taken from under a connection that has it open, so reads go on and writes wait.
enum Outage {
    Sqlite(sqlx::SqliteConnection),
    Postgres {
        admin: sqlx::PgConnection,
        name: String,
    },
}

async fn start_outage(app: &TestApp) -> Outage {
    if app.db.url.starts_with("sqlite:") {
        let mut lock = sqlx::SqliteConnection::connect(&app.db.url).await.unwrap();
        lock.execute("BEGIN IMMEDIATE").await.unwrap();
        lock.execute("UPDATE sessions SET state = state")
            .await
            .unwrap();
        Outage::Sqlite(lock)
    } else {
        let admin_url = std::env::var("TEST_DATABASE_URL").unwrap();
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        let name = url::Url::parse(&app.db.url).unwrap().path()[1..].to_owned();
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                r#"ALTER DATABASE "{name}" ALLOW_CONNECTIONS false"#
            )))
            .await
            .unwrap();
        cut_connections(&mut admin, &name).await;
        Outage::Postgres { admin, name }
    }
}

/// Ends every connection to the Postgres database `name` (but the admin's own); returns how
/// many there were.
async fn cut_connections(admin: &mut sqlx::PgConnection, name: &str) -> usize {
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(name)
    .fetch_all(admin)
    .await
    .unwrap();
    cut.len()
}

async fn end_outage(outage: Outage) {
    match outage {
        Outage::Sqlite(mut lock) => {
            lock.execute("ROLLBACK").await.unwrap();
            lock.close().await.unwrap();
        }
        Outage::Postgres { mut admin, name } => {
            admin
                .execute(sqlx::AssertSqlSafe(format!(
                    r#"ALTER DATABASE "{name}" ALLOW_CONNECTIONS true"#
                )))
                .await
                .unwrap();
        }
    }
}

fn assert_unavailable_page(page: &Page, what: &str) {
    assert_eq!(
        page.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{what}: {}",
        page.body
    );
    assert!(
        page.body.contains("The site is not answering right now"),
        "{what}: {}",
        page.body
    );
}

#[actix_web::test]
async fn while_the_database_is_away_pages_answer_503_and_the_site_recovers_with_its_sessions() {
    let app = spawn_app().await;
    let member = app.signed_in_browser("dee@example.com").await;
    let (stranger, prober, checker) = (app.browser(), app.browser(), app.browser());

    let token = stranger.form_token().await;
    let fields = [("email", "new@example.com"), ("csrf_token", token.as_str())];
    let outage = start_outage(&app).await;
    let started = std::time::Instant::now();
    let postgres = matches!(outage, Outage::Postgres { .. });
    let (members_page, sign_in, ready, alive) = tokio::join!(
        member.get("/members"),
        stranger.post_form("/login", &fields),
        prober.get("/readyz"),
        checker.get("/healthz"),
    );
    // Starting a sign-in writes: it waits for the database, then says to try again.
    assert_unavailable_page(&sign_in, "starting a sign-in");
    if postgres {
        // Nothing can be read either: the member's page and readiness say so.
        assert_unavailable_page(&members_page, "a members page");
        assert_eq!(
            ready.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            ready.body
        );
        assert!(ready.body.contains("database"), "{}", ready.body);
        // A visitor's front page reads the database only to know whether the site has an
        // admin yet, and that answer is kept 5 s: within that time the page still shows its
        // form (and starting a sign-in then says to try again), otherwise it says so itself.
        let front = stranger.get("/").await;
        if front.status == StatusCode::OK {
            assert!(front.body.contains("csrf_token"), "{}", front.body);
        } else {
            assert_unavailable_page(&front, "the front page");
        }
    } else {
        // SQLite can still read while another process holds the write lock, but the site's
        // one connection is busy with the write ahead of it for up to 5 s (the busy timeout),
        // as long as a read waits for a connection: so a read either succeeds or gets the
        // same friendly 503, never an error page or a sign-in redirect. The same goes for
        // readiness (2 s).
        if members_page.status != StatusCode::OK {
            assert_unavailable_page(&members_page, "a members page");
        }
        assert!(
            [StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE].contains(&ready.status),
            "{}",
            ready.status
        );
    }
    assert_eq!(alive.status, StatusCode::OK, "the process itself is fine");
    // Bounded: the pool waits at most 5 s for a connection, SQLite as long for its lock.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
    // The member still holds their session cookie.
    assert!(member.cookie("clubhouse_session").is_some());

    end_outage(outage).await;
    // Back by itself, without a restart, and the session was not lost.
    let started = std::time::Instant::now();
    loop {
        let page = member.get("/members").await;
        if page.status == StatusCode::OK {
            assert!(page.body.contains("dee@example.com"));
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(15),
            "not recovered: {} {}",
            page.status,
            page.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(app.browser().get("/readyz").await.status, StatusCode::OK);
    // And sign-ins work again.
    app.signed_in_browser("eli@example.com").await;
}

#[actix_web::test]
async fn cut_database_connections_are_replaced_without_an_error() {
    let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!("cut_database_connections: a Postgres case; runs with TEST_DATABASE_URL");
        return;
    };
    let app = spawn_app().await;
    let member = app.signed_in_browser("fay@example.com").await;
    {
        let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
        let name = url::Url::parse(&app.db.url).unwrap().path()[1..].to_owned();
        assert!(
            cut_connections(&mut admin, &name).await > 0,
            "the app had connections to cut"
        );
    }
    // The next requests find their connections gone and get new ones.
    for _ in 0..3 {
        member.assert_signed_in_as("fay@example.com").await;
    }
    assert_eq!(metric(&app, "clubhouse_signins_completed_total ").await, 1);
}
