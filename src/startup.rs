//! Wiring: open the database, bind the listener, build the app, run it.

use std::net::TcpListener;
use std::sync::Arc;

use actix_session::SessionMiddleware;
use actix_session::config::{CookieContentSecurity, PersistentSession};
use actix_web::cookie::{SameSite, time::Duration as CookieDuration};
use actix_web::dev::Server;
use actix_web::middleware::{ErrorHandlers, from_fn};
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use tokio::sync::watch;
use tracing_actix_web::TracingLogger;

use crate::config::Config;
use crate::db::{self, Db};
use crate::domain::content::Content;
use crate::domain::directory::{self, Directory};
use crate::domain::mail::{self, Mailer};
use crate::domain::metrics::Metrics;
use crate::domain::portier::{Broker, RelyingParty};
use crate::domain::purge;
use crate::domain::signin::SignIn;
use crate::web::error::AppError;
use crate::web::error_pages::render_error_pages;
use crate::web::routes;
use crate::web::security::{self, CsrfKey};
use crate::web::sessions::{self, DbSessionStore};
use crate::web::templates::Site;

/// Largest form body accepted (the id_token is the biggest field, under 8 KiB).
const FORM_LIMIT: usize = 16 * 1024;

/// A built server, bound and ready to run.
pub struct Application {
    port: u16,
    server: Server,
    pool: Db,
    config: Config,
    metrics: web::Data<Metrics>,
    mailer: web::Data<Mailer>,
}

