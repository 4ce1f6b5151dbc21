//! What the visitor reads when something fails: the status and words of each [`AppError`], and
//! the page they are drawn in.
//!
//! `AppError`'s `error_response` sets the status and attaches an [`ErrorDetails`] to the
//! response. The [`render_error_pages`] middleware then renders the page inside the site's
//! frame, for `AppError`s and for actix-web's own errors (bad forms, unknown routes, too-large
//! bodies) alike. Unexpected failures are logged with their whole cause chain and a short
//! reference that the page shows, so a report can be matched to a log.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{FromRequest, HttpResponse, ResponseError, web};
use askama::Template;
use rand::RngCore;

use crate::domain::portier::Rejection;
use crate::web::error::{AppError, Limited, Refusal};
use crate::web::security::Csrf;
use crate::web::templates::{ErrorPage, Site};

/// What an error page says. Attached to error responses as an extension.
#[derive(Debug, Clone)]
pub struct ErrorDetails {
    /// The page's heading.
    pub title: String,
    /// What happened and what to do, in a sentence or two.
    pub message: String,
    /// A short id that is also in the log, for unexpected failures.
    pub reference: Option<String>,
    /// Whether to offer "start again" (sign-in problems).
    pub offer_sign_in: bool,
    /// An address to offer a new sign-in for, from this browser (a sign-in finished in
    /// another browser than the one that started it).
    pub sign_in_here: Option<String>,
}

impl ErrorDetails {
    /// A page with a heading and a message, nothing more.
    fn plain(title: impl Into<String>, message: impl Into<String>) -> ErrorDetails {
        ErrorDetails {
            title: title.into(),
            message: message.into(),
            reference: None,
            offer_sign_in: false,
            sign_in_here: None,
        }
    }
}

