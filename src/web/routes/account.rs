//! `/account`: a member's own name, address, sessions and data.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::auth::{new_binding, to_broker};
use super::{SignedIn, html, see_other, when};
use crate::db::{self, Db};
use crate::domain::audit::{Action, AddressHasher};
use crate::domain::directory::Directory;
use crate::domain::members::{self, ChangeError};
use crate::domain::portier::Purpose;
use crate::domain::signin::{SignIn, Start, StartRefused};
use crate::email::EmailAddress;
use crate::web::error::AppError;
use crate::web::extract::CsrfForm;
use crate::web::security;
use crate::web::templates::{AccountPage, DeleteAccountPage, SessionRow};

/// Query of `GET /account`.
#[derive(Deserialize)]
pub struct AccountQuery {
    notice: Option<String>,
}

/// Only fixed texts are shown for `notice`, never what the query says.
fn notice_text(key: Option<&str>) -> Option<&'static str> {
    match key? {
        "name" => Some("Your display name was saved."),
        "email" => Some("Your address was changed. Your other sessions have ended."),
        "revoked" => Some("That session has ended."),
        "others" => Some("You are now signed out everywhere else."),
        _ => None,
    }
}

async fn render(
    me: &SignedIn,
    pool: &Db,
    status: StatusCode,
    notice: Option<&'static str>,
    error: Option<String>,
) -> Result<HttpResponse, AppError> {
    let current = me.session.handle();
    let sessions = db::sessions::for_member(pool, &me.member.id, db::now())
        .await?
        .into_iter()
        .map(|s| SessionRow {
            current: current.as_deref() == Some(s.handle.as_str()),
            handle: s.handle,
            device: s.user_agent.unwrap_or_else(|| "unknown".into()),
            ip: s.ip.unwrap_or_default(),
            created: when(Some(s.created_at)),
            last_seen: when(s.last_seen_at),
        })
        .collect();
    html(
        status,
        &AccountPage {
            site: me.frame(),
            member: me.member.clone(),
            sessions,
            notice,
            error,
        },
    )
}

/// `GET /account`.
pub async fn page(
    me: SignedIn,
    query: web::Query<AccountQuery>,
    pool: web::Data<Db>,
) -> Result<HttpResponse, AppError> {
    let notice = notice_text(query.notice.as_deref());
    render(&me, &pool, StatusCode::OK, notice, None).await
}

/// Form of `POST /account/name`.
#[derive(Deserialize)]
pub struct NameForm {
    display_name: String,
    csrf_token: Option<String>,
}

/// `POST /account/name`.
pub async fn rename(
    me: SignedIn,
    form: CsrfForm<NameForm>,
    pool: web::Data<Db>,
    directory: web::Data<Directory>,
) -> Result<HttpResponse, AppError> {
    match members::rename(&pool, &me.member.id, &form.display_name).await {
        Ok(()) => {
            directory.changed();
            Ok(see_other("/account?notice=name"))
        }
        Err(ChangeError::Invalid(why)) => {
            render(&me, &pool, StatusCode::BAD_REQUEST, None, Some(why)).await
        }
        Err(e) => Err(AppError::internal(e)),
    }
}

/// Form of `POST /account/email`.
#[derive(Deserialize)]
pub struct EmailForm {
    email: String,
    csrf_token: Option<String>,
}

/// `POST /account/email`: sends the member to the broker to verify the new address; the
/// change happens in `/verify`, only once it is verified.
pub async fn change_email(
    req: HttpRequest,
    me: SignedIn,
    form: CsrfForm<EmailForm>,
    pool: web::Data<Db>,
    signin: web::Data<SignIn>,
    client: web::Data<awc::Client>,
) -> Result<HttpResponse, AppError> {
    // Whether another member has the address is not said here: that would tell any member who
    // else is one. The answer is the same for a taken and a free address; the check happens in
    // /verify, once the address has proved itself, and only its owner sees that answer. Each
    // start is counted like a sign-in: each makes the broker mail the address.
    let network = security::network_of(&req, &signin.config.trusted_proxies);
    let binding = new_binding(&signin.config);
    let start = Start {
        typed: &form.email,
        next: "/account",
        network: &network,
        binding_hash: binding.as_ref().map(|(_, hash)| hash.as_str()),
        purpose: Purpose::ChangeEmail {
            member_id: me.member.id.clone(),
        },
        current: Some(&me.member.email),
    };
    match signin.start(&client, start).await {
        Ok(url) => to_broker(&url, binding),
        Err(StartRefused::BadAddress(why)) => {
            render(&me, &pool, StatusCode::BAD_REQUEST, None, Some(why)).await
        }
        Err(e) => Err(e.into()),
    }
}

