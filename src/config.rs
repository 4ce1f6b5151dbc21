//! Typed settings, read once at start from the environment (and an optional `.env` file).
//!
//! Every value is validated here, so a mistake stops the program with one sentence that names
//! the variable and says what it expects, instead of failing later in a request.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use actix_web::cookie::Key;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::email::EmailAddress;

/// All settings of the site. Built by [`Config::from_env`], or by hand in tests.
#[derive(Clone)]
pub struct Config {
    /// Our origin, e.g. `https://club.example.org`: the Portier `client_id`, and the base of
    /// every absolute URL we hand out. Never has a path or a trailing slash.
    pub public_url: String,
    /// Where the HTTP server listens.
    pub listen_addr: SocketAddr,
    /// The database to use; `sqlite:` or `postgres:` URLs. May hold a password: see
    /// [`Config::database_url_redacted`].
    pub database_url: SecretString,
    /// The Portier broker we trust, as an origin (`https://broker.portier.io`). Tokens must
    /// carry exactly this string as `iss`.
    pub broker_url: String,
    /// The key that signs and encrypts session cookies. `None` means: use the one stored in
    /// the database, creating it on first start.
    pub session_key: Option<SecretString>,
    /// How often the background task deletes expired login attempts and sessions.
    pub purge_interval: Duration,
    /// Addresses that are made admins when they sign in.
    pub admin_emails: Vec<EmailAddress>,
    /// The site's name, shown in page titles and the header.
    pub site_name: String,
    /// The line at the bottom of every page.
    pub footer_text: String,
    /// Time limit on each request to the broker (discovery and keys).
    pub broker_timeout: Duration,
    /// Shortest wait between two key fetches caused by tokens with an unknown key id.
    pub key_refetch_cooldown: Duration,
    /// A session ends after this long without a request.
    pub session_idle_timeout: Duration,
    /// A session ends this long after sign-in, however active.
    pub session_max_age: Duration,
    /// Whether a sign-in can only be finished in the browser that started it.
    pub login_binding: bool,
    /// Sign-ins a client IP may start per window (`None`: no limit).
    pub rate_limit_login_per_ip: Option<Limit>,
    /// Sign-ins that may be started for one address per window (`None`: no limit).
    pub rate_limit_login_per_email: Option<Limit>,
    /// `RATE_LIMIT_LOGIN_PER_EMAIL_ALL`: sign-ins per address from all networks together
    /// (default `20/15m`); counted only for starts the two limits above let through.
    pub rate_limit_login_per_email_all: Option<Limit>,
    /// `RATE_LIMIT_REFUSED_PER_IP`: refused sign-in tokens per client network (default `20/1m`).
    pub rate_limit_refused_per_ip: Option<Limit>,
    /// Proxies whose `X-Forwarded-For` is believed when they are the peer.
    pub trusted_proxies: Vec<IpAddr>,
    /// Who may become a member.
    pub signup_mode: SignupMode,
    /// Domains whose addresses are admitted directly in `invite` and `approval` modes.
    pub allowed_domains: Vec<String>,
    /// How long audit entries are kept.
    pub audit_retention: Duration,
    /// The folder of Markdown pages.
    pub content_dir: std::path::PathBuf,
    /// Whether raw HTML in Markdown pages is kept (otherwise it is shown as text).
    pub content_allow_html: bool,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// When set, `GET /metrics` wants `Authorization: Bearer <this>`.
    pub metrics_token: Option<SecretString>,
    /// On SIGTERM or SIGINT, how long requests in flight may take to finish.
    pub shutdown_timeout: Duration,
    /// How many HTTP workers (threads, each with a runtime of its own) serve requests; one per
    /// core by default.
    pub http_workers: usize,
    /// Where mail goes out, in lettre's URL form (`smtps://user:pass@host:465`,
    /// `smtp://host:587?tls=required`, `smtp://127.0.0.1:25`). `None`: the site sends no mail.
    /// May hold a password: never logged.
    pub smtp_url: Option<SecretString>,
    /// The sender of every mail, as a mailbox (`Club <noreply@club.example.org>`).
    pub mail_from: String,
    /// Mails telling admins about requests to join are batched over windows this long.
    pub mail_digest_interval: Duration,
    /// The folder served at `/static/` (logo, favicon, images, the stylesheet override).
    pub static_dir: std::path::PathBuf,
    /// A file in `static_dir` shown as the logo in the header.
    pub site_logo: Option<String>,
    /// Who visitors should ask when they are refused or stuck.
    pub contact_email: Option<EmailAddress>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// For people: one line per event.
    Text,
    /// For log collectors: one JSON object per line.
    Json,
}

