//! The attack table: one test per attack, each asserting the refusal and that nothing changed.
//! Token forgeries (alg none, HS256 with the public key, RS384, unknown kid, bad signature,
//! wrong iss/aud, expired, iat in the future, email and email_original swapped, replay) are
//! rows of `conformance.rs`; SECURITY.md lists every row and where it is.

use actix_web::http::StatusCode;
use rand::{Rng, SeedableRng};

use crate::helpers::{Page, TestApp, spawn_app, spawn_app_with};

async fn attempts(app: &TestApp) -> i64 {
    app.count("SELECT COUNT(*) FROM login_attempts").await
}

async fn sessions(app: &TestApp) -> i64 {
    app.count("SELECT COUNT(*) FROM sessions WHERE member_id IS NOT NULL")
        .await
}

#[track_caller]
fn assert_refused_for_binding(page: &Page) {
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    assert!(
        page.body.contains("started in another browser"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Start signing in again"));
}

#[actix_web::test]
async fn a_token_for_another_browsers_sign_in_is_refused_and_that_sign_in_stays_usable() {
    let app = spawn_app().await;
    let victim = app.browser();
    let auth = app.start_login(&victim, "victim@example.com", None).await;
    let token = app.token_for(&auth);
    // The attacker has a binding cookie of their own, from a sign-in of their own.
    let attacker = app.browser();
    app.start_login(&attacker, "attacker@example.com", None)
        .await;

    let page = app.post_token(&attacker, &token).await;
    assert_refused_for_binding(&page);
    assert!(attacker.cookie("clubhouse_session").is_none());
    assert_eq!(sessions(&app).await, 0);
    assert_eq!(attempts(&app).await, 2, "both sign-ins are still unused");

    // The browser that started it can still finish it.
    app.post_token(&victim, &token)
        .await
        .assert_redirect_to("/members");
    victim.assert_signed_in_as("victim@example.com").await;
}

#[actix_web::test]
async fn a_token_posted_without_the_binding_cookie_is_refused() {
    // Login CSRF: an attacker makes the victim's browser post the attacker's token.
    let app = spawn_app().await;
    let attacker = app.browser();
    let auth = app
        .start_login(&attacker, "attacker@example.com", None)
        .await;
    let victim = app.browser();
    let page = app.post_token(&victim, &app.token_for(&auth)).await;
    assert_refused_for_binding(&page);
    assert!(victim.cookie("clubhouse_session").is_none());
    assert_eq!(sessions(&app).await, 0);
    assert_eq!(attempts(&app).await, 1, "the nonce is still unused");
}

#[actix_web::test]
async fn with_binding_off_a_sign_in_can_finish_in_another_browser() {
    // The documented trade-off: cross-device links work, login CSRF protection is gone.
    let app = spawn_app_with(&[("LOGIN_BINDING", "off")]).await;
    let laptop = app.browser();
    let auth = app.start_login(&laptop, "roaming@example.com", None).await;
    assert!(
        laptop.cookie("clubhouse_login").is_none(),
        "no binding cookie is set"
    );
    let phone = app.browser();
    app.post_token(&phone, &app.token_for(&auth))
        .await
        .assert_redirect_to("/members");
}

#[actix_web::test]
async fn the_binding_cookie_is_scoped_secure_and_cross_site() {
    let app = spawn_app().await;
    let browser = app.browser();
    let token = browser.form_token().await;
    let page = browser
        .post_form(
            "/login",
            &[("email", "c@example.com"), ("csrf_token", &token)],
        )
        .await;
    let cookie = page
        .headers
        .get_all("set-cookie")
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("clubhouse_login="))
        .unwrap_or_default()
        .to_owned();
    for part in [
        "HttpOnly",
        "Secure",
        "SameSite=None",
        "Path=/verify",
        "Max-Age=900",
    ] {
        assert!(cookie.contains(part), "{part} in {cookie}");
    }
    // Used once: a successful sign-in removes it.
    let auth = crate::helpers::AuthRequest::from_location(&page.location());
    let done = app.post_token(&browser, &app.token_for(&auth)).await;
    done.assert_redirect_to("/members");
    assert!(browser.cookie("clubhouse_login").is_none());
}

#[actix_web::test]
async fn logout_without_or_with_a_wrong_csrf_token_is_refused() {
    let app = spawn_app().await;
    let browser = app.signed_in_browser("dora@example.com").await;
    for fields in [
        vec![],
        vec![("csrf_token", "0".repeat(64))],
        vec![("csrf_token", "nope".into())],
    ] {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let page = browser.post_form("/logout", &fields).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
        assert!(page.body.contains("This form could not be accepted"));
    }
    // Nothing happened: still signed in.
    browser.assert_signed_in_as("dora@example.com").await;
    assert_eq!(sessions(&app).await, 1);
}

#[actix_web::test]
async fn a_csrf_token_from_another_browser_is_refused() {
    let app = spawn_app().await;
    let attacker = app.browser();
    let stolen = attacker.form_token().await;
    let victim = app.signed_in_browser("eve.victim@example.com").await;
    let page = victim
        .post_form("/logout", &[("csrf_token", &stolen)])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    victim.assert_signed_in_as("eve.victim@example.com").await;
}

#[actix_web::test]
async fn login_without_a_csrf_token_starts_nothing() {
    let app = spawn_app().await;
    let page = app
        .browser()
        .post_form("/login", &[("email", "f@example.com")])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(attempts(&app).await, 0);
}

#[actix_web::test]
async fn a_valid_token_from_a_foreign_origin_is_refused() {
    let app = spawn_app().await;
    let browser = app.signed_in_browser("gus@example.com").await;
    let token = browser.form_token().await;
    for headers in [
        vec![("origin", "https://evil.test")],
        vec![("origin", "null")],
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site")],
    ] {
        let page = browser
            .post_with("/logout", &[("csrf_token", &token)], &headers, false)
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{headers:?}");
    }
    browser.assert_signed_in_as("gus@example.com").await;
    let page = browser
        .post_with(
            "/login",
            &[("email", "h@example.com"), ("csrf_token", &token)],
            &[("origin", "https://evil.test")],
            false,
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(attempts(&app).await, 0);
    // The same token from our own origin works.
    let page = browser
        .post_with(
            "/logout",
            &[("csrf_token", &token)],
            &[
                ("origin", &app.public_url),
                ("sec-fetch-site", "same-origin"),
            ],
            false,
        )
        .await;
    page.assert_redirect_to("/");
}

#[actix_web::test]
async fn next_values_that_leave_the_site_fall_back_to_the_members_page() {
    let app = spawn_app().await;
    for (i, next) in [
        "//evil.test",
        "/\\evil.test",
        "https://evil.test",
        "%2F%2Fevil.test",
        "/%5Cevil.test",
        "/%2F%2Fevil.test",
        "javascript:alert(1)",
        "/\r\nLocation: https://evil.test",
    ]
    .into_iter()
    .enumerate()
    {
        let browser = app.browser();
        let email = format!("ida{i}@example.com");
        let auth = app.start_login(&browser, &email, Some(next)).await;
        let page = app.post_token(&browser, &app.token_for(&auth)).await;
        page.assert_redirect_to("/members");
    }
}

async fn login_status(app: &TestApp, email: &str, forwarded_for: Option<&str>) -> Page {
    let browser = app.browser();
    let token = browser.form_token().await;
    let mut headers = vec![("origin", app.public_url.as_str())];
    if let Some(ip) = forwarded_for {
        headers.push(("x-forwarded-for", ip));
    }
    browser
        .post_with(
            "/login",
            &[("email", email), ("csrf_token", &token)],
            &headers,
            false,
        )
        .await
}

#[actix_web::test]
async fn the_per_ip_rate_limit_holds_and_resets_after_its_window() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_LOGIN_PER_IP", "3/2s"),
        ("RATE_LIMIT_LOGIN_PER_EMAIL", "off"),
    ])
    .await;
    // Start right after a window boundary so that all four land in one window.
    let now = chrono::Utc::now();
    let into_window =
        (now.timestamp() % 2) as u64 * 1000 + u64::from(now.timestamp_subsec_millis());
    tokio::time::sleep(std::time::Duration::from_millis(2000 - into_window + 50)).await;
    for i in 0..3 {
        let page = login_status(&app, &format!("ip{i}@example.com"), None).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{i}");
    }
    let page = login_status(&app, "ip3@example.com", None).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{}", page.body);
    let retry: u64 = page
        .headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert!(page.body.contains("Too many sign-in attempts"));
    assert_eq!(attempts(&app).await, 3, "the refused one stored nothing");
    // A spoofed X-Forwarded-For is ignored: no proxy is trusted.
    let page = login_status(&app, "ip4@example.com", Some("203.0.113.50")).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);

    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let page = login_status(&app, "ip5@example.com", None).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "the window is over");
}

