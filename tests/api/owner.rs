//! What a site's owner does: start from `.env.example`, make the front page and the look
//! their own, name someone to ask, remove members with care, keep listed admins, back up and
//! restore, and not lose mail when the site is killed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use actix_web::http::StatusCode;

use crate::broker::TestBroker;
use crate::helpers::{TestDb, free_port, spawn_app_with};
use crate::process::Server;
use crate::smtp::SmtpSink;

/// A folder of its own for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("clubhouse-owner-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[actix_web::test]
async fn the_binary_starts_from_a_copy_of_env_example() {
    let dir = TempDir::new();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example"),
        dir.path().join(".env"),
    )
    .unwrap();
    let port = free_port();
    // Only the port comes from the environment (tests run side by side); every other value
    // is the file's, as written.
    let mut command = Server::command(port);
    command.current_dir(dir.path());
    let server = Server::spawn(
        command,
        port,
        TestDb::sqlite(),
        TestBroker::start("127.0.0.1"),
    )
    .await;
    let page = server.browser().get("/").await;
    assert_eq!(page.status, StatusCode::OK, "{}", server.log_text());
    // Its values, spaces and all, reached the site.
    assert!(page.body.contains("Welcome to Clubhouse"), "{}", page.body);
    assert!(
        page.body
            .contains("Members sign in by email, through Portier: no passwords."),
        "{}",
        page.body
    );
    // Its DATABASE_URL made the SQLite file in the working directory.
    assert!(dir.path().join("clubhouse.db").exists());
    assert!(
        !server.log_text().contains("cannot start"),
        "{}",
        server.log_text()
    );
}

