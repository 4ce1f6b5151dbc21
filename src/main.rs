//! Runs the site, or one of the management commands: read settings, set up logs, go.

use std::process::ExitCode;

use clap::Parser;
use clubhouse::cli::{Cli, Command};
use clubhouse::config::Config;
use clubhouse::startup::Application;

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("clubhouse: cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    clubhouse::telemetry::init(config.log_format);
    match cli.command {
        None | Some(Command::Serve) => serve(config).await,
        Some(command) => {
            match clubhouse::cli::run(command, &config, &mut std::io::stdout()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("clubhouse: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn serve(config: Config) -> ExitCode {
    let public_url = config.public_url.clone();
    let database = config.database_url_redacted();
    let broker = config.broker_url.clone();
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("clubhouse: cannot start: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!("clubhouse is ready: open {public_url} (database {database}, broker {broker})");
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clubhouse: stopped with an error: {e}");
            ExitCode::FAILURE
        }
    }
}
