//! One askama struct per page. Every page extends `templates/base.html`.

use askama::Template;

use std::sync::Arc;

use crate::db::members::Member;
use crate::domain::content::{Access, Content, NavLink};
use crate::domain::members::{Role, Status};
use crate::web::security::Csrf;

/// What every page needs to draw the frame.
#[derive(Debug, Clone)]
pub struct Site {
    /// The site's name (`SITE_NAME`).
    pub name: String,
    /// The footer line (`FOOTER_TEXT`).
    pub footer: String,
    /// Whether the visitor is signed in (shows "Sign out").
    pub signed_in: bool,
    /// Whether the visitor is an admin (shows the admin link).
    pub is_admin: bool,
    /// The CSRF token for this page's forms (empty on pages without forms).
    pub csrf_token: String,
    /// The Markdown pages, for the navigation.
    pub content: Option<Arc<Content>>,
    /// The header's logo, a file under `/static/` (`SITE_LOGO`).
    pub logo: Option<String>,
    /// Who to ask when refused or stuck (`CONTACT_EMAIL`).
    pub contact: Option<String>,
    /// For admins: how many requests to join are waiting.
    pub pending_requests: Option<i64>,
}

impl Default for Site {
    fn default() -> Self {
        Site {
            name: "Clubhouse".into(),
            footer: String::new(),
            signed_in: false,
            is_admin: false,
            csrf_token: String::new(),
            content: None,
            logo: None,
            contact: None,
            pending_requests: None,
        }
    }
}

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Content")
    }
}

impl Site {
    /// The pages this visitor may see, for the navigation.
    pub fn nav(&self) -> Vec<NavLink> {
        match &self.content {
            Some(content) => content.nav(self.access()),
            None => Vec::new(),
        }
    }

    /// What this visitor may read.
    pub fn access(&self) -> Option<Access> {
        match (self.signed_in, self.is_admin) {
            (false, _) => None,
            (true, false) => Some(Access::Members),
            (true, true) => Some(Access::Admins),
        }
    }

    /// The frame for an anonymous visitor, with their form token.
    pub fn for_visitor(&self, csrf: &Csrf) -> Site {
        Site {
            csrf_token: csrf.token().to_owned(),
            ..self.clone()
        }
    }

    /// The frame for a signed-in member, made from their visitor's frame (which carries the
    /// form token); for an admin, with the number of requests waiting (`None` for others).
    pub fn for_member(&self, member: &Member, pending: Option<i64>) -> Site {
        Site {
            signed_in: true,
            is_admin: member.role == Role::Admin,
            pending_requests: pending,
            ..self.clone()
        }
    }
}

/// `GET /`: what the site is, and the sign-in form.
#[derive(Template)]
#[template(path = "home.html")]
pub struct HomePage {
    /// The frame.
    pub site: Site,
    /// The address typed so far (shown again after an error).
    pub email: String,
    /// Where to go after signing in (a checked local path).
    pub next: String,
    /// What was wrong with the form, if anything.
    pub error: Option<String>,
    /// The site has no admin yet: say how to add one.
    pub needs_admin: bool,
    /// The owner's own front page text (`content/index.md`), instead of the built-in one.
    pub front: Option<crate::domain::content::Page>,
}

/// `GET /members`: the page behind the door, with the directory of active members.
#[derive(Template)]
#[template(path = "members.html")]
pub struct MembersPage {
    /// The frame.
    pub site: Site,
    /// Who is signed in.
    pub member: Member,
    /// Display names of the active members, this page of them.
    pub directory: std::sync::Arc<Vec<String>>,
    /// The directory page, from 1.
    pub page: i64,
    /// Whether there are more names after this page.
    pub has_next: bool,
}

/// A session as the account page lists it.
pub struct SessionRow {
    /// Its handle (for the revoke form).
    pub handle: String,
    /// The browser, as it described itself.
    pub device: String,
    /// Where it signed in from.
    pub ip: String,
    /// When it started, readable.
    pub created: String,
    /// When it was last used, readable.
    pub last_seen: String,
    /// Whether it is the session showing the page.
    pub current: bool,
}

/// `GET /account`: the member's own settings, sessions and data.
#[derive(Template)]
#[template(path = "account.html")]
pub struct AccountPage {
    /// The frame.
    pub site: Site,
    /// The member.
    pub member: Member,
    /// Their live sessions, newest first.
    pub sessions: Vec<SessionRow>,
    /// A fixed message about the last change, if any.
    pub notice: Option<&'static str>,
    /// What was wrong with the last form, if anything.
    pub error: Option<String>,
}

/// `GET /account/delete`: the confirmation step.
#[derive(Template)]
#[template(path = "account_delete.html")]
pub struct DeleteAccountPage {
    /// The frame.
    pub site: Site,
    /// The member.
    pub member: Member,
}

