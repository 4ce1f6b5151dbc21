//! Mail to members and admins, through an SMTP server that really listens on loopback: the
//! mails themselves, the outbox under faults, several instances, the admin's outbox page,
//! a site without mail, and one delivery through a real MTA when one runs here.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;

use crate::helpers::{Browser, TestApp, free_port, spawn_app_with};
use crate::smtp::{Mode, SmtpSink};

const ADMIN: &str = "secretary@example.com";

async fn site_with_mail(sink: &SmtpSink, extra: &[(&str, &str)]) -> (TestApp, Browser) {
    let url = sink.url();
    let mut settings = vec![
        ("SMTP_URL", url.as_str()),
        ("ADMIN_EMAILS", ADMIN),
        ("SITE_NAME", "Chess Club"),
        ("SIGNUP_MODE", "invite"),
    ];
    settings.extend_from_slice(extra);
    let app = spawn_app_with(&settings).await;
    let admin = app.signed_in_browser(ADMIN).await;
    (app, admin)
}

/// Waits (at most `limit`) until `sql` counts at least `n`.
async fn wait_count(app: &TestApp, sql: &str, n: i64, limit: Duration) {
    let started = Instant::now();
    loop {
        let got = app.count(sql).await;
        if got >= n {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "{sql}: {got} (wanted {n}) after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every http(s) link in a text.
fn links(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || c == '"' || c == '<' || c == '>')
        .filter(|w| w.starts_with("http://") || w.starts_with("https://"))
        .map(|w| w.trim_end_matches(['.', ',', ')']).to_owned())
        .collect()
}

#[actix_web::test]
async fn an_invitation_is_mailed_in_text_and_html_with_links_to_the_site() {
    let sink = SmtpSink::start().await;
    let (app, admin) = site_with_mail(
        &sink,
        &[
            ("MAIL_FROM", "Chess Club <club@example.com>"),
            ("CONTACT_EMAIL", "help@example.com"),
        ],
    )
    .await;
    admin
        .submit("/account/name", &[("display_name", "Ada the Secretary")])
        .await;
    let page = admin
        .submit("/admin/invite", &[("addresses", "Newbie@Example.com")])
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("gets an invitation by mail"),
        "{}",
        page.body
    );

    let messages = sink.wait_for(1, Duration::from_secs(10)).await;
    let m = &messages[0];
    assert_eq!(m.rcpt_to, vec!["newbie@example.com".to_owned()]);
    assert_eq!(m.mail_from, "club@example.com");
    let parsed = m.parsed();
    assert_eq!(parsed.subject(), Some("You are invited to Chess Club"));
    let from = parsed.from().and_then(|a| a.first()).expect("From");
    assert_eq!(from.name(), Some("Chess Club"));
    assert_eq!(from.address(), Some("club@example.com"));
    assert!(
        m.message_id().ends_with("@localhost"),
        "a stable Message-ID of the site: {}",
        m.message_id()
    );
    let text = parsed.body_text(0).expect("a text part").into_owned();
    let html = parsed.body_html(0).expect("an HTML part").into_owned();
    for part in [&text, &html] {
        assert!(part.contains("newbie@example.com"), "{part}");
        assert!(part.contains("Ada the Secretary"), "the inviter: {part}");
        assert!(part.contains(ADMIN), "{part}");
        assert!(part.contains("help@example.com"), "the contact: {part}");
        let found = links(part);
        assert!(!found.is_empty(), "{part}");
        for link in found {
            assert!(
                link.starts_with(&app.public_url),
                "{link} is not on {}",
                app.public_url
            );
            // The mail only says where to go; signing in stays with the broker.
            assert!(
                link.trim_end_matches('/') == app.public_url,
                "a link with more in it: {link}"
            );
        }
    }
    assert!(text.contains("sign in with this address"), "{text}");
    assert!(html.contains("<strong>Chess Club</strong>"), "{html}");

    // The outbox says it was sent, with the server's answer.
    wait_count(
        &app,
        "SELECT COUNT(*) FROM outbox WHERE status = 'sent'",
        1,
        Duration::from_secs(5),
    )
    .await;
    let outbox = admin.get("/admin/outbox").await;
    assert_eq!(outbox.status, StatusCode::OK);
    assert!(
        outbox.body.contains("newbie@example.com"),
        "{}",
        outbox.body
    );
    assert!(
        outbox.body.contains("250 2.0.0 queued as sink-1"),
        "{}",
        outbox.body
    );
    // Only admins see it.
    let member = app.signed_in_browser("newbie@example.com").await;
    assert_eq!(
        member.get("/admin/outbox").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(sink.messages().len(), 1, "sent once");
}

#[actix_web::test]
async fn admins_get_one_digest_per_window_and_approved_members_are_told() {
    let sink = SmtpSink::start().await;
    let second_admin = "treasurer@example.com";
    let admins = format!("{ADMIN},{second_admin}");
    let (app, admin) = site_with_mail(
        &sink,
        &[
            ("SIGNUP_MODE", "approval"),
            ("ADMIN_EMAILS", &admins),
            ("MAIL_DIGEST_INTERVAL", "4s"),
        ],
    )
    .await;
    app.signed_in_browser(second_admin).await;
    // Start just after a window begins, so all three requests fall in one window.
    while clubhouse::db::now() % 4 != 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let strangers = ["ann@example.org", "bob@example.org", "cy@example.org"];
    for email in strangers {
        let page = app.sign_in(&app.browser(), email).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
        assert!(page.body.contains("Waiting for approval"));
    }
    // The admin's header says how many wait, whatever the mail does.
    let members = admin.get("/members").await;
    assert!(
        members.body.contains("3 waiting for approval"),
        "{}",
        members.body
    );
    assert!(
        sink.messages().is_empty(),
        "digests wait for the end of the window"
    );

    let digests = sink.wait_for(2, Duration::from_secs(10)).await;
    let mut to: Vec<String> = digests.iter().flat_map(|m| m.rcpt_to.clone()).collect();
    to.sort();
    assert_eq!(to, vec![ADMIN.to_owned(), second_admin.to_owned()]);
    for digest in &digests {
        let parsed = digest.parsed();
        assert_eq!(
            parsed.subject(),
            Some("Chess Club: 3 requests to join waiting for approval")
        );
        let text = parsed.body_text(0).unwrap().into_owned();
        for email in strangers {
            assert!(text.contains(email), "{text}");
        }
        assert!(
            text.contains(&format!("{}/admin?status=pending", app.public_url)),
            "{text}"
        );
        assert!(
            parsed
                .body_html(0)
                .unwrap()
                .contains("Approve or reject them")
        );
    }
    // One per admin and window: nothing more comes for these requests.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(sink.messages().len(), 2);

    // Approving one tells them they can sign in.
    let id = app.member("bob@example.org").await.unwrap().0;
    admin
        .submit(&format!("/admin/members/{id}/approve"), &[])
        .await
        .assert_redirect_to("/admin?notice=approve");
    let messages = sink.wait_for(3, Duration::from_secs(10)).await;
    let approved = &messages[2];
    assert_eq!(approved.rcpt_to, vec!["bob@example.org".to_owned()]);
    let parsed = approved.parsed();
    assert_eq!(
        parsed.subject(),
        Some("Welcome to Chess Club: you can sign in now")
    );
    assert!(parsed.body_text(0).unwrap().contains(&app.public_url));
    app.signed_in_browser("bob@example.org").await;
}

#[actix_web::test]
async fn a_digest_for_requests_already_handled_is_not_sent() {
    let sink = SmtpSink::start().await;
    let (app, admin) = site_with_mail(
        &sink,
        &[("SIGNUP_MODE", "approval"), ("MAIL_DIGEST_INTERVAL", "3s")],
    )
    .await;
    app.sign_in(&app.browser(), "quick@example.org").await;
    let id = app.member("quick@example.org").await.unwrap().0;
    admin
        .submit(&format!("/admin/members/{id}/reject"), &[])
        .await;
    wait_count(
        &app,
        "SELECT COUNT(*) FROM outbox WHERE status = 'skipped'",
        1,
        Duration::from_secs(10),
    )
    .await;
    assert!(sink.messages().is_empty());
}

#[actix_web::test]
async fn without_smtp_the_owner_gets_the_invitation_to_send_by_hand() {
    let app = spawn_app_with(&[("ADMIN_EMAILS", ADMIN), ("SIGNUP_MODE", "approval")]).await;
    let admin = app.signed_in_browser(ADMIN).await;
    let page = admin
        .submit(
            "/admin/invite",
            &[("addresses", "one@example.org, two@example.org")],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("No mail was sent"), "{}", page.body);
    assert!(page.body.contains("Invitations to send yourself"));
    for email in ["one@example.org", "two@example.org"] {
        assert!(page.body.contains(&format!("To {email}")), "{}", page.body);
    }
    // The text is the invitation mail's, ready to paste.
    assert!(
        page.body.contains("Subject: You are invited to Clubhouse"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains(&format!("open {}/ and sign in", app.public_url))
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM outbox").await, 0);
    let outbox = admin.get("/admin/outbox").await;
    assert!(
        outbox.body.contains("This site sends no mail"),
        "{}",
        outbox.body
    );

    // Approving says that nobody was told.
    app.sign_in(&app.browser(), "asker@example.org").await;
    let members = admin.get("/members").await;
    assert!(
        members.body.contains("1 waiting for approval"),
        "{}",
        members.body
    );
    let id = app.member("asker@example.org").await.unwrap().0;
    let done = admin
        .submit(&format!("/admin/members/{id}/approve"), &[])
        .await;
    let notice = admin.get(&done.location()).await;
    assert!(notice.body.contains("No mail was sent"), "{}", notice.body);
    assert_eq!(app.count("SELECT COUNT(*) FROM outbox").await, 0);
}

#[actix_web::test]
async fn a_mail_server_that_is_down_gets_the_mail_once_it_is_back() {
    let port = free_port();
    let url = format!("smtp://127.0.0.1:{port}");
    let app = spawn_app_with(&[("SMTP_URL", &url), ("ADMIN_EMAILS", ADMIN)]).await;
    let admin = app.signed_in_browser(ADMIN).await;
    admin
        .submit("/admin/invite", &[("addresses", "patient@example.org")])
        .await;
    // The first attempt fails at once; the mail stays queued with the reason.
    wait_count(&app, "SELECT COUNT(*) FROM outbox WHERE status = 'queued' AND attempts >= 1 AND last_response IS NOT NULL", 1, Duration::from_secs(5)).await;
    let outbox = admin.get("/admin/outbox?status=queued").await;
    assert!(
        outbox.body.contains("patient@example.org"),
        "{}",
        outbox.body
    );
    assert!(outbox.body.contains("next try"), "{}", outbox.body);

    let sink = SmtpSink::start_on(port).await;
    // Retries come after 5 s, then 10 s: it arrives within 20 s.
    let messages = sink.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(messages[0].rcpt_to, vec!["patient@example.org".to_owned()]);
    wait_count(
        &app,
        "SELECT COUNT(*) FROM outbox WHERE status = 'sent'",
        1,
        Duration::from_secs(5),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sink.messages().len(), 1, "delivered once");
}

#[actix_web::test]
async fn a_busy_server_is_retried_and_a_refusal_for_good_can_be_retried_by_an_admin() {
    let sink = SmtpSink::start().await;
    sink.set_mode(Mode::TempFail);
    let (app, admin) = site_with_mail(&sink, &[]).await;
    admin
        .submit("/admin/invite", &[("addresses", "later@example.org")])
        .await;
    wait_count(&app, "SELECT COUNT(*) FROM outbox WHERE attempts >= 1 AND status = 'queued' AND last_response IS NOT NULL", 1, Duration::from_secs(5)).await;
    let answer: String = sqlx::query_scalar("SELECT last_response FROM outbox")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(answer.contains("451"), "{answer}");

    // Now the server refuses the recipient for good: the mail fails, no more attempts.
    sink.set_mode(Mode::PermFail);
    wait_count(
        &app,
        "SELECT COUNT(*) FROM outbox WHERE status = 'failed'",
        1,
        Duration::from_secs(15),
    )
    .await;
    let outbox = admin.get("/admin/outbox?status=failed").await;
    assert!(outbox.body.contains("550"), "{}", outbox.body);
    assert!(
        outbox.body.contains("/retry"),
        "a retry button: {}",
        outbox.body
    );
    let id: String = sqlx::query_scalar("SELECT id FROM outbox")
        .fetch_one(&app.pool)
        .await
        .unwrap();

    // The admin fixes the mailbox and retries.
    sink.set_mode(Mode::Accept);
    admin
        .submit(&format!("/admin/outbox/{id}/retry"), &[])
        .await
        .assert_redirect_to("/admin/outbox?notice=retry");
    let messages = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(messages[0].rcpt_to, vec!["later@example.org".to_owned()]);
    assert_eq!(app.audit_count("mail_retried").await, 1);
    // Only a failed mail can be retried.
    wait_count(
        &app,
        "SELECT COUNT(*) FROM outbox WHERE status = 'sent'",
        1,
        Duration::from_secs(5),
    )
    .await;
    let again = admin
        .submit(&format!("/admin/outbox/{id}/retry"), &[])
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(sink.messages().len(), 1);
}

#[actix_web::test]
async fn an_invitation_not_yet_sent_is_dropped_with_its_member() {
    let port = free_port();
    let url = format!("smtp://127.0.0.1:{port}");
    let app = spawn_app_with(&[("SMTP_URL", &url), ("ADMIN_EMAILS", ADMIN)]).await;
    let admin = app.signed_in_browser(ADMIN).await;
    admin
        .submit("/admin/invite", &[("addresses", "oops@example.org")])
        .await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox WHERE status = 'queued'")
            .await,
        1
    );
    let id = app.member("oops@example.org").await.unwrap().0;
    admin
        .submit(
            &format!("/admin/members/{id}/remove"),
            &[("confirmed", "yes")],
        )
        .await
        .assert_redirect_to("/admin?notice=remove");
    assert_eq!(app.count("SELECT COUNT(*) FROM outbox").await, 0);
}

#[actix_web::test]
async fn two_instances_send_each_mail_once() {
    let sink = SmtpSink::start().await;
    // Slow enough that both senders are busy at the same time.
    sink.set_delay_ms(40);
    let (a, admin) = site_with_mail(&sink, &[]).await;
    let b = a
        .another_instance(&[("SMTP_URL", &sink.url()), ("ADMIN_EMAILS", ADMIN)])
        .await;
    let batch = |from: usize| {
        (from..from + 15)
            .map(|i| format!("guest{i}@example.org"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    admin
        .submit("/admin/invite", &[("addresses", &batch(0))])
        .await;
    admin.route_to(&b.address);
    admin
        .submit("/admin/invite", &[("addresses", &batch(15))])
        .await;
    let messages = sink.wait_for(30, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let messages = if sink.messages().len() > messages.len() {
        sink.messages()
    } else {
        messages
    };
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for m in &messages {
        *per_id.entry(m.message_id()).or_default() += 1;
    }
    assert_eq!(per_id.len(), 30, "30 different mails");
    assert!(
        per_id.values().all(|n| *n == 1),
        "each sent once: {per_id:?}"
    );
    assert_eq!(messages.len(), 30);
    assert_eq!(
        a.count("SELECT COUNT(*) FROM outbox WHERE status = 'sent'")
            .await,
        30
    );
}

/// The Maildir the CI's MTA delivers `member1@mailbox.test` to (see `.ci/mta.sh`).
const MAILDIR: &str = "/home/member1/Maildir/new";

#[actix_web::test]
async fn an_invitation_reaches_a_real_mailbox_through_a_real_mta() {
    let required = std::env::var_os("CLUBHOUSE_REQUIRE_MTA").is_some();
    let up = std::net::TcpStream::connect_timeout(
        &"127.0.0.1:25".parse().unwrap(),
        Duration::from_secs(1),
    )
    .is_ok();
    if !up
        || !std::path::Path::new(MAILDIR)
            .parent()
            .is_some_and(|p| p.exists())
    {
        assert!(
            !required,
            "CLUBHOUSE_REQUIRE_MTA is set but no MTA delivers to {MAILDIR} (run .ci/mta.sh)"
        );
        eprintln!("skipped: no MTA on 127.0.0.1:25 with a mailbox at {MAILDIR} (see .ci/mta.sh)");
        return;
    }
    let app = spawn_app_with(&[
        ("SMTP_URL", "smtp://127.0.0.1:25"),
        ("ADMIN_EMAILS", ADMIN),
        ("SITE_NAME", "Real Mail Club"),
    ])
    .await;
    let admin = app.signed_in_browser(ADMIN).await;
    admin
        .submit("/admin/invite", &[("addresses", "member1@mailbox.test")])
        .await;
    wait_count(
        &app,
        "SELECT COUNT(*) FROM outbox WHERE status = 'sent'",
        1,
        Duration::from_secs(20),
    )
    .await;
    let id: String = sqlx::query_scalar("SELECT id FROM outbox")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    // Delivery into the mailbox is the MTA's own, asynchronous work: look for our mail there.
    let started = Instant::now();
    let delivered = loop {
        let found = std::fs::read_dir(MAILDIR).ok().and_then(|entries| {
            entries.flatten().find_map(|e| {
                let bytes = std::fs::read(e.path()).ok()?;
                String::from_utf8_lossy(&bytes)
                    .contains(&id)
                    .then(|| (e.path(), bytes))
            })
        });
        if let Some(found) = found {
            break found;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the mail {id} did not reach {MAILDIR}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (path, bytes) = delivered;
    let parsed = mail_parser::MessageParser::default().parse(&bytes).unwrap();
    assert_eq!(parsed.subject(), Some("You are invited to Real Mail Club"));
    assert!(
        parsed
            .body_text(0)
            .unwrap()
            .contains("member1@mailbox.test")
    );
    assert!(parsed.body_html(0).unwrap().contains(&app.public_url));
    let _ = std::fs::remove_file(path);
}

#[actix_web::test]
async fn a_mail_still_refused_after_its_three_days_fails_for_good() {
    let sink = SmtpSink::start().await;
    sink.set_mode(Mode::TempFail);
    let (app, admin) = site_with_mail(&sink, &[]).await;
    admin
        .submit("/admin/invite", &[("addresses", "far-away@example.org")])
        .await;
    wait_count(
        &app,
        "SELECT COUNT(*) FROM outbox WHERE status = 'queued' AND last_response IS NOT NULL",
        1,
        Duration::from_secs(5),
    )
    .await;
    let (created, give_up): (i64, i64) =
        sqlx::query_as("SELECT created_at, give_up_at FROM outbox")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(give_up - created, 3 * 86_400, "three days to deliver it");
    // Three days pass (the clock moved on, as far as this mail is concerned).
    sqlx::query("UPDATE outbox SET give_up_at = $1, next_attempt_at = $1, created_at = $2")
        .bind(clubhouse::db::now() - 1)
        .bind(clubhouse::db::now() - 3 * 86_400)
        .execute(&app.pool)
        .await
        .unwrap();
    wait_count(
        &app,
        "SELECT COUNT(*) FROM outbox WHERE status = 'failed'",
        1,
        Duration::from_secs(10),
    )
    .await;
    let answer: String = sqlx::query_scalar("SELECT last_response FROM outbox")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(answer.starts_with("gave up after 2 attempts"), "{answer}");
    assert!(answer.contains("451"), "{answer}");
    let outbox = admin.get("/admin/outbox?status=failed").await;
    assert!(
        outbox.body.contains("far-away@example.org"),
        "{}",
        outbox.body
    );
    assert!(sink.messages().is_empty());
}
