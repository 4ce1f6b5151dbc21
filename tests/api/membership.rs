//! Who may enter: the signup modes, allowed domains and admin bootstrap.

use actix_web::http::StatusCode;

use crate::helpers::{TestApp, spawn_app_with};

async fn invite_only() -> TestApp {
    spawn_app_with(&[
        ("SIGNUP_MODE", "invite"),
        ("ADMIN_EMAILS", "boss@example.com"),
    ])
    .await
}

#[actix_web::test]
async fn invite_mode_refuses_strangers_after_verification_without_a_session() {
    let app = invite_only().await;
    let browser = app.browser();
    let page = app.sign_in(&browser, "stranger@example.com").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(
        page.body.contains("You are not a member yet"),
        "{}",
        page.body
    );
    assert!(browser.cookie("clubhouse_session").is_none());
    assert!(
        app.member("stranger@example.com").await.is_none(),
        "nothing stored"
    );
    assert_eq!(app.audit_count("sign_in_refused").await, 1);
}

#[actix_web::test]
async fn invite_mode_admits_invited_addresses_whatever_the_spelling() {
    let app = invite_only().await;
    let admin = app.signed_in_browser("boss@example.com").await;
    let page = admin
        .submit("/admin/invite", &[("addresses", "Alice@Example.COM")])
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(app.member("alice@example.com").await.unwrap().1, "invited");

    let alice = app.signed_in_browser("alice@example.com").await;
    alice.assert_signed_in_as("alice@example.com").await;
    assert_eq!(app.member("alice@example.com").await.unwrap().1, "active");
}

#[actix_web::test]
async fn approval_mode_keeps_strangers_pending_until_an_admin_approves() {
    let app = spawn_app_with(&[
        ("SIGNUP_MODE", "approval"),
        ("ADMIN_EMAILS", "boss@example.com"),
    ])
    .await;
    let visitor = app.browser();
    let page = app.sign_in(&visitor, "newbie@example.com").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("Waiting for approval"), "{}", page.body);
    assert!(visitor.cookie("clubhouse_session").is_none());
    let (id, status, _) = app.member("newbie@example.com").await.unwrap();
    assert_eq!(status, "pending");
    // Asking again changes nothing.
    assert_eq!(
        app.sign_in(&app.browser(), "newbie@example.com")
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    let admin = app.signed_in_browser("boss@example.com").await;
    let list = admin.get("/admin?status=pending").await;
    assert!(list.body.contains("newbie@example.com"));
    admin
        .submit(&format!("/admin/members/{id}/approve"), &[])
        .await
        .assert_redirect_to("/admin?notice=approve");
    app.signed_in_browser("newbie@example.com").await;
    assert_eq!(app.audit_count("member_requested").await, 1);
    assert_eq!(app.audit_count("member_approved").await, 1);
}

#[actix_web::test]
async fn approval_mode_rejection_removes_the_request() {
    let app = spawn_app_with(&[
        ("SIGNUP_MODE", "approval"),
        ("ADMIN_EMAILS", "boss@example.com"),
    ])
    .await;
    app.sign_in(&app.browser(), "spam@example.com").await;
    let (id, _, _) = app.member("spam@example.com").await.unwrap();
    let admin = app.signed_in_browser("boss@example.com").await;
    admin
        .submit(&format!("/admin/members/{id}/reject"), &[])
        .await
        .assert_redirect_to("/admin?notice=reject");
    assert!(app.member("spam@example.com").await.is_none());
    assert_eq!(app.audit_count("member_rejected").await, 1);
}

#[actix_web::test]
async fn open_mode_admits_every_verified_address() {
    let app = spawn_app_with(&[("SIGNUP_MODE", "open")]).await;
    app.signed_in_browser("anyone@example.com").await;
    assert_eq!(app.member("anyone@example.com").await.unwrap().1, "active");
}

#[actix_web::test]
async fn allowed_domains_are_admitted_directly_in_invite_and_approval_modes() {
    for mode in ["invite", "approval"] {
        let app = spawn_app_with(&[
            ("SIGNUP_MODE", mode),
            ("ALLOWED_DOMAINS", "Club.Example, team.example"),
        ])
        .await;
        app.signed_in_browser("Kim@club.example").await;
        assert_eq!(
            app.member("kim@club.example").await.unwrap().1,
            "active",
            "{mode}"
        );
        let page = app.sign_in(&app.browser(), "kim@other.example").await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{mode}");
    }
}

