//! A real sign-in through the real broker (`portier_broker` from crates.io) on loopback, with
//! its email captured and the code in it used as a person would.
//!
//! Needs the `portier-broker` binary (`cargo install portier_broker --locked`) and its source
//! folder (for the templates it reads at run time; cargo keeps it in its registry). Without
//! them the test says so and passes, unless `CLUBHOUSE_REQUIRE_REAL_BROKER` is set, as CI does.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::helpers::{TestDb, free_port, spawn_app_on};

fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
}

pub fn broker_binary() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("PORTIER_BROKER_BIN") {
        return Some(PathBuf::from(bin));
    }
    let installed = cargo_home()?.join("bin").join("portier-broker");
    installed.exists().then_some(installed)
}

/// The newest `portier_broker-*` source folder in cargo's registry.
pub fn broker_data_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PORTIER_BROKER_DATA_DIR") {
        return Some(PathBuf::from(dir));
    }
    let mut found = Vec::new();
    for index in std::fs::read_dir(cargo_home()?.join("registry").join("src")).ok()? {
        let Ok(index) = index else { continue };
        for entry in std::fs::read_dir(index.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("portier_broker-") && entry.path().join("tmpl").is_dir() {
                found.push(entry.path());
            }
        }
    }
    found.sort();
    found.pop()
}

pub struct RealBroker {
    pub origin: String,
    mail_dir: PathBuf,
    log: PathBuf,
    _child: Child,
    dir: PathBuf,
}

