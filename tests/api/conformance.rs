//! The cases of the official Portier client conformance suite, each against the server's
//! `/verify`. A refused token must leave no session behind.

use actix_web::http::StatusCode;
use serde_json::{Value, json};

use crate::broker::{BROKER_KEY, FORGER_KEY, Signature, rs256_header, sign};
use crate::helpers::{Browser, Page, TestApp, spawn_app};

/// Starts a sign-in for `email`, lets `edit` change the claims the broker would send, signs
/// them normally, and posts the token.
async fn verify_with(app: &TestApp, email: &str, edit: impl FnOnce(&mut Value)) -> (Browser, Page) {
    let browser = app.browser();
    let auth = app.start_login(&browser, email, None).await;
    let mut claims = app
        .broker
        .claims(&app.public_url, &auth.param("nonce"), email);
    edit(&mut claims);
    let page = app.post_token(&browser, &app.broker.token(&claims)).await;
    (browser, page)
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[track_caller]
fn assert_accepted(browser: &Browser, page: &Page) {
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.location(), "/members");
    assert!(browser.cookie("clubhouse_session").is_some());
}

/// Refused, with no session and no member, and the sign-in's nonce still unused: a token that
/// fails its own checks never reaches the nonce.
async fn assert_refused(app: &TestApp, browser: &Browser, page: &Page) {
    assert_refused_leaving(app, browser, page, 1).await;
}

/// Refused as above, with `attempts` login attempts left. A broker-signed token for the wrong
/// address does consume its nonce (the sign-in is spoiled either way).
async fn assert_refused_leaving(app: &TestApp, browser: &Browser, page: &Page, attempts: i64) {
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    assert!(page.body.contains("Sign-in did not work"), "{}", page.body);
    assert!(browser.cookie("clubhouse_session").is_none());
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM members").await, 0);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM login_attempts").await,
        attempts
    );
}

async fn member_email(app: &TestApp) -> String {
    sqlx::query_scalar("SELECT email FROM members")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[actix_web::test]
async fn basic_auth() {
    let app = spawn_app().await;
    let (browser, page) = verify_with(&app, "john@example.com", |_| {}).await;
    assert_accepted(&browser, &page);
    assert_eq!(member_email(&app).await, "john@example.com");
}

#[actix_web::test]
async fn invalid_issuer() {
    let app = spawn_app().await;
    let (b, p) = verify_with(&app, "john@example.com", |c| {
        c["iss"] = json!("http://eve.invalid")
    })
    .await;
    assert_refused(&app, &b, &p).await;
}

#[actix_web::test]
async fn invalid_audience() {
    let app = spawn_app().await;
    let (b, p) = verify_with(&app, "john@example.com", |c| {
        c["aud"] = json!("http://eve.invalid")
    })
    .await;
    assert_refused(&app, &b, &p).await;
}

#[actix_web::test]
async fn expired_token() {
    let app = spawn_app().await;
    let (b, p) = verify_with(&app, "john@example.com", |c| {
        c["exp"] = json!(now() - 10000);
        c["iat"] = json!(now() - 10020);
    })
    .await;
    assert_refused(&app, &b, &p).await;
}

#[actix_web::test]
async fn expired_token_within_leeway() {
    let app = spawn_app().await;
    let (b, p) = verify_with(&app, "john@example.com", |c| {
        c["exp"] = json!(now() - 30);
        c["iat"] = json!(now() - 50);
    })
    .await;
    assert_accepted(&b, &p);
}

#[actix_web::test]
async fn future_issue_time() {
    let app = spawn_app().await;
    let (b, p) = verify_with(&app, "john@example.com", |c| {
        c["exp"] = json!(now() + 10020);
        c["iat"] = json!(now() + 10000);
    })
    .await;
    assert_refused(&app, &b, &p).await;
}

#[actix_web::test]
async fn floating_point_exp() {
    let app = spawn_app().await;
    let (b, p) = verify_with(&app, "john@example.com", |c| {
        c["exp"] = json!(now() as f64 + 5.5);
    })
    .await;
    assert_accepted(&b, &p);
}

#[actix_web::test]
async fn floating_point_iat() {
    let app = spawn_app().await;
    let (b, p) = verify_with(&app, "john@example.com", |c| {
        c["iat"] = json!(now() as f64 - 0.5);
    })
    .await;
    assert_accepted(&b, &p);
}

#[actix_web::test]
async fn future_issue_time_within_leeway() {
    let app = spawn_app().await;
    let (b, p) = verify_with(&app, "john@example.com", |c| {
        c["exp"] = json!(now() + 50);
        c["iat"] = json!(now() + 30);
    })
    .await;
    assert_accepted(&b, &p);
}

#[actix_web::test]
async fn unexpected_email_transform_without_email_original() {
    let app = spawn_app().await;
    let (b, p) = verify_with(&app, "john@example.com", |c| {
        c["email"] = json!("jane@example.com");
        c.as_object_mut().unwrap().remove("email_original");
    })
    .await;
    assert_refused_leaving(&app, &b, &p, 0).await;
}

#[actix_web::test]
async fn unexpected_email_original_transform() {
    let app = spawn_app().await;
    let (b, p) = verify_with(&app, "john@example.com", |c| {
        c["email_original"] = json!("jane@example.com");
    })
    .await;
    assert_refused_leaving(&app, &b, &p, 0).await;
}

#[actix_web::test]
async fn server_normalization() {
    let app = spawn_app().await;
    let (b, p) = verify_with(&app, "İⅢ@İⅢ.example", |c| {
        c["email"] = json!("i̇ⅲ@xn--iiii-qwc.example");
    })
    .await;
    assert_accepted(&b, &p);
    assert_eq!(member_email(&app).await, "i̇ⅲ@xn--iiii-qwc.example");
}

#[actix_web::test]
async fn custom_server_normalization() {
    let app = spawn_app().await;
    let (b, p) = verify_with(&app, "john@example.com", |c| {
        c["email"] = json!("jane@example.com");
    })
    .await;
    assert_accepted(&b, &p);
    assert_eq!(member_email(&app).await, "jane@example.com");
}

#[actix_web::test]
async fn invalid_nonce() {
    let app = spawn_app().await;
    let (b, p) = verify_with(&app, "john@example.com", |c| {
        c["nonce"] = json!("definitely not something the client generates");
    })
    .await;
    assert_refused(&app, &b, &p).await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM login_attempts").await,
        1,
        "real nonce untouched"
    );
}

