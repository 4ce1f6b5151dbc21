//! The second security round: floods, lockouts, spreadsheet formulas, races, cookies, logs and
//! the broker's transport, each as a member or an owner would meet it.

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use futures_util::future::join_all;

use crate::helpers::{AuthRequest, Browser, TestApp, spawn_app_with};
use crate::process::Server;

async fn id_of(app: &TestApp, email: &str) -> String {
    app.member(email).await.expect("a member").0
}

async fn display_name(app: &TestApp, email: &str) -> String {
    sqlx::query_scalar("SELECT display_name FROM members WHERE email = $1")
        .bind(email)
        .fetch_one(&app.pool)
        .await
        .expect("display name")
}

// 1. Spreadsheet formulas.

#[actix_web::test]
async fn a_formula_in_a_display_name_is_exported_as_text_and_imports_back_unchanged() {
    let app = spawn_app_with(&[("ADMIN_EMAILS", "boss@example.com")]).await;
    let admin = app.signed_in_browser("boss@example.com").await;
    let formula = r#"=HYPERLINK("https://evil.example","x")"#;
    for (email, name) in [
        ("eve@example.com", formula),
        ("minus@example.com", "-5"),
        ("plain@example.com", "O'Brien"),
    ] {
        let member = app.signed_in_browser(email).await;
        let page = member
            .submit("/account/name", &[("display_name", name)])
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    }
    let export = admin.get("/admin/members.csv").await;
    assert_eq!(export.status, StatusCode::OK);
    // The cell starts with an apostrophe: a spreadsheet shows it as text, and runs nothing.
    assert!(
        export
            .body
            .contains(r#"eve@example.com,"'=HYPERLINK(""https://evil.example"",""x"")""#),
        "{}",
        export.body
    );
    assert!(export.body.contains("minus@example.com,'-5,"));
    assert!(export.body.contains("plain@example.com,O'Brien,"));
    assert!(
        !export.body.contains(",=") && !export.body.contains(",\"="),
        "no cell starts with ="
    );

    // Imported again, the export changes nothing: the import takes off exactly that apostrophe.
    let page = admin
        .submit("/admin/import", &[("csv", &export.body), ("apply", "1")])
        .await;
    assert!(page.status.is_success() || page.status == StatusCode::SEE_OTHER);
    assert_eq!(display_name(&app, "eve@example.com").await, formula);
    assert_eq!(display_name(&app, "minus@example.com").await, "-5");
    assert_eq!(display_name(&app, "plain@example.com").await, "O'Brien");
    assert_eq!(
        app.audit_count("members_imported").await,
        1,
        "it was applied"
    );
    assert_eq!(admin.get("/admin/members.csv").await.body, export.body);
}

// 2. A flood of refused tokens.

#[actix_web::test]
async fn a_flood_of_refused_tokens_adds_a_handful_of_rows_and_a_real_sign_in_goes_through() {
    let app = spawn_app_with(&[]).await;
    app.signed_in_browser("warm@example.com").await;
    let audit_before = app.count("SELECT COUNT(*) FROM audit_log").await;
    let limits_before = app.count("SELECT COUNT(*) FROM rate_limits").await;

    let flooder = app.browser_from("127.0.0.2");
    flooder.skip_html_check();
    let started = Instant::now();
    let flood = async {
        let mut statuses = Vec::new();
        for round in 0..100 {
            let posts = (0..20).map(|i| {
                let garbage = format!("garbage.{round}.{i}");
                let flooder = &flooder;
                async move {
                    flooder
                        .post_from_broker("/verify", &[("id_token", &garbage)])
                        .await
                        .status
                }
            });
            statuses.extend(join_all(posts).await);
        }
        statuses
    };
    // A member signs in from elsewhere while the flood runs.
    let member = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let begun = Instant::now();
        let browser = app.browser();
        app.sign_in(&browser, "real@example.com")
            .await
            .assert_redirect_to("/members");
        begun.elapsed()
    };
    let (statuses, sign_in_took) = futures_util::join!(flood, member);
    let flood_took = started.elapsed();
    assert_eq!(statuses.len(), 2000);
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::BAD_REQUEST)
        .count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(refused + limited, 2000, "{statuses:?}");
    // The default allows 20 refusals a minute per network (two windows at most in this run).
    assert!(refused <= 40, "{refused} refused before the limit");
    assert!(limited >= 1960 - 40, "{limited} limited");

    // The flood's audit entries are folded per network, reason and minute, with a count; the
    // sign-in added its own one. A bounded handful, not 2,000.
    let added = app.count("SELECT COUNT(*) FROM audit_log").await - audit_before;
    assert!(added <= 6, "{added} audit rows for a flood of 2,000");
    let counted: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(occurrences), 0) AS BIGINT) FROM audit_log \
         WHERE action = 'sign_in_refused' AND detail LIKE '% from 127.0.0.2'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(
        counted as usize >= refused,
        "{counted} counted, {refused} refused"
    );
    let limits_added = app.count("SELECT COUNT(*) FROM rate_limits").await - limits_before;
    assert!(limits_added <= 3, "{limits_added} counters");
    assert!(
        sign_in_took < Duration::from_secs(3),
        "a real sign-in took {sign_in_took:?} during the flood (which took {flood_took:?})"
    );
    // The folded entry reads as what it is on the admin page.
    let page = app
        .another_instance(&[("ADMIN_EMAILS", "boss@example.com")])
        .await
        .signed_in_browser("boss@example.com")
        .await
        .get("/admin/audit?action=sign_in_refused")
        .await;
    assert!(page.body.contains("from 127.0.0.2 (×"), "{}", page.body);
}

