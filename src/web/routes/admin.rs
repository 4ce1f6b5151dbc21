//! `/admin`: the member list, invitations, approvals, suspensions, roles, CSV import and
//! export, and the audit log. Every handler takes [`Admin`], so non-admins get 403 and
//! nothing changes.

use std::collections::HashMap;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::{Admin, html, see_other, when};
use crate::config::Config;
use crate::db::{self, Db, members::ListFilter};
use crate::domain::audit::{Action, AddressHasher};
use crate::domain::directory::Directory;
use crate::domain::mail::Mailer;
use crate::domain::member_csv::{self, ApplyError};
use crate::domain::members::Role;
use crate::domain::members::{self, ChangeError};
use crate::web::error::AppError;
use crate::web::extract::CsrfForm;
use crate::web::templates::{
    AdminAuditPage, AdminImportPage, AdminMembersPage, AdminOutboxPage, AuditRow,
    ConfirmRemovePage, MemberRow, OutboxRow,
};

/// The highest page number a list accepts (far beyond any real list; it keeps the offset
/// arithmetic in range).
const MAX_PAGE: i64 = 1_000_000;
/// Members per page of the list.
pub const PAGE_SIZE: i64 = 50;
/// Largest pasted CSV accepted.
pub const IMPORT_LIMIT: usize = 2 * 1024 * 1024;

/// Query of `GET /admin`.
#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    role: String,
    page: Option<i64>,
    notice: Option<String>,
}

fn notice_text(key: Option<&str>, mail_enabled: bool) -> Option<&'static str> {
    match key? {
        "approve" if mail_enabled => {
            Some("The member was approved; a mail tells them they can sign in now.")
        }
        "approve" => Some(
            "The member was approved. No mail was sent (this site has no SMTP_URL): let them \
             know yourself that they can sign in now.",
        ),
        "reject" => Some("The request was rejected."),
        "suspend" => Some("The member was suspended and signed out everywhere."),
        "reactivate" => Some("The member was reactivated."),
        "make-admin" => Some("The member is now an admin."),
        "make-member" => Some("The admin is now a member."),
        "remove" => Some("The member was removed."),
        _ => None,
    }
}

fn query_string(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            s.append_pair(k, v);
        }
    }
    let s = s.finish();
    if s.is_empty() { s } else { s + "&" }
}

/// What the member list page shows besides the list: the outcome of an invitation.
#[derive(Default)]
struct Report {
    lines: Vec<String>,
    by_hand: Vec<(String, String)>,
}

#[allow(clippy::too_many_arguments)]
async fn render_list(
    admin: &Admin,
    pool: &Db,
    config: &Config,
    mailer: &Mailer,
    query: &ListQuery,
    report: Report,
) -> Result<HttpResponse, AppError> {
    let filter = ListFilter {
        search: query.q.trim().to_owned(),
        status: query.status.clone(),
        role: query.role.clone(),
    };
    let total = db::members::count(pool, &filter).await?;
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let page = query.page.unwrap_or(1).clamp(1, pages);
    let rows = db::members::list(pool, &filter, PAGE_SIZE, (page - 1) * PAGE_SIZE)
        .await?
        .into_iter()
        .map(|member| MemberRow {
            last_login: when(member.last_login_at),
            listed_admin: members::is_listed_admin(&config.admin_emails, &member.email),
            member,
        })
        .collect();
    html(
        StatusCode::OK,
        &AdminMembersPage {
            site: admin.0.frame(),
            me: admin.0.member.id.clone(),
            rows,
            filter_query: query_string(&[
                ("q", &filter.search),
                ("status", &filter.status),
                ("role", &filter.role),
            ]),
            q: filter.search,
            status: filter.status,
            role: filter.role,
            page,
            pages,
            total,
            notice: notice_text(query.notice.as_deref(), mailer.enabled()),
            report: report.lines,
            by_hand: report.by_hand,
            mail_enabled: mailer.enabled(),
        },
    )
}

/// `GET /admin`: the member list with search, filters and pages.
pub async fn members(
    admin: Admin,
    query: web::Query<ListQuery>,
    pool: web::Data<Db>,
    config: web::Data<Config>,
    mailer: web::Data<Mailer>,
) -> Result<HttpResponse, AppError> {
    render_list(&admin, &pool, &config, &mailer, &query, Report::default()).await
}

