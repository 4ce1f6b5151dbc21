//! Test support: a fresh database per test, the server on port 0, a browser-like client.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::LazyLock;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use clubhouse::config::Config;
use clubhouse::db::Pool;
use clubhouse::startup::Application;
use sqlx::{Connection, Executor, PgConnection};

use crate::broker::TestBroker;

static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var_os("TEST_LOG").is_some() {
        clubhouse::telemetry::init(clubhouse::config::LogFormat::Text);
    }
});

/// A database that exists for one test: a temporary SQLite file, or a new Postgres database
/// when `TEST_DATABASE_URL` is set. Removed when dropped.
pub struct TestDb {
    /// The URL the app is given.
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(PathBuf),
    Postgres {
        admin_url: String,
        name: String,
    },
    /// Another handle owns the database.
    None,
}

impl TestDb {
    /// Creates the database.
    pub async fn new() -> TestDb {
        let id = uuid::Uuid::new_v4().simple().to_string();
        match std::env::var("TEST_DATABASE_URL") {
            Ok(admin_url) if !admin_url.is_empty() => {
                let name = format!("clubhouse_test_{id}");
                let mut conn = PgConnection::connect(&admin_url)
                    .await
                    .expect("connect to TEST_DATABASE_URL");
                conn.execute(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
                    .await
                    .expect("create test database");
                let mut url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
                url.set_path(&name);
                TestDb {
                    url: url.to_string(),
                    cleanup: Cleanup::Postgres { admin_url, name },
                }
            }
            _ => {
                let path = std::env::temp_dir().join(format!("clubhouse-test-{id}.db"));
                TestDb {
                    url: format!("sqlite://{}?mode=rwc", path.display()),
                    cleanup: Cleanup::Sqlite(path),
                }
            }
        }
    }
}

impl TestDb {
    /// A temporary SQLite database, whatever `TEST_DATABASE_URL` says.
    pub fn sqlite() -> TestDb {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let path = std::env::temp_dir().join(format!("clubhouse-test-{id}.db"));
        TestDb {
            url: format!("sqlite://{}?mode=rwc", path.display()),
            cleanup: Cleanup::Sqlite(path),
        }
    }

    /// A handle on the database at `url`, which it never removes.
    pub fn sqlite_at(url: &str) -> TestDb {
        TestDb {
            url: url.to_owned(),
            cleanup: Cleanup::None,
        }
    }

    /// Another handle on the same database, which leaves removing it to this one.
    pub fn shared(&self) -> TestDb {
        TestDb {
            url: self.url.clone(),
            cleanup: Cleanup::None,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
                }
            }
            Cleanup::None => {}
            Cleanup::Postgres { admin_url, name } => {
                // Drop runs inside the test's runtime, which cannot be blocked on: use a
                // thread with a runtime of its own.
                let (admin_url, name) = (admin_url.clone(), name.clone());
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime");
                    rt.block_on(async {
                        if let Ok(mut conn) = PgConnection::connect(&admin_url).await {
                            let _ = conn
                                .execute(sqlx::AssertSqlSafe(format!(
                                    r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
                                )))
                                .await;
                        }
                    });
                })
                .join();
            }
        }
    }
}

/// A running app with its own database and broker.
pub struct TestApp {
    /// Where the server listens, e.g. `http://127.0.0.1:41234`.
    pub address: String,
    /// Its `PUBLIC_URL` (the Portier client_id).
    pub public_url: String,
    /// The app's database, for looking behind the scenes.
    pub pool: Pool,
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

/// A response, read whole.
pub struct Page {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: actix_web::http::header::HeaderMap,
    /// The body as text.
    pub body: String,
}

impl Page {
    /// The `Location` header.
    pub fn location(&self) -> String {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    /// Asserts a 303 to `location`.
    #[track_caller]
    pub fn assert_redirect_to(&self, location: &str) {
        assert_eq!(self.status, StatusCode::SEE_OTHER, "body: {}", self.body);
        assert_eq!(self.location(), location);
    }
}

struct StoredCookie {
    value: String,
    same_site: Option<SameSite>,
}

/// A browser: keeps cookies like one, and can send the broker's cross-site form POST.
pub struct Browser {
    client: awc::Client,
    base: RefCell<String>,
    /// The origin the pages are served from as the browser sees it (the app's PUBLIC_URL),
    /// sent as `Origin` on our own forms.
    origin: String,
    jar: RefCell<HashMap<String, StoredCookie>>,
    /// Whether the pages it receives are kept for the HTML checker.
    check_html: std::cell::Cell<bool>,
}

impl Browser {
    /// A browser with an empty cookie jar, talking to `base`, where the site's origin is
    /// `origin`.
    pub fn new(base: &str, origin: &str) -> Browser {
        Self::with_client(base, origin, None)
    }