// 3. Targeted lockout.

#[actix_web::test]
async fn sign_ins_started_for_a_member_from_another_network_do_not_lock_them_out() {
    // The default limits, but for the per-network one, which the test's many requests from one
    // address would otherwise reach.
    let app = spawn_app_with(&[("RATE_LIMIT_LOGIN_PER_IP", "10/1m")]).await;
    let attacker = app.browser_from("127.0.0.2");
    let mut refused = 0;
    for _ in 0..10 {
        let page = attacker
            .submit("/login", &[("email", "victim@example.com")])
            .await;
        if page.status == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        }
    }
    assert_eq!(
        refused, 5,
        "5 per 15 minutes from one network for one address"
    );
    // The member, on their own network, signs in.
    let victim = app.browser_from("127.0.0.3");
    app.sign_in(&victim, "victim@example.com")
        .await
        .assert_redirect_to("/members");

    // The starts refused on the attacker's network do not use up the ceiling across networks:
    // with a ceiling of 6, the attacker's 5 let through leave the member's one.
    let app = spawn_app_with(&[
        ("RATE_LIMIT_LOGIN_PER_IP", "100/1m"),
        ("RATE_LIMIT_LOGIN_PER_EMAIL_ALL", "6/15m"),
    ])
    .await;
    let attacker = app.browser_from("127.0.0.2");
    for _ in 0..20 {
        attacker
            .submit("/login", &[("email", "victim@example.com")])
            .await;
    }
    let victim = app.browser_from("127.0.0.3");
    app.sign_in(&victim, "victim@example.com")
        .await
        .assert_redirect_to("/members");
    // And the ceiling then holds for everyone.
    let third = app.browser_from("127.0.0.4");
    let page = third
        .submit("/login", &[("email", "victim@example.com")])
        .await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
}

#[actix_web::test]
async fn the_ceiling_per_address_across_networks_still_protects_the_inbox() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_LOGIN_PER_EMAIL", "5/15m"),
        ("RATE_LIMIT_LOGIN_PER_EMAIL_ALL", "8/15m"),
    ])
    .await;
    let mut started = 0;
    let mut limited = 0;
    for host in 10..14 {
        let browser = app.browser_from(&format!("127.0.0.{host}"));
        for _ in 0..3 {
            let page = browser
                .submit("/login", &[("email", "inbox@example.com")])
                .await;
            match page.status {
                StatusCode::SEE_OTHER => started += 1,
                StatusCode::TOO_MANY_REQUESTS => limited += 1,
                other => panic!("{other}: {}", page.body),
            }
        }
    }
    assert_eq!(
        (started, limited),
        (8, 4),
        "12 starts from 4 networks, 8 let through"
    );
    // Each start let through stored its attempt (with its counters, in one round trip); a
    // refused one stored none.
    assert_eq!(
        app.count("SELECT COUNT(*) FROM login_attempts").await,
        started
    );
}