#[actix_web::test]
async fn the_per_ip_rate_limit_uses_the_address_a_trusted_proxy_forwards() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_LOGIN_PER_IP", "2/1h"),
        ("RATE_LIMIT_LOGIN_PER_EMAIL", "off"),
        ("TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    for _ in 0..2 {
        assert_eq!(
            login_status(&app, "j@example.com", Some("198.51.100.1"))
                .await
                .status,
            StatusCode::SEE_OTHER
        );
    }
    assert_eq!(
        login_status(&app, "j@example.com", Some("198.51.100.1"))
            .await
            .status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another client behind the same proxy has its own allowance.
    assert_eq!(
        login_status(&app, "j@example.com", Some("198.51.100.2"))
            .await
            .status,
        StatusCode::SEE_OTHER
    );
}

#[actix_web::test]
async fn the_per_address_rate_limit_holds_whatever_the_spelling_and_resets() {
    let app = spawn_app_with(&[("RATE_LIMIT_LOGIN_PER_EMAIL", "2/2s")]).await;
    let now = chrono::Utc::now();
    let into_window =
        (now.timestamp() % 2) as u64 * 1000 + u64::from(now.timestamp_subsec_millis());
    tokio::time::sleep(std::time::Duration::from_millis(2000 - into_window + 50)).await;
    assert_eq!(
        login_status(&app, "kay@example.com", None).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        login_status(&app, "Kay@Example.COM", None).await.status,
        StatusCode::SEE_OTHER
    );
    let page = login_status(&app, " KAY@example.com ", None).await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(page.headers.contains_key("retry-after"));
    // Another address is not affected.
    assert_eq!(
        login_status(&app, "lou@example.com", None).await.status,
        StatusCode::SEE_OTHER
    );
    // No address is stored for counting.
    let buckets: Vec<String> = sqlx::query_scalar("SELECT bucket FROM rate_limits")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert!(buckets.iter().all(|b| !b.contains("kay")), "{buckets:?}");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(
        login_status(&app, "kay@example.com", None).await.status,
        StatusCode::SEE_OTHER
    );
}