fn reference() -> String {
    let mut raw = [0u8; 4];
    rand::rng().fill_bytes(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_)
            | AppError::SignInRefused(_)
            | AppError::StartedElsewhere { .. }
            | AppError::BrokerReported(_) => StatusCode::BAD_REQUEST,
            AppError::SignInRequired { .. } => StatusCode::SEE_OTHER,
            AppError::NotAdmitted(_) | AppError::AdminsOnly => StatusCode::FORBIDDEN,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::CsrfRejected(_) => StatusCode::FORBIDDEN,
            AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::BrokerUnavailable(_) | AppError::DatabaseUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let details = match self {
            AppError::SignInRequired { next } => {
                let location = format!(
                    "/?{}",
                    url::form_urlencoded::Serializer::new(String::new())
                        .append_pair("next", next)
                        .finish()
                );
                return HttpResponse::SeeOther()
                    .insert_header((header::LOCATION, location))
                    .finish();
            }
            AppError::NotAdmitted(refusal) => {
                let (title, message) = match refusal {
                    Refusal::NotInvited => (
                        "You are not a member yet",
                        "Your address was confirmed, but it is not on this site's member list. \
                         This site is by invitation: ask its owner to invite you.",
                    ),
                    Refusal::Pending => (
                        "Waiting for approval",
                        "Your address was confirmed and your request to join is waiting for an \
                         admin's approval. You can sign in once it is approved.",
                    ),
                    Refusal::Suspended => (
                        "Your membership is suspended",
                        "Your address was confirmed, but your membership is suspended. Please \
                         contact the site's owner.",
                    ),
                };
                ErrorDetails::plain(title, message)
            }
            AppError::AdminsOnly => ErrorDetails {
                title: "This page is for admins".into(),
                message: "You are signed in, but only the site's admins can open this page or \
                          make this change."
                    .into(),
                reference: None,
                offer_sign_in: false,
                sign_in_here: None,
            },
            AppError::Conflict(why) => ErrorDetails {
                title: "That change was not made".into(),
                message: why.clone(),
                reference: None,
                offer_sign_in: false,
                sign_in_here: None,
            },
            AppError::BadRequest(why) => ErrorDetails {
                title: "That request could not be used".into(),
                message: why.clone(),
                reference: None,
                offer_sign_in: false,
                sign_in_here: None,
            },
            AppError::CsrfRejected(reason) => {
                tracing::info!(reason, "form refused by the CSRF check");
                ErrorDetails {
                    title: "This form could not be accepted".into(),
                    message: "For your safety, forms only work when they are sent from a page \
                              of this site. Go back, reload the page and try again."
                        .into(),
                    reference: None,
                    offer_sign_in: false,
                    sign_in_here: None,
                }
            }
            AppError::RateLimited { retry_after, what } => {
                tracing::info!(retry_after, ?what, "rate limited");
                let wait = wait_text(*retry_after);
                let message = match what {
                    Limited::Starts => format!(
                        "Too many sign-ins were started from here or for this address. \
                         Please wait {wait} and try again."
                    ),
                    Limited::Refusals => format!(
                        "Too many sign-in links or codes from your network were refused in a \
                         short time, so this one was not looked at. Please wait {wait}, then \
                         start again from the front page."
                    ),
                };
                let details = ErrorDetails {
                    title: "Too many sign-in attempts".into(),
                    message,
                    reference: None,
                    offer_sign_in: true,
                    sign_in_here: None,
                };
                let mut response = HttpResponse::TooManyRequests()
                    .insert_header((header::RETRY_AFTER, retry_after.to_string()))
                    .finish();
                response.extensions_mut().insert(details);
                return response;
            }
            AppError::TooLarge => default_details(StatusCode::PAYLOAD_TOO_LARGE),
            AppError::NotFound => ErrorDetails {
                title: "Page not found".into(),
                message: "There is no page at this address. Check the link, or go back to the \
                          front page."
                    .into(),
                reference: None,
                offer_sign_in: false,
                sign_in_here: None,
            },
            AppError::SignInRefused(reason) => {
                tracing::info!(reason = ?reason, "sign-in refused");
                ErrorDetails {
                    title: "Sign-in did not work".into(),
                    message: refusal_message(reason).into(),
                    reference: None,
                    offer_sign_in: true,
                    sign_in_here: None,
                }
            }
            AppError::StartedElsewhere { reason, email } => {
                tracing::info!(reason = ?reason, "sign-in finished in another browser");
                ErrorDetails {
                    title: "This sign-in was started on another device".into(),
                    message: refusal_message(reason).into(),
                    reference: None,
                    offer_sign_in: true,
                    sign_in_here: Some(email.clone()),
                }
            }
            AppError::BrokerReported(description) => {
                tracing::info!(%description, "the broker reported an error");
                ErrorDetails {
                    title: "Sign-in did not work".into(),
                    message: format!("The sign-in service said: {description}"),
                    reference: None,
                    offer_sign_in: true,
                    sign_in_here: None,
                }
            }
            AppError::BrokerUnavailable(e) => {
                let reference = reference();
                tracing::warn!(%reference, error = format!("{e:#}"), "broker unavailable");
                ErrorDetails {
                    title: "The sign-in service is not answering".into(),
                    message: "We could not reach the service that checks email addresses. \
                              Please try again in a minute."
                        .into(),
                    reference: Some(reference),
                    offer_sign_in: true,
                    sign_in_here: None,
                }
            }
            AppError::DatabaseUnavailable(e) => {
                let reference = reference();
                tracing::warn!(%reference, error = format!("{e:#}"), "database unavailable");
                database_unavailable(Some(reference))
            }
            AppError::Internal(e) => {
                let reference = reference();
                tracing::error!(%reference, error = format!("{e:#}"), "request failed");
                ErrorDetails {
                    title: "Something went wrong on our side".into(),
                    message: "The page could not be shown. Please try again; if it keeps \
                              happening, tell the site's owner the reference below."
                        .into(),
                    reference: Some(reference),
                    offer_sign_in: false,
                    sign_in_here: None,
                }
            }
        };
        let mut response = HttpResponse::new(self.status_code());
        response.extensions_mut().insert(details);
        response
    }
}

/// How long to wait, as the rate-limit page says it: "a second", "40 seconds", "3 minutes".
fn wait_text(seconds: u64) -> String {
    match seconds {
        0 | 1 => "a second".to_owned(),
        2..=90 => format!("{seconds} seconds"),
        _ => format!("{} minutes", seconds.div_ceil(60)),
    }
}

