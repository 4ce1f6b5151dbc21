//! The members-only area.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};

use super::{SignedIn, html};
use crate::db::{self, Pool};
use crate::error::AppError;
use crate::security::Csrf;
use crate::templates::{MembersPage, Site};

/// Names per page of the directory.
pub const DIRECTORY_PAGE: i64 = 100;

/// Query of `GET /members`.
#[derive(serde::Deserialize)]
pub struct DirectoryQuery {
    page: Option<i64>,
}

/// `GET /members`: who is signed in, and the directory of active members, a page at a time
/// (so the page costs the same however many members there are).
pub async fn members_page(
    me: SignedIn,
    query: web::Query<DirectoryQuery>,
    site: web::Data<Site>,
    csrf: Csrf,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, AppError> {
    let page = query.page.unwrap_or(1).clamp(1, 1_000_000);
    // One more than a page, to know whether there is a next one.
    let mut directory = db::members::active_names(
        pool.get_ref(),
        DIRECTORY_PAGE + 1,
        (page - 1) * DIRECTORY_PAGE,
    )
    .await
    .map_err(AppError::internal)?;
    let has_next = directory.len() as i64 > DIRECTORY_PAGE;
    directory.truncate(DIRECTORY_PAGE as usize);
    html(
        StatusCode::OK,
        &MembersPage {
            site: site.for_member(&me.member, &csrf),
            member: me.member,
            directory,
            page,
            has_next,
        },
    )
}
