//! What handlers take from a request besides its own fields: the page frame (the site's
//! header for this visitor, with the CSRF token of the page's forms), the signed-in member or
//! admin, a posted form whose token was checked, and the answer to a form that cannot be read.

use std::future::{Future, Ready, ready};
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::error::UrlencodedError;
use actix_web::{FromRequest, HttpRequest, web};

use crate::db::Db;
use crate::db::members::Member;
use crate::domain::members;
use crate::domain::members::{Role, Status};
use crate::web::error::AppError;
use crate::web::security::{Csrf, CsrfRejected};
use crate::web::sessions::MemberSession;
use crate::web::templates::Site;

/// The frame of a page as an anonymous visitor sees it: the site's name, navigation and
/// footer, and the CSRF token of the page's forms. A members-only page takes [`SignedIn`],
/// whose [`SignedIn::frame`] adds the member's links.
pub struct Frame(pub Site);

impl FromRequest for Frame {
    type Error = AppError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let csrf = Csrf::from_request(req, payload).into_inner();
        ready(csrf.and_then(|csrf| {
            let site = req.app_data::<web::Data<Site>>().ok_or_else(|| {
                AppError::internal(anyhow::anyhow!("the site's frame is not installed"))
            })?;
            Ok(Frame(site.for_visitor(&csrf)))
        }))
    }
}

impl From<CsrfRejected> for AppError {
    fn from(CsrfRejected(reason): CsrfRejected) -> AppError {
        AppError::CsrfRejected(reason)
    }
}

/// The page's CSRF token, for its forms.
impl FromRequest for Csrf {
    type Error = AppError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Csrf::for_request(req).ok_or_else(|| {
            AppError::internal(anyhow::anyhow!(
                "the CSRF middleware or key is not installed"
            ))
        }))
    }
}

/// What a form that cannot be parsed gets: 413 when too large, else 400. The parser's own
/// message stays in the log.
pub fn form_error(err: UrlencodedError) -> AppError {
    tracing::info!(error = %err, "unreadable form");
    match err {
        UrlencodedError::Overflow { .. } => AppError::TooLarge,
        _ => AppError::BadRequest(
            "The form could not be read. Please go back, reload the page and try again.".into(),
        ),
    }
}

/// A form that carries this site's CSRF token in its `csrf_token` field.
pub trait CsrfProtected {
    /// The submitted token, if any.
    fn csrf_token(&self) -> Option<&str>;
}

/// Implements [`CsrfProtected`] for form structs with a `csrf_token: Option<String>` field.
#[macro_export]
macro_rules! csrf_protected {
    ($($form:ty),* $(,)?) => {
        $(
            impl $crate::web::extract::CsrfProtected for $form {
                fn csrf_token(&self) -> Option<&str> {
                    self.csrf_token.as_deref()
                }
            }
        )*
    };
}

/// A posted form whose CSRF token (and origin) was checked before the handler runs: a handler
/// that takes one cannot forget the check. It derefs to the form; [`CsrfForm::csrf`] gives the
/// token for the page it answers with.
pub struct CsrfForm<T> {
    form: T,
    csrf: Csrf,
}

impl<T> CsrfForm<T> {
    /// The CSRF token, for the forms of the page the handler answers with.
    pub fn csrf(&self) -> &Csrf {
        &self.csrf
    }

    /// The form's fields.
    pub fn into_inner(self) -> T {
        self.form
    }
}

impl<T> std::ops::Deref for CsrfForm<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.form
    }
}

impl<T> FromRequest for CsrfForm<T>
where
    T: serde::de::DeserializeOwned + CsrfProtected + 'static,
{
    type Error = actix_web::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let csrf = Csrf::from_request(req, payload).into_inner();
        let form = web::Form::<T>::from_request(req, payload);
        Box::pin(async move {
            let csrf = csrf?;
            let form = form.await?.into_inner();
            csrf.check(form.csrf_token()).map_err(AppError::from)?;
            Ok(CsrfForm { form, csrf })
        })
    }
}

/// The signed-in, active member making the request. Handlers that take it are members-only:
/// anonymous visitors are sent to the sign-in page, which brings them back afterwards.
pub struct SignedIn {
    /// The member, as stored now.
    pub member: Member,
    /// Their session.
    pub session: MemberSession,
    /// For an admin, how many requests to join are waiting (shown in the header).
    pub pending_requests: Option<i64>,
    /// The page frame for this member, with the CSRF token of the page's forms.
    frame: Site,
}

impl SignedIn {
    /// The page frame for this member: their header links, and the token of the page's forms.
    pub fn frame(&self) -> Site {
        self.frame.clone()
    }
}

impl FromRequest for SignedIn {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let session = MemberSession::from_request(req, payload).into_inner();
        let pool = req.app_data::<web::Data<Db>>().cloned();
        let frame = Frame::from_request(req, payload).into_inner();
        let wanted = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        Box::pin(async move {
            let session = session.map_err(|e| AppError::internal(anyhow::anyhow!("{e}")))?;
            if session.database_unavailable() {
                return Err(AppError::DatabaseUnavailable(anyhow::anyhow!(
                    "the session could not be loaded"
                )));
            }
            let sign_in = || AppError::SignInRequired {
                next: wanted.clone(),
            };
            let Frame(site) = frame?;
            let member_id = session.member_id().ok_or_else(sign_in)?;
            // Loaded with the session, in the same statement.
            match session.member() {
                Some(member) if member.id == member_id && member.status == Status::Active => {
                    // Admins only: one count, so the header can say what is waiting.
                    let pending_requests = match (&pool, member.role == Role::Admin) {
                        (Some(pool), true) => Some(members::waiting_for_approval(pool).await?),
                        _ => None,
                    };
                    let frame = site.for_member(&member, pending_requests);
                    Ok(SignedIn {
                        member,
                        session,
                        pending_requests,
                        frame,
                    })
                }
                // Removed or no longer active: the session ends here.
                _ => {
                    session.sign_out();
                    Err(sign_in())
                }
            }
        })
    }
}

/// A signed-in, active admin. Anyone else gets 403 (anonymous visitors are sent to sign in).
pub struct Admin(pub SignedIn);

impl FromRequest for Admin {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let signed_in = SignedIn::from_request(req, payload);
        Box::pin(async move {
            let me = signed_in.await?;
            if me.member.role == Role::Admin {
                Ok(Admin(me))
            } else {
                Err(AppError::AdminsOnly)
            }
        })
    }
}