/// Form of `POST /admin/invite`.
#[derive(Deserialize)]
pub struct InviteForm {
    addresses: String,
    csrf_token: Option<String>,
}

/// `POST /admin/invite`: invites one or many addresses, and reports on each. With mail on,
/// each invitation is queued as a mail; without, the page shows the text to send by hand.
#[allow(clippy::too_many_arguments)]
pub async fn invite(
    admin: Admin,
    form: CsrfForm<InviteForm>,
    pool: web::Data<Db>,
    config: web::Data<Config>,
    mailer: web::Data<Mailer>,
    directory: web::Data<Directory>,
    hasher: web::Data<AddressHasher>,
) -> Result<HttpResponse, AppError> {
    let report = members::invite(&pool, &mailer, &hasher, &admin.0.member, &form.addresses).await?;
    directory.changed();
    let mut lines = Vec::new();
    if !report.invited.is_empty() {
        lines.push(format!("Invited: {}.", report.invited.join(", ")));
        lines.push(if report.mailed {
            "Each of them gets an invitation by mail (see the outbox).".to_owned()
        } else {
            "No mail was sent: this site has no SMTP_URL. Send each of them the invitation \
             below yourself."
                .to_owned()
        });
    }
    if !report.existing.is_empty() {
        lines.push(format!(
            "Already on the list, left as they are: {}.",
            report.existing.join(", ")
        ));
    }
    for (typed, why) in &report.invalid {
        lines.push(format!("{typed} was not invited: {why}"));
    }
    let report = Report {
        lines,
        by_hand: report.to_send_by_hand,
    };
    render_list(
        &admin,
        &pool,
        &config,
        &mailer,
        &ListQuery::default(),
        report,
    )
    .await
}

/// Form of the per-member action buttons.
#[derive(Deserialize)]
pub struct ActionForm {
    csrf_token: Option<String>,
    /// Set by the confirmation page's button (removal asks first).
    confirmed: Option<String>,
}

/// `GET /admin/members/{id}/remove`: the page that asks before a member is removed.
pub async fn confirm_remove(
    admin: Admin,
    id: web::Path<String>,
    pool: web::Data<Db>,
) -> Result<HttpResponse, AppError> {
    let member = db::members::find_by_id(pool.get_ref(), &id)
        .await?
        .ok_or(AppError::NotFound)?;
    html(
        StatusCode::OK,
        &ConfirmRemovePage {
            site: admin.0.frame(),
            member,
        },
    )
}

/// `POST /admin/members/{id}/{action}`: approve, reject, suspend, reactivate, make-admin,
/// make-member or remove (the last only from its confirmation page).
#[allow(clippy::too_many_arguments)]
pub async fn act(
    admin: Admin,
    path: web::Path<(String, String)>,
    form: CsrfForm<ActionForm>,
    pool: web::Data<Db>,
    config: web::Data<Config>,
    mailer: web::Data<Mailer>,
    directory: web::Data<Directory>,
    hasher: web::Data<AddressHasher>,
) -> Result<HttpResponse, AppError> {
    let (id, action) = path.into_inner();
    let actor = admin.0.member.id.as_str();
    if action == "remove" && form.confirmed.as_deref() != Some("yes") {
        return Ok(see_other(&format!("/admin/members/{id}/remove")));
    }
    let status = |a| members::change_status(&pool, &mailer, actor, &id, a);
    let result = match action.as_str() {
        "approve" => status(Action::MemberApproved).await,
        "suspend" => status(Action::MemberSuspended).await,
        "reactivate" => status(Action::MemberReactivated).await,
        "reject" => members::reject(&pool, actor, &id).await,
        "make-admin" => members::change_role(&pool, actor, &id, Role::Admin).await,
        "make-member" => match members::refuse_listed_admin(&pool, &config.admin_emails, &id).await
        {
            Ok(()) => members::change_role(&pool, actor, &id, Role::Member).await,
            Err(e) => Err(e),
        },
        "remove" => match members::refuse_listed_admin(&pool, &config.admin_emails, &id).await {
            Ok(()) => members::remove(&pool, &hasher, actor, &id, Action::MemberRemoved).await,
            Err(e) => Err(e),
        },
        _ => return Err(AppError::NotFound),
    };
    match result {
        Ok(()) => {
            directory.changed();
            Ok(see_other(&format!("/admin?notice={action}")))
        }
        Err(ChangeError::NotFound) => Err(AppError::NotFound),
        Err(e @ ChangeError::ListedAdmin(_)) => {
            Err(AppError::Conflict(format!("{e}. Nothing was changed.")))
        }
        Err(
            e @ (ChangeError::LastAdmin | ChangeError::NotApplicable(_) | ChangeError::Invalid(_)),
        ) => Err(AppError::Conflict(format!(
            "{}. Nothing was changed.",
            capitalize(&e.to_string())
        ))),
        Err(e) => Err(AppError::internal(e)),
    }
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// `GET /admin/members.csv`: the whole member list as CSV.
pub async fn export(_admin: Admin, pool: web::Data<Db>) -> Result<HttpResponse, AppError> {
    let members = db::members::all(pool.get_ref()).await?;
    let text = member_csv::export(&members)?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"members.csv\"",
        ))
        .body(text))
}