// 4. Client networks and the request log.

#[actix_web::test]
async fn ipv6_clients_are_counted_by_their_64_behind_a_trusted_proxy() {
    let app = spawn_app_with(&[
        ("TRUSTED_PROXIES", "127.0.0.1"),
        ("RATE_LIMIT_LOGIN_PER_IP", "3/1m"),
    ])
    .await;
    let mut statuses = Vec::new();
    // Four addresses of one /64: one client.
    for host in [
        "2001:db8:1:2::1",
        "2001:db8:1:2::2",
        "2001:db8:1:2:ffff::9",
        "2001:db8:1:2::4",
    ] {
        let browser = app.browser();
        let token = browser.form_token().await;
        let page = browser
            .post_with(
                "/login",
                &[("email", "six@example.com"), ("csrf_token", &token)],
                &[("origin", &app.public_url), ("x-forwarded-for", host)],
                false,
            )
            .await;
        statuses.push(page.status);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::SEE_OTHER,
            StatusCode::SEE_OTHER,
            StatusCode::SEE_OTHER,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // Another /64 is another client.
    let browser = app.browser();
    let token = browser.form_token().await;
    let page = browser
        .post_with(
            "/login",
            &[("email", "six@example.com"), ("csrf_token", &token)],
            &[
                ("origin", &app.public_url),
                ("x-forwarded-for", "2001:db8:1:3::1"),
            ],
            false,
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
}

fn client_ips_logged(log: &str, path: &str) -> Vec<String> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v["span"]["http.target"] == path || v["http.target"] == path)
        .filter_map(|v| {
            v["span"]["http.client_ip"]
                .as_str()
                .or(v["http.client_ip"].as_str())
                .map(str::to_owned)
        })
        .collect()
}

