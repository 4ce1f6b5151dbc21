//! HTTP handlers, one file per area. Handlers extract, call the domain, and render.

pub mod account;
pub mod admin;
pub mod assets;
pub mod auth;
pub mod health;
pub mod members;
pub mod pages;

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::{StatusCode, header};
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use askama::Template;

use crate::db::members::Member;
use crate::error::AppError;
use crate::security::Csrf;
use crate::sessions::MemberSession;
use crate::templates::Site;

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
                        .error_handler(|err, _req| crate::startup::form_error(err).into()),
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

/// The signed-in, active member making the request. Handlers that take it are members-only:
/// anonymous visitors are sent to the sign-in page, which brings them back afterwards.
pub struct SignedIn {
    /// The member, as stored now.
    pub member: Member,
    /// Their session.
    pub session: MemberSession,
    /// For an admin, how many requests to join are waiting (shown in the header).
    pub pending_requests: Option<i64>,
}

impl SignedIn {
    /// The page frame for this member.
    pub fn frame(&self, site: &Site, csrf: &Csrf) -> Site {
        site.for_member(&self.member, self.pending_requests, csrf)
    }
}

impl FromRequest for SignedIn {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let session = MemberSession::from_request(req, payload).into_inner();
        let pool = req.app_data::<web::Data<crate::db::Pool>>().cloned();
        let wanted = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        Box::pin(async move {
            let session = session.map_err(|e| AppError::internal(anyhow::anyhow!("{e}")))?;
            if session.database_unavailable() {
                return Err(AppError::DatabaseUnavailable(anyhow::anyhow!(
                    "the session could not be loaded"
                )));
            }
            let sign_in = || AppError::SignInRequired {
                next: wanted.clone(),
            };
            let member_id = session.member_id().ok_or_else(sign_in)?;
            // Loaded with the session, in the same statement.
            match session.member() {
                Some(member) if member.id == member_id && member.status == "active" => {
                    // Admins only: one count, so the header can say what is waiting.
                    let pending_requests = match (&pool, member.role == "admin") {
                        (Some(pool), true) => {
                            Some(crate::db::members::count_pending(pool.get_ref()).await?)
                        }
                        _ => None,
                    };
                    Ok(SignedIn {
                        member,
                        session,
                        pending_requests,
                    })
                }
                // Removed or no longer active: the session ends here.
                _ => {
                    session.sign_out();
                    Err(sign_in())
                }
            }
        })
    }
}

/// A signed-in, active admin. Anyone else gets 403 (anonymous visitors are sent to sign in).
pub struct Admin(pub SignedIn);

impl FromRequest for Admin {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let signed_in = SignedIn::from_request(req, payload);
        Box::pin(async move {
            let me = signed_in.await?;
            if me.member.role == "admin" {
                Ok(Admin(me))
            } else {
                Err(AppError::AdminsOnly)
            }
        })
    }
}