/// `GET /admin/import`: the form.
pub async fn import_page(admin: Admin) -> Result<HttpResponse, AppError> {
    html(
        StatusCode::OK,
        &AdminImportPage {
            site: admin.0.frame(),
            text: String::new(),
            rows: vec![],
            file_error: None,
            can_apply: false,
            applied: None,
        },
    )
}

/// Form of `POST /admin/import`.
#[derive(Deserialize)]
pub struct ImportForm {
    csv: String,
    apply: Option<String>,
    csrf_token: Option<String>,
}

/// `POST /admin/import`: previews the CSV row by row; with `apply`, writes it (only if every
/// row is good, all in one transaction).
pub async fn import(
    admin: Admin,
    form: CsrfForm<ImportForm>,
    pool: web::Data<Db>,
    directory: web::Data<Directory>,
) -> Result<HttpResponse, AppError> {
    let checked = member_csv::check(&form.csv);
    let mut applied = None;
    let mut status = if checked.has_errors() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    let mut file_error = checked.file_error.clone();
    if form.apply.is_some() && !checked.has_errors() {
        match member_csv::apply(&pool, Some(&admin.0.member.id), &checked).await {
            Ok(done) => {
                directory.changed();
                applied = Some(format!(
                    "Imported: {} created, {} updated.",
                    done.created, done.updated
                ))
            }
            Err(e @ ApplyError::LastAdmin) => {
                status = StatusCode::CONFLICT;
                file_error = Some(e.to_string());
            }
            Err(e) => return Err(AppError::internal(e)),
        }
    }
    let done = applied.is_some();
    html(
        status,
        &AdminImportPage {
            site: admin.0.frame(),
            text: if done {
                String::new()
            } else {
                form.csv.clone()
            },
            can_apply: !checked.has_errors() && file_error.is_none() && !done,
            rows: if done { vec![] } else { checked.rows },
            file_error,
            applied,
        },
    )
}

/// Query of `GET /admin/audit`.
#[derive(Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    action: String,
    #[serde(default)]
    member: String,
    page: Option<i64>,
}

