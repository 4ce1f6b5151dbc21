//! The `clubhouse` binary as an operator runs it: stopped with SIGTERM under load, and its
//! logs.

use std::cell::RefCell;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use futures_util::future::join_all;

use crate::broker::{BROKER_KEY, Signature, TestBroker, sign};
use crate::helpers::{AuthRequest, Browser, TestDb, free_port};

/// The server binary, running on its own database and trusting a test broker.
pub struct Server {
    child: Child,
    /// Where it listens.
    pub address: String,
    /// Its `PUBLIC_URL`.
    pub public_url: String,
    log: PathBuf,
    /// The broker it trusts.
    pub broker: TestBroker,
    _db: TestDb,
}

impl Server {
    /// The binary on a new database, with a new broker.
    pub async fn start(settings: &[(&str, &str)]) -> Server {
        let db = TestDb::new().await;
        let broker = TestBroker::start("127.0.0.1");
        Self::start_on(db, broker, free_port(), settings).await
    }

    /// The binary on `db`, trusting `broker`, listening on `port`; `settings` come last.
    pub async fn start_on(
        db: TestDb,
        broker: TestBroker,
        port: u16,
        settings: &[(&str, &str)],
    ) -> Server {
        let mut command = Self::command(port);
        command
            .env("DATABASE_URL", &db.url)
            .env("BROKER_URL", &broker.origin)
            .env("SIGNUP_MODE", "open")
            .env("RATE_LIMIT_LOGIN_PER_IP", "100000/1m")
            .envs(settings.iter().copied());
        Self::spawn(command, port, db, broker).await
    }