/// Who may become a member once the broker has verified their address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignupMode {
    /// Only addresses already on the member list (invited by an admin).
    Invite,
    /// Unknown addresses become pending until an admin approves them.
    Approval,
    /// Every verified address becomes a member.
    Open,
}

/// A setting that could not be used; its message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {message}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub name: &'static str,
    /// What is wrong with it and what is expected.
    pub message: String,
}

fn invalid(name: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        name,
        message: message.into(),
    }
}

/// The database used when `DATABASE_URL` is not set: a file in the working directory, created
/// when missing.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://clubhouse.db?mode=rwc";

impl Config {
    /// Reads `.env` (when present) and then the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        // A missing .env file is normal; a broken one is not.
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(e) if e.not_found() => {}
            Err(e) => return Err(invalid("(.env file)", format!("could not be read: {e}"))),
        }
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds the settings from any source of variables (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let var = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let public_url = parse_origin(
            "PUBLIC_URL",
            &var("PUBLIC_URL").unwrap_or_else(|| "http://localhost:8080".into()),
        )?;
        let listen_addr = var("LISTEN_ADDR")
            .unwrap_or_else(|| "127.0.0.1:8080".into())
            .parse::<SocketAddr>()
            .map_err(|_| {
                invalid(
                    "LISTEN_ADDR",
                    "expected an IP address and port, like 127.0.0.1:8080 or [::]:8080",
                )
            })?;
        let database_url = var("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.into());
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres:")
            || database_url.starts_with("postgresql:"))
        {
            return Err(invalid(
                "DATABASE_URL",
                "expected a sqlite: or postgres: URL, like sqlite://clubhouse.db?mode=rwc",
            ));
        }
        let broker_url = parse_origin(
            "BROKER_URL",
            &var("BROKER_URL").unwrap_or_else(|| "https://broker.portier.io".into()),
        )?;
        if !is_https_or_loopback(&broker_url) {
            return Err(invalid(
                "BROKER_URL",
                format!(
                    "{broker_url:?} must start with https:// (the broker's keys decide who may \
                     sign in, so they must not travel in clear); http:// is accepted only for a \
                     broker on this machine (localhost, 127.0.0.1, [::1]), for testing"
                ),
            ));
        }
        let session_key = var("SESSION_KEY").map(SecretString::from);
        if let Some(key) = &session_key {
            cookie_key_from_base64(key).map_err(|message| invalid("SESSION_KEY", message))?;
        }
        let purge_interval = parse_duration_var(&var, "PURGE_INTERVAL", "60s")?;
        let broker_timeout = parse_duration_var(&var, "BROKER_TIMEOUT", "10s")?;
        let key_refetch_cooldown = parse_duration_var(&var, "KEY_REFETCH_COOLDOWN", "5m")?;
        let session_idle_timeout = parse_duration_var(&var, "SESSION_IDLE_TIMEOUT", "30d")?;
        let session_max_age = parse_duration_var(&var, "SESSION_MAX_AGE", "90d")?;
        if session_max_age < session_idle_timeout {
            return Err(invalid(
                "SESSION_MAX_AGE",
                "must not be shorter than SESSION_IDLE_TIMEOUT",
            ));
        }
        let login_binding = match var("LOGIN_BINDING").as_deref() {
            None | Some("on") => true,
            Some("off") => false,
            Some(other) => {
                return Err(invalid(
                    "LOGIN_BINDING",
                    format!("{other:?}: expected on or off"),
                ));
            }
        };
        let limit = |name: &'static str, default: &str| {
            Limit::parse(&var(name).unwrap_or_else(|| default.to_owned()))
                .map_err(|message| invalid(name, message))
        };
        let rate_limit_login_per_ip = limit("RATE_LIMIT_LOGIN_PER_IP", "10/1m")?;
        let rate_limit_login_per_email = limit("RATE_LIMIT_LOGIN_PER_EMAIL", "5/15m")?;
        let rate_limit_login_per_email_all = limit("RATE_LIMIT_LOGIN_PER_EMAIL_ALL", "20/15m")?;
        let rate_limit_refused_per_ip = limit("RATE_LIMIT_REFUSED_PER_IP", "20/1m")?;
        let trusted_proxies = parse_list(&var, "TRUSTED_PROXIES", |s| {
            s.parse::<IpAddr>()
                .map(canonical_ip)
                .map_err(|_| format!("{s:?} is not an IP address"))
        })?;
        let signup_mode = match var("SIGNUP_MODE").as_deref() {
            None | Some("invite") => SignupMode::Invite,
            Some("approval") => SignupMode::Approval,
            Some("open") => SignupMode::Open,
            Some(other) => {
                return Err(invalid(
                    "SIGNUP_MODE",
                    format!("{other:?}: expected invite, approval or open"),
                ));
            }
        };
        let allowed_domains = parse_list(&var, "ALLOWED_DOMAINS", |s| {
            // The same normalization as the domain of an address.
            EmailAddress::parse(&format!("x@{s}"))
                .map(|e| e.domain().to_owned())
                .map_err(|_| format!("{s:?} is not a domain name"))
        })?;
        let audit_retention = parse_duration_var(&var, "AUDIT_RETENTION", "180d")?;
        let content_dir =
            std::path::PathBuf::from(var("CONTENT_DIR").unwrap_or_else(|| "content".into()));
        let content_allow_html = match var("CONTENT_ALLOW_HTML").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(invalid(
                    "CONTENT_ALLOW_HTML",
                    format!("{other:?}: expected true or false"),
                ));
            }
        };
        let admin_emails = parse_list(&var, "ADMIN_EMAILS", |s| {
            EmailAddress::parse(s).map_err(|e| format!("{s:?} is not usable: {e}"))
        })?;
        let log_format = match var("LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(invalid(
                    "LOG_FORMAT",
                    format!("{other:?}: expected text or json"),
                ));
            }
        };
        let metrics_token = var("METRICS_TOKEN")
            .filter(|t| !t.trim().is_empty())
            .map(SecretString::from);
        let shutdown_timeout = parse_duration_var(&var, "SHUTDOWN_TIMEOUT", "20s")?;
        let http_workers = match var("HTTP_WORKERS") {
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
            Some(raw) => match raw.trim().parse::<usize>() {
                Ok(n @ 1..=256) => n,
                _ => {
                    return Err(invalid(
                        "HTTP_WORKERS",
                        format!("{raw:?}: expected a number of workers from 1 to 256"),
                    ));
                }
            },
        };
        let site_name = var("SITE_NAME").unwrap_or_else(|| "Clubhouse".into());
        let smtp_url = var("SMTP_URL")
            .map(|raw| check_smtp_url(&raw).map(|()| SecretString::from(raw)))
            .transpose()
            .map_err(|message| invalid("SMTP_URL", message))?;
        let mail_from = match var("MAIL_FROM") {
            Some(raw) => raw
                .parse::<lettre::message::Mailbox>()
                .map_err(|e| {
                    invalid(
                        "MAIL_FROM",
                        format!(
                            "{raw:?} is not a mail address ({e}); expected something like \
                             Club <noreply@club.example.org>"
                        ),
                    )
                })?
                .to_string(),
            None => default_mail_from(&site_name, &public_url),
        };
        let mail_digest_interval = parse_duration_var(&var, "MAIL_DIGEST_INTERVAL", "15m")?;
        let static_dir =
            std::path::PathBuf::from(var("STATIC_DIR").unwrap_or_else(|| "static".into()));
        let site_logo = var("SITE_LOGO")
            .map(|name| check_static_file(&static_dir, &name).map(|()| name))
            .transpose()
            .map_err(|message| invalid("SITE_LOGO", message))?;
        let contact_email = var("CONTACT_EMAIL")
            .map(|raw| EmailAddress::parse(&raw).map_err(|e| format!("{raw:?} is not usable: {e}")))
            .transpose()
            .map_err(|message| invalid("CONTACT_EMAIL", message))?;
        let footer_text = var("FOOTER_TEXT")
            .unwrap_or_else(|| "Members sign in by email, through Portier: no passwords.".into());

        Ok(Config {
            public_url,
            listen_addr,
            database_url: SecretString::from(database_url),
            broker_url,
            session_key,
            purge_interval,
            admin_emails,
            site_name,
            footer_text,
            broker_timeout,
            key_refetch_cooldown,
            session_idle_timeout,
            session_max_age,
            login_binding,
            rate_limit_login_per_ip,
            rate_limit_login_per_email,
            rate_limit_login_per_email_all,
            rate_limit_refused_per_ip,
            trusted_proxies,
            signup_mode,
            allowed_domains,
            audit_retention,
            content_dir,
            content_allow_html,
            log_format,
            metrics_token,
            shutdown_timeout,
            http_workers,
            smtp_url,
            mail_from,
            mail_digest_interval,
            static_dir,
            site_logo,
            contact_email,
        })
    }

    /// The database URL with any password replaced, fit for logs and pages.
    pub fn database_url_redacted(&self) -> String {
        redact_url(secrecy::ExposeSecret::expose_secret(&self.database_url))
    }

    /// Whether cookies must carry the `Secure` flag (the site is served over https).
    pub fn is_https(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    /// Why binding sign-ins to the browser cannot work with these settings, if it cannot:
    /// the binding cookie must be `Secure`, which browsers accept over plain http only on
    /// localhost.
    pub fn binding_problem(&self) -> Option<String> {
        if !self.login_binding || self.is_https() {
            return None;
        }
        if matches!(
            host_of(&self.public_url).as_str(),
            "localhost" | "127.0.0.1" | "[::1]"
        ) {
            return None;
        }
        Some(format!(
            "PUBLIC_URL {} is plain http on a host other than localhost: browsers will drop the \
             Secure sign-in cookie, so every sign-in will be refused. Serve the site over https, \
             or set LOGIN_BINDING=off (see SECURITY.md).",
            self.public_url
        ))
    }

    /// The host name of `PUBLIC_URL` (in mail senders and Message-IDs).
    pub fn public_host(&self) -> String {
        host_of(&self.public_url)
    }

    /// The Portier `redirect_uri`: where the broker posts the result.
    pub fn redirect_uri(&self) -> String {
        format!("{}/verify", self.public_url)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("public_url", &self.public_url)
            .field("listen_addr", &self.listen_addr)
            .field("database_url", &self.database_url_redacted())
            .field("broker_url", &self.broker_url)
            .field(
                "session_key",
                &self.session_key.as_ref().map(|_| "[redacted]"),
            )
            .field("purge_interval", &self.purge_interval)
            .field("admin_emails", &self.admin_emails.len())
            .field("site_name", &self.site_name)
            .field(
                "smtp_url",
                &self
                    .smtp_url
                    .as_ref()
                    .map(|u| redact_url(secrecy::ExposeSecret::expose_secret(u))),
            )
            .field("mail_from", &self.mail_from)
            .finish_non_exhaustive()
    }
}