/// `GET /admin/audit`: the audit log, newest first, filtered by action and member.
pub async fn audit(
    admin: Admin,
    query: web::Query<AuditQuery>,
    pool: web::Data<Db>,
) -> Result<HttpResponse, AppError> {
    let page = query.page.unwrap_or(1);
    if !(1..=MAX_PAGE).contains(&page) {
        return Err(AppError::BadRequest(format!(
            "There is no page {page} of the audit log: pages are numbered from 1 to {MAX_PAGE}."
        )));
    }
    let entries = db::audit::list(
        pool.get_ref(),
        &query.action,
        &query.member,
        PAGE_SIZE + 1,
        (page - 1) * PAGE_SIZE,
    )
    .await?;
    let has_next = entries.len() as i64 > PAGE_SIZE;
    // Show members by their current address where they still exist.
    let members: HashMap<String, String> = db::members::all(pool.get_ref())
        .await?
        .into_iter()
        .map(|m| (m.id, m.email))
        .collect();
    let name = |id: &Option<String>, hash: &Option<String>| match (id, hash) {
        (Some(id), _) if members.contains_key(id) => members[id].clone(),
        (Some(id), _) => format!("former member {}", &id[..8.min(id.len())]),
        (None, Some(hash)) => format!("address #{}", &hash[..10.min(hash.len())]),
        (None, None) => String::new(),
    };
    let rows = entries
        .iter()
        .take(PAGE_SIZE as usize)
        .map(|e| AuditRow {
            at: when(Some(e.at)),
            action: e.action.clone(),
            actor: name(&e.actor_id, &None),
            subject: name(&e.subject_id, &e.email_hash),
            // A folded entry (a refusal repeated within a minute) says how often.
            detail: if e.occurrences > 1 {
                format!("{} (×{} in that minute)", e.detail, e.occurrences)
            } else {
                e.detail.clone()
            },
        })
        .collect();
    html(
        StatusCode::OK,
        &AdminAuditPage {
            site: admin.0.frame(),
            rows,
            action: query.action.clone(),
            member: query.member.clone(),
            filter_query: query_string(&[("action", &query.action), ("member", &query.member)]),
            actions: Action::ALL.iter().map(|a| a.as_str()).collect(),
            page,
            has_next,
        },
    )
}

/// Query of `GET /admin/outbox`.
#[derive(Deserialize)]
pub struct OutboxQuery {
    #[serde(default)]
    status: String,
    page: Option<i64>,
    notice: Option<String>,
}

/// `GET /admin/outbox`: every mail the site sends, newest first, with its state and the mail
/// server's last answer.
pub async fn outbox(
    admin: Admin,
    query: web::Query<OutboxQuery>,
    pool: web::Data<Db>,
    mailer: web::Data<Mailer>,
) -> Result<HttpResponse, AppError> {
    let status = match query.status.as_str() {
        s @ ("" | "queued" | "sent" | "failed" | "skipped") => s.to_owned(),
        _ => return Err(AppError::BadRequest("There is no such mail status.".into())),
    };
    let page = query.page.unwrap_or(1).clamp(1, MAX_PAGE);
    let mails = db::outbox::list(
        pool.get_ref(),
        &status,
        PAGE_SIZE + 1,
        (page - 1) * PAGE_SIZE,
    )
    .await?;
    let has_next = mails.len() as i64 > PAGE_SIZE;
    let counts = db::outbox::counts(pool.get_ref()).await?;
    let rows = mails
        .into_iter()
        .take(PAGE_SIZE as usize)
        .map(|mail| OutboxRow {
            created: when(Some(mail.created_at)),
            when: match mail.status.as_str() {
                "queued" => format!("next try {}", when(Some(mail.next_attempt_at))),
                "sent" => format!("sent {}", when(mail.sent_at)),
                _ => String::new(),
            },
            mail,
        })
        .collect();
    let notice = match query.notice.as_deref() {
        Some("retry") => Some("The mail is queued again and will be sent in a moment."),
        _ => None,
    };
    html(
        StatusCode::OK,
        &AdminOutboxPage {
            site: admin.0.frame(),
            mail_enabled: mailer.enabled(),
            rows,
            status,
            counts,
            page,
            has_next,
            notice,
        },
    )
}

/// `POST /admin/outbox/{id}/retry`: tries a failed mail again, with a new three-day window.
pub async fn retry_mail(
    admin: Admin,
    id: web::Path<String>,
    _form: CsrfForm<ActionForm>,
    pool: web::Data<Db>,
    mailer: web::Data<Mailer>,
) -> Result<HttpResponse, AppError> {
    if !mailer.enabled() {
        return Err(AppError::Conflict(
            "This site sends no mail (SMTP_URL is not set), so nothing can be retried.".into(),
        ));
    }
    match members::retry_mail(&pool, &admin.0.member.id, &id).await {
        Ok(()) => {
            mailer.wake();
            Ok(see_other("/admin/outbox?notice=retry"))
        }
        Err(ChangeError::NotFound) => Err(AppError::NotFound),
        Err(e @ ChangeError::NotApplicable(_)) => Err(AppError::Conflict(format!(
            "{}. Only a failed mail can be retried.",
            capitalize(&e.to_string())
        ))),
        Err(e) => Err(AppError::internal(e)),
    }
}

crate::csrf_protected!(InviteForm, ActionForm, ImportForm);
