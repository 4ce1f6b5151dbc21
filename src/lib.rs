//! clubhouse: a small members-only website whose members sign in with Portier.
//!
//! The code is in layers, and imports go one way, from the top down:
//!
//! - [`startup`], [`cli`], [`telemetry`]: the application, which builds everything below and
//!   starts the server or runs a command.
//! - [`web`]: HTTP. Routes and handlers, extractors, pages, sessions, error pages. A handler
//!   reads the request, calls the domain and picks the page.
//! - [`domain`]: what the site does: sign-in, members, audit, content, mail, purges.
//! - [`db`]: SQL only, one small function per statement, on SQLite and Postgres.
//! - [`config`] and [`email`]: plain values every layer reads (the settings, an address);
//!   they import nothing from the crate.
//!
//! A module never imports from a layer above its own, and no two modules import each other,
//! directly or in a circle; `tests/api/layers.rs` checks both. Every write goes through
//! `domain`; a handler may read a list or a row for its page straight from `db`.
//! `docs/extending.md` shows where a new page, table and setting go.

pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod email;
pub mod startup;
pub mod telemetry;
pub mod web;