    /// A browser on another machine: its connections come from `local` (a loopback address
    /// such as 127.0.0.2, which the server sees as another client).
    pub fn from_address(base: &str, origin: &str, local: std::net::IpAddr) -> Browser {
        Self::with_client(base, origin, Some(local))
    }

    fn with_client(base: &str, origin: &str, local: Option<std::net::IpAddr>) -> Browser {
        // Longer than the server's own limits (5 s for the database), so a test sees the
        // server's answer rather than its own time-out.
        let timeout = std::time::Duration::from_secs(20);
        let client = match local {
            Some(ip) => awc::Client::builder()
                .local_address(ip)
                .disable_redirects()
                .timeout(timeout)
                .finish(),
            None => awc::Client::builder()
                .disable_redirects()
                .timeout(timeout)
                .finish(),
        };
        Browser {
            client,
            base: RefCell::new(base.to_owned()),
            origin: origin.to_owned(),
            jar: RefCell::new(HashMap::new()),
            check_html: std::cell::Cell::new(true),
        }
    }

    fn cookie_header(&self, cross_site: bool) -> Option<String> {
        let jar = self.jar.borrow();
        let pairs: Vec<String> = jar
            .iter()
            // A cross-site POST carries only SameSite=None cookies.
            .filter(|(_, c)| !cross_site || c.same_site == Some(SameSite::None))
            .map(|(name, c)| format!("{name}={}", c.value))
            .collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }

    fn store_cookies(&self, headers: &actix_web::http::header::HeaderMap) {
        let mut jar = self.jar.borrow_mut();
        for value in headers.get_all("set-cookie") {
            let Ok(text) = value.to_str() else { continue };
            let Ok(cookie) = Cookie::parse(text.to_owned()) else {
                continue;
            };
            let expired = cookie
                .max_age()
                .is_some_and(|age| age.is_zero() || age.is_negative())
                || cookie
                    .expires_datetime()
                    .is_some_and(|at| at < actix_web::cookie::time::OffsetDateTime::now_utc());
            if expired {
                jar.remove(cookie.name());
            } else {
                jar.insert(
                    cookie.name().to_owned(),
                    StoredCookie {
                        value: cookie.value().to_owned(),
                        same_site: cookie.same_site(),
                    },
                );
            }
        }
    }

    /// Leaves the pages this browser receives out of the HTML check (for a page that shows an
    /// owner's own raw HTML).
    pub fn skip_html_check(&self) {
        self.check_html.set(false);
    }

    /// From now on, sends its requests to `base`, with the same cookies: another instance
    /// behind the same load balancer.
    pub fn route_to(&self, base: &str) {
        *self.base.borrow_mut() = base.to_owned();
    }

    /// The value of a cookie, if the browser holds it.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.jar.borrow().get(name).map(|c| c.value.clone())
    }

    /// Sets a cookie by hand (as an attacker might plant one).
    pub fn set_cookie(&self, name: &str, value: &str) {
        self.jar.borrow_mut().insert(
            name.to_owned(),
            StoredCookie {
                value: value.to_owned(),
                same_site: Some(SameSite::Lax),
            },
        );
    }