/// Form of the session revocation forms.
#[derive(Deserialize)]
pub struct RevokeForm {
    handle: Option<String>,
    csrf_token: Option<String>,
}

/// `POST /account/sessions/revoke`: ends one of the member's sessions.
pub async fn revoke(
    me: SignedIn,
    form: CsrfForm<RevokeForm>,
    pool: web::Data<Db>,
) -> Result<HttpResponse, AppError> {
    let handle = form.handle.as_deref().unwrap_or_default();
    members::end_session(&pool, &me.member.id, handle).await?;
    Ok(see_other("/account?notice=revoked"))
}

/// `POST /account/sessions/revoke-others`: ends every session of the member but this one.
pub async fn revoke_others(
    me: SignedIn,
    _form: CsrfForm<RevokeForm>,
    pool: web::Data<Db>,
) -> Result<HttpResponse, AppError> {
    // Without a handle of its own (a session from before handles existed) nothing is kept,
    // which signs this browser out too: safe, and it can sign in again.
    let keep = me.session.handle().unwrap_or_else(|| "-".into());
    members::end_other_sessions(&pool, &me.member.id, &keep).await?;
    Ok(see_other("/account?notice=others"))
}

/// `GET /account/data.json`: everything the site keeps about the member.
pub async fn data(me: SignedIn, pool: web::Data<Db>) -> Result<HttpResponse, AppError> {
    let sessions = db::sessions::for_member(pool.get_ref(), &me.member.id, db::now()).await?;
    let audit = db::audit::for_member(pool.get_ref(), &me.member.id).await?;
    let body = serde_json::json!({
        "member": me.member,
        "sessions": sessions,
        "audit_log": audit,
    });
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"clubhouse-my-data.json\"",
        ))
        .body(serde_json::to_string_pretty(&body)?))
}

/// `GET /account/delete`: asks for confirmation.
pub async fn delete_page(me: SignedIn) -> Result<HttpResponse, AppError> {
    html(
        StatusCode::OK,
        &DeleteAccountPage {
            site: me.frame(),
            member: me.member,
        },
    )
}

/// Form of `POST /account/delete`.
#[derive(Deserialize)]
pub struct DeleteForm {
    confirm: Option<String>,
    csrf_token: Option<String>,
}

/// `POST /account/delete`: deletes the member, once they typed their address to confirm.
pub async fn delete(
    me: SignedIn,
    form: CsrfForm<DeleteForm>,
    pool: web::Data<Db>,
    directory: web::Data<Directory>,
    hasher: web::Data<AddressHasher>,
) -> Result<HttpResponse, AppError> {
    let confirmed = form
        .confirm
        .as_deref()
        .and_then(|c| EmailAddress::parse(c).ok())
        .is_some_and(|c| c.as_str() == me.member.email);
    if !confirmed {
        return Err(AppError::BadRequest(
            "To delete your account, type your address exactly. Nothing was deleted.".into(),
        ));
    }
    match members::remove(
        &pool,
        &hasher,
        &me.member.id,
        &me.member.id,
        Action::AccountDeleted,
    )
    .await
    {
        Ok(()) => {
            directory.changed();
            me.session.sign_out();
            Ok(see_other("/"))
        }
        Err(ChangeError::LastAdmin) => Err(AppError::Conflict(
            "You are the site's last admin. Make someone else an admin first; nothing was \
             deleted."
                .into(),
        )),
        Err(e) => Err(AppError::internal(e)),
    }
}

crate::csrf_protected!(NameForm, EmailForm, RevokeForm, DeleteForm);
