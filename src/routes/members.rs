//! The members-only area.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use askama::Template;

use super::SignedIn;
use crate::error::AppError;
use crate::security::Csrf;
use crate::templates::{MembersPage, Site};

/// `GET /members`: who is signed in.
pub async fn members_page(
    me: SignedIn,
    site: web::Data<Site>,
    csrf: Csrf,
) -> Result<HttpResponse, AppError> {
    let page = MembersPage {
        site: site.for_visitor(true, &csrf),
        member: me.member,
    };
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        // Pages for members must not be kept by shared caches or the back button after sign-out.
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(page.render().map_err(AppError::internal)?))
}
