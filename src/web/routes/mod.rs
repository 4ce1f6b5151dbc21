//! HTTP handlers, one file per area. Handlers extract, call the domain, and render.

pub mod account;
pub mod admin;
pub mod assets;
pub mod auth;
pub mod health;
pub mod members;
pub mod pages;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, web};
use askama::Template;

use crate::web::error::AppError;
pub use crate::web::extract::{Admin, Frame, SignedIn};

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(auth::home))
        .route("/login", web::post().to(auth::login))
        .route("/verify", web::post().to(auth::verify))
        .route("/logout", web::post().to(auth::logout))
        .route("/members", web::get().to(members::members_page))
        .route("/account", web::get().to(account::page))
        .route("/account/name", web::post().to(account::rename))
        .route("/account/email", web::post().to(account::change_email))
        .route("/account/sessions/revoke", web::post().to(account::revoke))
        .route(
            "/account/sessions/revoke-others",
            web::post().to(account::revoke_others),
        )
        .route("/account/data.json", web::get().to(account::data))
        .route("/account/delete", web::get().to(account::delete_page))
        .route("/account/delete", web::post().to(account::delete))
        .route("/admin", web::get().to(admin::members))
        .route("/admin/invite", web::post().to(admin::invite))
        .route("/admin/members.csv", web::get().to(admin::export))
        .route(
            "/admin/members/{id}/remove",
            web::get().to(admin::confirm_remove),
        )
        .route("/admin/members/{id}/{action}", web::post().to(admin::act))
        .route("/admin/outbox", web::get().to(admin::outbox))
        .route(
            "/admin/outbox/{id}/retry",
            web::post().to(admin::retry_mail),
        )
        .route("/admin/audit", web::get().to(admin::audit))
        .route("/admin/import", web::get().to(admin::import_page))
        .service(
            web::resource("/admin/import")
                // A pasted member list may be much larger than an ordinary form.
                .app_data(
                    web::FormConfig::default()
                        .limit(admin::IMPORT_LIMIT)
                        .error_handler(|err, _req| crate::web::extract::form_error(err).into()),
                )
                .route(web::post().to(admin::import)),
        )
        .route("/pages/{slug:.*}", web::get().to(pages::page))
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(health::metrics))
        .route("/static/{path:.*}", web::get().to(assets::file))
        .route("/favicon.ico", web::get().to(assets::favicon));
}

/// A page with a status.
pub fn html(status: StatusCode, page: &impl Template) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(page.render()?))
}

/// A unix time as members read it (UTC), or `never`.
pub fn when(t: Option<i64>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "never".into())
}

/// A 303 to a path on this site (or to the broker).
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .finish()
}