#[actix_web::test]
async fn the_login_answer_does_not_tell_members_from_strangers() {
    let app = spawn_app().await;
    app.sign_in(&app.browser(), "member@example.com")
        .await
        .assert_redirect_to("/members");
    let member = login_status(&app, "member@example.com", None).await;
    let stranger = login_status(&app, "stranger@example.com", None).await;
    assert_eq!(member.status, stranger.status);
    let shape = |p: &Page| {
        let url = url::Url::parse(&p.location()).unwrap();
        let mut keys: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
        keys.sort();
        (
            url.origin().ascii_serialization(),
            url.path().to_owned(),
            keys,
            p.body.len(),
        )
    };
    assert_eq!(shape(&member), shape(&stranger));
}

#[actix_web::test]
async fn markup_in_the_state_and_in_addresses_is_rendered_escaped() {
    let app = spawn_app().await;
    let browser = app.browser();
    let page = browser
        .post_from_broker(
            "/verify",
            &[
                ("error", "<b>x</b>"),
                ("state", "<script>alert(1)</script>"),
            ],
        )
        .await;
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
    assert!(!page.body.contains("<b>x</b>"), "{}", page.body);

    // Markup cannot be an address (the broker refuses `<` and `>`), but `'` and `&` can: such
    // an address is shown escaped as name and address.
    let evil = "o'brien&sons@example.com";
    app.sign_in(&browser, evil)
        .await
        .assert_redirect_to("/members");
    let members = browser.get("/members").await;
    assert!(!members.body.contains("o'brien&sons"), "{}", members.body);
    assert!(
        members.body.contains("o&#39;brien&#38;sons")
            || members.body.contains("o&#39;brien&amp;sons"),
        "{}",
        members.body
    );
    // Typed back into the form after an error, it is escaped too.
    let other = app.browser();
    let page = other
        .submit("/login", &[("email", "\"><script>alert(1)</script>")])
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
}

#[track_caller]
fn assert_security_headers(page: &Page, what: &str) {
    let get = |name: &str| {
        page.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{what}: no {name}"))
            .to_owned()
    };
    let csp = get("content-security-policy");
    for part in [
        "default-src 'none'",
        "style-src 'self'",
        "form-action 'self' http://127.0.0.1:",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(part), "{what}: {part} in {csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{what}");
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(get("referrer-policy"), "same-origin", "{what}");
}