#[actix_web::test]
async fn the_front_page_logo_favicon_and_images_are_the_owners() {
    let content = TempDir::new();
    let statics = TempDir::new();
    std::fs::write(
        content.path().join("index.md"),
        "---\ntitle: The Riverside Rowing Club\n---\nWe row on **Saturdays**.\n\n![The boathouse](/static/img/boathouse.png)\n",
    )
    .unwrap();
    std::fs::create_dir_all(statics.path().join("img")).unwrap();
    let png = b"PNG-ish bytes: not really an image, but served as one";
    std::fs::write(statics.path().join("img/boathouse.png"), png).unwrap();
    std::fs::write(
        statics.path().join("logo.svg"),
        "<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
    )
    .unwrap();
    std::fs::write(
        statics.path().join("favicon.ico"),
        b"\x00\x00\x01\x00owner's icon",
    )
    .unwrap();
    std::fs::write(statics.path().join(".hidden"), b"secret").unwrap();
    let app = spawn_app_with(&[
        ("CONTENT_DIR", content.path().to_str().unwrap()),
        ("STATIC_DIR", statics.path().to_str().unwrap()),
        ("SITE_LOGO", "logo.svg"),
    ])
    .await;
    let browser = app.browser();
    let home = browser.get("/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert!(
        home.body.contains("<h1>The Riverside Rowing Club</h1>"),
        "{}",
        home.body
    );
    assert!(
        home.body.contains("We row on <strong>Saturdays</strong>."),
        "{}",
        home.body
    );
    assert!(
        home.body
            .contains(r#"<img src="/static/img/boathouse.png" alt="The boathouse""#),
        "{}",
        home.body
    );
    assert!(!home.body.contains("Welcome to Clubhouse"));
    // The sign-in form is still there, and the logo in the header.
    assert!(home.body.contains(r#"action="/login""#));
    assert!(
        home.body
            .contains(r#"<img class="logo" src="/static/logo.svg""#),
        "{}",
        home.body
    );
    // The front page is not also a page of its own.
    let member = app.signed_in_browser("rower@example.com").await;
    assert_eq!(
        member.get("/pages/index").await.status,
        StatusCode::NOT_FOUND
    );

    let image = browser.get("/static/img/boathouse.png").await;
    assert_eq!(image.status, StatusCode::OK);
    assert_eq!(image.headers.get("content-type").unwrap(), "image/png");
    assert_eq!(image.body.as_bytes(), png);
    let cache = image
        .headers
        .get("cache-control")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(cache.contains("max-age"), "{cache}");
    // Unchanged since: the browser's copy is good.
    let etag = image
        .headers
        .get("etag")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let res = awc::Client::default()
        .get(format!("{}/static/img/boathouse.png", app.address))
        .insert_header(("if-none-match", etag))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    let logo = browser.get("/static/logo.svg").await;
    assert_eq!(logo.headers.get("content-type").unwrap(), "image/svg+xml");
    // The CSP, which allows images from the site only, is on them as on every answer.
    assert!(logo.headers.get("content-security-policy").is_some());

    let favicon = browser.get("/favicon.ico").await;
    assert_eq!(favicon.status, StatusCode::OK);
    assert_eq!(favicon.body.as_bytes(), b"\x00\x00\x01\x00owner's icon");
    assert!(
        favicon
            .headers
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("icon")
    );
    // The stylesheet is still served when the folder has none.
    let css = browser.get("/static/style.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.headers
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    // Nothing outside the folder, and no hidden files.
    for path in [
        "/static/.hidden",
        "/static/../Cargo.toml",
        "/static/%2e%2e/Cargo.toml",
        "/static/img/",
        "/static/missing.png",
    ] {
        let page = browser.get(path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}: {}", page.body);
        assert!(!page.body.contains("secret"));
    }
}

#[actix_web::test]
async fn without_a_static_folder_the_built_in_stylesheet_and_favicon_serve() {
    let app = spawn_app_with(&[("STATIC_DIR", "/nonexistent/clubhouse-static")]).await;
    let browser = app.browser();
    let css = browser.get("/static/style.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.body.contains("--accent"));
    let icon = browser.get("/favicon.ico").await;
    assert_eq!(icon.status, StatusCode::OK);
    assert_eq!(icon.headers.get("content-type").unwrap(), "image/x-icon");
    let home = browser.get("/").await;
    assert!(
        home.body.contains("Welcome to Clubhouse"),
        "the built-in front page"
    );
}

#[actix_web::test]
async fn refused_and_stuck_visitors_are_told_whom_to_ask() {
    let app = spawn_app_with(&[
        ("SIGNUP_MODE", "invite"),
        ("CONTACT_EMAIL", "Secretary@Club.example.org"),
    ])
    .await;
    let refused = app.sign_in(&app.browser(), "stranger@example.com").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("You are not a member yet"));
    assert!(
        refused.body.contains(
            r#"<a href="mailto:secretary@club.example.org">secretary@club.example.org</a>"#
        ),
        "{}",
        refused.body
    );
    // Any error page, and the front page.
    let missing = app.browser().get("/no-such-page").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body.contains("secretary@club.example.org"));
    let home = app.browser().get("/").await;
    assert!(home.body.contains("secretary@club.example.org"));
    // Without the setting, nobody is named.
    let plain = spawn_app_with(&[("SIGNUP_MODE", "invite")]).await;
    let refused = plain
        .sign_in(&plain.browser(), "stranger@example.com")
        .await;
    assert!(!refused.body.contains("mailto:"), "{}", refused.body);
}

#[actix_web::test]
async fn removing_a_member_asks_first_on_a_page_that_names_them() {
    let app = spawn_app_with(&[("ADMIN_EMAILS", "boss@example.com")]).await;
    let admin = app.signed_in_browser("boss@example.com").await;
    app.signed_in_browser("leaving@example.com").await;
    let id = app.member("leaving@example.com").await.unwrap().0;
    let list = admin.get("/admin").await;
    assert!(
        list.body.contains(&format!(
            r#"<a href="/admin/members/{id}/remove">remove</a>"#
        )),
        "{}",
        list.body
    );

    // The old one-click form no longer removes: it leads to the question.
    let direct = admin
        .submit(&format!("/admin/members/{id}/remove"), &[])
        .await;
    direct.assert_redirect_to(&format!("/admin/members/{id}/remove"));
    assert!(app.member("leaving@example.com").await.is_some());
    let ask = admin.get(&format!("/admin/members/{id}/remove")).await;
    assert_eq!(ask.status, StatusCode::OK);
    assert!(ask.body.contains("Remove leaving?"), "{}", ask.body);
    assert!(ask.body.contains("leaving@example.com"));
    assert!(ask.body.contains(r#"name="confirmed" value="yes""#));
    assert!(ask.body.contains("Keep them"));
    admin
        .submit(
            &format!("/admin/members/{id}/remove"),
            &[("confirmed", "yes")],
        )
        .await
        .assert_redirect_to("/admin?notice=remove");
    assert!(app.member("leaving@example.com").await.is_none());
    assert_eq!(
        admin
            .get(&format!("/admin/members/{id}/remove"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[actix_web::test]
async fn admins_listed_in_admin_emails_are_not_demoted_or_removed_from_the_page() {
    let app = spawn_app_with(&[("ADMIN_EMAILS", "boss@example.com,deputy@example.com")]).await;
    let boss = app.signed_in_browser("boss@example.com").await;
    app.signed_in_browser("deputy@example.com").await;
    app.signed_in_browser("made@example.com").await;
    let deputy = app.member("deputy@example.com").await.unwrap().0;
    let list = boss.get("/admin").await;
    assert!(list.body.contains("admin by ADMIN_EMAILS"), "{}", list.body);
    for action in ["make-member", "remove"] {
        let fields: &[(&str, &str)] = &[("confirmed", "yes")];
        let page = boss
            .submit(&format!("/admin/members/{deputy}/{action}"), fields)
            .await;
        assert_eq!(page.status, StatusCode::CONFLICT, "{action}");
        assert!(
            page.body.contains("listed in ADMIN_EMAILS"),
            "{}",
            page.body
        );
    }
    assert_eq!(app.member("deputy@example.com").await.unwrap().2, "admin");
    // Suspension still works, and lasts: a listed admin who is suspended stays out.
    boss.submit(&format!("/admin/members/{deputy}/suspend"), &[])
        .await
        .assert_redirect_to("/admin?notice=suspend");
    let again = app.sign_in(&app.browser(), "deputy@example.com").await;
    assert_eq!(again.status, StatusCode::FORBIDDEN);
    // An admin made on the page (not listed) is demoted for good.
    let made = app.member("made@example.com").await.unwrap().0;
    boss.submit(&format!("/admin/members/{made}/make-admin"), &[])
        .await;
    boss.submit(&format!("/admin/members/{made}/make-member"), &[])
        .await
        .assert_redirect_to("/admin?notice=make-member");
    app.signed_in_browser("made@example.com").await;
    assert_eq!(app.member("made@example.com").await.unwrap().2, "member");
}

/// Runs `clubhouse` with these arguments on `database_url`; its exit status and output.
fn cli(database_url: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_clubhouse"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .args(args)
        .output()
        .expect("run clubhouse");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[actix_web::test]
async fn a_backup_taken_while_the_site_runs_restores_the_site() {
    let dir = TempDir::new();
    let file = dir.path().join("site.db");
    let url = format!("sqlite://{}?mode=rwc", file.display());
    let broker = TestBroker::start("127.0.0.1");
    let port = free_port();
    let shared = TestDb::sqlite_at(&url);
    let mut server = Server::start_on(shared, broker.clone(), port, &[]).await;
    let first = server.browser();
    server.sign_in(&first, "kept@example.com").await;

    // The backup, while the site runs and serves.
    let backup = dir.path().join("backup.db");
    let (ok, out) = cli(&url, &["backup", backup.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("backup written to"), "{out}");
    assert!(out.contains("1 members"), "{out}");
    first.assert_signed_in_as("kept@example.com").await;
    // It never overwrites.
    let (ok, out) = cli(&url, &["backup", backup.to_str().unwrap()]);
    assert!(!ok);
    assert!(out.contains("exists already"), "{out}");

    // Later changes, then a disaster.
    server.sign_in(&server.browser(), "after@example.com").await;
    server.terminate();
    assert!(server.exit_within(Duration::from_secs(15)).await.success());
    // Restore as the README says: stop, put the copy in place (without the old WAL), start.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
    std::fs::copy(&backup, &file).unwrap();
    let restored = Server::start_on(TestDb::sqlite_at(&url), broker, port, &[]).await;
    // The member from before the backup is there, with their session; the later one is not.
    first.assert_signed_in_as("kept@example.com").await;
    let (ok, list) = cli(&url, &["members", "list"]);
    assert!(ok, "{list}");
    assert!(list.contains("kept@example.com"), "{list}");
    assert!(!list.contains("after@example.com"), "{list}");
    drop(restored);
}

#[actix_web::test]
async fn on_postgres_backup_names_the_pg_dump_command() {
    let (ok, out) = cli(
        "postgres://clubhouse:hunter2@127.0.0.1:5432/club",
        &["backup", "/tmp/x.dump"],
    );
    assert!(!ok, "no backup was made, so it fails");
    assert!(
        out.contains("pg_dump --format=custom --file=/tmp/x.dump"),
        "{out}"
    );
    assert!(!out.contains("hunter2"), "{out}");
}

#[actix_web::test]
async fn mail_queued_when_the_site_is_killed_is_sent_once_after_the_restart() {
    let db = TestDb::new().await;
    let broker = TestBroker::start("127.0.0.1");
    let smtp_port = free_port();
    let smtp = format!("smtp://127.0.0.1:{smtp_port}");
    let settings = [
        ("SMTP_URL", smtp.as_str()),
        ("ADMIN_EMAILS", "boss@example.com"),
    ];
    let port = free_port();
    let mut server = Server::start_on(db.shared(), broker.clone(), port, &settings).await;
    let admin = server.browser();
    server.sign_in(&admin, "boss@example.com").await;
    let page = admin
        .submit("/admin/invite", &[("addresses", "durable@example.org")])
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    // The mail server is down: the mail waits in the outbox, and the site dies.
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.kill();

    let sink = SmtpSink::start_on(smtp_port).await;
    let restarted = Server::start_on(db.shared(), broker, port, &settings).await;
    let messages = sink.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(messages[0].rcpt_to, vec!["durable@example.org".to_owned()]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        sink.messages().len(),
        1,
        "sent once: {}",
        restarted.log_text()
    );
    drop(restarted);
    drop(db);
}
