//! Two servers on one database behave as one site (instances behind a load balancer).

use actix_web::http::StatusCode;

use crate::helpers::{TestApp, spawn_app_with};

/// A counter's value in a `/metrics` answer (0 when absent).
pub async fn metric(app: &TestApp, line_start: &str) -> u64 {
    let page = app.browser().get("/metrics").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.body
        .lines()
        .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or(0)
}

#[actix_web::test]
async fn a_sign_in_started_on_one_instance_finishes_on_another_and_works_on_both() {
    let a = spawn_app_with(&[("ADMIN_EMAILS", "boss@example.com")]).await;
    let b = a
        .another_instance(&[("ADMIN_EMAILS", "boss@example.com")])
        .await;
    let browser = a.browser();
    let auth = a.start_login(&browser, "ivy@example.com", None).await;
    let token = a.token_for(&auth);
    // The broker's answer reaches the other instance.
    browser.route_to(&b.address);
    a.post_token(&browser, &token)
        .await
        .assert_redirect_to("/members");
    browser.assert_signed_in_as("ivy@example.com").await;
    browser.route_to(&a.address);
    browser.assert_signed_in_as("ivy@example.com").await;

    // The token cannot be used again on either.
    for instance in [&a, &b] {
        let replay = instance.browser();
        let page = a.post_token(&replay, &token).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    }

    // An admin on one instance suspends her: her session ends on the other at once.
    let boss = b.signed_in_browser("boss@example.com").await;
    let (ivy, _, _) = a.member("ivy@example.com").await.unwrap();
    let page = boss
        .submit(&format!("/admin/members/{ivy}/suspend"), &[])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    for instance in [&a, &b] {
        browser.route_to(&instance.address);
        browser
            .get("/members")
            .await
            .assert_redirect_to("/?next=%2Fmembers");
    }
}

#[actix_web::test]
async fn rate_limits_are_shared_by_the_instances() {
    let limit = [("RATE_LIMIT_LOGIN_PER_EMAIL", "3/1h")];
    let a = spawn_app_with(&limit).await;
    let b = a.another_instance(&limit).await;
    let browser = a.browser();
    for instance in [&a, &b, &a] {
        browser.route_to(&instance.address);
        let page = browser
            .submit("/login", &[("email", "rex@example.com")])
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    }
    browser.route_to(&b.address);
    let page = browser
        .submit("/login", &[("email", "rex@example.com")])
        .await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(metric(&b, "clubhouse_rate_limited_total ").await, 1);
}

#[actix_web::test]
async fn purge_tasks_of_two_instances_delete_each_row_once() {
    let every_second = [("PURGE_INTERVAL", "1s")];
    let a = spawn_app_with(&every_second).await;
    let b = a.another_instance(&every_second).await;
    let expired: i64 = 5000;
    sqlx::query(
        "INSERT INTO login_attempts (nonce, email, next_path, created_at, expires_at) \
         WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < $1) \
         SELECT 'old-' || x, 'old' || x || '@example.com', '/', 0, 1 FROM n",
    )
    .bind(expired)
    .execute(&a.pool)
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let line = "clubhouse_purged_rows_total{table=\"login_attempts\"} ";
    loop {
        let left = a.count("SELECT COUNT(*) FROM login_attempts").await;
        let purged = metric(&a, line).await + metric(&b, line).await;
        if left == 0 && purged == expired as u64 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{left} rows left, {purged} counted as purged"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Both are still serving.
    for instance in [&a, &b] {
        let page = instance.browser().get("/readyz").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    }
}
