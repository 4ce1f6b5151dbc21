//! The sign-in flow as a visitor lives it.

use actix_web::http::StatusCode;

use crate::helpers::{spawn_app, spawn_app_on, spawn_app_with};

#[actix_web::test]
async fn landing_page_offers_the_sign_in_form() {
    let app = spawn_app().await;
    let page = app.browser().get("/").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(r#"<form method="post" action="/login""#));
    assert!(page.body.contains(r#"name="email""#));
    assert!(page.body.contains(r#"autocomplete="email""#));
}

#[actix_web::test]
async fn login_sends_the_visitor_to_the_brokers_authorization_endpoint() {
    let app = spawn_app().await;
    let auth = app
        .start_login(&app.browser(), "Alice@Example.com", None)
        .await;
    // From discovery, not derived from the broker URL (it is on another host name).
    assert_eq!(
        auth.url.as_str().split('?').next().unwrap(),
        app.broker.authorization_endpoint
    );
    assert_eq!(auth.param("login_hint"), "Alice@Example.com");
    assert_eq!(auth.param("scope"), "openid email");
    assert_eq!(auth.param("response_type"), "id_token");
    assert_eq!(auth.param("response_mode"), "form_post");
    assert_eq!(auth.param("client_id"), app.public_url);
    assert_eq!(
        auth.param("redirect_uri"),
        format!("{}/verify", app.public_url)
    );
    assert!(auth.param("nonce").len() >= 32, "nonce is long and random");
    // `next` stays on our side; nothing about it goes to the broker.
    assert!(!auth.params.contains_key("next"));
    assert_eq!(app.count("SELECT COUNT(*) FROM login_attempts").await, 1);
}

#[actix_web::test]
async fn a_bad_address_is_explained_on_the_same_page_and_nothing_is_stored() {
    let app = spawn_app().await;
    let browser = app.browser();
    for (typed, expected) in [
        ("", "Please enter your email address"),
        ("alice", "needs a name, an @ and a domain"),
        ("alice@localhost", "not a domain name"),
        ("alice@[127.0.0.1]", "not at an IP address"),
    ] {
        let page = browser.submit("/login", &[("email", typed)]).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{typed}");
        assert!(page.body.contains(expected), "{typed}: {}", page.body);
        assert!(
            page.body.contains(r#"action="/login""#),
            "the form is shown again"
        );
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM login_attempts").await, 0);
}

#[actix_web::test]
async fn a_verified_visitor_becomes_a_member_and_reaches_the_members_page() {
    let app = spawn_app().await;
    let browser = app.browser();
    let page = app.sign_in(&browser, "Alice@Example.com").await;
    page.assert_redirect_to("/members");
    assert!(browser.cookie("clubhouse_session").is_some());
    let set_cookie = session_cookie_header(&page);
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Lax"), "{set_cookie}");
    assert!(
        !set_cookie.contains("Secure"),
        "plain http on localhost: {set_cookie}"
    );

    let members = browser.assert_signed_in_as("alice@example.com").await;
    assert_eq!(
        members.headers.get("cache-control").unwrap(),
        "no-store",
        "members pages are not cached"
    );

    let (email, status, role): (String, String, String) =
        sqlx::query_as("SELECT email, status, role FROM members")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(
        (email.as_str(), status.as_str(), role.as_str()),
        ("alice@example.com", "active", "member")
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM sessions WHERE member_id IS NOT NULL")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM login_attempts").await,
        0,
        "nonce consumed"
    );

    // Signed in, the front page sends the member on.
    browser.get("/").await.assert_redirect_to("/members");
}

#[actix_web::test]
async fn the_page_asked_for_is_where_the_member_lands() {
    let app = spawn_app().await;
    let browser = app.browser();
    // Anonymous: the members page sends to the front page, remembering where to come back.
    browser
        .get("/members")
        .await
        .assert_redirect_to("/?next=%2Fmembers");
    let front = browser.get("/?next=%2Fmembers").await;
    assert!(
        front.body.contains(r#"name="next" value="/members""#)
            || front.body.contains(r#"name="next" value="""#)
    );

    let auth = app
        .start_login(&browser, "bob@example.com", Some("/members?tab=1"))
        .await;
    let page = app.post_token(&browser, &app.token_for(&auth)).await;
    page.assert_redirect_to("/members?tab=1");
}

#[actix_web::test]
async fn a_next_that_leaves_the_site_is_replaced_by_the_members_page() {
    let app = spawn_app().await;
    for next in [
        "//evil.test",
        "https://evil.test/",
        "/\\evil.test",
        "%2F%2Fevil.test",
        "javascript:alert(1)",
    ] {
        let browser = app.browser();
        let auth = app
            .start_login(&browser, "carol@example.com", Some(next))
            .await;
        let page = app.post_token(&browser, &app.token_for(&auth)).await;
        page.assert_redirect_to("/members");
    }
}

#[actix_web::test]
async fn logout_ends_the_session_on_the_server() {
    let app = spawn_app().await;
    let browser = app.signed_in_browser("dave@example.com").await;
    let stolen_cookie = browser.cookie("clubhouse_session").unwrap();

    browser.submit("/logout", &[]).await.assert_redirect_to("/");
    assert!(
        browser.cookie("clubhouse_session").is_none(),
        "cookie removed"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM sessions").await,
        0,
        "row deleted"
    );
    browser
        .get("/members")
        .await
        .assert_redirect_to("/?next=%2Fmembers");

    // A copy of the old cookie is worthless too.
    let other = app.browser();
    other.set_cookie("clubhouse_session", &stolen_cookie);
    other
        .get("/members")
        .await
        .assert_redirect_to("/?next=%2Fmembers");
}

#[actix_web::test]
async fn the_members_page_is_refused_to_anonymous_visitors() {
    let app = spawn_app().await;
    let page = app.browser().get("/members").await;
    page.assert_redirect_to("/?next=%2Fmembers");
    assert!(!page.body.contains("Signed in"));
}

#[actix_web::test]
async fn a_session_id_planted_before_sign_in_is_not_the_one_after() {
    let app = spawn_app().await;
    let browser = app.browser();
    browser.set_cookie("clubhouse_session", "planted-by-attacker");
    app.sign_in(&browser, "erin@example.com")
        .await
        .assert_redirect_to("/members");
    let after = browser.cookie("clubhouse_session").unwrap();
    assert_ne!(after, "planted-by-attacker");
}

#[actix_web::test]
async fn the_brokers_error_is_shown_escaped_with_a_way_to_start_again() {
    let app = spawn_app().await;
    let browser = app.browser();
    let page = browser
        .post_from_broker(
            "/verify",
            &[
                ("error", "access_denied"),
                (
                    "error_description",
                    "<script>alert('x')</script> went wrong",
                ),
                ("state", ""),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
    assert!(
        page.body.contains("&#60;script&#62;") || page.body.contains("&lt;script&gt;"),
        "{}",
        page.body
    );
    assert!(page.body.contains("went wrong"));
    assert!(page.body.contains("Start signing in again"));
    assert!(browser.cookie("clubhouse_session").is_none());
}

#[actix_web::test]
async fn two_concurrent_posts_of_one_token_give_exactly_one_session() {
    let app = spawn_app().await;
    let browser = app.browser();
    let auth = app.start_login(&browser, "frank@example.com", None).await;
    let token = app.token_for(&auth);
    // The same browser (with the binding cookie) posts the token twice at once, as a double
    // click on the broker's page would.
    let (first, second) = tokio::join!(
        app.post_token(&browser, &token),
        app.post_token(&browser, &token)
    );
    let statuses = [first.status, second.status];
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::SEE_OTHER)
            .count(),
        1,
        "exactly one succeeds: {statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::BAD_REQUEST)
            .count(),
        1
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 1);
}

#[actix_web::test]
async fn an_unreachable_broker_gives_a_friendly_page_not_a_500() {
    // A port that was just free: nothing listens there.
    let port = crate::helpers::free_port();
    let dead = format!("http://127.0.0.1:{port}");
    let app = spawn_app_with(&[("BROKER_URL", &dead), ("BROKER_TIMEOUT", "2s")]).await;
    let started = std::time::Instant::now();
    let page = app
        .browser()
        .submit("/login", &[("email", "gina@example.com")])
        .await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.body.contains("not answering"), "{}", page.body);
    assert!(
        page.body.contains("Reference:"),
        "a reference to match the log"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(app.count("SELECT COUNT(*) FROM login_attempts").await, 0);
}

#[actix_web::test]
async fn admin_emails_are_made_admins() {
    let app = spawn_app_with(&[("ADMIN_EMAILS", "Boss@Example.com, other@example.org")]).await;
    let browser = app.signed_in_browser("boss@example.com").await;
    let role: String = sqlx::query_scalar("SELECT role FROM members WHERE email = $1")
        .bind("boss@example.com")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(role, "admin");
    assert!(
        browser
            .get("/members")
            .await
            .body
            .contains("an administrator")
    );
}

#[actix_web::test]
async fn sessions_survive_a_restart_and_work_on_every_instance() {
    // No SESSION_KEY: the key is stored in the database, so a second server on the same
    // database (a restart, or another instance) accepts the first one's cookies.
    let first = spawn_app().await;
    let browser = first.browser();
    first
        .sign_in(&browser, "hank@example.com")
        .await
        .assert_redirect_to("/members");
    let cookie = browser.cookie("clubhouse_session").unwrap();

    let crate::helpers::TestApp { db, broker, .. } = first;
    let second = spawn_app_on(db, broker, &[], &[]).await;
    let other = second.browser();
    other.set_cookie("clubhouse_session", &cookie);
    let page = other.get("/members").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("hank@example.com"));
}

#[actix_web::test]
async fn unknown_pages_get_a_friendly_404() {
    let app = spawn_app().await;
    let page = app.browser().get("/no/such/page").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.body.contains("Page not found"));
    assert!(page.body.contains("<html"));
}

#[actix_web::test]
async fn malformed_forms_get_a_friendly_400() {
    let app = spawn_app().await;
    let browser = app.browser();
    let token = browser.form_token().await;
    for (path, content_type, body) in [
        // Not a form at all.
        (
            "/login",
            "text/plain",
            format!("email=a@example.com&csrf_token={token}").into_bytes(),
        ),
        // A form without its required field.
        (
            "/login",
            "application/x-www-form-urlencoded",
            format!("csrf_token={token}").into_bytes(),
        ),
        // Percent-encoded bytes that are not UTF-8, and raw ones.
        (
            "/verify",
            "application/x-www-form-urlencoded",
            b"id_token=%ff%fe%fd".to_vec(),
        ),
        (
            "/verify",
            "application/x-www-form-urlencoded",
            b"id_token=\xff\xfe".to_vec(),
        ),
        // Broken percent-encoding.
        (
            "/verify",
            "application/x-www-form-urlencoded",
            b"id_token=%zz%".to_vec(),
        ),
    ] {
        let page = browser.post_raw(path, content_type, body).await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{path} {content_type}: {}",
            page.body
        );
        assert!(page.body.contains("<html"), "{}", page.body);
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM login_attempts").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 0);
}

#[actix_web::test]
async fn oversized_bodies_are_refused_with_a_friendly_page() {
    let app = spawn_app().await;
    let browser = app.browser();
    let page = browser
        .post_raw(
            "/verify",
            "application/x-www-form-urlencoded",
            vec![b'a'; 64 * 1024],
        )
        .await;
    assert_eq!(page.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", page.body);
    assert!(page.body.contains("<html"));
    // A token just over the size limit inside a small enough form.
    let long_token = format!("id_token={}", "a".repeat(9 * 1024));
    let page = browser
        .post_raw(
            "/verify",
            "application/x-www-form-urlencoded",
            long_token.into_bytes(),
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    // An address longer than 254 characters.
    let long = format!("{}@example.com", "a".repeat(300));
    let page = browser.submit("/login", &[("email", &long)]).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("too long"), "{}", page.body);
    assert_eq!(app.count("SELECT COUNT(*) FROM login_attempts").await, 0);
}

fn session_cookie_header(page: &crate::helpers::Page) -> String {
    page.headers
        .get_all("set-cookie")
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("clubhouse_session=") || v.starts_with("__Host-clubhouse_session="))
        .unwrap_or_default()
        .to_owned()
}

#[actix_web::test]
async fn session_cookies_are_secure_when_the_site_is_served_over_https() {
    let app = spawn_app_with(&[("PUBLIC_URL", "https://club.example.org")]).await;
    let page = app.sign_in(&app.browser(), "secure@example.com").await;
    page.assert_redirect_to("/members");
    let set_cookie = session_cookie_header(&page);
    assert!(set_cookie.contains("Secure"), "{set_cookie}");
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
}

#[actix_web::test]
async fn the_site_name_and_footer_are_settings() {
    let app = spawn_app_with(&[
        ("SITE_NAME", "Chess & Tea Club"),
        ("FOOTER_TEXT", "Est. 1987"),
    ])
    .await;
    let page = app.browser().get("/").await;
    assert!(
        page.body
            .contains("<title>Sign in · Chess &#38; Tea Club</title>")
            || page
                .body
                .contains("<title>Sign in · Chess &amp; Tea Club</title>"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Est. 1987"));
    let missing = app.browser().get("/nowhere").await;
    assert!(
        missing.body.contains("Est. 1987"),
        "error pages use the same frame"
    );
}