/// The host of an origin that [`parse_origin`] accepted.
fn host_of(origin: &str) -> String {
    Url::parse(origin)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The sender when `MAIL_FROM` is not set: the site's name at `noreply@` its host.
fn default_mail_from(site_name: &str, public_url: &str) -> String {
    let address = format!("noreply@{}", host_of(public_url));
    // The name is only decoration: fall back to the bare address if it cannot be encoded.
    match address.parse::<lettre::Address>() {
        Ok(a) => lettre::message::Mailbox::new(Some(site_name.to_owned()), a).to_string(),
        Err(_) => address,
    }
}

/// Whether `url` is https, or http to this machine (`localhost`, a loopback address): the rule
/// for `BROKER_URL` and for the endpoints its discovery document names.
pub fn is_https_or_loopback(url: &str) -> bool {
    let Ok(url) = Url::parse(url) else {
        return false;
    };
    match url.scheme() {
        "https" => true,
        "http" => is_loopback_host(url.host()),
        _ => false,
    }
}

fn is_loopback_host(host: Option<url::Host<&str>>) -> bool {
    match host {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        None => false,
    }
}

/// Checks an `SMTP_URL` as lettre reads it, and refuses one that would send a password
/// without TLS to a host other than this machine.
fn check_smtp_url(raw: &str) -> Result<(), String> {
    let url = Url::parse(raw).map_err(|e| {
        format!("{} is not a URL ({e}); expected smtps://user:password@host:465, smtp://host:587?tls=required or smtp://127.0.0.1:25", redact_url(raw))
    })?;
    let shown = redact_url(raw);
    let host = url
        .host_str()
        .ok_or_else(|| format!("{shown} has no host name"))?;
    let tls = url
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    let encrypted = match (url.scheme(), tls.as_deref()) {
        ("smtps", None) => true,
        ("smtp", Some("required")) => true,
        ("smtp", None) | ("smtp", Some("opportunistic")) => false,
        _ => {
            return Err(format!(
                "{shown}: expected smtps://… (TLS from the start), smtp://…?tls=required \
                 (STARTTLS that must succeed) or smtp://… (no TLS, for a mail server on this \
                 machine)"
            ));
        }
    };
    if !url.username().is_empty() && url.password().is_none() {
        return Err(format!(
            "{shown} names a user but no password; give both (user:password@) or neither"
        ));
    }
    let loopback = host == "localhost"
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if url.password().is_some() && !encrypted && !loopback {
        return Err(format!(
            "{shown} would send its password unencrypted to {host}; use smtps://… or \
             smtp://…?tls=required, or a mail server on this machine"
        ));
    }
    lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(raw)
        .map(|_| ())
        .map_err(|e| format!("{shown} cannot be used: {e}"))
}

/// Checks that `name` is a plain relative path to a file inside `dir`.
fn check_static_file(dir: &std::path::Path, name: &str) -> Result<(), String> {
    let plain = !name.starts_with('/')
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if !plain {
        return Err(format!(
            "{name:?} must be a file name inside STATIC_DIR, like logo.png"
        ));
    }
    if !dir.join(name).is_file() {
        return Err(format!(
            "{name:?} is not a file in STATIC_DIR ({})",
            dir.display()
        ));
    }
    Ok(())
}

/// Replaces the password of a URL, if it has one.
pub fn redact_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("redacted"));
            url.to_string()
        }
        _ => raw.to_owned(),
    }
}