/// The page for a database that is out of reach.
fn database_unavailable(reference: Option<String>) -> ErrorDetails {
    ErrorDetails {
        title: "The site is not answering right now".into(),
        message: "Its database cannot be reached at the moment. Nothing you did caused this, \
                  and nothing was lost. Please try again in a minute."
            .into(),
        reference,
        offer_sign_in: false,
        sign_in_here: None,
    }
}

/// The text shown for each refusal. Deliberately plain: the exact reason is in the log.
fn refusal_message(reason: &Rejection) -> &'static str {
    match reason {
        Rejection::UnknownNonce => {
            "This sign-in link was already used, or it does not belong to a sign-in started here. \
             If you are signed in elsewhere, you are fine; otherwise please start again."
        }
        Rejection::ExpiredNonce | Rejection::Expired => {
            "This sign-in took too long and has expired. Please start again."
        }
        Rejection::BindingMissing | Rejection::BindingMismatch => {
            "The link in the email was opened here, but this sign-in was started in another \
             browser or on another device (or this browser did not keep our sign-in cookie). \
             For your safety a sign-in can only be finished in the browser that started it, \
             and this link is now used up."
        }
        Rejection::EmailMismatch => {
            "The address that was confirmed is not the one this sign-in was started with. \
             Please start again."
        }
        _ => "The confirmation from the sign-in service could not be verified. Please start again.",
    }
}

fn default_details(status: StatusCode) -> ErrorDetails {
    let (title, message) = match status.as_u16() {
        404 => (
            "Page not found",
            "There is no page at this address. Check the link, or go back to the front page.",
        ),
        405 => (
            "That did not work",
            "This address does not accept that kind of request.",
        ),
        413 => (
            "Too much data",
            "The form sent more data than this site accepts.",
        ),
        400..=499 => (
            "That request could not be used",
            "The form or address was not in a form this site understands. Please go back and try again.",
        ),
        _ => (
            "Something went wrong on our side",
            "The page could not be shown. Please try again in a moment.",
        ),
    };
    ErrorDetails::plain(title, message)
}

/// Marks a response whose body is meant as it is (health checks, metrics): the error pages
/// leave it alone.
#[derive(Debug, Clone, Copy)]
pub struct PlainAnswer;

/// Middleware handler (for `ErrorHandlers::default_handler`): gives every 4xx and 5xx response
/// that is not already a page the site's friendly error page.
pub fn render_error_pages<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_html = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if is_html || res.response().extensions().get::<PlainAnswer>().is_some() {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let details = res
        .response()
        .extensions()
        .get::<ErrorDetails>()
        .cloned()
        .unwrap_or_else(|| default_details(status));
    let mut site = res
        .request()
        .app_data::<web::Data<Site>>()
        .map(|s| s.get_ref().clone())
        .unwrap_or_default();
    if details.sign_in_here.is_some() {
        // The page has a form: it needs this browser's CSRF token.
        if let Ok(csrf) = Csrf::extract(res.request()).into_inner() {
            site.csrf_token = csrf.token().to_owned();
        }
    }
    let page = ErrorPage {
        site,
        title: details.title,
        message: details.message,
        reference: details.reference,
        offer_sign_in: details.offer_sign_in,
        sign_in_here: details.sign_in_here,
    };
    let body = page.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "error page could not be rendered");
        "An error occurred.".to_owned()
    });
    let (req, mut response) = res.into_parts();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    let response = response.set_body(BoxBody::new(body));
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, response).map_into_right_body::<B>(),
    ))
}

#[cfg(test)]
mod tests {
    use super::wait_text;

    #[test]
    fn waits_read_as_english() {
        assert_eq!(wait_text(1), "a second");
        assert_eq!(wait_text(2), "2 seconds");
        assert_eq!(wait_text(90), "90 seconds");
        assert_eq!(wait_text(91), "2 minutes");
        assert_eq!(wait_text(900), "15 minutes");
    }
}
