//! Runs the site: read settings, set up logs, serve.

use std::process::ExitCode;

use clubhouse::config::Config;
use clubhouse::startup::Application;

#[actix_web::main]
async fn main() -> ExitCode {
    clubhouse::telemetry::init();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("clubhouse: cannot start: {e}");
            return ExitCode::from(2);
        }
    };
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
