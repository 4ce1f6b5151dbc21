//! The round-trip budget: how many times a request goes to the database (each statement, a
//! batch sent as one, a transaction's BEGIN and COMMIT), counted by the server's own `Db`.
//! On SQLite each round trip is a hand-off to sqlx's database thread and back, on Postgres a
//! network exchange: they are most of a sign-in's cost (BENCHMARKS.md). A request that makes
//! one more than its budget fails here.

use actix_web::http::StatusCode;

use crate::helpers::{AuthRequest, Browser, TestApp, spawn_app_with};

/// The most each request may make: `POST /login` the rate-limit counters with the attempt,
/// `POST /verify` the member, its audit entry, the nonce consumed and the session in one.
const FRONT_PAGE_SIGNED_IN: u64 = 1;
/// A visitor's front page, once the server has checked whether the site has an admin.
const FRONT_PAGE_VISITOR: u64 = 0;
const LOGIN: u64 = 1;
const VERIFY: u64 = 1;
const MEMBERS_PAGE: u64 = 1;

/// Nothing but the test's requests runs: no purge during the test, no mail.
async fn quiet_app(settings: &[(&str, &str)]) -> TestApp {
    let mut all = vec![("PURGE_INTERVAL", "1h")];
    all.extend_from_slice(settings);
    spawn_app_with(&all).await
}

/// The round trips `request` made, and what it returned.
async fn counted<T>(app: &TestApp, request: impl AsyncFnOnce() -> T) -> (u64, T) {
    let before = app.pool.round_trips();
    let out = request().await;
    (app.pool.round_trips() - before, out)
}

/// `POST /login` for `email` (the form's token fetched before, uncounted): its round trips
/// and the broker request it leads to.
async fn login(app: &TestApp, browser: &Browser, email: &str) -> (u64, AuthRequest) {
    let token = browser.form_token().await;
    let (trips, page) = counted(app, async || {
        browser
            .post_form("/login", &[("email", email), ("csrf_token", &token)])
            .await
    })
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    (trips, AuthRequest::from_location(&page.location()))
}

/// A whole sign-in, each step within its budget; the round trips of `/verify`.
async fn sign_in_within_budget(app: &TestApp, browser: &Browser, email: &str) -> u64 {
    let (trips, auth) = login(app, browser, email).await;
    assert!(trips <= LOGIN, "POST /login made {trips} round trips");
    let token = app.token_for(&auth);
    let (trips, page) = counted(app, async || app.post_token(browser, &token).await).await;
    page.assert_redirect_to("/members");
    assert!(trips <= VERIFY, "POST /verify made {trips} round trips");
    trips
}

#[actix_web::test]
async fn a_sign_in_and_the_members_pages_stay_within_their_round_trip_budget() {
    let app = quiet_app(&[]).await;
    // A first sign-in: the member is added.
    let browser = app.browser();
    let first = sign_in_within_budget(&app, &browser, "new@example.com").await;
    assert_eq!(
        first, 1,
        "the member and the session are written in one round trip"
    );

    // The members page: the session with its member, in one statement once the directory's
    // page is kept (the first view after a sign-in reads it again).
    browser.get("/members").await;
    for _ in 0..3 {
        let (trips, page) = counted(&app, async || browser.get("/members").await).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(
            trips <= MEMBERS_PAGE,
            "GET /members made {trips} round trips"
        );
        assert!(trips >= 1, "the session is read on every request: {trips}");
    }

    // The front page with a session: the session only (it sends the member on).
    let (trips, page) = counted(&app, async || browser.get("/").await).await;
    assert!(page.status.is_redirection() || page.status == StatusCode::OK);
    assert!(
        trips <= FRONT_PAGE_SIGNED_IN,
        "GET / with a session made {trips} round trips"
    );

    // A returning member, in a new browser.
    let again = app.browser();
    sign_in_within_budget(&app, &again, "new@example.com").await;
    again.assert_signed_in_as("new@example.com").await;
    // Both sign-ins are in the audit log, written with them.
    assert_eq!(app.audit_count("sign_in").await, 2);
}

#[actix_web::test]
async fn an_admin_and_a_request_to_join_stay_within_the_verify_budget() {
    let app = quiet_app(&[
        ("SIGNUP_MODE", "approval"),
        ("ADMIN_EMAILS", "boss@example.com"),
    ])
    .await;
    // The configured admin's first sign-in makes them an active admin.
    let admin = app.browser();
    sign_in_within_budget(&app, &admin, "boss@example.com").await;
    assert_eq!(
        app.member("boss@example.com").await.map(|m| (m.1, m.2)),
        Some(("active".into(), "admin".into()))
    );

    // A request to join: refused for now, recorded with its audit entries.
    let stranger = app.browser();
    let (trips, auth) = login(&app, &stranger, "asks@example.com").await;
    assert!(trips <= LOGIN, "POST /login made {trips} round trips");
    let token = app.token_for(&auth);
    let (trips, page) = counted(&app, async || app.post_token(&stranger, &token).await).await;
    assert!(
        page.body.contains("approv"),
        "{}: {}",
        page.status,
        page.body
    );
    assert!(trips <= VERIFY, "POST /verify made {trips} round trips");
    assert_eq!(
        app.member("asks@example.com").await.map(|m| m.1),
        Some("pending".into())
    );
    assert_eq!(app.audit_count("member_requested").await, 1);
}

/// A visitor's front page: its round trips, and whether it says the site has no admin yet.
async fn visitor_front_page(app: &TestApp) -> (u64, bool) {
    let (trips, page) = counted(app, async || app.browser().get("/").await).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    (trips, page.body.contains("This site has no admin yet"))
}

#[actix_web::test]
async fn a_visitors_front_page_needs_no_database_once_the_admin_check_is_kept() {
    let app = quiet_app(&[
        ("SIGNUP_MODE", "open"),
        ("ADMIN_EMAILS", "boss@example.com"),
    ])
    .await;
    // A new site: the first view asks the database, the next ones do not, and both say so.
    assert_eq!(visitor_front_page(&app).await, (1, true));
    assert_eq!(visitor_front_page(&app).await, (FRONT_PAGE_VISITOR, true));

    // The configured admin signs in: the kept "no admin" is dropped at once.
    let boss = app.signed_in_browser("boss@example.com").await;
    assert_eq!(visitor_front_page(&app).await, (1, false));
    assert_eq!(visitor_front_page(&app).await, (FRONT_PAGE_VISITOR, false));

    // Another sign-in cannot take the admin away: the check stays kept.
    app.signed_in_browser("sam@example.com").await;
    assert_eq!(visitor_front_page(&app).await, (FRONT_PAGE_VISITOR, false));

    // An admin's change to a member may: the next view asks again.
    let (id, _, _) = app
        .member("sam@example.com")
        .await
        .expect("sam is a member");
    boss.submit(&format!("/admin/members/{id}/suspend"), &[])
        .await
        .assert_redirect_to("/admin?notice=suspend");
    assert_eq!(visitor_front_page(&app).await, (1, false));
}

#[actix_web::test]
async fn the_count_sees_every_statement() {
    // The counter itself: a statement on the app's database is one round trip, a
    // transaction's BEGIN and COMMIT are one each.
    let app = quiet_app(&[]).await;
    let (trips, n) = counted(&app, async || {
        app.count("SELECT COUNT(*) FROM members").await
    })
    .await;
    assert_eq!((trips, n), (1, 0));
    let (trips, ()) = counted(&app, async || {
        let tx = clubhouse::db::begin_write(&app.pool).await.expect("begin");
        tx.commit().await.expect("commit");
    })
    .await;
    assert_eq!(trips, 2);
}