#[actix_web::test]
async fn security_headers_are_on_pages_errors_and_redirects() {
    let app = spawn_app().await;
    let browser = app.browser();
    assert_security_headers(&browser.get("/").await, "front page");
    assert_security_headers(&browser.get("/nowhere").await, "404");
    assert_security_headers(&browser.get("/members").await, "redirect");
    assert_security_headers(&browser.post_form("/logout", &[]).await, "403");
    let signed_in = app.sign_in(&browser, "hdr@example.com").await;
    assert_security_headers(&signed_in, "verify redirect");
    let members = browser.get("/members").await;
    assert_security_headers(&members, "members page");
    assert_eq!(members.headers.get("cache-control").unwrap(), "no-store");
    assert!(
        members.headers.get("strict-transport-security").is_none(),
        "not on plain http"
    );

    let https = spawn_app_with(&[("PUBLIC_URL", "https://club.example.org")]).await;
    let page = https.browser().get("/").await;
    assert!(page.headers.get("strict-transport-security").is_some());
}

#[actix_web::test]
async fn a_member_who_stops_being_active_loses_access_at_the_next_request() {
    let app = spawn_app().await;
    let browser = app.signed_in_browser("mia@example.com").await;
    sqlx::query("UPDATE members SET status = 'suspended'")
        .execute(&app.pool)
        .await
        .unwrap();
    browser
        .get("/members")
        .await
        .assert_redirect_to("/?next=%2Fmembers");
    assert_eq!(sessions(&app).await, 0, "the session was ended");
    // Signing in again is refused while suspended.
    let page = app.sign_in(&app.browser(), "mia@example.com").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(
        page.body.contains("Your membership is suspended"),
        "{}",
        page.body
    );
    assert_eq!(sessions(&app).await, 0);
}

#[actix_web::test]
async fn sessions_end_after_their_absolute_lifetime_however_busy() {
    let app = spawn_app().await;
    let browser = app.signed_in_browser("ned@example.com").await;
    // Signed in 91 days ago (SESSION_MAX_AGE is 90 days), used a moment ago.
    sqlx::query("UPDATE sessions SET created_at = $1")
        .bind(chrono::Utc::now().timestamp() - 91 * 86_400)
        .execute(&app.pool)
        .await
        .unwrap();
    browser
        .get("/members")
        .await
        .assert_redirect_to("/?next=%2Fmembers");
}

#[actix_web::test]
async fn an_active_session_is_kept_alive_and_an_idle_one_ends() {
    let app = spawn_app_with(&[("SESSION_IDLE_TIMEOUT", "1h"), ("SESSION_MAX_AGE", "1d")]).await;
    let browser = app.signed_in_browser("ola@example.com").await;
    let now = chrono::Utc::now().timestamp();
    // Nearly idle for an hour: a request moves the expiry forward by the idle timeout.
    sqlx::query("UPDATE sessions SET expires_at = $1")
        .bind(now + 60)
        .execute(&app.pool)
        .await
        .unwrap();
    browser.assert_signed_in_as("ola@example.com").await;
    let expires: i64 = sqlx::query_scalar("SELECT expires_at FROM sessions")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(
        expires >= now + 3600 - 5,
        "moved to about an hour from now: {}",
        expires - now
    );
    // Idle past the timeout: gone.
    sqlx::query("UPDATE sessions SET expires_at = $1")
        .bind(now - 1)
        .execute(&app.pool)
        .await
        .unwrap();
    browser
        .get("/members")
        .await
        .assert_redirect_to("/?next=%2Fmembers");
}

