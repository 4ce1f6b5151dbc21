//! `/pages/…`: the Markdown pages of `CONTENT_DIR`, with their access levels.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};

use super::{Frame, SignedIn, html};
use crate::domain::content::{Access, Content, Lookup, may_read};
use crate::domain::members::Role;
use crate::web::error::AppError;
use crate::web::templates::ContentPage;

/// `GET /pages/{slug}`. Anonymous visitors are sent to sign in for every page that is not
/// public, whether it exists or not, so they cannot learn which pages exist. Members get 404
/// for missing pages and 403 for admins' pages.
pub async fn page(
    slug: web::Path<String>,
    me: Result<SignedIn, AppError>,
    frame: Frame,
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
        if m.member.role == Role::Admin {
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
                    site: frame.0,
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
                site: me.frame(),
                page,
            },
        ),
        Lookup::Found(_) => Err(AppError::AdminsOnly),
        Lookup::Missing => Err(AppError::NotFound),
        Lookup::Broken(e) => Err(AppError::internal(e)),
    }
}