    /// The binary with a clean environment that holds only `PATH`, `LISTEN_ADDR` and
    /// `PUBLIC_URL` for `port`.
    pub fn command(port: u16) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_clubhouse"));
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PUBLIC_URL", format!("http://localhost:{port}"))
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"));
        command
    }

    /// Runs `command` (made by [`Server::command`] for `port`) and waits until it serves.
    pub async fn spawn(mut command: Command, port: u16, db: TestDb, broker: TestBroker) -> Server {
        let log = std::env::temp_dir().join(format!(
            "clubhouse-test-{}.log",
            uuid::Uuid::new_v4().simple()
        ));
        let child = command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start the clubhouse binary");
        let server = Server {
            child,
            address: format!("http://127.0.0.1:{port}"),
            public_url: format!("http://localhost:{port}"),
            log,
            broker,
            _db: db,
        };
        let started = Instant::now();
        let client = awc::Client::default();
        loop {
            if let Ok(res) = client
                .get(format!("{}/healthz", server.address))
                .send()
                .await
                && res.status() == StatusCode::OK
            {
                return server;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the server did not start: {}",
                server.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the process at once (SIGKILL), as a crash or a power cut would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A new browser for this server.
    pub fn browser(&self) -> Browser {
        Browser::new(&self.address, &self.public_url)
    }

    /// Signs `email` in through the whole flow.
    pub async fn sign_in(&self, browser: &Browser, email: &str) {
        let page = browser.submit("/login", &[("email", email)]).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        let auth = AuthRequest::from_location(&page.location());
        let claims = self
            .broker
            .claims(&self.public_url, &auth.param("nonce"), email);
        browser
            .post_from_broker(
                "/verify",
                &[("id_token", &self.broker.token(&claims)), ("state", "")],
            )
            .await
            .assert_redirect_to("/members");
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits (at most `limit`) for the process to exit; its exit status.
    pub async fn exit_within(&mut self, limit: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "still running {limit:?} after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Signs six members in, loads the members page from all six while one `/verify` waits
/// `delay` for the broker, sends SIGTERM during it, and checks that every request got its
/// answer (no 5xx, the slow one finished), that the process exited cleanly, and that it
/// logged no error.
async fn sigterm_under_load(settings: &[(&str, &str)], delay: Duration) {
    let mut all = vec![("SHUTDOWN_TIMEOUT", "10s"), ("KEY_REFETCH_COOLDOWN", "1s")];
    all.extend_from_slice(settings);
    let mut server = Server::start(&all).await;
    let members: Vec<Browser> = (0..6).map(|_| server.browser()).collect();
    for (i, b) in members.iter().enumerate() {
        server.sign_in(b, &format!("load{i}@example.com")).await;
    }
    // A token under a key id the site does not know makes it fetch the keys again once the
    // cool-down is over; the broker will take `delay` to answer, so that request is in
    // flight when the signal comes.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let claims = server
        .broker
        .claims(&server.public_url, "n", "late@example.com");
    let unknown_key = sign(
        &serde_json::json!({"alg": "RS256", "kid": "rotated-away"}),
        &claims,
        Signature::Rs256(&BROKER_KEY),
    );
    let late = server.browser();

    let statuses = RefCell::new(Vec::new());
    let load = members.iter().map(|b| {
        let statuses = &statuses;
        async move {
            for _ in 0..400 {
                match b.try_get("/members").await {
                    Some(status) => statuses.borrow_mut().push(status),
                    // The server has stopped accepting: expected after the signal.
                    None => break,
                }
            }
        }
    });
    let in_flight = async {
        server
            .broker
            .delay_ms
            .store(delay.as_millis() as u64, SeqCst);
        let started = Instant::now();
        let page = late
            .post_from_broker("/verify", &[("id_token", &unknown_key), ("state", "")])
            .await;
        (page, started.elapsed())
    };
    let signal = async {
        tokio::time::sleep(delay / 5).await;
        server.terminate();
    };
    let (_, (in_flight, took), ()) = futures_util::join!(join_all(load), in_flight, signal);
    let status = server.exit_within(Duration::from_secs(15)).await;
    let log = server.log_text();
    assert!(status.success(), "exit status {status}: {log}");

    let statuses = statuses.into_inner();
    assert!(
        statuses.len() > 50,
        "the load ran: {} answers",
        statuses.len()
    );
    let errors: Vec<_> = statuses.iter().filter(|s| s.is_server_error()).collect();
    assert!(errors.is_empty(), "5xx during shutdown: {errors:?}\n{log}");
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    // The request that was waiting for the broker when the signal came got its answer (the
    // key is still unknown: refused, which writes to the database) instead of being cut off.
    assert!(took >= delay - delay / 10, "{took:?}");
    assert_eq!(
        in_flight.status,
        StatusCode::BAD_REQUEST,
        "{}\nserver log:\n{log}",
        in_flight.body,
    );
    assert!(
        !log.contains("ERROR"),
        "the server logged an error while stopping:\n{log}"
    );
}

#[actix_web::test]
async fn sigterm_under_load_lets_requests_in_flight_finish_and_answers_no_5xx() {
    sigterm_under_load(&[], Duration::from_millis(1500)).await;
}

/// Several HTTP workers stop one after another; none may take a database connection that
/// another still uses (on Postgres each worker has its own). Twenty times, as the failure
/// this guards against depends on which worker stops first.
#[actix_web::test]
async fn sigterm_with_four_workers_under_load_breaks_no_request_twenty_times() {
    for _ in 0..20 {
        sigterm_under_load(&[("HTTP_WORKERS", "4")], Duration::from_millis(700)).await;
    }
}

#[actix_web::test]
async fn json_logs_have_one_object_per_line_with_request_ids_and_no_secrets() {
    let mut server = Server::start(&[("LOG_FORMAT", "json")]).await;
    let browser = server.browser();
    let email = "private.person@example.com";
    server.sign_in(&browser, email).await;
    browser.assert_signed_in_as(email).await;
    let cookie = browser.cookie("clubhouse_session").unwrap();
    server.terminate();
    server.exit_within(Duration::from_secs(15)).await;

    let log = server.log_text();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() > 3, "{log}");
    let mut request_ids = std::collections::HashSet::new();
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v.get("level").is_some() && v.get("timestamp").is_some(),
            "{line}"
        );
        if let Some(id) = v.pointer("/span/request_id").and_then(|i| i.as_str()) {
            request_ids.insert(id.to_owned());
        }
    }
    // One line per request: the front page, login, verify and the members page at least.
    assert!(request_ids.len() >= 4, "{request_ids:?}\n{log}");
    assert!(log.contains("/verify"), "{log}");
    // Nothing that identifies or authenticates the member.
    assert!(
        !log.contains("private.person"),
        "the address is in the log:\n{log}"
    );
    assert!(!log.contains(&cookie), "the session cookie is in the log");
    assert!(!log.contains("eyJ"), "a token is in the log");
}