impl Drop for RealBroker {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl RealBroker {
    pub async fn start(bin: &Path, data_dir: &Path) -> RealBroker {
        let dir = std::env::temp_dir().join(format!("clubhouse-broker-{}", uuid::Uuid::new_v4()));
        let mail_dir = dir.join("mail");
        std::fs::create_dir_all(&mail_dir).unwrap();
        // The broker hands each message to this "sendmail" on standard input.
        let sendmail = dir.join("sendmail.sh");
        std::fs::write(
            &sendmail,
            format!(
                "#!/bin/sh\ncat > \"{}/$$.eml.tmp\" && mv \"{}/$$.eml.tmp\" \"{}/$$.eml\"\n",
                mail_dir.display(),
                mail_dir.display(),
                mail_dir.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&sendmail, std::fs::Permissions::from_mode(0o755)).unwrap();

        let port = free_port();
        let origin = format!("http://127.0.0.1:{port}");
        let config = dir.join("broker.toml");
        std::fs::write(
            &config,
            format!(
                r#"listen_ip = "127.0.0.1"
listen_port = {port}
public_url = "{origin}"
from_address = "portier@broker.test"
memory_storage = true
data_dir = "{data}"
sendmail_command = "{sendmail}"
limits = ["ip:1000/s"]
device_cookie_ttl = 0
[domain_overrides]
"example.com" = []
"example.co.uk" = []
"xn--gteborg-90a.test" = []
"xn--iiii-qwc.example" = []
"#,
                data = data_dir.display(),
                sendmail = sendmail.display(),
            ),
        )
        .unwrap();
        let log = dir.join("broker.log");
        let log_file = std::fs::File::create(&log).unwrap();
        // A clean environment: the broker reacts to PORT, REDIS_URL, SENDGRID_* and others.
        let child = Command::new(bin)
            .arg(&config)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::var_os("HOME").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .expect("start portier-broker");
        let broker = RealBroker {
            origin,
            mail_dir,
            log,
            _child: child,
            dir,
        };
        // Wait (bounded) until it answers discovery.
        let client = awc::Client::default();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let url = format!("{}/.well-known/openid-configuration", broker.origin);
            if let Ok(res) = client.get(url).send().await
                && res.status().is_success()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "broker did not start: {}",
                broker.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        broker
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) for the one email the broker sends and returns it decoded.
    pub async fn wait_for_mail(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mail = std::fs::read_dir(&self.mail_dir)
                .unwrap()
                .flatten()
                .find(|e| e.file_name().to_string_lossy().ends_with(".eml"));
            if let Some(entry) = mail {
                let raw = std::fs::read_to_string(entry.path()).unwrap();
                std::fs::remove_file(entry.path()).unwrap();
                return decode_quoted_printable(&raw);
            }
            assert!(
                Instant::now() < deadline,
                "no email from the broker: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Undoes quoted-printable: soft line breaks and `=XX` escapes.
fn decode_quoted_printable(raw: &str) -> String {
    let joined = raw.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'=' && i + 2 < bytes.len())
            .then(|| std::str::from_utf8(&bytes[i + 1..i + 3]).ok())
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        if let Some(v) = escaped {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `session` and `code` of the confirmation link in the email.
/// The confirmation link in the email, as a person would click it.
pub fn confirmation_link(mail: &str, broker: &str) -> String {
    let start = mail
        .find(&format!("{broker}/confirm?"))
        .unwrap_or_else(|| panic!("no confirmation link in the email:\n{mail}"));
    mail[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"' && *c != '<')
        .collect::<String>()
        .replace("&amp;", "&")
}

/// The `session` and `code` of the confirmation link in the email.
pub fn confirmation(mail: &str, broker: &str) -> (String, String) {
    let link = confirmation_link(mail, broker);
    let url = url::Url::parse(&link).expect("confirmation link");
    let get = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no {name} in {link}"))
    };
    (get("session"), get("code"))
}

#[actix_web::test]
async fn a_real_sign_in_through_the_real_broker() {
    let (Some(bin), Some(data_dir)) = (broker_binary(), broker_data_dir()) else {
        let required = std::env::var_os("CLUBHOUSE_REQUIRE_REAL_BROKER").is_some();
        let msg = "portier-broker is not installed (cargo install portier_broker --locked)";
        assert!(!required, "{msg}, and CLUBHOUSE_REQUIRE_REAL_BROKER is set");
        eprintln!("real_broker: skipped: {msg}");
        return;
    };
    let broker = RealBroker::start(&bin, &data_dir).await;
    eprintln!("real_broker: using {} at {}", bin.display(), broker.origin);

    // Our site, trusting the real broker.
    let db = TestDb::new().await;
    let stand_in = crate::broker::TestBroker::start("127.0.0.1");
    let app = spawn_app_on(db, stand_in, &[("BROKER_URL", &broker.origin)], &[]).await;
    let browser = app.browser();
    let auth = app
        .start_login(&browser, "Alice@Example.com", Some("/members"))
        .await;
    assert!(
        auth.url
            .as_str()
            .starts_with(&format!("{}/auth?", broker.origin))
    );

    // The broker's page, without JavaScript: ask for the email, then confirm with the code
    // in it.
    let token = broker_confirms(&broker, auth.url.as_str()).await;

    // A tampered copy (another address in the payload) is refused and burns nothing.
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["email"] = Value::from("mallory@example.com");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()),
        parts[2]
    );
    let attacker = app.browser();
    let page = app.post_token(&attacker, &tampered).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(attacker.cookie("clubhouse_session").is_none());

    // The broker's page posts the real token back: signed in, on the page asked for.
    app.post_token(&browser, &token)
        .await
        .assert_redirect_to("/members");
    browser.assert_signed_in_as("alice@example.com").await;

    // Replayed from another browser: refused, no second session.
    let replayer = app.browser();
    let page = app.post_token(&replayer, &token).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(replayer.cookie("clubhouse_session").is_none());
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 1);
}

/// Addresses the site accepts are the ones the real broker accepts: each one of the address
/// table goes to the broker's `/auth`, which answers 400 `invalid_request` for those it
/// refuses and sends its mail for the others.
#[actix_web::test]
async fn the_site_accepts_exactly_the_addresses_the_real_broker_accepts() {
    let (Some(bin), Some(data_dir)) = (broker_binary(), broker_data_dir()) else {
        let required = std::env::var_os("CLUBHOUSE_REQUIRE_REAL_BROKER").is_some();
        let msg = "portier-broker is not installed (cargo install portier_broker --locked)";
        assert!(!required, "{msg}, and CLUBHOUSE_REQUIRE_REAL_BROKER is set");
        eprintln!("real_broker: skipped: {msg}");
        return;
    };
    let broker = RealBroker::start(&bin, &data_dir).await;
    let long_local = format!("{}@example.com", "a".repeat(65));
    let long_label = format!("a@{}.com", "b".repeat(64));
    let addresses = [
        "example.user@example.com",
        "EXAMPLE.USER@EXAMPLE.COM",
        "BJÖRN@göteborg.test",
        "İⅢ@İⅢ.example",
        "o'brien+club@example.co.uk",
        "alice@localhost",
        "alice@[127.0.0.1]",
        "alice@127.0.0.1",
        "alice@exa..mple.com",
        "alice@.example.com",
        "someone@example.com%'",
        "someone@example.com'x<'\">)",
        "some<one>@example.com",
        "some,one@example.com",
        "some\"one@example.com",
        "a@exa_mple.com",
        "a@-example.com",
        &long_local,
        &long_label,
    ];
    let client = awc::Client::builder().disable_redirects().finish();
    for address in addresses {
        let ours = clubhouse::email::EmailAddress::parse(address).is_ok();
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("login_hint", address)
            .append_pair("scope", "openid email")
            .append_pair("nonce", &uuid::Uuid::new_v4().to_string())
            .append_pair("response_type", "id_token")
            .append_pair("response_mode", "form_post")
            .append_pair("client_id", "http://localhost:8080")
            .append_pair("redirect_uri", "http://localhost:8080/verify")
            .finish();
        let mut res = client
            .get(format!("{}/auth?{query}", broker.origin))
            .insert_header(("accept", "application/json"))
            .send()
            .await
            .expect("the broker answers");
        let body = String::from_utf8_lossy(&res.body().await.unwrap()).into_owned();
        let theirs = !(res.status() == StatusCode::BAD_REQUEST && body.contains("invalid_request"));
        assert_eq!(
            ours,
            theirs,
            "{address:?}: the site {} it, the broker answered {} {body}",
            if ours { "accepts" } else { "refuses" },
            res.status()
        );
    }
}

/// The broker's JSON answers, without JavaScript: asks for the mail, and confirms with the
/// code in it, as the person would in the browser `cookie`s belong to.
async fn broker_confirms(broker: &RealBroker, auth_url: &str) -> String {
    let client = awc::Client::builder().disable_redirects().finish();
    let mut res = client
        .get(auth_url)
        .insert_header(("accept", "application/json"))
        .send()
        .await
        .expect("GET /auth");
    let body: Value = res.json().await.expect("auth answer");
    assert_eq!(body["result"], "verification_code_sent", "{body}");
    let mail = broker.wait_for_mail().await;
    let (session, code) = confirmation(&mail, &broker.origin);
    let mut res = client
        .post(format!("{}/confirm", broker.origin))
        .insert_header(("accept", "application/json"))
        .send_form(&[
            ("session", session.as_str()),
            ("code", code.as_str()),
            ("device_ok", "1"),
        ])
        .await
        .expect("POST /confirm");
    assert_eq!(res.status(), StatusCode::OK, "{}", broker.log_text());
    let body: Value = res.json().await.expect("confirm answer");
    body["id_token"].as_str().expect("an id_token").to_owned()
}

/// Started on the laptop, the mail's link opened on the phone: the real broker has ended its
/// own attempt by then, so the laptop cannot finish; the phone is offered to start again from
/// there, and that works. Then the laptop, after a fresh start, finishes with the code.
#[actix_web::test]
async fn a_link_opened_on_another_device_leads_to_a_sign_in_there_through_the_real_broker() {
    let (Some(bin), Some(data_dir)) = (broker_binary(), broker_data_dir()) else {
        let required = std::env::var_os("CLUBHOUSE_REQUIRE_REAL_BROKER").is_some();
        let msg = "portier-broker is not installed (cargo install portier_broker --locked)";
        assert!(!required, "{msg}, and CLUBHOUSE_REQUIRE_REAL_BROKER is set");
        eprintln!("real_broker: skipped: {msg}");
        return;
    };
    let broker = RealBroker::start(&bin, &data_dir).await;
    let db = TestDb::new().await;
    let stand_in = crate::broker::TestBroker::start("127.0.0.1");
    let app = spawn_app_on(db, stand_in, &[("BROKER_URL", &broker.origin)], &[]).await;
    let laptop = app.browser();
    let auth = app.start_login(&laptop, "Rover@Example.com", None).await;
    let token = broker_confirms(&broker, auth.url.as_str()).await;

    let phone = app.browser();
    let page = app.post_token(&phone, &token).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    assert!(
        page.body.contains("started in another browser"),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("Sign in on this device instead, as rover@example.com"),
        "{}",
        page.body
    );
    let marker = r#"name="csrf_token" value=""#;
    let csrf = page
        .body
        .split(marker)
        .nth(1)
        .and_then(|v| v.split('"').next())
        .unwrap();
    let pressed = phone
        .post_form(
            "/login",
            &[("email", "rover@example.com"), ("csrf_token", csrf)],
        )
        .await;
    assert_eq!(pressed.status, StatusCode::SEE_OTHER, "{}", pressed.body);
    let token = broker_confirms(&broker, &pressed.location()).await;
    app.post_token(&phone, &token)
        .await
        .assert_redirect_to("/members");
    phone.assert_signed_in_as("rover@example.com").await;
    assert!(laptop.cookie("clubhouse_session").is_none());

    // The laptop starts again and types the code from its new mail: signed in there too.
    let auth = app.start_login(&laptop, "rover@example.com", None).await;
    let token = broker_confirms(&broker, auth.url.as_str()).await;
    app.post_token(&laptop, &token)
        .await
        .assert_redirect_to("/members");
    laptop.assert_signed_in_as("rover@example.com").await;
}
