//! The whole flow in real browsers (headless Chromium and Firefox ESR, each test in both): the
//! site on `localhost`, the broker on
//! `127.0.0.1`, so the broker's POST back to the site is truly cross-site. Every page visited
//! is saved as a PNG under `target/screenshots/` and checked with axe-core when it is there.

use crate::broker::TestBroker;
use crate::helpers::{TestApp, TestDb, spawn_app_on};
use crate::real_broker::{RealBroker, broker_binary, broker_data_dir, confirmation_link};
use crate::webdriver::{Browser, Driver, Kind};

/// One browser test at a time: Chromium is heavy for two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The browser fixture: runs `test` in each browser (Chromium, then Firefox), one browser test
/// at a time. A browser that is not installed is skipped with a line saying so, or fails the
/// test when `CLUBHOUSE_REQUIRE_BROWSER` is set.
async fn in_each_browser(test: impl AsyncFn(&Driver)) {
    for kind in Kind::ALL {
        let Some(driver) = Driver::start(kind).await else {
            continue;
        };
        let _one = ONE_AT_A_TIME.lock().await;
        test(&driver).await;
    }
}

async fn app_with(settings: &[(&str, &str)]) -> TestApp {
    let broker = TestBroker::start_with_auth_host("127.0.0.1", "127.0.0.1");
    spawn_app_on(TestDb::new().await, broker, settings, &[]).await
}

/// Types the address into the front page's form and sends it; returns at the broker.
async fn ask_to_sign_in(b: &Browser<'_>, app: &TestApp, email: &str, broker_origin: &str) {
    b.wait_for_text("Send me a sign-in link").await;
    b.type_into("#email", email).await;
    b.click("form.sign-in button").await;
    b.wait_for_url("the broker", |u| u.starts_with(broker_origin))
        .await;
    assert!(app.public_url.starts_with("http://localhost"));
}

/// Signs in through the test broker's page, pressing its button as a person would.
async fn sign_in(b: &Browser<'_>, app: &TestApp, email: &str) {
    b.goto(&format!("{}/", app.public_url)).await;
    ask_to_sign_in(b, app, email, &app.broker.origin).await;
    b.click("#continue").await;
    // Back on the site: the broker's page and its POST are done (a refusal is the answer to
    // /verify itself, a success a redirect from it).
    b.wait_for_url("the site", |u| u.starts_with(&app.public_url))
        .await;
}

#[actix_web::test]
async fn a_member_signs_in_lands_on_the_page_asked_for_and_signs_out() {
    in_each_browser(async |driver: &Driver| {
        let app = app_with(&[("SIGNUP_MODE", "open")]).await;
        let b = driver.browser("member").await;

        b.goto(&format!("{}/account", app.public_url)).await;
        b.wait_for_url("the front page", |u| u.contains("/?next=%2Faccount"))
            .await;
        b.capture("front-page").await;
        b.resize(390, 844).await;
        b.capture("front-page-phone").await;
        b.resize(1000, 900).await;
        ask_to_sign_in(&b, &app, "ann@example.com", &app.broker.origin).await;
        b.capture("broker-page").await;
        b.click("#continue").await;
        let landed = b
            .wait_for_url("the account page", |u| u.ends_with("/account"))
            .await;
        assert_eq!(landed, format!("{}/account", app.public_url));
        b.wait_for_text("ann@example.com").await;
        b.capture("account").await;

        b.goto(&format!("{}/members", app.public_url)).await;
        b.wait_for_text("Who is here").await;
        b.capture("members").await;
        b.resize(390, 844).await;
        b.capture("members-phone").await;
        b.resize(1000, 900).await;
        b.goto(&format!("{}/account/delete", app.public_url)).await;
        b.wait_for_text("Delete your account").await;
        b.capture("account-delete").await;
        b.goto(&format!("{}/pages/welcome", app.public_url)).await;
        b.wait_for_text("How to add a page").await;
        b.capture("content-page").await;
        b.goto(&format!("{}/no-such-page", app.public_url)).await;
        b.wait_for_text("Page not found").await;
        b.capture("not-found").await;

        b.goto(&format!("{}/members", app.public_url)).await;
        b.click("form[action='/logout'] button").await;
        b.wait_for_url("the front page", |u| {
            u.trim_end_matches('/') == app.public_url
        })
        .await;
        b.wait_for_text("Send me a sign-in link").await;
        b.capture("signed-out").await;
        b.goto(&format!("{}/members", app.public_url)).await;
        b.wait_for_url("the front page", |u| u.contains("/?next="))
            .await;
        b.close().await;
    })
    .await;
}

