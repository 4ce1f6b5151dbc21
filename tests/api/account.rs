//! Self-service at /account: name, address, sessions, data, deletion.

use actix_web::http::StatusCode;

use crate::helpers::{AuthRequest, spawn_app, spawn_app_with};

#[actix_web::test]
async fn a_member_renames_themselves_and_the_directory_shows_it() {
    let app = spawn_app().await;
    let me = app.signed_in_browser("nia@example.com").await;
    me.submit("/account/name", &[("display_name", "  Nia Long  ")])
        .await
        .assert_redirect_to("/account?notice=name");
    let page = me.get("/account?notice=name").await;
    assert!(page.body.contains("Your display name was saved."));
    // Only fixed notices are shown, never text from the address.
    assert!(
        !me.get("/account?notice=%3Cb%3Ehi")
            .await
            .body
            .contains("<b>hi")
    );
    let other = app.signed_in_browser("oz@example.com").await;
    assert!(
        other
            .get("/members")
            .await
            .body
            .contains("<li>Nia Long</li>")
    );
    for bad in ["", "   ", &"x".repeat(81)] {
        let page = me.submit("/account/name", &[("display_name", bad)]).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{bad:?}");
    }
    assert_eq!(app.audit_count("display_name_changed").await, 1);
}

#[actix_web::test]
async fn the_directory_lists_only_active_members_and_only_to_members() {
    let app = spawn_app_with(&[("ADMIN_EMAILS", "boss@example.com")]).await;
    let boss = app.signed_in_browser("boss@example.com").await;
    boss.submit("/admin/invite", &[("addresses", "waiting@example.com")])
        .await;
    let page = boss.get("/members").await;
    assert!(page.body.contains("<li>boss</li>"));
    assert!(
        !page.body.contains("<li>waiting</li>"),
        "invited is not active yet"
    );
    app.browser()
        .get("/members")
        .await
        .assert_redirect_to("/?next=%2Fmembers");
}