/// Accepts `http(s)://host[:port]` with at most a lone trailing slash, and returns the ASCII
/// origin (lowercase host, punycode, no default port, no slash), as Portier wants `client_id`.
fn parse_origin(name: &'static str, raw: &str) -> Result<String, ConfigError> {
    let url = Url::parse(raw).map_err(|e| {
        invalid(
            name,
            format!("{raw:?} is not a URL ({e}); expected something like https://club.example.org"),
        )
    })?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(invalid(
            name,
            format!("{raw:?} must start with http:// or https://"),
        ));
    }
    if url.host_str().is_none() {
        return Err(invalid(name, format!("{raw:?} has no host name")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            name,
            format!("{raw:?} must not contain a user name or password"),
        ));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            name,
            format!(
                "{raw:?} must be an origin only, without a path, query or fragment (the site must be served at the root of its host)"
            ),
        ));
    }
    Ok(url.origin().ascii_serialization())
}

/// Parses a comma-separated list, each item with `parse`; empty items are skipped.
fn parse_list<T>(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, ConfigError> {
    var(name)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| parse(s).map_err(|message| invalid(name, message)))
        .collect()
}

fn parse_duration_var(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: &str,
) -> Result<Duration, ConfigError> {
    let raw = var(name).unwrap_or_else(|| default.to_owned());
    match parse_duration(&raw) {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(invalid(
            name,
            format!(
                "{raw:?} is not a duration; expected a number with s, m, h or d, like 30s or 15m"
            ),
        )),
    }
}

