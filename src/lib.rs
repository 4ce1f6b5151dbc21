//! clubhouse: a small members-only website whose members sign in with Portier.
//!
//! Requests flow one way: `routes` (HTTP) call the domain modules (`members`, `portier`,
//! `sessions`), which call `db` (SQL only). `templates` render pages; `jobs` purge.

pub mod audit;
pub mod cli;
pub mod config;
pub mod content;
pub mod db;
pub mod directory;
pub mod email;
pub mod error;
pub mod error_pages;
pub mod jobs;
pub mod mail;
pub mod member_csv;
pub mod members;
pub mod metrics;
pub mod portier;
pub mod rate_limit;
pub mod routes;
pub mod safe_path;
pub mod security;
pub mod sessions;
pub mod startup;
pub mod telemetry;
pub mod templates;