#[actix_web::test]
async fn the_directory_follows_changes_at_once_here_and_within_its_ttl_from_elsewhere() {
    let app = spawn_app_with(&[("ADMIN_EMAILS", "boss@example.com")]).await;
    let boss = app.signed_in_browser("boss@example.com").await;
    let ann = app.signed_in_browser("ann@example.com").await;
    assert!(boss.get("/members").await.body.contains("<li>ann</li>"));
    // A change made through this server shows at once, on every page of it.
    let (ann_id, _, _) = app.member("ann@example.com").await.unwrap();
    let page = boss
        .submit(&format!("/admin/members/{ann_id}/suspend"), &[])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert!(!boss.get("/members").await.body.contains("<li>ann</li>"));
    ann.get("/members")
        .await
        .assert_redirect_to("/?next=%2Fmembers");

    // A member added by another instance (or the command line) writes only to the database:
    // it shows once the directory's copy is older than its TTL.
    sqlx::query(
        "INSERT INTO members (id, email, display_name, role, status, created_at) \
         VALUES ('elsewhere-1', 'zed@example.com', 'Zed Elsewhere', 'member', 'active', 0)",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let deadline = clubhouse::domain::directory::TTL + std::time::Duration::from_secs(2);
    while !boss
        .get("/members")
        .await
        .body
        .contains("<li>Zed Elsewhere</li>")
    {
        assert!(
            started.elapsed() < deadline,
            "a member added elsewhere did not show within {deadline:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[actix_web::test]
async fn an_address_changes_only_after_the_new_one_is_verified() {
    let app = spawn_app().await;
    let me = app.signed_in_browser("old@example.com").await;
    let elsewhere = app.signed_in_browser("old@example.com").await;
    let (id, _, _) = app.member("old@example.com").await.unwrap();

    let page = me
        .submit("/account/email", &[("email", "New@Example.com")])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let auth = AuthRequest::from_location(&page.location());
    assert_eq!(auth.param("login_hint"), "New@Example.com");
    // Nothing has changed yet.
    assert!(app.member("old@example.com").await.is_some());

    let done = app.post_token(&me, &app.token_for(&auth)).await;
    done.assert_redirect_to("/account?notice=email");
    let (same_id, status, _) = app.member("new@example.com").await.expect("moved");
    assert_eq!(
        (same_id, status.as_str()),
        (id, "active"),
        "same member, same standing"
    );
    assert!(app.member("old@example.com").await.is_none());
    me.assert_signed_in_as("new@example.com").await;
    elsewhere
        .get("/members")
        .await
        .assert_redirect_to("/?next=%2Fmembers");
    assert_eq!(app.audit_count("email_changed").await, 1);
}

#[actix_web::test]
async fn an_address_of_another_member_is_refused_once_verified_and_not_told_before() {
    let app = spawn_app().await;
    let me = app.signed_in_browser("mine@example.com").await;
    app.signed_in_browser("taken@example.com").await;
    // Asking does not tell whether the address is a member's: off to the broker, as for any.
    let page = me
        .submit("/account/email", &[("email", "taken@example.com")])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert!(!page.body.contains("already belongs"));
    // Verified, it is refused, and only its owner (who just proved it) is told.
    let auth = AuthRequest::from_location(&page.location());
    let done = app.post_token(&me, &app.token_for(&auth)).await;
    assert_eq!(done.status, StatusCode::CONFLICT, "{}", done.body);
    assert!(done.body.contains("already belongs to another member"));

    // Free when asked, taken by the time it is verified.
    let page = me
        .submit("/account/email", &[("email", "race@example.com")])
        .await;
    let auth = AuthRequest::from_location(&page.location());
    app.signed_in_browser("race@example.com").await;
    let done = app.post_token(&me, &app.token_for(&auth)).await;
    assert_eq!(done.status, StatusCode::CONFLICT, "{}", done.body);
    assert!(done.body.contains("already belongs to another member"));
    assert!(app.member("mine@example.com").await.is_some(), "unchanged");
    me.assert_signed_in_as("mine@example.com").await;
}

async fn handles(app: &crate::helpers::TestApp, email: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT s.handle FROM sessions s JOIN members m ON m.id = s.member_id WHERE m.email = $1 ORDER BY s.created_at",
    )
    .bind(email)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

#[actix_web::test]
async fn a_member_revokes_another_of_their_sessions() {
    let app = spawn_app().await;
    let laptop = app.signed_in_browser("pia@example.com").await;
    let phone = app.signed_in_browser("pia@example.com").await;
    let page = laptop.get("/account").await;
    assert_eq!(
        page.body.matches("Sign out there").count(),
        1,
        "the other session, not this one"
    );
    assert!(page.body.contains("this browser"));
    let all = handles(&app, "pia@example.com").await;
    assert_eq!(all.len(), 2);
    // The phone's session is the newer one; the laptop ends it.
    laptop
        .submit("/account/sessions/revoke", &[("handle", &all[1])])
        .await
        .assert_redirect_to("/account?notice=revoked");
    phone
        .get("/members")
        .await
        .assert_redirect_to("/?next=%2Fmembers");
    laptop.assert_signed_in_as("pia@example.com").await;
    // Another member's handle does nothing.
    let stranger = app.signed_in_browser("qed@example.com").await;
    stranger
        .submit("/account/sessions/revoke", &[("handle", &all[0])])
        .await;
    laptop.assert_signed_in_as("pia@example.com").await;
    assert_eq!(app.audit_count("session_revoked").await, 1);
}

#[actix_web::test]
async fn sign_out_everywhere_else_keeps_only_this_browser() {
    let app = spawn_app().await;
    let a = app.signed_in_browser("ray@example.com").await;
    let b = app.signed_in_browser("ray@example.com").await;
    let c = app.signed_in_browser("ray@example.com").await;
    a.submit("/account/sessions/revoke-others", &[])
        .await
        .assert_redirect_to("/account?notice=others");
    a.assert_signed_in_as("ray@example.com").await;
    b.get("/members")
        .await
        .assert_redirect_to("/?next=%2Fmembers");
    c.get("/members")
        .await
        .assert_redirect_to("/?next=%2Fmembers");
    assert_eq!(handles(&app, "ray@example.com").await.len(), 1);
}

#[actix_web::test]
async fn the_data_export_holds_the_members_data() {
    let app = spawn_app().await;
    let me = app.signed_in_browser("sia@example.com").await;
    me.submit("/account/name", &[("display_name", "Sia")]).await;
    let page = me.get("/account/data.json").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.headers
            .get("content-disposition")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let data: serde_json::Value = serde_json::from_str(&page.body).unwrap();
    assert_eq!(data["member"]["email"], "sia@example.com");
    assert_eq!(data["member"]["display_name"], "Sia");
    assert_eq!(data["sessions"].as_array().unwrap().len(), 1);
    let actions: Vec<&str> = data["audit_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"sign_in") && actions.contains(&"display_name_changed"),
        "{actions:?}"
    );
    app.browser()
        .get("/account/data.json")
        .await
        .assert_redirect_to("/?next=%2Faccount%2Fdata.json");
}

#[actix_web::test]
async fn deleting_an_account_needs_confirmation_and_leaves_only_a_hash() {
    let app = spawn_app().await;
    let me = app.signed_in_browser("tia@example.com").await;
    let page = me.get("/account/delete").await;
    assert!(page.body.contains("Type your address"));
    let refused = me
        .submit("/account/delete", &[("confirm", "someone@example.com")])
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(app.member("tia@example.com").await.is_some());

    me.submit("/account/delete", &[("confirm", "Tia@Example.com")])
        .await
        .assert_redirect_to("/");
    assert!(app.member("tia@example.com").await.is_none());
    assert_eq!(
        app.count("SELECT COUNT(*) FROM sessions WHERE member_id IS NOT NULL")
            .await,
        0
    );
    me.get("/members")
        .await
        .assert_redirect_to("/?next=%2Fmembers");
    assert_eq!(app.audit_count("account_deleted").await, 1);
    let rows: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT detail, email_hash FROM audit_log")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert!(
        rows.iter()
            .all(|(d, h)| !d.contains("tia") && !h.as_deref().unwrap_or("").contains("tia"))
    );
    // The address is kept only as a keyed hash: not its bare SHA-256, which anyone could
    // find by hashing a list of addresses.
    let bare = clubhouse::web::security::sha256_hex("tia@example.com");
    assert!(rows.iter().any(|(_, h)| h.is_some()), "the hash is kept");
    assert!(
        rows.iter()
            .all(|(_, h)| h.as_deref() != Some(bare.as_str())),
        "{rows:?}"
    );
}

#[actix_web::test]
async fn sign_ins_and_sign_outs_are_audited() {
    let app = spawn_app().await;
    let me = app.signed_in_browser("uma@example.com").await;
    me.submit("/logout", &[]).await.assert_redirect_to("/");
    let page = app.post_token(&app.browser(), "not.a.token").await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        app.audit_actions().await,
        vec!["sign_in", "sign_out", "sign_in_refused"]
    );
}

#[actix_web::test]
async fn old_audit_entries_are_purged_after_the_retention() {
    let app = spawn_app_with(&[("AUDIT_RETENTION", "1d")]).await;
    app.signed_in_browser("vera@example.com").await;
    sqlx::query("UPDATE audit_log SET at = at - 2 * 86400")
        .execute(&app.pool)
        .await
        .unwrap();
    let purged = clubhouse::domain::purge::purge_expired(
        &app.pool,
        chrono::Utc::now().timestamp(),
        std::time::Duration::from_secs(86_400),
    )
    .await
    .unwrap();
    assert_eq!(purged.audit_entries, 1);
    assert!(app.audit_actions().await.is_empty());
}

#[actix_web::test]
async fn the_directory_comes_a_page_at_a_time() {
    let app = spawn_app_with(&[("ADMIN_EMAILS", "boss@example.com")]).await;
    let names: Vec<String> = (0..150).map(|i| format!("d{i:03}@example.com")).collect();
    let csv = format!(
        "email,status\n{}",
        names
            .iter()
            .map(|n| format!("{n},active\n"))
            .collect::<String>()
    );
    let boss = app.signed_in_browser("boss@example.com").await;
    boss.submit("/admin/import", &[("csv", &csv), ("apply", "1")])
        .await;
    let names_on = |body: &str| {
        let start = body.find(r#"<ul class="directory">"#).expect("directory");
        let end = body[start..].find("</ul>").expect("end") + start;
        body[start..end].matches("<li>").count()
    };
    let first = boss.get("/members").await;
    assert_eq!(names_on(&first.body), 100, "a page of names");
    assert!(first.body.contains("More names"));
    let second = boss.get("/members?page=2").await;
    assert_eq!(
        names_on(&second.body),
        51,
        "the rest: 150 imported and boss"
    );
    assert!(second.body.contains("Previous names") && !second.body.contains("More names"));
}