impl Application {
    /// Binds `LISTEN_ADDR`, then builds everything else.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let listener = TcpListener::bind(config.listen_addr)
            .with_context(|| format!("LISTEN_ADDR: could not listen on {}", config.listen_addr))?;
        Self::build_with_listener(config, listener).await
    }

    /// Builds the server on a listener the caller bound (tests bind port 0 first, so they know
    /// the address before `PUBLIC_URL` is set).
    pub async fn build_with_listener(
        config: Config,
        listener: TcpListener,
    ) -> anyhow::Result<Application> {
        // awc needs a rustls crypto provider; more than one may be compiled in, so choose.
        let _ = rustls::crypto::ring::default_provider().install_default();

        let pool = db::connect(&config.database_url).await.with_context(|| {
            format!(
                "DATABASE_URL: could not open {}",
                config.database_url_redacted()
            )
        })?;
        db::migrate(&pool)
            .await
            .context("could not apply the database migrations")?;
        let cookie_key = sessions::cookie_key(config.session_key.as_ref(), &pool)
            .await
            .context("could not load the session key")?;

        let port = listener.local_addr()?.port();
        let broker = Arc::new(Broker::new(
            &config.broker_url,
            config.broker_timeout,
            config.key_refetch_cooldown,
        ));
        let rp = web::Data::new(RelyingParty::new(
            pool.clone(),
            broker.clone(),
            &config.public_url,
        ));
        let content = Arc::new(
            Content::load(&config.content_dir, config.content_allow_html)
                .map_err(|e| anyhow::anyhow!("a page in CONTENT_DIR is broken: {e}"))?,
        );
        let content_data = web::Data::from(content.clone());
        let site = web::Data::new(Site {
            name: config.site_name.clone(),
            footer: config.footer_text.clone(),
            content: Some(content),
            logo: config.site_logo.clone(),
            contact: config.contact_email.as_ref().map(|e| e.to_string()),
            ..Site::default()
        });
        let mailer = web::Data::new(Mailer::from_config(&config)?);
        if !mailer.enabled() {
            tracing::info!(
                "mail is off (no SMTP_URL): invitations are shown for you to send, and nobody \
                 is told of approvals or requests to join"
            );
        }
        let csrf_key = web::Data::new(CsrfKey(cookie_key.signing().to_vec()));
        let hasher = web::Data::new(
            crate::domain::audit::prepare_hasher(&pool, &cookie_key)
                .await
                .context("could not convert the audit log's address hashes")?,
        );
        let refusal_gate = web::Data::new(crate::domain::rate_limit::RefusalGate::default());
        let directory = web::Data::new(Directory::new(directory::TTL));
        let metrics = web::Data::new(Metrics::default());
        let metrics_for_server = metrics.clone();
        let mailer_for_server = mailer.clone();
        if let Some(problem) = config.binding_problem() {
            tracing::warn!("{problem}");
        }
        if db::members::active_admins(&pool).await? == 0 && config.admin_emails.is_empty() {
            tracing::warn!(
                "this site has no admin yet: run `clubhouse admin add you@example.org`, or list \
                 your address in ADMIN_EMAILS and sign in with it"
            );
        }
        let config_data = web::Data::new(config.clone());
        // What every worker shares; each builds its own database handle and what holds it
        // (see `Db::for_worker`).
        let shared = Arc::new(SignIn {
            rp: rp.clone().into_inner(),
            db: pool.clone(),
            config: config_data.clone().into_inner(),
            mailer: mailer.clone().into_inner(),
            hasher: hasher.clone().into_inner(),
            gate: refusal_gate.clone().into_inner(),
            directory: directory.clone().into_inner(),
            metrics: metrics.clone().into_inner(),
        });
        let workers = config.http_workers;
        let per_worker = (db::POSTGRES_CONNECTIONS / workers as u32).max(2);
        let public_url = config.public_url.clone();
        let secure = config.is_https();
        let cookie_names = crate::web::security::CookieNames::for_site(&config);
        let session_cookie_key = web::Data::new(sessions::SessionCookieKey(cookie_key.clone()));
        // The cookie lives as long as the longest session; the server decides when it ends.
        let cookie_max_age = CookieDuration::seconds(config.session_max_age.as_secs() as i64);
        let (idle, max_age) = (config.session_idle_timeout, config.session_max_age);
        let broker_timeout = config.broker_timeout;

        let server = HttpServer::new(move || {
            let db = shared.db.for_worker(per_worker).unwrap_or_else(|e| {
                // Cannot happen: the same URL opened the first pool.
                tracing::error!(error = %e, "a worker's database pool; it shares the first one");
                shared.db.clone()
            });
            let rp = web::Data::new(RelyingParty::new(db.clone(), broker.clone(), &public_url));
            let signin = web::Data::new(SignIn {
                rp: rp.clone().into_inner(),
                db: db.clone(),
                ..SignIn::clone(&shared)
            });
            // awc clients are per worker (not Send); the key cache they fill is shared.
            let client = awc::Client::builder()
                .timeout(broker_timeout)
                .disable_redirects()
                .connector(awc::Connector::new().timeout(broker_timeout))
                .finish();
            let session = SessionMiddleware::builder(
                DbSessionStore::new(db.clone(), idle, max_age),
                cookie_key.clone(),
            )
            .cookie_name(cookie_names.session.to_owned())
            .cookie_secure(secure)
            .cookie_http_only(true)
            .cookie_same_site(SameSite::Lax)
            .cookie_content_security(CookieContentSecurity::Private)
            .session_lifecycle(PersistentSession::default().session_ttl(cookie_max_age))
            .build();
            App::new()
                .wrap(session)
                .wrap(from_fn(security::csrf_cookie))
                .wrap(ErrorHandlers::new().default_handler(render_error_pages))
                .wrap(security::security_headers(&config_data))
                .wrap(TracingLogger::<crate::telemetry::RequestSpan>::new())
                .wrap(from_fn(routes::health::time_requests))
                // Outermost: it must change the request's cookies before anything reads them.
                .wrap(from_fn(sessions::carry_over_plain_cookie))
                .app_data(web::Data::new(client))
                .app_data(rp)
                .app_data(signin)
                .app_data(site.clone())
                .app_data(web::Data::new(db))
                .app_data(config_data.clone())
                .app_data(csrf_key.clone())
                .app_data(hasher.clone())
                .app_data(session_cookie_key.clone())
                .app_data(refusal_gate.clone())
                .app_data(content_data.clone())
                .app_data(directory.clone())
                .app_data(metrics_for_server.clone())
                .app_data(mailer_for_server.clone())
                .app_data(
                    web::FormConfig::default()
                        .limit(FORM_LIMIT)
                        .error_handler(|err, _req| crate::web::extract::form_error(err).into()),
                )
                .app_data(web::QueryConfig::default().error_handler(|_err, _req| {
                    AppError::BadRequest("The address of this page could not be read.".into())
                        .into()
                }))
                .configure(routes::configure)
                .default_service(web::to(|| async {
                    Err::<actix_web::HttpResponse, _>(AppError::NotFound)
                }))
        })
        .listen(listener)?
        // On SIGTERM or SIGINT: stop accepting, let requests in flight finish (at most this
        // long), then stop.
        .shutdown_timeout(config.shutdown_timeout.as_secs().max(1))
        // Every worker on both engines: on Postgres each has its own connections, so one that
        // stops first cannot take another's with it (see `Db::for_worker`).
        .workers(workers)
        .run();

        Ok(Application {
            port,
            server,
            pool,
            config,
            metrics,
            mailer,
        })
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle to the database pool (tests use it to look behind the scenes).
    pub fn pool(&self) -> &Db {
        &self.pool
    }

    /// The site's mail (tests look at it).
    pub fn mailer(&self) -> std::sync::Arc<Mailer> {
        self.mailer.clone().into_inner()
    }

    /// Serves until the server is stopped (SIGINT/SIGTERM), with the purge task and the mail
    /// sender alongside; then stops both and closes the pool.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let purge = tokio::spawn(purge::run_purge(
            self.pool.clone(),
            self.config.purge_interval,
            self.config.audit_retention,
            stop_rx.clone(),
            self.metrics.clone().into_inner(),
        ));
        let sender = tokio::spawn(mail::sender::run(
            self.pool.clone(),
            self.mailer.clone().into_inner(),
            stop_rx,
            self.metrics.clone().into_inner(),
        ));
        let result = self.server.await;
        let _ = stop_tx.send(true);
        let _ = purge.await;
        // A mail being handed over finishes within a few seconds; one that does not stays
        // claimed and is taken up again once its lease ends (by this site after a restart,
        // or by another instance).
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), sender).await;
        self.pool.close().await;
        result
    }
}
