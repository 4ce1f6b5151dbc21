//! The members-only area.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};

use super::{SignedIn, html};
use crate::db::{self, Pool};
use crate::error::AppError;
use crate::security::Csrf;
use crate::templates::{MembersPage, Site};

/// `GET /members`: who is signed in, and the directory of active members.
pub async fn members_page(
    me: SignedIn,
    site: web::Data<Site>,
    csrf: Csrf,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, AppError> {
    let directory = db::members::active_names(pool.get_ref())
        .await
        .map_err(AppError::internal)?;
    html(
        StatusCode::OK,
        &MembersPage {
            site: site.for_member(&me.member, &csrf),
            member: me.member,
            directory,
        },
    )
}
