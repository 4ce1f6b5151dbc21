//! The one error type of the HTTP edge: what went wrong. What the visitor reads about it (the
//! status, the page's words, the log line) is in [`crate::web::error_pages`].
//!
//! A handler returns [`AppError`]; `?` turns the failures of the libraries it calls into
//! [`AppError::internal`].

use crate::domain::portier::{Rejection, StartError};
use crate::domain::signin::{FinishRefused, StartRefused};

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: the request cannot be used as sent; the text says why.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 303 to the sign-in page: the page needs a signed-in member; `next` brings them back.
    #[error("sign-in required")]
    SignInRequired {
        /// The local path that was asked for.
        next: String,
    },
    /// 403: the broker vouched for the address, but it may not enter (no session is started).
    #[error("not admitted: {0:?}")]
    NotAdmitted(Refusal),
    /// 403: the page or action is for admins.
    #[error("admins only")]
    AdminsOnly,
    /// 409: the change cannot be made as asked; the text says why.
    #[error("conflict: {0}")]
    Conflict(String),
    /// 403: a state-changing form without a valid CSRF token, or sent from another site.
    #[error("CSRF check failed: {0}")]
    CsrfRejected(&'static str),
    /// 429: too many sign-ins started, or too many refused from one network; `retry_after`
    /// seconds until the window ends.
    #[error("rate limited")]
    RateLimited {
        /// Seconds until another attempt is allowed.
        retry_after: u64,
        /// What was counted.
        what: Limited,
    },
    /// 413: the request body is larger than the site accepts.
    #[error("request body too large")]
    TooLarge,
    /// 404: no such page.
    #[error("not found")]
    NotFound,
    /// 400: the broker's answer did not sign the visitor in (bad, replayed or expired token).
    #[error("sign-in refused: {0}")]
    SignInRefused(Rejection),
    /// 400: the broker vouched for `email`, but the sign-in was started in another browser
    /// (`reason` says how that showed). Nothing is signed in; the page offers to start a new
    /// sign-in for that address from this browser.
    #[error("sign-in started in another browser: {reason:?}")]
    StartedElsewhere {
        /// The binding refusal.
        reason: Rejection,
        /// The address the broker vouched for.
        email: String,
    },
    /// 400: the broker reported an error instead of a token; the text is the broker's.
    #[error("the broker reported an error: {0}")]
    BrokerReported(String),
    /// 503: the broker could not be reached or gave unusable answers.
    #[error("the sign-in service is unavailable")]
    BrokerUnavailable(#[source] anyhow::Error),
    /// 503: the database cannot be reached right now (see [`crate::db::is_unavailable`]).
    #[error("the database is unavailable")]
    DatabaseUnavailable(#[source] anyhow::Error),
    /// 500: anything unexpected (database failures and the like).
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl AppError {
    /// Wraps any unexpected failure; one caused by the database being out of reach becomes
    /// [`AppError::DatabaseUnavailable`].
    pub fn internal(e: impl Into<anyhow::Error>) -> AppError {
        let e = e.into();
        let unavailable = e.chain().any(|cause| {
            cause
                .downcast_ref::<sqlx::Error>()
                .is_some_and(crate::db::is_unavailable)
        });
        if unavailable {
            AppError::DatabaseUnavailable(e)
        } else {
            AppError::Internal(e)
        }
    }
}

/// The failures of the libraries the handlers use are unexpected: `?` turns each into
/// [`AppError::internal`] (a 500, or a 503 when the database is out of reach), so that no
/// handler needs `map_err`.
macro_rules! internal_from {
    ($($error:ty),* $(,)?) => {
        $(
            impl From<$error> for AppError {
                fn from(e: $error) -> AppError {
                    AppError::internal(e)
                }
            }
        )*
    };
}

internal_from!(
    sqlx::Error,
    askama::Error,
    actix_web::error::HttpError,
    actix_session::SessionInsertError,
    std::io::Error,
    serde_json::Error,
    csv::Error,
    anyhow::Error,
    crate::domain::members::ChangeError,
);

/// A sign-in that did not start. A bad address is shown on the form by the handler that has
/// one; here it is a plain 400.
impl From<StartRefused> for AppError {
    fn from(e: StartRefused) -> AppError {
        match e {
            StartRefused::BadAddress(why) => AppError::BadRequest(why),
            StartRefused::RateLimited(retry_after) => AppError::RateLimited {
                retry_after,
                what: Limited::Starts,
            },
            StartRefused::Broker(StartError::Broker(e)) => AppError::BrokerUnavailable(e.into()),
            StartRefused::Broker(e @ StartError::BadEndpoint(_)) => {
                AppError::BrokerUnavailable(e.into())
            }
            StartRefused::Broker(e @ StartError::Database(_)) => AppError::internal(e),
            StartRefused::Database(e) => AppError::internal(e),
        }
    }
}

/// A sign-in that did not finish: the page that says why.
impl From<FinishRefused> for AppError {
    fn from(e: FinishRefused) -> AppError {
        match e {
            FinishRefused::Token(r) => AppError::SignInRefused(r),
            FinishRefused::StartedElsewhere { reason, email } => {
                AppError::StartedElsewhere { reason, email }
            }
            FinishRefused::NotInvited => AppError::NotAdmitted(Refusal::NotInvited),
            FinishRefused::Pending => AppError::NotAdmitted(Refusal::Pending),
            FinishRefused::Suspended => AppError::NotAdmitted(Refusal::Suspended),
            FinishRefused::AddressTaken => AppError::Conflict(
                "That address already belongs to another member, so your address was not \
                 changed."
                    .into(),
            ),
            FinishRefused::RateLimited(retry_after) => AppError::RateLimited {
                retry_after,
                what: Limited::Refusals,
            },
            FinishRefused::Broker(b) => AppError::BrokerUnavailable(b.into()),
            FinishRefused::Database(d) => AppError::internal(d),
            FinishRefused::Change(c) => AppError::internal(c),
        }
    }
}

/// What a rate limit counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// Sign-ins (or address changes) started, per network and per address.
    Starts,
    /// Sign-in tokens refused, per network.
    Refusals,
}

/// Why a verified visitor was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not on the member list of an invite-only site.
    NotInvited,
    /// Waiting for approval.
    Pending,
    /// Suspended.
    Suspended,
}
