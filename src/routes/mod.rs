//! HTTP handlers, one file per area. Handlers extract, call the domain, and render.

pub mod auth;
pub mod health;
pub mod members;

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};

use crate::db::{self, Pool, members::Member};
use crate::error::AppError;
use crate::sessions::MemberSession;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(auth::home))
        .route("/login", web::post().to(auth::login))
        .route("/verify", web::post().to(auth::verify))
        .route("/logout", web::post().to(auth::logout))
        .route("/members", web::get().to(members::members_page))
        .route("/healthz", web::get().to(health::healthz))
        .route("/static/style.css", web::get().to(static_css));
}

async fn static_css() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(include_str!("../../static/style.css"))
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
}

impl FromRequest for SignedIn {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let session = MemberSession::from_request(req, payload).into_inner();
        let pool = req.app_data::<web::Data<Pool>>().cloned();
        let wanted = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        Box::pin(async move {
            let session = session.map_err(|e| AppError::internal(anyhow::anyhow!("{e}")))?;
            let pool = pool.ok_or_else(|| AppError::internal(anyhow::anyhow!("no pool")))?;
            let sign_in = || AppError::SignInRequired {
                next: wanted.clone(),
            };
            let member_id = session.member_id().ok_or_else(sign_in)?;
            let member = db::members::find_by_id(pool.get_ref(), &member_id)
                .await
                .map_err(AppError::internal)?;
            match member {
                Some(member) if member.status == "active" => Ok(SignedIn { member, session }),
                // Removed or no longer active: the session ends here.
                _ => {
                    session.sign_out();
                    Err(sign_in())
                }
            }
        })
    }
}
