//! Signing in and out.

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::see_other;
use crate::config::Config;
use crate::db::Pool;
use crate::email::EmailAddress;
use crate::error::AppError;
use crate::members::{self, Admission};
use crate::portier::{RelyingParty, StartError, VerifyError};
use crate::safe_path::{self, DEFAULT_NEXT};
use crate::sessions::MemberSession;
use crate::templates::{HomePage, Site};

/// Query of `GET /`.
#[derive(Deserialize)]
pub struct HomeQuery {
    next: Option<String>,
}

fn html(
    status: actix_web::http::StatusCode,
    page: &impl Template,
) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(page.render().map_err(AppError::internal)?))
}

/// `GET /`: the landing page and sign-in form; signed-in members go on to the members area.
pub async fn home(
    query: web::Query<HomeQuery>,
    session: MemberSession,
    site: web::Data<Site>,
) -> Result<HttpResponse, AppError> {
    let next = safe_path::next_or_default(query.next.as_deref());
    if session.member_id().is_some() {
        return Ok(see_other(next));
    }
    html(
        actix_web::http::StatusCode::OK,
        &HomePage {
            site: site.get_ref().clone(),
            email: String::new(),
            next: if next == DEFAULT_NEXT {
                String::new()
            } else {
                next.to_owned()
            },
            error: None,
        },
    )
}

/// Form of `POST /login`.
#[derive(Deserialize)]
pub struct LoginForm {
    email: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /login`: checks the address, stores the attempt and sends the visitor to the broker.
pub async fn login(
    form: web::Form<LoginForm>,
    rp: web::Data<RelyingParty>,
    client: web::Data<awc::Client>,
    site: web::Data<Site>,
) -> Result<HttpResponse, AppError> {
    let next = safe_path::next_or_default(form.next.as_deref());
    let typed = form.email.trim();
    if let Err(problem) = EmailAddress::parse(typed) {
        return html(
            actix_web::http::StatusCode::BAD_REQUEST,
            &HomePage {
                site: site.get_ref().clone(),
                email: typed.chars().take(254).collect(),
                next: next.to_owned(),
                error: Some(problem.to_string()),
            },
        );
    }
    // The broker gets the address as typed; it normalizes and tells us both forms.
    match rp.start(&client, typed, next, None).await {
        Ok(url) => Ok(see_other(url.as_str())),
        Err(StartError::Broker(e)) => Err(AppError::BrokerUnavailable(e.into())),
        Err(e @ StartError::BadEndpoint(_)) => Err(AppError::BrokerUnavailable(e.into())),
        Err(e @ StartError::Database(_)) => Err(AppError::internal(e)),
    }
}

/// What the broker posts to `/verify`: a token, or an error.
#[derive(Deserialize)]
pub struct VerifyForm {
    id_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `POST /verify`: the broker's answer. Arrives cross-site without our cookies; the nonce in
/// the token is what ties it to a sign-in started here.
pub async fn verify(
    form: web::Form<VerifyForm>,
    rp: web::Data<RelyingParty>,
    client: web::Data<awc::Client>,
    pool: web::Data<Pool>,
    config: web::Data<Config>,
    session: MemberSession,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    if let Some(error) = form.error {
        let description = form.error_description.unwrap_or(error);
        return Err(AppError::BrokerReported(
            description.chars().take(500).collect(),
        ));
    }
    let token = form
        .id_token
        .ok_or_else(|| AppError::BadRequest("The sign-in service sent no token.".into()))?;
    let verified = rp.verify(&client, &token).await.map_err(|e| match e {
        VerifyError::Rejected(r) => AppError::SignInRefused(r),
        VerifyError::Broker(b) => AppError::BrokerUnavailable(b.into()),
        VerifyError::Database(d) => AppError::internal(d),
    })?;
    match members::admit(&pool, &config.admin_emails, &verified.email)
        .await
        .map_err(AppError::internal)?
    {
        Admission::Admitted(member) => {
            session.sign_in(&member.id).map_err(AppError::internal)?;
            tracing::info!(member = %member.id, "signed in");
            Ok(see_other(&verified.next_path))
        }
        Admission::Refused(member) => Err(AppError::NotAdmitted {
            status: member.status,
        }),
    }
}

/// `POST /logout`: ends the session everywhere it is stored.
pub async fn logout(session: MemberSession) -> HttpResponse {
    session.sign_out();
    see_other("/")
}
