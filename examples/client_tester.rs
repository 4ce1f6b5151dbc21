//! Adapter for the official Portier client conformance suite (portier/client-tester).
//!
//! Run as `cargo run --example client_tester -- <broker origin>`; the suite starts it itself.
//! It reads tab-separated commands on standard input and answers on standard output:
//!
//! - `echo <text>` answers `ok <text>`;
//! - `auth <email> [<state>]` starts a sign-in and answers `ok <broker URL>`;
//! - `verify <id_token>` answers `ok <email>` or `err <reason>`.
//!
//! It uses the same relying-party code as the site (discovery and key cache, token checks,
//! nonce consumption), on a throwaway SQLite database that is deleted on exit.

use std::process::ExitCode;
use std::sync::Arc;

use clubhouse::config::Config;
use clubhouse::db;
use clubhouse::domain::portier::{AttemptFor, Broker, Purpose, RelyingParty, VerifyError};
use secrecy::SecretString;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The origin this adapter pretends to be served from.
const CLIENT_ID: &str = "http://localhost:8000";

#[actix_web::main]
async fn main() -> ExitCode {
    let Some(broker_arg) = std::env::args().nth(1) else {
        eprintln!("usage: client_tester <broker origin>");
        return ExitCode::from(2);
    };
    // The same validation as the site's BROKER_URL.
    let config = match Config::from_lookup(|name| match name {
        "BROKER_URL" => Some(broker_arg.clone()),
        "PUBLIC_URL" => Some(CLIENT_ID.to_owned()),
        _ => None,
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("client_tester: {e}");
            return ExitCode::from(2);
        }
    };
    let _ = rustls::crypto::ring::default_provider().install_default();

    let path = std::env::temp_dir().join(format!("client-tester-{}.db", uuid::Uuid::new_v4()));
    let url = SecretString::from(format!("sqlite://{}?mode=rwc", path.display()));
    let code = match run(&config, &url).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("client_tester: {e:#}");
            ExitCode::FAILURE
        }
    };
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    code
}

async fn run(config: &Config, url: &SecretString) -> anyhow::Result<()> {
    let pool = db::connect(url).await?;
    db::migrate(&pool).await?;
    let broker = Arc::new(Broker::new(
        &config.broker_url,
        config.broker_timeout,
        config.key_refetch_cooldown,
    ));
    let rp = RelyingParty::new(pool.clone(), broker, &config.public_url);
    let client = awc::Client::builder()
        .timeout(config.broker_timeout)
        .disable_redirects()
        .finish();

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    while let Some(line) = lines.next_line().await? {
        let parts: Vec<&str> = line.split('\t').collect();
        let answer = match parts.as_slice() {
            ["echo", text] => format!("ok\t{text}"),
            // The state is optional: the suite sends it in its first case only.
            ["auth", email, rest @ ..] if rest.len() <= 1 => {
                match rp
                    .start(
                        &client,
                        &AttemptFor {
                            login_hint: email,
                            next_path: "/",
                            state: rest.first().copied(),
                            binding_hash: None,
                            purpose: &Purpose::SignIn,
                        },
                    )
                    .await
                {
                    Ok(url) => format!("ok\t{url}"),
                    Err(e) => format!("err\t{}", one_line(&e.to_string())),
                }
            }
            ["verify", token] => match rp.verify(&client, token, None).await {
                Ok(verified) => format!("ok\t{}", verified.email_claim),
                Err(VerifyError::Rejected(r)) => format!("err\t{}", one_line(&r.to_string())),
                Err(e) => format!("err\t{}", one_line(&e.to_string())),
            },
            _ => format!("err\tunknown command: {}", one_line(&line)),
        };
        out.write_all(answer.as_bytes()).await?;
        out.write_all(b"\n").await?;
        out.flush().await?;
    }
    pool.close().await;
    Ok(())
}

fn one_line(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ")
}