#[actix_web::test]
async fn nonce_reuse() {
    let app = spawn_app().await;
    let browser = app.browser();
    let auth = app.start_login(&browser, "john@example.com", None).await;
    let token = app.token_for(&auth);
    assert_accepted(&browser, &app.post_token(&browser, &token).await);
    // The same token again, and a fresh token for the same nonce: both refused.
    let again = app.browser();
    let page = app.post_token(&again, &token).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    let fresh = app.broker.token(&app.broker.claims(
        &app.public_url,
        &auth.param("nonce"),
        "john@example.com",
    ));
    let page = app.post_token(&again, &fresh).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(again.cookie("clubhouse_session").is_none());
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 1);
}

async fn verify_signed(app: &TestApp, header: Value, signature: Signature<'_>) -> (Browser, Page) {
    let browser = app.browser();
    let auth = app.start_login(&browser, "john@example.com", None).await;
    let claims = app
        .broker
        .claims(&app.public_url, &auth.param("nonce"), "john@example.com");
    let page = app
        .post_token(&browser, &sign(&header, &claims, signature))
        .await;
    (browser, page)
}

#[actix_web::test]
async fn invalid_key_id() {
    let app = spawn_app().await;
    let header = json!({"alg": "RS256", "kid": "bad key"});
    let (b, p) = verify_signed(&app, header, Signature::Rs256(&BROKER_KEY)).await;
    assert_refused(&app, &b, &p).await;
}

#[actix_web::test]
async fn bad_signature() {
    let app = spawn_app().await;
    let (b, p) = verify_signed(&app, rs256_header(), Signature::Rs256(&FORGER_KEY)).await;
    assert_refused(&app, &b, &p).await;
}

#[actix_web::test]
async fn token_cannot_change_alg_from_jwk() {
    let app = spawn_app().await;
    let header = json!({"alg": "RS384", "kid": BROKER_KEY.kid});
    let (b, p) = verify_signed(&app, header, Signature::Rs384(&BROKER_KEY)).await;
    assert_refused(&app, &b, &p).await;
}

#[actix_web::test]
async fn alg_none_is_refused() {
    let app = spawn_app().await;
    let header = json!({"alg": "none", "kid": BROKER_KEY.kid});
    let (b, p) = verify_signed(&app, header, Signature::None).await;
    assert_refused(&app, &b, &p).await;
}

#[actix_web::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    let app = spawn_app().await;
    let header = json!({"alg": "HS256", "kid": BROKER_KEY.kid});
    let secret = BROKER_KEY.public_der();
    let (b, p) = verify_signed(&app, header, Signature::Hs256(&secret)).await;
    assert_refused(&app, &b, &p).await;
}

#[actix_web::test]
async fn discovery_and_keys_are_fetched_once_over_many_sign_ins() {
    let app = spawn_app().await;
    for i in 0..5 {
        let (b, p) = verify_with(&app, &format!("user{i}@example.com"), |_| {}).await;
        assert_accepted(&b, &p);
    }
    // An unknown kid right after a fetch does not trigger another one (cool-down).
    let header = json!({"alg": "RS256", "kid": "rotated-key"});
    let (_, p) = verify_signed(&app, header, Signature::Rs256(&BROKER_KEY)).await;
    assert_eq!(p.status, StatusCode::BAD_REQUEST);
    use std::sync::atomic::Ordering::SeqCst;
    assert_eq!(app.broker.discovery_fetches.load(SeqCst), 1);
    assert_eq!(app.broker.key_fetches.load(SeqCst), 1);
}
