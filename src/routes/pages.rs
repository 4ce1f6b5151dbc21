//! `/pages/…`: the Markdown pages of `CONTENT_DIR`, with their access levels.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};

use super::{SignedIn, html};
use crate::content::{Access, Content, Lookup, may_read};
use crate::error::AppError;
use crate::security::Csrf;
use crate::templates::{ContentPage, Site};

/// `GET /pages/{slug}`. Anonymous visitors are sent to sign in for every page that is not
/// public, whether it exists or not, so they cannot learn which pages exist. Members get 404
/// for missing pages and 403 for admins' pages.
pub async fn page(
    slug: web::Path<String>,
    me: Result<SignedIn, AppError>,
    site: web::Data<Site>,
    csrf: Csrf,
    content: web::Data<Content>,
) -> Result<HttpResponse, AppError> {
    let me = match me {
        Ok(me) => Some(me),
        // A member whose session cannot be checked right now is not shown as anonymous.
        Err(e @ AppError::DatabaseUnavailable(_)) => return Err(e),
        Err(_) => None,
    };
    let slug = slug.into_inner();
    let level = me.as_ref().map(|m| {
        if m.member.role == "admin" {
            Access::Admins
        } else {
            Access::Members
        }
    });
    let lookup = content.get(&slug);
    let Some(me) = me else {
        return match lookup {
            Lookup::Found(page) if page.access == Access::Public => html(
                StatusCode::OK,
                &ContentPage {
                    site: site.for_visitor(&csrf),
                    page,
                },
            ),
            _ => Err(AppError::SignInRequired {
                next: format!("/pages/{slug}"),
            }),
        };
    };
    match lookup {
        Lookup::Found(page) if may_read(level, page.access) => html(
            StatusCode::OK,
            &ContentPage {
                site: me.frame(&site, &csrf),
                page,
            },
        ),
        Lookup::Found(_) => Err(AppError::AdminsOnly),
        Lookup::Missing => Err(AppError::NotFound),
        Lookup::Broken(e) => Err(AppError::internal(e)),
    }
}
