//! The admin area: every action, refusal for non-admins, last-admin protection, CSV.

use actix_web::http::StatusCode;

use crate::helpers::{Browser, TestApp, spawn_app_with};

async fn site_with_admin() -> (TestApp, Browser) {
    let app = spawn_app_with(&[
        ("SIGNUP_MODE", "open"),
        ("ADMIN_EMAILS", "boss@example.com"),
    ])
    .await;
    let admin = app.signed_in_browser("boss@example.com").await;
    (app, admin)
}

async fn id_of(app: &TestApp, email: &str) -> String {
    app.member(email).await.expect("member").0
}

#[actix_web::test]
async fn non_admins_get_403_and_change_nothing() {
    let (app, _admin) = site_with_admin().await;
    let member = app.signed_in_browser("plain@example.com").await;
    let boss = id_of(&app, "boss@example.com").await;
    for path in [
        "/admin",
        "/admin/audit",
        "/admin/import",
        "/admin/members.csv",
    ] {
        let page = member.get(path).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}");
        assert!(page.body.contains("This page is for admins"));
    }
    for action in ["suspend", "make-member", "remove"] {
        let page = member
            .submit(&format!("/admin/members/{boss}/{action}"), &[])
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{action}");
    }
    let page = member
        .submit("/admin/invite", &[("addresses", "x@example.com")])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(app.member("x@example.com").await.is_none());
    assert_eq!(app.member("boss@example.com").await.unwrap().1, "active");
    // Anonymous visitors are sent to sign in.
    app.browser()
        .get("/admin")
        .await
        .assert_redirect_to("/?next=%2Fadmin");
}

#[actix_web::test]
async fn invite_reports_each_address() {
    let (app, admin) = site_with_admin().await;
    let page = admin
        .submit(
            "/admin/invite",
            &[(
                "addresses",
                "one@example.com, Two@Example.com\nnot-an-address\nboss@example.com",
            )],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains("Invited: one@example.com, two@example.com."),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("Already on the list, left as they are: boss@example.com.")
    );
    assert!(page.body.contains("not-an-address"));
    assert_eq!(app.member("two@example.com").await.unwrap().1, "invited");
    assert_eq!(app.audit_count("member_invited").await, 2);
}

#[actix_web::test]
async fn the_list_searches_filters_and_pages() {
    let (_app, admin) = site_with_admin().await;
    let many: Vec<String> = (0..60).map(|i| format!("m{i:02}@example.com")).collect();
    admin
        .submit("/admin/invite", &[("addresses", &many.join("\n"))])
        .await;
    let first = admin.get("/admin").await;
    assert!(
        first.body.contains("61 members, page 1 of 2"),
        "{}",
        first.body
    );
    assert!(first.body.contains("boss@example.com"));
    let second = admin.get("/admin?page=2").await;
    assert!(second.body.contains("m59@example.com"));
    assert!(!second.body.contains("m00@example.com"));
    let found = admin.get("/admin?q=M07").await;
    assert!(found.body.contains("1 members"), "{}", found.body);
    assert!(found.body.contains("m07@example.com"));
    let admins = admin.get("/admin?role=admin").await;
    assert!(admins.body.contains("1 members"));
    let invited = admin.get("/admin?status=invited").await;
    assert!(invited.body.contains("60 members"));
    // Search text with LIKE wildcards is taken literally.
    assert!(admin.get("/admin?q=%25").await.body.contains("0 members"));
}

#[actix_web::test]
async fn suspension_cuts_a_live_session_and_reactivation_restores_entry() {
    let (app, admin) = site_with_admin().await;
    let member = app.signed_in_browser("sue@example.com").await;
    let id = id_of(&app, "sue@example.com").await;
    admin
        .submit(&format!("/admin/members/{id}/suspend"), &[])
        .await
        .assert_redirect_to("/admin?notice=suspend");
    member
        .get("/members")
        .await
        .assert_redirect_to("/?next=%2Fmembers");
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM sessions WHERE member_id = '{id}'"
        ))
        .await,
        0
    );
    admin
        .submit(&format!("/admin/members/{id}/reactivate"), &[])
        .await
        .assert_redirect_to("/admin?notice=reactivate");
    app.signed_in_browser("sue@example.com").await;
    assert_eq!(app.audit_count("member_suspended").await, 1);
    assert_eq!(app.audit_count("member_reactivated").await, 1);
}