/// A member as the admin list shows them.
pub struct MemberRow {
    /// The member.
    pub member: Member,
    /// Last sign-in, readable.
    pub last_login: String,
    /// Listed in `ADMIN_EMAILS`: stays an admin, so cannot be demoted or removed here.
    pub listed_admin: bool,
}

/// `GET /admin`: the member list, invitations and actions.
#[derive(Template)]
#[template(path = "admin_members.html")]
pub struct AdminMembersPage {
    /// The frame.
    pub site: Site,
    /// The signed-in admin's id (their own row has no destructive buttons).
    pub me: String,
    /// This page of members.
    pub rows: Vec<MemberRow>,
    /// Search text.
    pub q: String,
    /// Status filter.
    pub status: String,
    /// Role filter.
    pub role: String,
    /// Page number, from 1.
    pub page: i64,
    /// Number of pages.
    pub pages: i64,
    /// Members matching the filter.
    pub total: i64,
    /// Query string for links to other pages (without `page`).
    pub filter_query: String,
    /// A fixed message about the last change, if any.
    pub notice: Option<&'static str>,
    /// Lines reporting the last invitation, if any.
    pub report: Vec<String>,
    /// With mail off: each address just invited and the invitation to send it by hand.
    pub by_hand: Vec<(String, String)>,
    /// Whether the site sends mail.
    pub mail_enabled: bool,
}

/// `GET /admin/members/{id}/remove`: asks before a member is removed.
#[derive(Template)]
#[template(path = "admin_remove.html")]
pub struct ConfirmRemovePage {
    /// The frame.
    pub site: Site,
    /// Who would be removed.
    pub member: Member,
}

/// A mail as the outbox page shows it.
pub struct OutboxRow {
    /// The mail.
    pub mail: crate::db::outbox::Mail,
    /// When it was queued, readable.
    pub created: String,
    /// When it was sent, or when it is tried next, readable.
    pub when: String,
}

/// `GET /admin/outbox`: the mail the site sends, with its state.
#[derive(Template)]
#[template(path = "admin_outbox.html")]
pub struct AdminOutboxPage {
    /// The frame.
    pub site: Site,
    /// Whether the site sends mail.
    pub mail_enabled: bool,
    /// This page of mails.
    pub rows: Vec<OutboxRow>,
    /// Status filter.
    pub status: String,
    /// Counts: queued, sent, failed.
    pub counts: (i64, i64, i64),
    /// Page number, from 1.
    pub page: i64,
    /// Whether there is a next page.
    pub has_next: bool,
    /// A fixed message about the last change, if any.
    pub notice: Option<&'static str>,
}

/// `GET`/`POST /admin/import`: paste CSV, preview it row by row, then apply.
#[derive(Template)]
#[template(path = "admin_import.html")]
pub struct AdminImportPage {
    /// The frame.
    pub site: Site,
    /// The CSV text (kept for the apply step).
    pub text: String,
    /// The checked rows, once previewed.
    pub rows: Vec<crate::domain::member_csv::ImportRow>,
    /// A problem with the file as a whole.
    pub file_error: Option<String>,
    /// Whether the preview found no error (then it can be applied).
    pub can_apply: bool,
    /// What applying did, once applied.
    pub applied: Option<String>,
}

/// An audit entry as the admin page shows it.
pub struct AuditRow {
    /// When, readable.
    pub at: String,
    /// The action.
    pub action: String,
    /// Who did it (address if still a member, else the id).
    pub actor: String,
    /// Whom it was done to.
    pub subject: String,
    /// Reason or value.
    pub detail: String,
}

/// `GET /admin/audit`: the audit log, with filters.
#[derive(Template)]
#[template(path = "admin_audit.html")]
pub struct AdminAuditPage {
    /// The frame.
    pub site: Site,
    /// The entries on this page.
    pub rows: Vec<AuditRow>,
    /// Action filter.
    pub action: String,
    /// Member filter (an id), kept across pages.
    pub member: String,
    /// Query string for links to other pages (without `page`), URL-encoded.
    pub filter_query: String,
    /// Every action name, for the filter.
    pub actions: Vec<&'static str>,
    /// Page number, from 1.
    pub page: i64,
    /// Whether there is a next page.
    pub has_next: bool,
}

/// Any error, drawn by [`crate::web::error_pages::render_error_pages`].
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    /// The frame.
    pub site: Site,
    /// The heading.
    pub title: String,
    /// What happened and what to do.
    pub message: String,
    /// A reference that is also in the log.
    pub reference: Option<String>,
    /// Whether to link to the sign-in form.
    pub offer_sign_in: bool,
    /// An address to offer a new sign-in for, from this browser.
    pub sign_in_here: Option<String>,
}

/// `GET /pages/…`: a Markdown page.
#[derive(Template)]
#[template(path = "page.html")]
pub struct ContentPage {
    /// The frame.
    pub site: Site,
    /// The page.
    pub page: crate::domain::content::Page,
}
