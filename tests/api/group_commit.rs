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

/// Answered, so committed: the test's own use of the database sees `members` members, each
/// with a session and a sign-in entry, and `attempts_left` attempts not taken.
async fn assert_stored(app: &TestApp, members: i64, attempts_left: i64) {
    assert_eq!(app.count("SELECT COUNT(*) FROM members").await, members);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM sessions WHERE member_id IS NOT NULL")
            .await,
        members
    );
    assert_eq!(app.audit_count("sign_in").await, members);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM login_attempts").await,
        attempts_left
    );
}

#[actix_web::test]
async fn sign_ins_at_once_are_each_stored_whole_and_their_sessions_work() {
    let app = spawn_app_with(&[("SIGNUP_MODE", "open")]).await;
    let signing_in = started(&app, "crowd").await;
    let answers = join_all(signing_in.iter().map(|(b, t)| app.post_token(b, t))).await;
    for answer in &answers {
        answer.assert_redirect_to("/members");
    }
    let n = AT_ONCE as i64;
    assert_stored(&app, n, 0).await;
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

#[actix_web::test]
async fn a_sign_in_that_fails_half_way_among_a_crowd_stores_nothing_and_the_others_hold() {
    let app = spawn_app_with(&[("SIGNUP_MODE", "open")]).await;
    // The database refuses the victim's session, after the member and the entry are written
    // in the same batch (SQLite) or statement (Postgres).
    let refuse: &[&str] = match app.pool.engine() {
        clubhouse::db::Engine::Sqlite => {
            &["CREATE TRIGGER refuse_victim BEFORE INSERT ON sessions \
             WHEN (SELECT email FROM members WHERE id = NEW.member_id) = 'victim@example.com' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"]
        }
        clubhouse::db::Engine::Postgres => &[
            "CREATE FUNCTION refuse_victim() RETURNS trigger AS $$ BEGIN \
             IF NEW.email = 'victim@example.com' THEN RAISE EXCEPTION 'refused by the test'; \
             END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_victim BEFORE INSERT ON members FOR EACH ROW \
             EXECUTE FUNCTION refuse_victim()",
        ],
    };
    for sql in refuse {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&app.pool)
            .await
            .expect("trigger");
    }
    let victim = app.browser();
    let auth = app.start_login(&victim, "victim@example.com", None).await;
    let victim_token = app.token_for(&auth);
    let signing_in = started(&app, "crowd").await;
    let crowd = join_all(signing_in.iter().map(|(b, t)| app.post_token(b, t)));
    let (refused, answers) = futures_util::join!(app.post_token(&victim, &victim_token), crowd);
    assert!(refused.status.is_server_error(), "{}", refused.status);
    for answer in &answers {
        answer.assert_redirect_to("/members");
    }
    assert_eq!(app.member("victim@example.com").await, None);
    // The victim's attempt was not taken: only it is left.
    assert_stored(&app, AT_ONCE as i64, 1).await;
    let pages = join_all(signing_in.iter().map(|(b, _)| b.get("/members"))).await;
    for page in &pages {
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    }
}