/// Parses `90`, `30s`, `15m`, `2h` or `7d`. A bare number is seconds.
pub fn parse_duration(raw: &str) -> Option<Duration> {
    let raw = raw.trim();
    let (digits, unit) = match raw.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => raw.split_at(i),
        None => (raw, "s"),
    };
    let n: u64 = digits.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// A limit such as `10/1m`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Events allowed per window.
    pub count: u32,
    /// The window.
    pub window: Duration,
}

impl fmt::Debug for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}s", self.count, self.window.as_secs())
    }
}

impl Limit {
    /// Parses `COUNT/WINDOW` (`10/1m`, `5/15m`, `100/1h`) or `off` (returns `Ok(None)`).
    pub fn parse(raw: &str) -> Result<Option<Limit>, String> {
        let raw = raw.trim();
        if raw.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let bad = || format!("{raw:?} is not a limit; expected COUNT/WINDOW like 10/1m, or off");
        let (count, window) = raw.split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let window = parse_duration(window).ok_or_else(bad)?;
        if count == 0 || window.is_zero() {
            return Err(bad());
        }
        Ok(Some(Limit { count, window }))
    }
}

/// An address as it is compared and counted: an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`,
/// what a server listening on `[::]` sees of an IPv4 client) is its IPv4 address.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Decodes a `SESSION_KEY` value: base64 of at least 64 random bytes.
pub fn cookie_key_from_base64(encoded: &SecretString) -> Result<Key, String> {
    let bytes = STANDARD
        .decode(encoded.expose_secret().trim())
        .map_err(|_| {
            "expected base64 text; generate one with: openssl rand -base64 64".to_owned()
        })?;
    Key::try_from(bytes.as_slice()).map_err(|_| {
        "expected at least 64 bytes once decoded; generate one with: openssl rand -base64 64"
            .to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_serve_on_localhost_with_sqlite() {
        let c = config(&[]).unwrap();
        assert_eq!(c.public_url, "http://localhost:8080");
        assert_eq!(c.listen_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database_url_redacted(), DEFAULT_DATABASE_URL);
        assert_eq!(c.broker_url, "https://broker.portier.io");
        assert_eq!(c.purge_interval, Duration::from_secs(60));
    }

    #[test]
    fn http_workers_default_to_one_per_core_and_can_be_set() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(config(&[]).unwrap().http_workers, cores);
        assert_eq!(config(&[("HTTP_WORKERS", " 4 ")]).unwrap().http_workers, 4);
        assert_eq!(
            config(&[("HTTP_WORKERS", "256")]).unwrap().http_workers,
            256
        );
    }

    #[test]
    fn public_url_is_normalized_to_an_origin() {
        let c = config(&[("PUBLIC_URL", "HTTPS://Club.Example.org:443/")]).unwrap();
        assert_eq!(c.public_url, "https://club.example.org");
        let c = config(&[("PUBLIC_URL", "http://localhost:80")]).unwrap();
        assert_eq!(c.public_url, "http://localhost");
    }

    #[test]
    fn public_url_with_a_path_is_refused_naming_the_variable() {
        let e = config(&[("PUBLIC_URL", "https://example.org/club")]).unwrap_err();
        assert_eq!(e.name, "PUBLIC_URL");
        assert!(e.to_string().contains("without a path"), "{e}");
        let e = config(&[("PUBLIC_URL", "ftp://example.org")]).unwrap_err();
        assert_eq!(e.name, "PUBLIC_URL");
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("LISTEN_ADDR", "localhost"),
            ("DATABASE_URL", "mysql://x"),
            ("PURGE_INTERVAL", "soon"),
            ("SESSION_KEY", "short"),
            ("ADMIN_EMAILS", "not-an-address"),
            ("BROKER_URL", "broker.portier.io"),
            ("LOGIN_BINDING", "maybe"),
            ("RATE_LIMIT_LOGIN_PER_IP", "lots"),
            ("RATE_LIMIT_LOGIN_PER_EMAIL", "5"),
            ("TRUSTED_PROXIES", "proxy.local"),
            ("SESSION_MAX_AGE", "1d"),
            ("SIGNUP_MODE", "everyone"),
            ("ALLOWED_DOMAINS", "not a domain"),
            ("AUDIT_RETENTION", "forever"),
            ("SMTP_URL", "mail.example.org"),
            ("SMTP_URL", "imap://mail.example.org"),
            ("SMTP_URL", "smtp://user@mail.example.org:587?tls=required"),
            ("MAIL_FROM", "not an address"),
            ("MAIL_DIGEST_INTERVAL", "often"),
            ("SITE_LOGO", "../secret.png"),
            ("SITE_LOGO", "missing-logo.png"),
            ("CONTACT_EMAIL", "nobody"),
            ("HTTP_WORKERS", "0"),
            ("HTTP_WORKERS", "257"),
            ("HTTP_WORKERS", "many"),
        ] {
            let e = config(&[(name, value)]).unwrap_err();
            assert_eq!(e.name, name, "{e}");
        }
    }

    #[test]
    fn the_broker_must_be_https_unless_on_this_machine() {
        for ok in [
            "https://broker.example.org",
            "http://localhost:3333",
            "http://127.0.0.1:3333",
            "http://127.8.9.1",
            "http://[::1]:3333",
        ] {
            assert!(config(&[("BROKER_URL", ok)]).is_ok(), "{ok}");
        }
        for bad in [
            "http://broker.example.org",
            "http://10.0.0.1:3333",
            "http://localhost.example.org",
            "http://[2001:db8::1]",
        ] {
            let e = config(&[("BROKER_URL", bad)]).unwrap_err();
            assert_eq!(e.name, "BROKER_URL", "{bad}");
            assert!(e.to_string().contains("must start with https://"), "{e}");
        }
    }

    #[test]
    fn binding_needs_https_or_localhost() {
        assert!(config(&[]).unwrap().binding_problem().is_none());
        let c = config(&[("PUBLIC_URL", "http://club.example.org")]).unwrap();
        assert!(c.binding_problem().unwrap().contains("LOGIN_BINDING=off"));
        let c = config(&[("PUBLIC_URL", "https://club.example.org")]).unwrap();
        assert!(c.binding_problem().is_none());
        let c = config(&[
            ("PUBLIC_URL", "http://club.example.org"),
            ("LOGIN_BINDING", "off"),
        ])
        .unwrap();
        assert!(c.binding_problem().is_none());
    }

    #[test]
    fn smtp_passwords_travel_only_encrypted_or_on_this_machine() {
        for refused in [
            "smtp://club:hunter2@mail.example.org:587",
            "smtp://club:hunter2@mail.example.org:587?tls=opportunistic",
            "smtp://club:hunter2@192.0.2.10:25",
        ] {
            let e = config(&[("SMTP_URL", refused)]).unwrap_err();
            assert_eq!(e.name, "SMTP_URL");
            assert!(e.to_string().contains("unencrypted"), "{e}");
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
        for accepted in [
            "smtps://club:hunter2@mail.example.org:465",
            "smtp://club:hunter2@mail.example.org:587?tls=required",
            "smtp://club:hunter2@127.0.0.1:25",
            "smtp://club:hunter2@localhost:25",
            "smtp://mail.example.org:25",
            "smtp://127.0.0.1:25",
        ] {
            let c = config(&[("SMTP_URL", accepted)]).unwrap();
            assert!(c.smtp_url.is_some());
            assert!(!format!("{c:?}").contains("hunter2"));
        }
    }

    #[test]
    fn mail_from_defaults_to_the_site_at_its_host() {
        let c = config(&[
            ("PUBLIC_URL", "https://club.example.org"),
            ("SITE_NAME", "Chess Club"),
        ])
        .unwrap();
        assert_eq!(c.mail_from, "Chess Club <noreply@club.example.org>");
        let c = config(&[("SITE_NAME", "Chess, Draughts & Go")]).unwrap();
        assert_eq!(c.mail_from, "\"Chess, Draughts & Go\" <noreply@localhost>");
        let c = config(&[("MAIL_FROM", "Secretary <sec@club.example.org>")]).unwrap();
        assert_eq!(c.mail_from, "Secretary <sec@club.example.org>");
    }

    #[test]
    fn passwords_are_redacted() {
        let c = config(&[("DATABASE_URL", "postgres://u:hunter2@db/club")]).unwrap();
        assert!(!c.database_url_redacted().contains("hunter2"));
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("5 weeks"), None);
    }
}
