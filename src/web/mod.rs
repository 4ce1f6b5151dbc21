//! HTTP: the routes and their handlers, the extractors they share, the pages and the
//! sessions. Handlers read the request, call [`crate::domain`] and pick the page.

pub mod error;
pub mod error_pages;
pub mod extract;
pub mod routes;
pub mod safe_path;
pub mod security;
pub mod sessions;
pub mod templates;
