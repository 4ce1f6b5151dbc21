//! Expired sign-ins and sessions: unusable at once, deleted by the background task.

use actix_web::http::StatusCode;

use crate::helpers::spawn_app_with;

#[actix_web::test]
async fn expired_attempts_cannot_be_used_and_are_purged() {
    let app = spawn_app_with(&[("PURGE_INTERVAL", "1s")]).await;
    let browser = app.browser();
    let auth = app.start_login(&browser, "ivy@example.com", None).await;
    let token = app.token_for(&auth);
    let live = app
        .start_login(&app.browser(), "jack@example.com", None)
        .await;

    // Fifteen minutes pass for the first attempt.
    sqlx::query("UPDATE login_attempts SET expires_at = $1 WHERE nonce = $2")
        .bind(chrono::Utc::now().timestamp() - 1)
        .bind(auth.param("nonce"))
        .execute(&app.pool)
        .await
        .unwrap();

    // Bounded wait for the purge task (runs every second).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while app.count("SELECT COUNT(*) FROM login_attempts").await != 1 {
        assert!(std::time::Instant::now() < deadline, "purge did not run");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let remaining: String = sqlx::query_scalar("SELECT nonce FROM login_attempts")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(remaining, live.param("nonce"), "the live attempt is kept");

    let page = app.post_token(&browser, &token).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(browser.cookie("clubhouse_session").is_none());
}

#[actix_web::test]
async fn an_expired_attempt_is_refused_even_before_the_purge() {
    let app = spawn_app_with(&[("PURGE_INTERVAL", "1h")]).await;
    let browser = app.browser();
    let auth = app.start_login(&browser, "kim@example.com", None).await;
    sqlx::query("UPDATE login_attempts SET expires_at = $1")
        .bind(chrono::Utc::now().timestamp() - 1)
        .execute(&app.pool)
        .await
        .unwrap();
    let page = app.post_token(&browser, &app.token_for(&auth)).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("expired"), "{}", page.body);
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 0);
}

#[actix_web::test]
async fn expired_sessions_stop_working_and_are_purged() {
    let app = spawn_app_with(&[("PURGE_INTERVAL", "1s")]).await;
    let browser = app.signed_in_browser("lee@example.com").await;
    sqlx::query("UPDATE sessions SET expires_at = $1")
        .bind(chrono::Utc::now().timestamp() - 1)
        .execute(&app.pool)
        .await
        .unwrap();
    browser
        .get("/members")
        .await
        .assert_redirect_to("/?next=%2Fmembers");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while app.count("SELECT COUNT(*) FROM sessions").await != 0 {
        assert!(std::time::Instant::now() < deadline, "purge did not run");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[actix_web::test]
async fn purge_deletes_in_batches_and_counts() {
    let app = spawn_app_with(&[("PURGE_INTERVAL", "1h")]).await;
    let past = chrono::Utc::now().timestamp() - 10;
    // More than one batch.
    let n = clubhouse::domain::purge::PURGE_BATCH + 250;
    let mut tx = app.pool.pool().begin().await.unwrap();
    for i in 0..n {
        sqlx::query("INSERT INTO login_attempts (nonce, email, next_path, created_at, expires_at) VALUES ($1, $2, '/', $3, $3)")
            .bind(format!("n{i}"))
            .bind("x@example.com")
            .bind(past)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let purged = clubhouse::domain::purge::purge_expired(
        &app.pool,
        chrono::Utc::now().timestamp(),
        std::time::Duration::from_secs(180 * 86_400),
    )
    .await
    .unwrap();
    assert_eq!(purged.login_attempts, n as u64);
    assert_eq!(app.count("SELECT COUNT(*) FROM login_attempts").await, 0);
}
