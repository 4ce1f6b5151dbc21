//! The broker's documents: fetched once for many requests, refetched on a new key id only
//! after the cool-down, and a broker that does not answer does not hang sign-in.

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use futures_util::future::join_all;
use serde_json::json;

use crate::broker::{BROKER_KEY, Signature, TestKey, rs256_header, sign};
use crate::helpers::{TestApp, spawn_app, spawn_app_with};

/// Starts a sign-in for `email` and answers it with a token signed by `key` under `header`
/// (another key id, another key): what `/verify` says.
async fn finish_with(
    app: &TestApp,
    email: &str,
    header: serde_json::Value,
    key: &TestKey,
) -> crate::helpers::Page {
    let browser = app.browser();
    let auth = app.start_login(&browser, email, None).await;
    let claims = app
        .broker
        .claims(&app.public_url, &auth.param("nonce"), email);
    let token = sign(&header, &claims, Signature::Rs256(key));
    app.post_token(&browser, &token).await
}

#[actix_web::test]
async fn concurrent_first_requests_fetch_each_document_once() {
    let app = &spawn_app().await;
    let browsers: Vec<_> = (0..12).map(|_| app.browser()).collect();
    // Twelve sign-ins started at once on a cold cache: one discovery fetch.
    let starts = browsers.iter().enumerate().map(|(i, b)| async move {
        (
            b,
            app.start_login(b, &format!("p{i}@example.com"), None).await,
        )
    });
    let started = join_all(starts).await;
    assert_eq!(app.broker.discovery_fetches.load(SeqCst), 1);
    // Twelve tokens verified at once on a cold key cache: one key fetch.
    let verifies = started
        .iter()
        .map(|(b, auth)| async move { app.post_token(b, &app.token_for(auth)).await });
    for page in join_all(verifies).await {
        page.assert_redirect_to("/members");
    }
    assert_eq!(app.broker.key_fetches.load(SeqCst), 1);
    assert_eq!(app.broker.discovery_fetches.load(SeqCst), 1);
}

#[actix_web::test]
async fn an_unknown_key_id_refetches_keys_only_after_the_cool_down() {
    let app = spawn_app_with(&[("KEY_REFETCH_COOLDOWN", "2s")]).await;
    app.sign_in(&app.browser(), "q@example.com")
        .await
        .assert_redirect_to("/members");
    assert_eq!(app.broker.key_fetches.load(SeqCst), 1);

    let unknown_kid = || {
        finish_with(
            &app,
            "q@example.com",
            json!({"alg": "RS256", "kid": "new-key"}),
            &BROKER_KEY,
        )
    };
    // Within the cool-down: refused without asking the broker.
    assert_eq!(unknown_kid().await.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.broker.key_fetches.load(SeqCst), 1);
    // After it: the broker is asked once (it may have rotated), then not again at once.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(unknown_kid().await.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.broker.key_fetches.load(SeqCst), 2);
    assert_eq!(unknown_kid().await.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.broker.key_fetches.load(SeqCst), 2);
}

#[actix_web::test]
async fn a_broker_that_accepts_but_never_answers_times_out_with_a_friendly_page() {
    // Connections complete (the kernel's backlog) but nothing is ever read or written.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let app = spawn_app_with(&[("BROKER_URL", &url), ("BROKER_TIMEOUT", "2s")]).await;
    let started = Instant::now();
    let page = app
        .browser()
        .submit("/login", &[("email", "r@example.com")])
        .await;
    assert_eq!(
        page.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        page.body
    );
    assert!(page.body.contains("not answering"));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
        "{took:?}"
    );
    drop(silent);
}

#[actix_web::test]
async fn a_broker_that_goes_down_leaves_cached_keys_working_and_comes_back_without_a_restart() {
    let app = spawn_app_with(&[("KEY_REFETCH_COOLDOWN", "1s")]).await;
    app.signed_in_browser("up@example.com").await;
    app.broker.down.store(true, SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Discovery and keys are cached: sign-ins go on.
    app.signed_in_browser("still@example.com").await;
    // A token with a key id we do not know makes us ask the broker, which fails: the cached
    // keys stay, and the next normal sign-in still works.
    let odd = json!({"alg": "RS256", "kid": "not-published"});
    assert_eq!(
        finish_with(&app, "odd@example.com", odd, &BROKER_KEY)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(app.broker.key_fetches.load(SeqCst), 2, "it did ask");
    app.signed_in_browser("after@example.com").await;

    // A server with nothing cached yet says the sign-in service is not answering, at once.
    let cold = crate::helpers::spawn_app_on(
        crate::helpers::TestDb::new().await,
        app.broker.clone(),
        &[("BROKER_URL", &app.broker.origin)],
        &[],
    )
    .await;
    let started = Instant::now();
    let page = cold
        .browser()
        .submit("/login", &[("email", "cold@example.com")])
        .await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.body.contains("The sign-in service is not answering"));
    assert!(started.elapsed() < Duration::from_secs(5));
    // The broker comes back: no restart needed (once the failure the server remembers for a
    // few seconds, so as not to ask a broken broker at every request, has passed).
    app.broker.down.store(false, SeqCst);
    tokio::time::sleep(clubhouse::domain::portier::broker::FAILURE_MEMORY).await;
    cold.signed_in_browser("cold@example.com").await;
}

#[actix_web::test]
async fn a_broker_restarted_with_new_keys_is_followed_without_a_restart() {
    let app = spawn_app_with(&[("KEY_REFETCH_COOLDOWN", "1s")]).await;
    app.signed_in_browser("before@example.com").await;
    assert_eq!(app.broker.key_fetches.load(SeqCst), 1);
    app.broker.restart_with_new_keys();
    // Once the cool-down since the last fetch is over, the new key id makes us look again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    app.signed_in_browser("after@example.com").await;
    assert_eq!(app.broker.key_fetches.load(SeqCst), 2);
    // And the old key is gone from what we trust.
    assert_eq!(
        finish_with(&app, "old@example.com", rs256_header(), &BROKER_KEY)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
}