#[actix_web::test]
async fn a_stranger_is_refused_on_an_invite_only_site() {
    in_each_browser(async |driver: &Driver| {
        let app = app_with(&[
            ("SIGNUP_MODE", "invite"),
            ("ADMIN_EMAILS", "boss@example.com"),
        ])
        .await;
        let b = driver.browser("stranger").await;
        sign_in(&b, &app, "stranger@example.com").await;
        b.wait_for_text("You are not a member yet").await;
        b.capture("not-a-member").await;
        assert!(app.member("stranger@example.com").await.is_none());
        b.close().await;
    })
    .await;
}

#[actix_web::test]
async fn a_sign_in_finished_in_another_browser_profile_is_refused() {
    in_each_browser(async |driver: &Driver| {
        let app = app_with(&[("SIGNUP_MODE", "open")]).await;
        let started_here = driver.browser("binding-started").await;
        started_here.goto(&format!("{}/", app.public_url)).await;
        ask_to_sign_in(&started_here, &app, "bea@example.com", &app.broker.origin).await;
        let broker_page = started_here.url().await;

        let elsewhere = driver.browser("binding-elsewhere").await;
        elsewhere.goto(&broker_page).await;
        elsewhere.click("#continue").await;
        elsewhere.wait_for_text("started in another browser").await;
        elsewhere.capture("refused-other-browser").await;
        assert_eq!(
            app.count("SELECT COUNT(*) FROM sessions WHERE member_id IS NOT NULL")
                .await,
            0
        );

        // The browser that started it can still finish.
        started_here.click("#continue").await;
        started_here
            .wait_for_url("the members page", |u| u.ends_with("/members"))
            .await;
        started_here.wait_for_text("bea@example.com").await;
        started_here.close().await;

        // The other device takes the page's offer: a new sign-in from there, finished there.
        elsewhere.click("form.sign-in-here button").await;
        elsewhere
            .wait_for_url("the broker", |u| u.starts_with(&app.broker.origin))
            .await;
        elsewhere.click("#continue").await;
        elsewhere
            .wait_for_url("the members page", |u| u.ends_with("/members"))
            .await;
        elsewhere.wait_for_text("bea@example.com").await;
        elsewhere.capture("signed-in-on-this-device").await;
        elsewhere.close().await;
    })
    .await;
}

#[actix_web::test]
async fn an_admin_invites_a_member_who_then_signs_in() {
    in_each_browser(async |driver: &Driver| {
        let app = app_with(&[
            ("SIGNUP_MODE", "invite"),
            ("ADMIN_EMAILS", "boss@example.com"),
        ])
        .await;
        let admin = driver.browser("admin").await;
        sign_in(&admin, &app, "boss@example.com").await;
        admin.wait_for_text("boss@example.com").await;
        admin.goto(&format!("{}/admin", app.public_url)).await;
        admin.wait_for_text("Member list").await;
        admin.capture("admin").await;
        admin.type_into("#addresses", "Guest@Example.com").await;
        admin.click("form[action='/admin/invite'] button").await;
        admin.wait_for_text("Invited: guest@example.com.").await;
        admin.capture("admin-invited").await;
        admin
            .goto(&format!("{}/admin/import", app.public_url))
            .await;
        admin.wait_for_text("Import members").await;
        admin
            .type_into("#csv", "email,display_name\nextra@example.com,Extra\n")
            .await;
        admin.click("form[action='/admin/import'] button").await;
        admin.wait_for_text("Import these 1 rows").await;
        admin.capture("admin-import-preview").await;
        admin.goto(&format!("{}/admin/audit", app.public_url)).await;
        admin.wait_for_text("member_invited").await;
        admin.capture("admin-audit").await;

        let guest = driver.browser("guest").await;
        sign_in(&guest, &app, "guest@example.com").await;
        guest
            .wait_for_url("the members page", |u| u.ends_with("/members"))
            .await;
        guest.wait_for_text("guest@example.com").await;
        guest.capture("guest-members").await;
        admin.close().await;
        guest.close().await;
    })
    .await;
}

