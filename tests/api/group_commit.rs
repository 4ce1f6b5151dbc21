//! Many sign-ins at once: on SQLite their batches share commits (`db::Held`); each must still
//! be stored whole, answered only once it is committed, and leave room for an admin's change.

use actix_web::http::StatusCode;
use futures_util::future::join_all;

use crate::helpers::{Browser, TestApp, spawn_app_with};

const AT_ONCE: usize = 40;

/// `AT_ONCE` browsers whose sign-ins are started, with the broker's token for each.
async fn started(app: &TestApp, prefix: &str) -> Vec<(Browser, String)> {
    let browsers: Vec<Browser> = (0..AT_ONCE).map(|_| app.browser()).collect();
    let auths = join_all(browsers.iter().enumerate().map(|(i, b)| {
        let email = format!("{prefix}{i}@example.com");
        async move { app.start_login(b, &email, None).await }
    }))
    .await;
    let tokens: Vec<String> = auths.iter().map(|auth| app.token_for(auth)).collect();
    browsers.into_iter().zip(tokens).collect()
}

#[actix_web::test]
async fn sign_ins_at_once_are_each_stored_whole_and_their_sessions_work() {
    let app = spawn_app_with(&[("SIGNUP_MODE", "open")]).await;
    let signing_in = started(&app, "crowd").await;
    let answers = join_all(signing_in.iter().map(|(b, t)| app.post_token(b, t))).await;
    for answer in &answers {
        answer.assert_redirect_to("/members");
    }
    // Answered, so committed: the test's own connection sees all of it.
    let n = AT_ONCE as i64;
    assert_eq!(app.count("SELECT COUNT(*) FROM members").await, n);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM sessions WHERE member_id IS NOT NULL")
            .await,
        n
    );
    assert_eq!(app.audit_count("sign_in").await, n);
    assert_eq!(app.count("SELECT COUNT(*) FROM login_attempts").await, 0);
    let pages = join_all(signing_in.iter().map(|(b, _)| b.get("/members"))).await;
    for page in &pages {
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    }
    // Each token was used once: sent again, none signs anyone in.
    let again = join_all(signing_in.iter().map(|(b, t)| app.post_token(b, t))).await;
    for answer in &again {
        assert_ne!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    }
    assert_eq!(app.audit_count("sign_in").await, n);
}

#[actix_web::test]
async fn an_admin_change_made_during_a_crowd_of_sign_ins_is_made_and_every_sign_in_holds() {
    let app = spawn_app_with(&[
        ("SIGNUP_MODE", "open"),
        ("ADMIN_EMAILS", "boss@example.com"),
    ])
    .await;
    let admin = app.signed_in_browser("boss@example.com").await;
    app.signed_in_browser("sue@example.com").await;
    let sue = app.member("sue@example.com").await.expect("sue").0;
    let signing_in = started(&app, "crowd").await;
    // The suspension is a write transaction on its own connection, sent with the crowd.
    let path = format!("/admin/members/{sue}/suspend");
    let suspend = admin.submit(&path, &[]);
    let crowd = join_all(signing_in.iter().map(|(b, t)| app.post_token(b, t)));
    let (suspended, answers) = futures_util::join!(suspend, crowd);
    suspended.assert_redirect_to("/admin?notice=suspend");
    for answer in &answers {
        answer.assert_redirect_to("/members");
    }
    assert_eq!(
        app.member("sue@example.com").await.expect("sue").1,
        "suspended"
    );
    assert_eq!(app.audit_count("member_suspended").await, 1);
    assert_eq!(app.audit_count("sign_in").await, AT_ONCE as i64 + 2);
}
