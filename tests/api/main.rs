//! Black-box tests: the real server on port 0, a fresh database per test (SQLite, or Postgres
//! when TEST_DATABASE_URL is set), and a test broker that signs tokens with a test key.

mod account;
mod adapter;
mod admin;
mod attacks;
mod broker;
mod browser;
mod cli;
mod conformance;
mod group_commit;
mod hardening;
mod helpers;
mod instances;
mod keys;
mod layers;
mod login;
mod mail;
mod membership;
mod operations;
mod owner;
mod pages;
mod process;
mod purge;
mod real_broker;
mod round_trips;
mod smtp;
mod webdriver;