    async fn read<S>(&self, mut response: awc::ClientResponse<S>) -> Page
    where
        S: futures_core::Stream<
                Item = Result<actix_web::web::Bytes, actix_web::error::PayloadError>,
            > + Unpin,
    {
        self.store_cookies(response.headers());
        let body = response.body().limit(4 << 20).await.expect("read body");
        let html = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html"));
        if html && self.check_html.get() {
            save_page(&body);
        }
        Page {
            status: response.status(),
            headers: response.headers().clone(),
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// `GET path` with the browser's cookies.
    pub async fn get(&self, path: &str) -> Page {
        let mut req = self.client.get(format!("{}{path}", self.base.borrow()));
        if let Some(cookies) = self.cookie_header(false) {
            req = req.insert_header(("cookie", cookies));
        }
        let res = req.send().await.expect("GET");
        self.read(res).await
    }

    /// Opens `/members` and asserts it shows `email` as the signed-in member.
    pub async fn assert_signed_in_as(&self, email: &str) -> Page {
        let page = self.get("/members").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains(email), "{}", page.body);
        page
    }

    /// The CSRF token our pages put in their forms for this browser, read from a page as a
    /// browser would (the front page, or the members page once signed in).
    pub async fn form_token(&self) -> String {
        let mut page = self.get("/").await;
        if page.status == StatusCode::SEE_OTHER {
            page = self.get("/members").await;
        }
        let marker = r#"name="csrf_token" value=""#;
        let start = page
            .body
            .find(marker)
            .unwrap_or_else(|| panic!("no CSRF token on the page: {}", page.body))
            + marker.len();
        page.body[start..]
            .split('"')
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    /// A GET that may fail to connect (a server that is stopping): its status, or `None`.
    pub async fn try_get(&self, path: &str) -> Option<StatusCode> {
        let mut req = self.client.get(format!("{}{path}", self.base.borrow()));
        if let Some(cookies) = self.cookie_header(false) {
            req = req.insert_header(("cookie", cookies));
        }
        let mut res = req.send().await.ok()?;
        let _ = res.body().await;
        Some(res.status())
    }

    /// Submits one of our forms like a person: with the page's CSRF token.
    pub async fn submit(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let token = self.form_token().await;
        let mut fields = fields.to_vec();
        fields.push(("csrf_token", &token));
        self.post_form(path, &fields).await
    }

    /// A same-site form POST, exactly as given (no CSRF token is added).
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let origin = self.origin.clone();
        self.post_with(path, fields, &[("origin", &origin)], false)
            .await
    }

    /// The broker's auto-submitted form: a cross-site POST from a sandboxed page, so
    /// `Origin: null` and no SameSite=Lax/Strict cookies.
    pub async fn post_from_broker(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.post_with(path, fields, &[("origin", "null")], true)
            .await
    }

    /// A form POST with these request headers; `cross_site` sends only SameSite=None cookies.
    pub async fn post_with(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
        cross_site: bool,
    ) -> Page {
        let mut req = self.client.post(format!("{}{path}", self.base.borrow()));
        for (name, value) in headers {
            req = req.insert_header((*name, *value));
        }
        if let Some(cookies) = self.cookie_header(cross_site) {
            req = req.insert_header(("cookie", cookies));
        }
        let res = req.send_form(&fields).await.expect("POST");
        self.read(res).await
    }

    /// A POST with a raw body and content type, for malformed input.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Page {
        let res = self
            .client
            .post(format!("{}{path}", self.base.borrow()))
            .insert_header(("content-type", content_type))
            .send_body(body)
            .await
            .expect("POST");
        self.read(res).await
    }
}

/// The broker URL `POST /login` sent the browser to, taken apart.
pub struct AuthRequest {
    /// The whole URL.
    pub url: url::Url,
    /// Its query parameters.
    pub params: HashMap<String, String>,
}

impl AuthRequest {
    /// Takes apart the `Location` of the answer to `POST /login`.
    pub fn from_location(location: &str) -> AuthRequest {
        let url = url::Url::parse(location).expect("auth URL");
        let params = url.query_pairs().into_owned().collect();
        AuthRequest { url, params }
    }

    /// One parameter (empty if absent).
    pub fn param(&self, name: &str) -> String {
        self.params.get(name).cloned().unwrap_or_default()
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

/// Where every HTML page the tests receive is kept, once per distinct page, for the HTML
/// checker that CI runs over them: `target/pages/`.
pub fn pages_dir() -> PathBuf {
    target_dir().join("pages")
}

/// The target directory the test binary runs from (`target/debug/deps/api-…` is three
/// levels below it).
pub fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.parent()?.parent()?.to_path_buf()))
        .expect("target dir")
}

/// Keeps one of our pages for the HTML checker (named by its hash, so each distinct page is
/// kept once however many tests see it).
fn save_page(body: &[u8]) {
    use sha2::Digest;
    let dir = pages_dir();
    let name: String = sha2::Sha256::digest(body)
        .iter()
        .take(12)
        .map(|b| format!("{b:02x}"))
        .collect();
    let path = dir.join(format!("{name}.html"));
    if !path.exists() {
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(path, body);
    }
}

/// A loopback port that was free a moment ago (nothing listens on it now).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}