#[actix_web::test]
async fn admin_emails_bootstrap_an_admin_and_the_front_page_says_how_until_then() {
    let app = spawn_app_with(&[
        ("SIGNUP_MODE", "invite"),
        ("ADMIN_EMAILS", "boss@example.com"),
    ])
    .await;
    let front = app.browser().get("/").await;
    assert!(
        front.body.contains("This site has no admin yet"),
        "{}",
        front.body
    );
    assert!(front.body.contains("clubhouse admin add"));
    let boss = app.signed_in_browser("boss@example.com").await;
    assert_eq!(app.member("boss@example.com").await.unwrap().2, "admin");
    assert_eq!(boss.get("/admin").await.status, StatusCode::OK);
    let front = app.browser().get("/").await;
    assert!(!front.body.contains("This site has no admin yet"));
}

#[actix_web::test]
async fn a_suspended_member_cannot_sign_in() {
    let app = spawn_app_with(&[
        ("SIGNUP_MODE", "open"),
        ("ADMIN_EMAILS", "boss@example.com"),
    ])
    .await;
    app.signed_in_browser("sam@example.com").await;
    let (id, _, _) = app.member("sam@example.com").await.unwrap();
    let admin = app.signed_in_browser("boss@example.com").await;
    admin
        .submit(&format!("/admin/members/{id}/suspend"), &[])
        .await
        .assert_redirect_to("/admin?notice=suspend");
    let page = app.sign_in(&app.browser(), "sam@example.com").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("suspended"));
}

#[actix_web::test]
async fn signing_in_again_records_the_time_and_promotes_an_address_added_to_admin_emails() {
    let first = spawn_app_with(&[("SIGNUP_MODE", "open")]).await;
    first.signed_in_browser("sam@example.com").await;
    first.signed_in_browser("sue@example.com").await;
    let set_time = async |app: &TestApp, email: &str| {
        sqlx::query("UPDATE members SET last_login_at = 1 WHERE email = $1")
            .bind(email)
            .execute(&app.pool)
            .await
            .unwrap();
    };
    let last_login = async |app: &TestApp, email: &str| -> Option<i64> {
        sqlx::query_scalar("SELECT last_login_at FROM members WHERE email = $1")
            .bind(email)
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };
    set_time(&first, "sam@example.com").await;
    first.signed_in_browser("sam@example.com").await;
    assert!(last_login(&first, "sam@example.com").await > Some(1));
    assert_eq!(first.member("sam@example.com").await.unwrap().2, "member");

    // Sue is suspended: her sign-in is refused and leaves her row as it was.
    sqlx::query("UPDATE members SET status = 'suspended' WHERE email = 'sue@example.com'")
        .execute(&first.pool)
        .await
        .unwrap();
    set_time(&first, "sue@example.com").await;
    let page = first.sign_in(&first.browser(), "sue@example.com").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(last_login(&first, "sue@example.com").await, Some(1));

    // The same database, now with both addresses in ADMIN_EMAILS: Sam, active, becomes an
    // admin when he next signs in; Sue stays a suspended member.
    let crate::helpers::TestApp { db, broker, .. } = first;
    let second = crate::helpers::spawn_app_on(
        db,
        broker,
        &[],
        &[
            ("SIGNUP_MODE", "open"),
            ("ADMIN_EMAILS", "sam@example.com, sue@example.com"),
        ],
    )
    .await;
    set_time(&second, "sam@example.com").await;
    let sam = second.signed_in_browser("sam@example.com").await;
    let (_, status, role) = second.member("sam@example.com").await.unwrap();
    assert_eq!((status.as_str(), role.as_str()), ("active", "admin"));
    assert!(last_login(&second, "sam@example.com").await > Some(1));
    assert_eq!(sam.get("/admin").await.status, StatusCode::OK);
    let page = second.sign_in(&second.browser(), "sue@example.com").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let (_, status, role) = second.member("sue@example.com").await.unwrap();
    assert_eq!((status.as_str(), role.as_str()), ("suspended", "member"));
    assert_eq!(last_login(&second, "sue@example.com").await, Some(1));
}
