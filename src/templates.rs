//! One askama struct per page. Every page extends `templates/base.html`.

use askama::Template;

use crate::db::members::Member;
use crate::security::Csrf;

/// What every page needs to draw the frame.
#[derive(Debug, Clone)]
pub struct Site {
    /// The site's name (`SITE_NAME`).
    pub name: String,
    /// Whether the visitor is signed in (shows "Sign out").
    pub signed_in: bool,
    /// The CSRF token for this page's forms (empty on pages without forms).
    pub csrf_token: String,
}

impl Default for Site {
    fn default() -> Self {
        Site {
            name: "Clubhouse".into(),
            signed_in: false,
            csrf_token: String::new(),
        }
    }
}

impl Site {
    /// The frame for one request: whether the visitor is signed in, and their form token.
    pub fn for_visitor(&self, signed_in: bool, csrf: &Csrf) -> Site {
        Site {
            signed_in,
            csrf_token: csrf.token().to_owned(),
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
}

/// `GET /members`: the page behind the door.
#[derive(Template)]
#[template(path = "members.html")]
pub struct MembersPage {
    /// The frame.
    pub site: Site,
    /// Who is signed in.
    pub member: Member,
}

/// Any error, drawn by [`crate::error::render_error_pages`].
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
}
