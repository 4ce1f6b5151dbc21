//! Test support, by what it helps with: the database ([`database`]), the server and what a
//! test does with it ([`server`]), the browser-like client ([`browser`]). The test broker is
//! in `broker.rs`, the real browsers in `webdriver.rs`.

pub mod browser;
pub mod database;
pub mod server;

pub use browser::{AuthRequest, Browser, Page, target_dir};
pub use database::TestDb;
pub use server::{TestApp, free_port, spawn_app, spawn_app_on, spawn_app_with};