#[actix_web::test]
async fn roles_change_and_removal_ends_everything() {
    let (app, admin) = site_with_admin().await;
    let member = app.signed_in_browser("rob@example.com").await;
    let id = id_of(&app, "rob@example.com").await;
    admin
        .submit(&format!("/admin/members/{id}/make-admin"), &[])
        .await
        .assert_redirect_to("/admin?notice=make-admin");
    assert_eq!(app.member("rob@example.com").await.unwrap().2, "admin");
    assert_eq!(member.get("/admin").await.status, StatusCode::OK);
    admin
        .submit(&format!("/admin/members/{id}/make-member"), &[])
        .await
        .assert_redirect_to("/admin?notice=make-member");
    assert_eq!(member.get("/admin").await.status, StatusCode::FORBIDDEN);
    admin
        .submit(
            &format!("/admin/members/{id}/remove"),
            &[("confirmed", "yes")],
        )
        .await
        .assert_redirect_to("/admin?notice=remove");
    assert!(app.member("rob@example.com").await.is_none());
    member
        .get("/members")
        .await
        .assert_redirect_to("/?next=%2Fmembers");
    assert_eq!(app.audit_count("role_changed").await, 2);
    assert_eq!(app.audit_count("member_removed").await, 1);
    // Unknown members and actions are 404s.
    assert_eq!(
        admin
            .submit(&format!("/admin/members/{id}/suspend"), &[])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        admin
            .submit(&format!("/admin/members/{id}/explode"), &[])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[actix_web::test]
async fn the_last_active_admin_cannot_be_demoted_suspended_or_removed() {
    let (app, admin) = site_with_admin().await;
    let boss = id_of(&app, "boss@example.com").await;
    for action in ["make-member", "suspend", "remove"] {
        let page = admin
            .submit(
                &format!("/admin/members/{boss}/{action}"),
                &[("confirmed", "yes")],
            )
            .await;
        assert_eq!(page.status, StatusCode::CONFLICT, "{action}: {}", page.body);
        assert!(page.body.contains("last active admin"), "{}", page.body);
    }
    let page = admin
        .submit("/account/delete", &[("confirm", "boss@example.com")])
        .await;
    assert_eq!(page.status, StatusCode::CONFLICT);
    assert_eq!(
        app.member("boss@example.com").await.unwrap(),
        (boss.clone(), "active".into(), "admin".into())
    );

    // With a second admin, the first could step down, but the first is listed in
    // ADMIN_EMAILS, which keeps them an admin (the page says so); the second, made on the
    // page, can be demoted, and then the first is the last one again.
    app.signed_in_browser("deputy@example.com").await;
    let deputy = id_of(&app, "deputy@example.com").await;
    admin
        .submit(&format!("/admin/members/{deputy}/make-admin"), &[])
        .await;
    let deputy_browser = app.signed_in_browser("deputy@example.com").await;
    let page = deputy_browser
        .submit(&format!("/admin/members/{boss}/make-member"), &[])
        .await;
    assert_eq!(page.status, StatusCode::CONFLICT);
    assert!(
        page.body.contains("listed in ADMIN_EMAILS"),
        "{}",
        page.body
    );
    deputy_browser
        .submit(&format!("/admin/members/{deputy}/make-member"), &[])
        .await
        .assert_redirect_to("/admin?notice=make-member");
    let page = admin
        .submit(&format!("/admin/members/{boss}/make-member"), &[])
        .await;
    assert_eq!(page.status, StatusCode::CONFLICT);
    assert!(page.body.contains("last active admin"), "{}", page.body);
}

#[actix_web::test]
async fn csv_import_previews_row_by_row_and_writes_nothing_when_a_row_is_bad() {
    let (app, admin) = site_with_admin().await;
    let bad = "email,display_name,role\nann@example.com,Ann,member\nnot-an-address,Bob,member\ncid@example.com,Cid,king\n";
    for apply in [None, Some("1")] {
        let mut fields = vec![("csv", bad)];
        if let Some(a) = apply {
            fields.push(("apply", a));
        }
        let page = admin.submit("/admin/import", &fields).await;
        assert_eq!(
            page.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            page.body
        );
        assert!(page.body.contains("Nothing has been written"));
        assert!(page.body.contains("does not look like an email address"));
        assert!(page.body.contains("king"));
    }
    assert!(
        app.member("ann@example.com").await.is_none(),
        "nothing written"
    );

    let good =
        "Role,EMAIL,display_name,notes\nadmin,Ann@Example.com,Ann,x\n,boss@example.com,The Boss,\n";
    let preview = admin.submit("/admin/import", &[("csv", good)]).await;
    assert_eq!(preview.status, StatusCode::OK);
    assert!(
        preview.body.contains("Import these 2 rows"),
        "{}",
        preview.body
    );
    assert!(
        app.member("ann@example.com").await.is_none(),
        "a preview writes nothing"
    );
    let done = admin
        .submit("/admin/import", &[("csv", good), ("apply", "1")])
        .await;
    assert!(
        done.body.contains("Imported: 1 created, 1 updated."),
        "{}",
        done.body
    );
    assert_eq!(app.member("ann@example.com").await.unwrap().2, "admin");
    assert_eq!(app.member("ann@example.com").await.unwrap().1, "invited");
    let name: String =
        sqlx::query_scalar("SELECT display_name FROM members WHERE email = 'boss@example.com'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(name, "The Boss");
    assert_eq!(app.audit_count("members_imported").await, 1);
}

#[actix_web::test]
async fn an_import_cannot_take_away_the_last_admin() {
    let (app, admin) = site_with_admin().await;
    let page = admin
        .submit(
            "/admin/import",
            &[
                ("csv", "email,role\nboss@example.com,member\n"),
                ("apply", "1"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::CONFLICT, "{}", page.body);
    assert_eq!(app.member("boss@example.com").await.unwrap().2, "admin");
}

#[actix_web::test]
async fn the_csv_export_imports_back_unchanged() {
    let (app, admin) = site_with_admin().await;
    admin
        .submit(
            "/admin/invite",
            &[("addresses", "x1@example.com x2@example.com")],
        )
        .await;
    let export = admin.get("/admin/members.csv").await;
    assert_eq!(export.status, StatusCode::OK);
    assert!(
        export
            .headers
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        export
            .body
            .starts_with("email,display_name,role,status,created_at,last_login_at\n")
    );
    assert_eq!(export.body.lines().count(), 4);
    let before: Vec<(String, String, String, String)> =
        sqlx::query_as("SELECT email, display_name, role, status FROM members ORDER BY email")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    let done = admin
        .submit("/admin/import", &[("csv", &export.body), ("apply", "1")])
        .await;
    assert!(done.body.contains("0 created, 3 updated"), "{}", done.body);
    let after: Vec<(String, String, String, String)> =
        sqlx::query_as("SELECT email, display_name, role, status FROM members ORDER BY email")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(before, after);
}

#[actix_web::test]
async fn the_audit_log_page_shows_and_filters_entries() {
    let (app, admin) = site_with_admin().await;
    app.signed_in_browser("aud@example.com").await;
    let id = id_of(&app, "aud@example.com").await;
    admin
        .submit(&format!("/admin/members/{id}/suspend"), &[])
        .await;
    let page = admin.get("/admin/audit").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("member_suspended"));
    assert!(page.body.contains("sign_in"));
    let filtered = admin.get("/admin/audit?action=member_suspended").await;
    assert!(
        filtered.body.contains("aud@example.com"),
        "{}",
        filtered.body
    );
    assert!(!filtered.body.contains("<td>sign_in</td>"));
}

#[actix_web::test]
async fn admin_forms_need_a_csrf_token() {
    let (app, admin) = site_with_admin().await;
    app.signed_in_browser("vic@example.com").await;
    let id = id_of(&app, "vic@example.com").await;
    let page = admin
        .post_form(&format!("/admin/members/{id}/suspend"), &[])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(app.member("vic@example.com").await.unwrap().1, "active");
}

#[actix_web::test]
async fn invitations_and_imports_refuse_addresses_the_broker_refuses_and_say_why() {
    let (app, admin) = site_with_admin().await;
    let page = admin
        .submit(
            "/admin/invite",
            &[(
                "addresses",
                "good@example.com\nsomeone@example.com%'\nsomeone@example.com'x<'\">)\na@exa_mple.com",
            )],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("Invited: good@example.com."),
        "{}",
        page.body
    );
    for (shown, why) in [
        (
            "someone@example.com%&#39;",
            "not a domain name that can receive email",
        ),
        (
            "someone@example.com&#39;x&#60;&#39;&#34;&#62;)",
            "not a domain name that can receive email",
        ),
        ("a@exa_mple.com", "not a domain name that can receive email"),
    ] {
        let line = page
            .body
            .lines()
            .find(|l| l.contains(shown))
            .unwrap_or_else(|| panic!("{shown} is not named: {}", page.body));
        assert!(line.contains("was not invited"), "{line}");
        assert!(line.contains(why), "{line}");
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM members").await,
        2,
        "boss and good only"
    );

    let csv = "email,display_name\nfine@example.com,Fine\nsomeone@example.com%',Bad\n";
    let preview = admin
        .submit("/admin/import", &[("csv", csv), ("apply", "1")])
        .await;
    assert_eq!(preview.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        preview.body.contains("someone@example.com%&#39;"),
        "{}",
        preview.body
    );
    assert!(
        preview.body.contains("not a domain name"),
        "{}",
        preview.body
    );
    assert!(
        app.member("fine@example.com").await.is_none(),
        "nothing written"
    );
}

#[actix_web::test]
async fn the_audit_pager_keeps_its_filters_encoded_and_navs_have_their_own_names() {
    let app = spawn_app_with(&[
        ("ADMIN_EMAILS", "boss@example.com"),
        ("RATE_LIMIT_LOGIN_PER_EMAIL", "off"),
        ("RATE_LIMIT_LOGIN_PER_EMAIL_ALL", "off"),
    ])
    .await;
    let admin = app.signed_in_browser("boss@example.com").await;
    let member = app.browser();
    for _ in 0..52 {
        app.sign_in(&member, "busy@example.com")
            .await
            .assert_redirect_to("/members");
    }
    let id = id_of(&app, "busy@example.com").await;
    let page = admin
        .get(&format!("/admin/audit?action=sign_in&member={id}"))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let older = format!(r#"href="/admin/audit?action=sign_in&#38;member={id}&#38;page=2""#);
    assert!(page.body.contains(&older), "{}", page.body);
    // Whatever is in the filter is encoded in the links.
    let page = admin.get("/admin/audit?action=sign%20in%26x&page=2").await;
    assert!(
        page.body
            .contains(r#"href="/admin/audit?action=sign+in%26x&#38;page=1""#),
        "{}",
        page.body
    );
    // No two navigation landmarks of a page share a name.
    for path in ["/admin", "/admin/audit", "/admin/outbox"] {
        let body = admin.get(path).await.body;
        let labels: Vec<&str> = body
            .split("<nav")
            .skip(1)
            .filter_map(|n| n.split("aria-label=\"").nth(1)?.split('"').next())
            .collect();
        let mut unique = labels.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(labels.len(), unique.len(), "{path}: {labels:?}");
    }
}