/// Random and mutated tokens and form bodies never make `/verify` fail with a 5xx (or panic).
#[actix_web::test]
async fn random_and_mutated_input_to_verify_never_gives_a_server_error() {
    let app = spawn_app().await;
    let browser = app.browser();
    let auth = app.start_login(&browser, "fuzz@example.com", None).await;
    let valid = app.token_for(&auth);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x00c1_0b40_05e0);
    let alphabet: Vec<u8> =
        b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.=%&+/\\\"'<>{}:,\0\xff"
            .to_vec();
    for round in 0..300 {
        let body: Vec<u8> = match round % 4 {
            // A valid token with a few bytes changed.
            0 => {
                let mut t = valid.clone().into_bytes();
                for _ in 0..rng.random_range(1..4) {
                    let i = rng.random_range(0..t.len());
                    t[i] = alphabet[rng.random_range(0..alphabet.len())];
                }
                let mut body = b"id_token=".to_vec();
                body.extend(t);
                body
            }
            // A valid token cut short or with its parts shuffled.
            1 => {
                let parts: Vec<&str> = valid.split('.').collect();
                let t = match rng.random_range(0..3) {
                    0 => valid[..rng.random_range(0..valid.len())].to_owned(),
                    1 => format!("{}.{}.{}", parts[1], parts[0], parts[2]),
                    _ => format!("{}.{}", parts[0], parts[1]),
                };
                format!("id_token={t}").into_bytes()
            }
            // Random bytes as a whole body.
            2 => (0..rng.random_range(0..400))
                .map(|_| rng.random())
                .collect(),
            // Random field soup.
            _ => (0..rng.random_range(0..200))
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect(),
        };
        let page = browser
            .post_raw("/verify", "application/x-www-form-urlencoded", body.clone())
            .await;
        assert!(
            page.status.is_client_error(),
            "round {round}: {} for {:?}",
            page.status,
            String::from_utf8_lossy(&body)
        );
    }
    assert_eq!(sessions(&app).await, 0);
    // The real sign-in is still there to be finished.
    app.post_token(&browser, &valid)
        .await
        .assert_redirect_to("/members");
}

#[actix_web::test]
async fn verify_needs_no_csrf_token_but_other_forms_do() {
    // /verify is protected by nonce and binding; the broker's page cannot carry our token.
    let app = spawn_app().await;
    let page = app.sign_in(&app.browser(), "pat@example.com").await;
    page.assert_redirect_to("/members");
}

/// The form a page offers for signing in on this device: its fields, as a browser would send
/// them.
fn sign_in_here_form(page: &Page) -> Vec<(String, String)> {
    let form = page
        .body
        .split(r#"<form method="post" action="/login" class="sign-in-here">"#)
        .nth(1)
        .and_then(|rest| rest.split("</form>").next())
        .unwrap_or_else(|| panic!("no sign-in-here form: {}", page.body));
    form.split("<input ")
        .skip(1)
        .filter_map(|input| {
            let attr = |name: &str| {
                input
                    .split(&format!(r#"{name}=""#))
                    .nth(1)
                    .and_then(|v| v.split('"').next())
                    .map(|v| v.replace("&#64;", "@").replace("&#38;", "&"))
            };
            Some((attr("name")?, attr("value")?))
        })
        .collect()
}

#[actix_web::test]
async fn a_sign_in_opened_on_another_device_offers_to_sign_in_there_instead() {
    let app = spawn_app().await;
    let laptop = app.browser();
    let auth = app
        .start_login(&laptop, "Phone.User@Example.com", None)
        .await;
    let token = app.token_for(&auth);
    // The phone opens the link: the broker posts the token there.
    let phone = app.browser();
    let page = app.post_token(&phone, &token).await;
    assert_refused_for_binding(&page);
    assert!(
        page.body
            .contains("Sign in on this device instead, as phone.user@example.com"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("type the code from the new"),
        "{}",
        page.body
    );
    assert!(phone.cookie("clubhouse_session").is_none());

    // One press: a new sign-in for that address, bound to the phone, under the usual checks.
    let fields = sign_in_here_form(&page);
    let fields: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert!(
        fields.contains(&("email", "phone.user@example.com")),
        "{fields:?}"
    );
    let pressed = phone.post_form("/login", &fields).await;
    assert_eq!(pressed.status, StatusCode::SEE_OTHER, "{}", pressed.body);
    let again = crate::helpers::AuthRequest::from_location(&pressed.location());
    assert_eq!(again.param("login_hint"), "phone.user@example.com");
    // The new mail's link, opened on the phone, signs the phone in; the laptop is not.
    let token = app.token_for(&again);
    app.post_token(&phone, &token)
        .await
        .assert_redirect_to("/members");
    phone.assert_signed_in_as("phone.user@example.com").await;
    assert!(laptop.cookie("clubhouse_session").is_none());
    assert_eq!(sessions(&app).await, 1);

    // The button is a form of this site: without the phone's own CSRF token it does nothing.
    let stranger = app.browser();
    let forged = stranger
        .post_form("/login", &[("email", "phone.user@example.com")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
}