#[actix_web::test]
async fn the_request_log_believes_x_forwarded_for_only_from_a_trusted_proxy() {
    for (trusted, expected) in [("", "127.0.0.1"), ("127.0.0.1", "198.51.100.7")] {
        let server = Server::start(&[("LOG_FORMAT", "json"), ("TRUSTED_PROXIES", trusted)]).await;
        let client = awc::Client::default();
        let res = client
            .get(format!("{}/healthz?probe", server.address))
            .insert_header(("x-forwarded-for", "198.51.100.7"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let ips = client_ips_logged(&server.log_text(), "/healthz?probe");
            if !ips.is_empty() {
                assert_eq!(ips, [expected], "TRUSTED_PROXIES={trusted:?}");
                break;
            }
            assert!(Instant::now() < deadline, "{}", server.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

// 5. The last admin, under concurrency.

#[actix_web::test]
async fn two_admins_demoting_each_other_at_once_always_leave_an_admin() {
    let app = spawn_app_with(&[("RATE_LIMIT_LOGIN_PER_EMAIL_ALL", "off")]).await;
    for round in 0..50 {
        let (a, b) = (
            format!("a{round}@example.com"),
            format!("b{round}@example.com"),
        );
        let one = app.signed_in_browser(&a).await;
        let two = app.signed_in_browser(&b).await;
        // Only these two are admins in this round.
        sqlx::query(
            "UPDATE members SET role = CASE WHEN email IN ($1, $2) THEN 'admin' ELSE 'member' END",
        )
        .bind(&a)
        .bind(&b)
        .execute(&app.pool)
        .await
        .unwrap();
        let (id_a, id_b) = (id_of(&app, &a).await, id_of(&app, &b).await);
        let (t1, t2) = (one.form_token().await, two.form_token().await);
        let p1 = format!("/admin/members/{id_b}/make-member");
        let p2 = format!("/admin/members/{id_a}/make-member");
        let (f1, f2) = ([("csrf_token", t1.as_str())], [("csrf_token", t2.as_str())]);
        let (r1, r2) = futures_util::join!(one.post_form(&p1, &f1), two.post_form(&p2, &f2));
        let admins = app
            .count("SELECT COUNT(*) FROM members WHERE role = 'admin' AND status = 'active'")
            .await;
        assert_eq!(
            admins, 1,
            "round {round}: {} and {} left {admins} admins",
            r1.status, r2.status
        );
        // One demotion is made; the other is refused as the last admin's (409), or, when the
        // first was over before the second was looked at, as no longer an admin's (403).
        let mut statuses = [r1.status, r2.status];
        statuses.sort();
        assert!(
            statuses == [StatusCode::SEE_OTHER, StatusCode::FORBIDDEN]
                || statuses == [StatusCode::SEE_OTHER, StatusCode::CONFLICT],
            "round {round}: {statuses:?}"
        );
    }
}

// 6. Stale admin actions.

#[actix_web::test]
async fn a_reject_after_another_admin_approved_changes_nothing_and_says_so() {
    let app = spawn_app_with(&[
        ("SIGNUP_MODE", "approval"),
        ("ADMIN_EMAILS", "one@example.com, two@example.com"),
        ("RATE_LIMIT_LOGIN_PER_EMAIL_ALL", "off"),
    ])
    .await;
    let one = app.signed_in_browser("one@example.com").await;
    let two = app.signed_in_browser("two@example.com").await;
    for round in 0..20 {
        let email = format!("asker{round}@example.com");
        let asker = app.browser();
        app.sign_in(&asker, &email).await;
        let id = id_of(&app, &email).await;
        let (t1, t2) = (one.form_token().await, two.form_token().await);
        let approve = format!("/admin/members/{id}/approve");
        let reject = format!("/admin/members/{id}/reject");
        let (f1, f2) = ([("csrf_token", t1.as_str())], [("csrf_token", t2.as_str())]);
        let (approved, rejected) =
            futures_util::join!(one.post_form(&approve, &f1), two.post_form(&reject, &f2));
        match app.member(&email).await {
            // Approved first: the reject saw a member who is no longer pending.
            Some((_, status, _)) => {
                assert_eq!(status, "active", "round {round}");
                assert_eq!(approved.status, StatusCode::SEE_OTHER, "round {round}");
                assert_eq!(rejected.status, StatusCode::CONFLICT, "round {round}");
                assert!(rejected.body.contains("changed"), "{}", rejected.body);
            }
            // Rejected first: the approval finds nobody.
            None => {
                assert_eq!(rejected.status, StatusCode::SEE_OTHER, "round {round}");
                assert_ne!(approved.status, StatusCode::SEE_OTHER, "round {round}");
            }
        }
    }
    // And in sequence: the page that was shown is stale.
    let asker = app.browser();
    app.sign_in(&asker, "late@example.com").await;
    let id = id_of(&app, "late@example.com").await;
    let stale = one.form_token().await;
    two.submit(&format!("/admin/members/{id}/approve"), &[])
        .await;
    let page = one
        .post_form(
            &format!("/admin/members/{id}/reject"),
            &[("csrf_token", &stale)],
        )
        .await;
    assert_eq!(page.status, StatusCode::CONFLICT);
    assert!(
        page.body.contains("active now") && page.body.contains("changed"),
        "{}",
        page.body
    );
    assert_eq!(app.member("late@example.com").await.unwrap().1, "active");
}

// 7. Email change.

#[actix_web::test]
async fn an_email_change_answers_alike_for_taken_and_free_addresses_and_is_rate_limited() {
    let app = spawn_app_with(&[("RATE_LIMIT_LOGIN_PER_IP", "4/1m")]).await;
    app.signed_in_browser("taken@example.com").await;
    let me = app.signed_in_browser("me@example.com").await;
    let mut answers = Vec::new();
    for address in ["taken@example.com", "free@example.com"] {
        let page = me.submit("/account/email", &[("email", address)]).await;
        let auth = AuthRequest::from_location(&page.location());
        answers.push((
            page.status,
            page.body.clone(),
            auth.param("login_hint"),
            page.location()
                .split('?')
                .next()
                .unwrap_or_default()
                .to_owned(),
        ));
    }
    assert_eq!(answers[0].0, StatusCode::SEE_OTHER, "{}", answers[0].1);
    assert_eq!(
        (answers[0].0, &answers[0].1, &answers[0].3),
        (answers[1].0, &answers[1].1, &answers[1].3),
        "the same answer, but for the address"
    );
    assert_eq!(answers[0].2, "taken@example.com");
    // Counted like sign-ins: the network's limit (4 a minute here; two sign-ins used two).
    let page = me
        .submit("/account/email", &[("email", "third@example.com")])
        .await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS, "{}", page.body);
    assert!(page.headers.contains_key("retry-after"));
}

// 8. Cookies.

fn set_cookies(page: &crate::helpers::Page) -> Vec<String> {
    page.headers
        .get_all("set-cookie")
        .filter_map(|v| v.to_str().ok())
        .map(str::to_owned)
        .collect()
}

/// Asserts that `page` sets cookie `name` with every one of `attributes` and no `Domain`, as
/// the `__Host-` prefix requires.
fn assert_sets_host_cookie(page: &crate::helpers::Page, name: &str, attributes: &[&str]) {
    let cookies = set_cookies(page);
    assert!(
        cookies.iter().any(|c| c.starts_with(&format!("{name}="))
            && attributes.iter().all(|a| c.contains(a))
            && !c.contains("Domain")),
        "{name} with {attributes:?}: {cookies:?}"
    );
}

#[actix_web::test]
async fn on_https_the_cookies_carry_the_host_prefix_and_older_sessions_carry_over() {
    // A fixed key, so that the test can make the cookie the previous release set.
    let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 64]);
    let app = spawn_app_with(&[
        ("PUBLIC_URL", "https://club.example.org"),
        ("SESSION_KEY", &key),
    ])
    .await;
    let browser = app.browser();
    let home = browser.get("/").await;
    assert_sets_host_cookie(&home, "__Host-clubhouse_csrf", &["Secure", "Path=/"]);
    let start = browser
        .submit("/login", &[("email", "prefix@example.com")])
        .await;
    assert_sets_host_cookie(
        &start,
        "__Host-clubhouse_login",
        &["Secure", "Path=/;", "SameSite=None"],
    );
    let auth = AuthRequest::from_location(&start.location());
    let done = app.post_token(&browser, &app.token_for(&auth)).await;
    done.assert_redirect_to("/members");
    assert_sets_host_cookie(
        &done,
        "__Host-clubhouse_session",
        &["Secure", "HttpOnly", "Path=/"],
    );
    assert!(browser.cookie("clubhouse_session").is_none());

    // A browser that signed in before the rename holds the cookie under its old name, made
    // the way actix-session makes it (encrypted, with the name as associated data).
    let cookie_key = actix_web::cookie::Key::from(&[7u8; 64]);
    // Cookie values travel percent-encoded.
    let current = browser.cookie("__Host-clubhouse_session").unwrap();
    let mut jar = actix_web::cookie::CookieJar::new();
    jar.add_original(
        actix_web::cookie::Cookie::parse_encoded(format!("__Host-clubhouse_session={current}"))
            .unwrap()
            .into_owned(),
    );
    let session_key = jar
        .private(&cookie_key)
        .get("__Host-clubhouse_session")
        .unwrap()
        .value()
        .to_owned();
    let mut old_jar = actix_web::cookie::CookieJar::new();
    old_jar
        .private_mut(&cookie_key)
        .add(actix_web::cookie::Cookie::new(
            "clubhouse_session",
            session_key,
        ));
    let old_value = old_jar
        .get("clubhouse_session")
        .unwrap()
        .encoded()
        .to_string()
        .trim_start_matches("clubhouse_session=")
        .to_owned();

    let earlier = app.browser();
    earlier.set_cookie("clubhouse_session", &old_value);
    let page = earlier.get("/members").await;
    assert_eq!(
        page.status,
        StatusCode::OK,
        "still signed in: {}",
        page.body
    );
    let carried = set_cookies(&page);
    assert!(
        carried
            .iter()
            .any(|c| c.starts_with("__Host-clubhouse_session=")),
        "{carried:?}"
    );
    assert!(
        carried.iter().any(|c| c.starts_with("clubhouse_session=;")
            || c.starts_with("clubhouse_session=\"\"")
            || (c.starts_with("clubhouse_session=") && c.contains("Max-Age=0"))),
        "the old cookie is removed: {carried:?}"
    );
    assert!(earlier.cookie("clubhouse_session").is_none());
    earlier.assert_signed_in_as("prefix@example.com").await;

    // A damaged old cookie ends cleanly: removed, and the visitor is simply signed out.
    let damaged = app.browser();
    damaged.set_cookie("clubhouse_session", "not-a-session");
    let page = damaged.get("/members").await;
    page.assert_redirect_to("/?next=%2Fmembers");
    assert!(damaged.cookie("clubhouse_session").is_none());
}

// 9. Log lines from outside.

#[actix_web::test]
async fn a_line_break_from_the_broker_cannot_forge_a_log_line() {
    let forged = "nothing\n2026-12-01T00:00:00.000000Z  INFO clubhouse: signed in member=admin";
    for format in ["text", "json"] {
        let server = Server::start(&[("LOG_FORMAT", format)]).await;
        let browser = server.browser();
        let page = browser
            .post_from_broker(
                "/verify",
                &[("error", "access_denied"), ("error_description", forged)],
            )
            .await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST);
        let deadline = Instant::now() + Duration::from_secs(5);
        let log = loop {
            let log = server.log_text();
            if log.contains("signed in member=admin") || Instant::now() > deadline {
                break log;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("signed in member=admin"))
            .collect();
        assert_eq!(lines.len(), 1, "{format}: {log}");
        assert!(
            lines[0].contains("the broker reported an error"),
            "{format}: the text stays inside its own line: {log}"
        );
        assert!(
            !log.lines()
                .any(|l| l.starts_with("2026-12-01T00:00:00.000000Z")),
            "{format}: {log}"
        );
        if format == "json" {
            for line in log.lines() {
                serde_json::from_str::<serde_json::Value>(line)
                    .unwrap_or_else(|e| panic!("{e}: {line}"));
            }
        }
    }
}

// 11. The broker's transport.

#[actix_web::test]
async fn a_broker_url_in_clear_is_refused_at_start_naming_the_setting() {
    let port = crate::helpers::free_port();
    let mut child = Server::command(port)
        .env("BROKER_URL", "http://broker.example.org")
        .env("DATABASE_URL", "sqlite::memory:")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the binary");
    // It must stop at once; one that starts serving is killed and fails the test.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the site started with an http:// broker on another host");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("read stderr");
    assert!(
        err.contains("BROKER_URL") && err.contains("must start with https://"),
        "{err}"
    );
}

#[actix_web::test]
async fn a_discovery_document_naming_an_http_endpoint_elsewhere_is_refused() {
    let app = spawn_app_with(&[]).await;
    app.broker
        .set_discovery("authorization_endpoint", "http://broker.example.org/auth");
    let page = app
        .browser()
        .submit("/login", &[("email", "clear@example.com")])
        .await;
    assert_eq!(
        page.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        page.body
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM login_attempts").await, 0);
}

#[actix_web::test]
async fn a_broken_broker_is_asked_once_per_few_seconds_not_at_every_request() {
    let app = spawn_app_with(&[]).await;
    app.broker.down.store(true, SeqCst);
    let browser = app.browser();
    for i in 0..10 {
        let page = browser
            .submit("/login", &[("email", &format!("patient{i}@example.com"))])
            .await;
        assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(app.broker.discovery_fetches.load(SeqCst), 1);
    app.broker.down.store(false, SeqCst);
    tokio::time::sleep(clubhouse::domain::portier::broker::FAILURE_MEMORY).await;
    app.signed_in_browser("patient@example.com").await;
    assert_eq!(app.broker.discovery_fetches.load(SeqCst), 2);
}

// 12. Small ones.

#[actix_web::test]
async fn display_names_with_control_or_direction_characters_are_refused() {
    let app = spawn_app_with(&[]).await;
    let me = app.signed_in_browser("names@example.com").await;
    for bad in [
        "tab\there",
        "bell\u{7}",
        "gro\u{202E}exe.txt",
        "iso\u{2066}late",
    ] {
        let page = me.submit("/account/name", &[("display_name", bad)]).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert!(page.body.contains("direction"), "{}", page.body);
    }
    assert_eq!(display_name(&app, "names@example.com").await, "names");
    let page = me
        .submit("/account/name", &[("display_name", "Zoë العربية")])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
}

#[actix_web::test]
async fn audit_pages_out_of_range_are_a_400_not_a_500() {
    let app = spawn_app_with(&[("ADMIN_EMAILS", "boss@example.com")]).await;
    let admin: Browser = app.signed_in_browser("boss@example.com").await;
    for page in [
        "0",
        "-1",
        "-9223372036854775808",
        "9223372036854775807",
        "99999999999",
    ] {
        let got = admin.get(&format!("/admin/audit?page={page}")).await;
        assert_eq!(
            got.status,
            StatusCode::BAD_REQUEST,
            "page={page}: {}",
            got.body
        );
    }
    assert_eq!(
        admin.get("/admin/audit?page=2").await.status,
        StatusCode::OK
    );
}

// 10. Audit hashes written before they were keyed.

#[actix_web::test]
async fn bare_address_hashes_of_an_older_log_are_keyed_at_start() {
    let app = spawn_app_with(&[]).await;
    app.signed_in_browser("kept@example.com").await;
    let id = id_of(&app, "kept@example.com").await;
    // Entries as the previous release wrote them, and no record of having keyed them.
    let bare = |email: &str| clubhouse::web::security::sha256_hex(email);
    for (entry, hash) in [
        (
            "00000000-0000-7000-8000-000000000001",
            bare("kept@example.com"),
        ),
        (
            "00000000-0000-7000-8000-000000000002",
            bare("gone@example.com"),
        ),
    ] {
        sqlx::query(
            "INSERT INTO audit_log (id, at, action, actor_id, subject_id, email_hash, detail) \
             VALUES ($1, 1, 'member_invited', NULL, $2, $3, '')",
        )
        .bind(entry)
        .bind(&id)
        .bind(hash)
        .execute(&app.pool)
        .await
        .unwrap();
    }
    sqlx::query("DELETE FROM settings WHERE name = 'audit_address_hashes'")
        .execute(&app.pool)
        .await
        .unwrap();
    // The next start keys them.
    let next = app.another_instance(&[]).await;
    let hashes: Vec<String> = sqlx::query_scalar(
        "SELECT email_hash FROM audit_log WHERE id LIKE '00000000-0000-7000-8000-%' ORDER BY id",
    )
    .fetch_all(&next.pool)
    .await
    .unwrap();
    assert_ne!(hashes[0], bare("kept@example.com"));
    assert_ne!(hashes[1], bare("gone@example.com"));
    // A current member's old entries match the entries written about them from now on.
    let browser = next.signed_in_browser("kept@example.com").await;
    browser
        .submit("/account/delete", &[("confirm", "kept@example.com")])
        .await;
    let deleted: Option<String> =
        sqlx::query_scalar("SELECT email_hash FROM audit_log WHERE action = 'account_deleted'")
            .fetch_one(&next.pool)
            .await
            .unwrap();
    assert_eq!(deleted.as_deref(), Some(hashes[0].as_str()));
}
