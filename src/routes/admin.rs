//! `/admin`: the member list, invitations, approvals, suspensions, roles, CSV import and
//! export, and the audit log. Every handler takes [`Admin`], so non-admins get 403 and
//! nothing changes.

use std::collections::HashMap;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::{Admin, html, see_other, when};
use crate::audit::Action;
use crate::db::{self, Pool, members::ListFilter};
use crate::directory::Directory;
use crate::error::AppError;
use crate::member_csv::{self, ApplyError};
use crate::members::{self, ChangeError};
use crate::security::Csrf;
use crate::templates::{
    AdminAuditPage, AdminImportPage, AdminMembersPage, AuditRow, MemberRow, Site,
};

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

fn notice_text(key: Option<&str>) -> Option<&'static str> {
    match key? {
        "approve" => Some("The member was approved."),
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

async fn render_list(
    admin: &Admin,
    site: &Site,
    csrf: &Csrf,
    pool: &Pool,
    query: &ListQuery,
    report: Vec<String>,
) -> Result<HttpResponse, AppError> {
    let filter = ListFilter {
        search: query.q.trim().to_owned(),
        status: query.status.clone(),
        role: query.role.clone(),
    };
    let total = db::members::count(pool, &filter)
        .await
        .map_err(AppError::internal)?;
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let page = query.page.unwrap_or(1).clamp(1, pages);
    let rows = db::members::list(pool, &filter, PAGE_SIZE, (page - 1) * PAGE_SIZE)
        .await
        .map_err(AppError::internal)?
        .into_iter()
        .map(|member| MemberRow {
            last_login: when(member.last_login_at),
            member,
        })
        .collect();
    html(
        StatusCode::OK,
        &AdminMembersPage {
            site: site.for_member(&admin.0.member, csrf),
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
            notice: notice_text(query.notice.as_deref()),
            report,
        },
    )
}

/// `GET /admin`: the member list with search, filters and pages.
pub async fn members(
    admin: Admin,
    query: web::Query<ListQuery>,
    site: web::Data<Site>,
    csrf: Csrf,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, AppError> {
    render_list(&admin, &site, &csrf, &pool, &query, vec![]).await
}

/// Form of `POST /admin/invite`.
#[derive(Deserialize)]
pub struct InviteForm {
    addresses: String,
    csrf_token: Option<String>,
}

/// `POST /admin/invite`: invites one or many addresses, and reports on each.
pub async fn invite(
    admin: Admin,
    form: web::Form<InviteForm>,
    site: web::Data<Site>,
    csrf: Csrf,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, AppError> {
    csrf.check(form.csrf_token.as_deref())?;
    let report = members::invite(&pool, &admin.0.member.id, &form.addresses)
        .await
        .map_err(AppError::internal)?;
    let mut lines = Vec::new();
    if !report.invited.is_empty() {
        lines.push(format!("Invited: {}.", report.invited.join(", ")));
    }
    if !report.existing.is_empty() {
        lines.push(format!(
            "Already on the list, left as they are: {}.",
            report.existing.join(", ")
        ));
    }
    for (typed, why) in &report.invalid {
        lines.push(format!("Not invited, {typed:?}: {why}"));
    }
    render_list(&admin, &site, &csrf, &pool, &ListQuery::default(), lines).await
}

/// Form of the per-member action buttons.
#[derive(Deserialize)]
pub struct ActionForm {
    csrf_token: Option<String>,
}

/// `POST /admin/members/{id}/{action}`: approve, reject, suspend, reactivate, make-admin,
/// make-member or remove.
pub async fn act(
    admin: Admin,
    path: web::Path<(String, String)>,
    form: web::Form<ActionForm>,
    csrf: Csrf,
    pool: web::Data<Pool>,
    directory: web::Data<Directory>,
) -> Result<HttpResponse, AppError> {
    csrf.check(form.csrf_token.as_deref())?;
    let (id, action) = path.into_inner();
    let actor = admin.0.member.id.as_str();
    let result = match action.as_str() {
        "approve" => members::change_status(&pool, actor, &id, Action::MemberApproved).await,
        "suspend" => members::change_status(&pool, actor, &id, Action::MemberSuspended).await,
        "reactivate" => members::change_status(&pool, actor, &id, Action::MemberReactivated).await,
        "reject" => members::reject(&pool, actor, &id).await,
        "make-admin" => members::change_role(&pool, actor, &id, "admin").await,
        "make-member" => members::change_role(&pool, actor, &id, "member").await,
        "remove" => members::remove(&pool, actor, &id, Action::MemberRemoved).await,
        _ => return Err(AppError::NotFound),
    };
    match result {
        Ok(()) => {
            directory.changed();
            Ok(see_other(&format!("/admin?notice={action}")))
        }
        Err(ChangeError::NotFound) => Err(AppError::NotFound),
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
pub async fn export(_admin: Admin, pool: web::Data<Pool>) -> Result<HttpResponse, AppError> {
    let members = db::members::all(pool.get_ref())
        .await
        .map_err(AppError::internal)?;
    let text = member_csv::export(&members).map_err(AppError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"members.csv\"",
        ))
        .body(text))
}

/// `GET /admin/import`: the form.
pub async fn import_page(
    admin: Admin,
    site: web::Data<Site>,
    csrf: Csrf,
) -> Result<HttpResponse, AppError> {
    html(
        StatusCode::OK,
        &AdminImportPage {
            site: site.for_member(&admin.0.member, &csrf),
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
    form: web::Form<ImportForm>,
    site: web::Data<Site>,
    csrf: Csrf,
    pool: web::Data<Pool>,
    directory: web::Data<Directory>,
) -> Result<HttpResponse, AppError> {
    csrf.check(form.csrf_token.as_deref())?;
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
            site: site.for_member(&admin.0.member, &csrf),
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
    site: web::Data<Site>,
    csrf: Csrf,
    pool: web::Data<Pool>,
) -> Result<HttpResponse, AppError> {
    let page = query.page.unwrap_or(1).max(1);
    let entries = db::audit::list(
        pool.get_ref(),
        &query.action,
        &query.member,
        PAGE_SIZE + 1,
        (page - 1) * PAGE_SIZE,
    )
    .await
    .map_err(AppError::internal)?;
    let has_next = entries.len() as i64 > PAGE_SIZE;
    // Show members by their current address where they still exist.
    let members: HashMap<String, String> = db::members::all(pool.get_ref())
        .await
        .map_err(AppError::internal)?
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
            detail: e.detail.clone(),
        })
        .collect();
    html(
        StatusCode::OK,
        &AdminAuditPage {
            site: site.for_member(&admin.0.member, &csrf),
            rows,
            action: query.action.clone(),
            actions: Action::ALL.iter().map(|a| a.as_str()).collect(),
            page,
            has_next,
        },
    )
}
