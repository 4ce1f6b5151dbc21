//! What the site does, whatever asks for it: the web handlers and the command line both
//! call these modules, which call [`crate::db`] for the SQL.

pub mod audit;
pub mod content;
pub mod directory;
pub mod mail;
pub mod member_csv;
pub mod members;
pub mod metrics;
pub mod portier;
pub mod purge;
pub mod rate_limit;
pub mod signin;
