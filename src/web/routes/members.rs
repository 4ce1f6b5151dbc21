//! The members-only area.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};

use super::{SignedIn, html};
use crate::db::Db;
use crate::domain::directory::Directory;
use crate::web::error::AppError;
use crate::web::templates::MembersPage;

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
    pool: web::Data<Db>,
    directory: web::Data<Directory>,
) -> Result<HttpResponse, AppError> {
    let page = query.page.unwrap_or(1).clamp(1, 1_000_000);
    let names = directory.page(pool.get_ref(), page).await?;
    html(
        StatusCode::OK,
        &MembersPage {
            site: me.frame(),
            member: me.member,
            directory: names.names,
            page,
            has_next: names.has_next,
        },
    )
}
