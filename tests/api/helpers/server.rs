//! The server a test talks to: the app on port 0, in this process, with its own database
//! and broker, and what a test does with it (sign in, look behind the scenes).

use std::collections::HashMap;
use std::sync::LazyLock;

use actix_web::http::StatusCode;
use clubhouse::config::Config;
use clubhouse::db::Db;
use clubhouse::startup::Application;

use super::browser::{AuthRequest, Browser, Page};
use super::database::TestDb;
use crate::broker::TestBroker;

static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        clubhouse::telemetry::init(clubhouse::config::LogFormat::Text);
    }
});

/// A running app with its own database and broker.
pub struct TestApp {
    /// Where the server listens, e.g. `http://127.0.0.1:41234`.
    pub address: String,
    /// Its `PUBLIC_URL` (the Portier client_id).
    pub public_url: String,
    /// The app's database, for looking behind the scenes.
    pub pool: Db,
    /// The broker it trusts.
    pub broker: TestBroker,
    /// Kept so the database lives as long as the app.
    pub db: TestDb,
}

/// Extra settings for [`spawn_app_with`].
pub type Settings<'a> = &'a [(&'a str, &'a str)];

/// Spawns the app with default test settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Spawns the app with a fresh database and broker; `settings` override the defaults.
pub async fn spawn_app_with(settings: Settings<'_>) -> TestApp {
    let db = TestDb::new().await;
    let broker = TestBroker::start("127.0.0.1");
    let broker_url = broker.origin.clone();
    spawn_app_on(db, broker, &[("BROKER_URL", &broker_url)], settings).await
}

/// Spawns the app on an existing database and broker.
pub async fn spawn_app_on(
    db: TestDb,
    broker: TestBroker,
    base: Settings<'_>,
    settings: Settings<'_>,
) -> TestApp {
    LazyLock::force(&TRACING);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind app");
    let port = listener.local_addr().expect("app address").port();
    let public_url = format!("http://localhost:{port}");
    let mut vars: HashMap<String, String> = HashMap::from([
        ("PUBLIC_URL".into(), public_url.clone()),
        ("DATABASE_URL".into(), db.url.clone()),
        ("BROKER_URL".into(), broker.origin.clone()),
        ("BROKER_TIMEOUT".into(), "5s".into()),
        // Many sign-ins come from 127.0.0.1 in one test; the rate-limit tests set their own.
        ("RATE_LIMIT_LOGIN_PER_IP".into(), "1000/1m".into()),
        // Most tests sign strangers in; the membership tests choose their own mode.
        ("SIGNUP_MODE".into(), "open".into()),
    ]);
    for (k, v) in base.iter().chain(settings) {
        vars.insert(k.to_string(), v.to_string());
    }
    let config = Config::from_lookup(|name| vars.get(name).cloned()).expect("test config");
    // A test may set its own PUBLIC_URL (the client_id tokens must name).
    let public_url = config.public_url.clone();
    let app = Application::build_with_listener(config, listener)
        .await
        .expect("build app");
    let pool = app.pool().clone();
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        public_url,
        pool,
        broker,
        db,
    }
}

impl TestApp {
    /// A second server on the same database, trusting the same broker and answering for the
    /// same `PUBLIC_URL`, as instances behind one load balancer do.
    pub async fn another_instance(&self, settings: Settings<'_>) -> TestApp {
        let mut all = vec![("PUBLIC_URL", self.public_url.as_str())];
        all.extend_from_slice(settings);
        spawn_app_on(
            self.db.shared(),
            self.broker.clone(),
            &[("BROKER_URL", &self.broker.origin)],
            &all,
        )
        .await
    }

    /// A new browser for this app.
    pub fn browser(&self) -> Browser {
        Browser::new(&self.address, &self.public_url)
    }

    /// A new browser whose connections come from `local` (e.g. `127.0.0.2`).
    pub fn browser_from(&self, local: &str) -> Browser {
        let local = local.parse().expect("a local IP address");
        Browser::from_address(&self.address, &self.public_url, local)
    }

    /// Submits the sign-in form and returns the broker request it leads to.
    pub async fn start_login(
        &self,
        browser: &Browser,
        email: &str,
        next: Option<&str>,
    ) -> AuthRequest {
        let mut fields = vec![("email", email)];
        if let Some(next) = next {
            fields.push(("next", next));
        }
        let page = browser.submit("/login", &fields).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "login: {}", page.body);
        AuthRequest::from_location(&page.location())
    }

    /// The token the broker would post back for this request.
    pub fn token_for(&self, auth: &AuthRequest) -> String {
        let claims = self.broker.claims(
            &self.public_url,
            &auth.param("nonce"),
            &auth.param("login_hint"),
        );
        self.broker.token(&claims)
    }

    /// Posts a token to `/verify` as the broker's page does.
    pub async fn post_token(&self, browser: &Browser, token: &str) -> Page {
        browser
            .post_from_broker("/verify", &[("id_token", token), ("state", "")])
            .await
    }

    /// A new browser in which `email` has signed in through the whole flow.
    pub async fn signed_in_browser(&self, email: &str) -> Browser {
        let browser = self.browser();
        self.sign_in(&browser, email)
            .await
            .assert_redirect_to("/members");
        browser
    }

    /// Signs `email` in through the whole flow; returns the answer to `/verify`.
    pub async fn sign_in(&self, browser: &Browser, email: &str) -> Page {
        let auth = self.start_login(browser, email, None).await;
        let token = self.token_for(&auth);
        self.post_token(browser, &token).await
    }

    /// The member with this address: (id, status, role).
    pub async fn member(&self, email: &str) -> Option<(String, String, String)> {
        sqlx::query_as("SELECT id, status, role FROM members WHERE email = $1")
            .bind(email)
            .fetch_optional(&self.pool)
            .await
            .expect("member")
    }

    /// The actions in the audit log, oldest first.
    pub async fn audit_actions(&self) -> Vec<String> {
        sqlx::query_scalar("SELECT action FROM audit_log ORDER BY at, id")
            .fetch_all(&self.pool)
            .await
            .expect("audit")
    }

    /// How many audit entries have this action.
    pub async fn audit_count(&self, action: &str) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = $1")
            .bind(action)
            .fetch_one(&self.pool)
            .await
            .expect("audit count")
    }

    /// Runs one SQL count.
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }
}

/// A loopback port that was free a moment ago (nothing listens on it now).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}