#[actix_web::test]
async fn a_member_signs_in_through_the_real_broker_and_its_email() {
    in_each_browser(async |driver: &Driver| {
        let (Some(bin), Some(data)) = (broker_binary(), broker_data_dir()) else {
            assert!(
                std::env::var_os("CLUBHOUSE_REQUIRE_REAL_BROKER").is_none(),
                "portier-broker is required here"
            );
            // The same flow through the test broker, so the browser path is still covered.
            eprintln!("browser: portier-broker is not installed; this run used the test broker");
            let app = app_with(&[("SIGNUP_MODE", "open")]).await;
            let b = driver.browser("test-broker").await;
            b.goto(&format!("{}/members", app.public_url)).await;
            ask_to_sign_in(&b, &app, "Ria@Example.com", &app.broker.origin).await;
            b.click("#continue").await;
            b.wait_for_url("the members page", |u| u.ends_with("/members"))
                .await;
            b.wait_for_text("ria@example.com").await;
            b.close().await;
            return;
        };
        let broker = RealBroker::start(&bin, &data).await;
        eprintln!(
            "browser: this run used the real broker {} at {}",
            bin.display(),
            broker.origin
        );
        let stand_in = TestBroker::start("127.0.0.1");
        let app = spawn_app_on(
            TestDb::new().await,
            stand_in,
            &[("BROKER_URL", &broker.origin), ("SIGNUP_MODE", "open")],
            &[],
        )
        .await;
        let b = driver.browser("real-broker").await;
        b.goto(&format!("{}/members", app.public_url)).await;
        ask_to_sign_in(&b, &app, "Ria@Example.com", &broker.origin).await;
        b.capture("real-broker-check-your-email").await;

        // The person opens the email and follows the link in it.
        let mail = broker.wait_for_mail().await;
        b.goto(&confirmation_link(&mail, &broker.origin)).await;
        // The broker's page posts the token back to the site by itself.
        b.wait_for_url("the members page", |u| {
            u.starts_with(&app.public_url) && u.ends_with("/members")
        })
        .await;
        b.wait_for_text("ria@example.com").await;
        b.capture("real-broker-signed-in").await;
        b.close().await;
    })
    .await;
}

/// Opens the link of a mail from the real broker in `b`; a browser the broker has not seen
/// before is asked to confirm the device first, as a person would.
async fn open_mail_link(b: &Browser<'_>, link: &str, app: &TestApp) {
    b.goto(link).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        if b.url().await.starts_with(&app.public_url) {
            return;
        }
        if b.source().await.contains(r#"name="device_ok""#) {
            b.click("#form button").await;
            b.wait_for_url("the site", |u| u.starts_with(&app.public_url))
                .await;
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stuck at the broker on {link}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The member's own story, with the real broker: started in browser A (the laptop), the
/// mail's link opened in browser B (the phone); B is refused with the offer to sign in there,
/// takes it, and is signed in by the new mail's link; A is not. Then A starts afresh and types
/// the code from its new mail.
#[actix_web::test]
async fn the_link_opened_on_another_device_leads_to_a_sign_in_there_with_the_real_broker() {
    in_each_browser(async |driver: &Driver| {
        let (Some(bin), Some(data)) = (broker_binary(), broker_data_dir()) else {
            assert!(
                std::env::var_os("CLUBHOUSE_REQUIRE_REAL_BROKER").is_none(),
                "portier-broker is required here"
            );
            eprintln!("browser: portier-broker is not installed; skipped");
            return;
        };
        let broker = RealBroker::start(&bin, &data).await;
        let app = spawn_app_on(
            TestDb::new().await,
            TestBroker::start("127.0.0.1"),
            &[("BROKER_URL", &broker.origin), ("SIGNUP_MODE", "open")],
            &[],
        )
        .await;
        let laptop = driver.browser("device-laptop").await;
        laptop.goto(&format!("{}/", app.public_url)).await;
        ask_to_sign_in(&laptop, &app, "Dee@Example.com", &broker.origin).await;
        let mail = broker.wait_for_mail().await;

        let phone = driver.browser("device-phone").await;
        open_mail_link(&phone, &confirmation_link(&mail, &broker.origin), &app).await;
        phone.wait_for_text("Sign in on this device instead").await;
        phone.capture("refused-with-offer").await;
        phone.click("form.sign-in-here button").await;
        phone
            .wait_for_url("the broker", |u| u.starts_with(&broker.origin))
            .await;
        let mail = broker.wait_for_mail().await;
        open_mail_link(&phone, &confirmation_link(&mail, &broker.origin), &app).await;
        phone
            .wait_for_url("the members page", |u| u.ends_with("/members"))
            .await;
        phone.wait_for_text("dee@example.com").await;
        phone.capture("signed-in-on-the-phone").await;
        phone.close().await;
        assert_eq!(
            app.count("SELECT COUNT(*) FROM sessions WHERE member_id IS NOT NULL")
                .await,
            1,
            "only the phone is signed in"
        );

        // The laptop starts again and types the code from the new mail into the broker's page.
        laptop.goto(&format!("{}/", app.public_url)).await;
        ask_to_sign_in(&laptop, &app, "dee@example.com", &broker.origin).await;
        let mail = broker.wait_for_mail().await;
        let (_, code) = crate::real_broker::confirmation(&mail, &broker.origin);
        laptop.type_into("input[name=code]", &code).await;
        laptop.click("#form button").await;
        laptop
            .wait_for_url("the members page", |u| {
                u.starts_with(&app.public_url) && u.ends_with("/members")
            })
            .await;
        laptop.wait_for_text("dee@example.com").await;
        laptop.close().await;
    })
    .await;
}
