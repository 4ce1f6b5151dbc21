//! Signing in and out.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::{html, see_other};
use crate::audit::{self, Action, AddressHasher, Event};
use crate::config::Config;
use crate::content::Content;
use crate::db::{self, Pool};
use crate::directory::Directory;
use crate::email::EmailAddress;
use crate::error::{AppError, Limited, Refusal};
use crate::mail::Mailer;
use crate::members::{self, Admission, ChangeError};
use crate::metrics::Metrics;
use crate::portier::{Purpose, Rejection, RelyingParty, StartError, VerifyError};
use crate::rate_limit::{self, RefusalGate};
use crate::safe_path::{self, DEFAULT_NEXT};
use crate::security::{self, Csrf, CsrfForm};
use crate::sessions::MemberSession;
use crate::templates::{HomePage, Site};

/// Query of `GET /`.
#[derive(Deserialize)]
pub struct HomeQuery {
    next: Option<String>,
}

/// `GET /`: the landing page and sign-in form; signed-in members go on to the members area.
pub async fn home(
    query: web::Query<HomeQuery>,
    session: MemberSession,
    site: web::Data<Site>,
    csrf: Csrf,
    pool: web::Data<Pool>,
    content: web::Data<Content>,
) -> Result<HttpResponse, AppError> {
    let next = safe_path::next_or_default(query.next.as_deref());
    if session.member_id().is_some() {
        return Ok(see_other(next));
    }
    let needs_admin = db::members::active_admins(pool.get_ref()).await? == 0;
    html(
        StatusCode::OK,
        &HomePage {
            site: site.for_visitor(&csrf),
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

/// Counts the start of a sign-in or address change (see [`rate_limit::sign_in_start`]); a
/// 429 when a limit is reached.
pub async fn limit_start(
    req: &HttpRequest,
    pool: &Pool,
    config: &Config,
    hasher: &AddressHasher,
    email: Option<&EmailAddress>,
) -> Result<(), AppError> {
    let network = security::network_of(req, &config.trusted_proxies);
    match rate_limit::sign_in_start(pool, config, hasher, &network, email).await? {
        Some(retry_after) => Err(AppError::RateLimited {
            retry_after,
            what: Limited::Starts,
        }),
        None => Ok(()),
    }
}

/// `POST /login`: checks the address, stores the attempt and sends the visitor to the broker.
/// The answer is the same whether or not the address belongs to a member.
#[allow(clippy::too_many_arguments)]
pub async fn login(
    req: HttpRequest,
    form: CsrfForm<LoginForm>,
    csrf: Csrf,
    rp: web::Data<RelyingParty>,
    client: web::Data<awc::Client>,
    site: web::Data<Site>,
    pool: web::Data<Pool>,
    config: web::Data<Config>,
    content: web::Data<Content>,
    hasher: web::Data<AddressHasher>,
) -> Result<HttpResponse, AppError> {
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let result: Result<HttpResponse, AppError> = async {
        // Every start counts against the client's network, one with a bad address too (that
        // limits probing); a good address also counts against itself.
        let next = safe_path::next_or_default(form.next.as_deref());
        let typed = form.email.trim();
        let email = match EmailAddress::parse(typed) {
            Ok(email) => email,
            Err(problem) => {
                limit_start(&req, &pool, &config, &hasher, None).await?;
                return html(
                    StatusCode::BAD_REQUEST,
                    &HomePage {
                        site: site.for_visitor(&csrf),
                        email: typed.chars().take(254).collect(),
                        next: next.to_owned(),
                        error: Some(problem.to_string()),
                        needs_admin: false,
                        front: content.front_page(),
                    },
                );
            }
        };
        limit_start(&req, &pool, &config, &hasher, Some(&email)).await?;

        // The broker gets the address as typed; it normalizes and tells us both forms.
        send_to_broker(&rp, &client, &config, typed, next, &Purpose::SignIn).await
    }
    .await;
    if let Some(metrics) = metrics {
        match &result {
            Ok(response) if response.status() == StatusCode::SEE_OTHER => metrics.signin_started(),
            Err(AppError::RateLimited { .. }) => metrics.rate_limited(),
            _ => {}
        }
    }
    result
}

/// Starts an attempt (bound to this browser unless binding is off) and answers with the 303
/// to the broker.
pub async fn send_to_broker(
    rp: &RelyingParty,
    client: &awc::Client,
    config: &Config,
    login_hint: &str,
    next: &str,
    purpose: &Purpose,
) -> Result<HttpResponse, AppError> {
    let names = security::CookieNames::for_site(config);
    let binding = config.login_binding.then(|| security::new_binding(names));
    let binding_hash = binding.as_ref().map(|(_, h)| h.as_str());
    match rp
        .start(client, login_hint, next, None, binding_hash, purpose)
        .await
    {
        Ok(url) => {
            let mut response = see_other(url.as_str());
            if let Some((cookie, _)) = binding {
                response.add_cookie(&cookie)?;
            }
            Ok(response)
        }
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

/// `POST /verify`: the broker's answer. Arrives cross-site, so without the site's Lax cookies
/// and without a CSRF token; what ties it to a sign-in started here is the nonce in the token
/// and the binding cookie (`SameSite=None`) set by `POST /login`.
#[allow(clippy::too_many_arguments)]
pub async fn verify(
    req: HttpRequest,
    form: web::Form<VerifyForm>,
    rp: web::Data<RelyingParty>,
    client: web::Data<awc::Client>,
    pool: web::Data<Pool>,
    config: web::Data<Config>,
    session: MemberSession,
    directory: web::Data<Directory>,
    mailer: web::Data<Mailer>,
    hasher: web::Data<AddressHasher>,
    gate: web::Data<RefusalGate>,
) -> Result<HttpResponse, AppError> {
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let network = security::network_of(&req, &config.trusted_proxies);
    let result: Result<HttpResponse, AppError> = async {
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
        let names = security::CookieNames::for_site(&config);
        let binding = security::presented_binding(&req, names);
        let checked = match rp.check(&client, &token).await {
            Ok(c) => c,
            Err(VerifyError::Rejected(r)) => {
                refused(&gate, &pool, &config, &network, &r).await?;
                return Err(AppError::SignInRefused(r));
            }
            Err(e) => return Err(verify_error(e)),
        };
        let user_agent = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("unknown browser");
        let ip = security::client_ip(&req, &config.trusted_proxies)
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        // The address the broker vouched for (the token's signature and claims are good).
        let vouched = EmailAddress::parse(&checked.email)
            .map(|e| e.to_string())
            .unwrap_or_else(|_| checked.email.clone());
        // The nonce is consumed and the member admitted in one write transaction: one commit.
        let mut tx = db::begin_write(&pool).await?;
        let verified = match rp.consume(&mut tx, checked, binding.as_deref()).await {
            Ok(v) => v,
            Err(VerifyError::Rejected(r)) => {
                // Keeps a nonce that was used up (an expired one, say).
                tx.commit().await?;
                refused(&gate, &pool, &config, &network, &r).await?;
                if matches!(r, Rejection::BindingMissing | Rejection::BindingMismatch) {
                    // Opened on another device: offer to start again from this one.
                    return Err(AppError::StartedElsewhere {
                        reason: r,
                        email: vouched,
                    });
                }
                return Err(AppError::SignInRefused(r));
            }
            Err(e) => return Err(verify_error(e)),
        };
        let (member_id, next) = match &verified.purpose {
            Purpose::SignIn => {
                let admission =
                    members::admit(&mut tx, &config, &mailer, &hasher, &verified.email).await?;
                tx.commit().await?;
                match admission {
                    Admission::Admitted(member) => {
                        // A first sign-in may have added a name, or activated an invited member.
                        directory.changed();
                        (member.id, verified.next_path.clone())
                    }
                    Admission::NotInvited => {
                        return Err(AppError::NotAdmitted(Refusal::NotInvited));
                    }
                    Admission::Pending => return Err(AppError::NotAdmitted(Refusal::Pending)),
                    Admission::Suspended => return Err(AppError::NotAdmitted(Refusal::Suspended)),
                }
            }
            Purpose::ChangeEmail { member_id } => {
                // The nonce is spent whatever happens next.
                tx.commit().await?;
                // Only an active member's address changes (checked in the change itself).
                match members::change_email(&pool, &hasher, member_id, &verified.email).await {
                    Ok(()) => (member_id.clone(), "/account?notice=email".to_owned()),
                    Err(ChangeError::NotFound) => {
                        return Err(AppError::NotAdmitted(Refusal::Suspended));
                    }
                    Err(ChangeError::EmailTaken) => {
                        return Err(AppError::Conflict(
                            "That address already belongs to another member, so your address was \
                         not changed."
                                .into(),
                        ));
                    }
                    Err(e) => return Err(AppError::internal(e)),
                }
            }
        };
        session.sign_in(&member_id, user_agent, &ip)?;
        tracing::info!(member = %member_id, "signed in");
        let mut response = see_other(&next);
        if binding.is_some() {
            response.add_cookie(&security::spent_binding(names))?;
        }
        Ok(response)
    }
    .await;
    if let Some(metrics) = metrics {
        match &result {
            Ok(_) => metrics.signin_completed(),
            Err(AppError::SignInRefused(r) | AppError::StartedElsewhere { reason: r, .. }) => {
                metrics.signin_refused(r.name())
            }
            Err(AppError::NotAdmitted(Refusal::NotInvited)) => {
                metrics.signin_refused("not_invited")
            }
            Err(AppError::NotAdmitted(Refusal::Pending)) => metrics.signin_refused("pending"),
            Err(AppError::NotAdmitted(Refusal::Suspended)) => metrics.signin_refused("suspended"),
            Err(AppError::Conflict(_)) => metrics.signin_refused("address_taken"),
            _ => {}
        }
    }
    result
}

/// Counts a refused token against its client network and in the folded audit entry; a 429
/// instead of the refusal once the network is over its limit.
async fn refused(
    gate: &RefusalGate,
    pool: &Pool,
    config: &Config,
    network: &str,
    rejection: &Rejection,
) -> Result<(), AppError> {
    match gate
        .refused(pool, config, network, rejection.name())
        .await?
    {
        Some(retry_after) => Err(AppError::RateLimited {
            retry_after,
            what: Limited::Refusals,
        }),
        None => Ok(()),
    }
}

/// What a failed check or consumption of the broker's token becomes.
fn verify_error(e: VerifyError) -> AppError {
    match e {
        VerifyError::Rejected(r) => AppError::SignInRefused(r),
        VerifyError::Broker(b) => AppError::BrokerUnavailable(b.into()),
        VerifyError::Database(d) => AppError::internal(d),
    }
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
    pool: web::Data<Pool>,
) -> Result<HttpResponse, AppError> {
    if let Some(id) = session.member_id() {
        let event = Event {
            actor: Some(&id),
            subject: Some(&id),
            ..Event::default()
        };
        audit::record(pool.get_ref(), Action::SignOut, event).await?;
    }
    session.sign_out();
    Ok(see_other("/"))
}

crate::csrf_protected!(LoginForm, LogoutForm);
