//! Signing in and out.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::{Frame, html, see_other};
use actix_web::cookie::Cookie;
use url::Url;

use crate::config::Config;
use crate::db::Db;
use crate::domain::content::Content;
use crate::domain::directory::Directory;
use crate::domain::members;
use crate::domain::portier::Purpose;
use crate::domain::signin::{Answer, SignIn, Start, StartRefused};
use crate::web::error::AppError;
use crate::web::extract::CsrfForm;
use crate::web::safe_path::{self, DEFAULT_NEXT};
use crate::web::security;
use crate::web::sessions::{MemberSession, PreparedSession};
use crate::web::templates::{HomePage, Site};

/// Query of `GET /`.
#[derive(Deserialize)]
pub struct HomeQuery {
    next: Option<String>,
}

/// `GET /`: the landing page and sign-in form; signed-in members go on to the members area.
pub async fn home(
    query: web::Query<HomeQuery>,
    session: MemberSession,
    frame: Frame,
    pool: web::Data<Db>,
    content: web::Data<Content>,
    directory: web::Data<Directory>,
) -> Result<HttpResponse, AppError> {
    let next = safe_path::next_or_default(query.next.as_deref());
    if session.member_id().is_some() {
        return Ok(see_other(next));
    }
    let needs_admin = directory.without_admin(&pool).await?;
    html(
        StatusCode::OK,
        &HomePage {
            site: frame.0,
            email: String::new(),
            next: if next == DEFAULT_NEXT {
                String::new()
            } else {
                next.to_owned()
            },
            error: None,
            needs_admin,
            front: content.front_page(),
        },
    )
}

/// Form of `POST /login`.
#[derive(Deserialize)]
pub struct LoginForm {
    email: String,
    #[serde(default)]
    next: Option<String>,
    csrf_token: Option<String>,
}

/// `POST /login`: sends the visitor to the broker, or back to the form when the address is not
/// one. The answer is the same whether or not the address belongs to a member.
pub async fn login(
    req: HttpRequest,
    form: CsrfForm<LoginForm>,
    signin: web::Data<SignIn>,
    client: web::Data<awc::Client>,
    site: web::Data<Site>,
    content: web::Data<Content>,
) -> Result<HttpResponse, AppError> {
    let next = safe_path::next_or_default(form.next.as_deref());
    let network = security::network_of(&req, &signin.config.trusted_proxies);
    let binding = new_binding(&signin.config);
    let start = Start {
        typed: &form.email,
        next,
        network: &network,
        binding_hash: binding.as_ref().map(|(_, hash)| hash.as_str()),
        purpose: Purpose::SignIn,
        current: None,
    };
    match signin.start(&client, start).await {
        Ok(url) => to_broker(&url, binding),
        Err(StartRefused::BadAddress(problem)) => html(
            StatusCode::BAD_REQUEST,
            &HomePage {
                site: site.for_visitor(form.csrf()),
                email: form.email.trim().chars().take(254).collect(),
                next: next.to_owned(),
                error: Some(problem),
                needs_admin: false,
                front: content.front_page(),
            },
        ),
        Err(e) => Err(e.into()),
    }
}

/// A new binding cookie and its hash, unless binding is off: it ties the sign-in to the
/// browser that starts it.
pub fn new_binding(config: &Config) -> Option<(Cookie<'static>, String)> {
    let names = security::CookieNames::for_site(config);
    config.login_binding.then(|| security::new_binding(names))
}

/// The 303 to the broker, setting the binding cookie.
pub fn to_broker(
    url: &Url,
    binding: Option<(Cookie<'static>, String)>,
) -> Result<HttpResponse, AppError> {
    let mut response = see_other(url.as_str());
    if let Some((cookie, _)) = binding {
        response.add_cookie(&cookie)?;
    }
    Ok(response)
}

/// What the broker posts to `/verify`: a token, or an error.
#[derive(Deserialize)]
pub struct VerifyForm {
    id_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `POST /verify`: the broker's answer. Arrives cross-site, so without the site's Lax cookies
/// and without a CSRF token; what ties it to a sign-in started here is the nonce in the token
/// and the binding cookie (`SameSite=None`) set by `POST /login`.
pub async fn verify(
    req: HttpRequest,
    form: web::Form<VerifyForm>,
    signin: web::Data<SignIn>,
    client: web::Data<awc::Client>,
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
    let config = &signin.config;
    let names = security::CookieNames::for_site(config);
    let binding = security::presented_binding(&req, names);
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown browser");
    let ip = security::client_ip(&req, &config.trusted_proxies).map(|ip| ip.to_string());
    // The session is made now so that the sign-in stores it with the member.
    let prepared = PreparedSession::new(
        user_agent,
        &ip.unwrap_or_default(),
        config.session_idle_timeout,
    )
    .map_err(|e| AppError::Internal(e.into()))?;
    let answer = Answer {
        token: &token,
        binding_hash: binding.as_deref(),
        network: &security::network_of(&req, &config.trusted_proxies),
        session: &prepared.row,
    };
    let finished = signin.finish(&client, answer).await?;
    session.sign_in(&prepared, &finished.member_id, finished.session_stored)?;
    tracing::info!(member = %finished.member_id, "signed in");
    let mut response = see_other(&finished.next);
    if binding.is_some() {
        response.add_cookie(&security::spent_binding(names))?;
    }
    Ok(response)
}

/// Form of `POST /logout`.
#[derive(Deserialize)]
pub struct LogoutForm {
    csrf_token: Option<String>,
}

/// `POST /logout`: ends the session everywhere it is stored.
pub async fn logout(
    _form: CsrfForm<LogoutForm>,
    session: MemberSession,
    pool: web::Data<Db>,
) -> Result<HttpResponse, AppError> {
    if let Some(id) = session.member_id() {
        members::signed_out(&pool, &id).await?;
    }
    session.sign_out();
    Ok(see_other("/"))
}

crate::csrf_protected!(LoginForm, LogoutForm);
