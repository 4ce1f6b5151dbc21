//! The floor of this stack: the sign-in's requests with nothing of the site's own around them,
//! so that `examples/loadgen` can measure what actix-web, sqlx and jsonwebtoken cost on their
//! own for the same work.
//!
//! ```text
//! cargo build --release --example stack_floor --example loadgen
//! target/release/examples/loadgen --server target/release/examples/stack_floor \
//!     --database sqlite --signins 2000 --concurrency 32
//! ```
//!
//! It answers what the load generator asks, with the same round trips as the site
//! (`tests/api/round_trips.rs`) and the same engines, connection settings and driver layer
//! (sqlx's `Any`: on SQLite one connection held behind an async lock, as `db::Held`; on
//! Postgres a pool):
//!
//! - `GET /`: a form token and its cookie, no database;
//! - `POST /login`: the form token and the `Origin` checked, one `INSERT` of the attempt, a
//!   redirect to the broker with the nonce and a binding cookie;
//! - `POST /verify`: the token verified (RS256, issuer, audience, expiry) with a key fetched
//!   from the broker at start, then the attempt taken (`DELETE … RETURNING`), the member and a
//!   session written in one round trip; a redirect with the session cookie;
//! - `GET /members`: the session and its member read in one statement, and a page with the
//!   first hundred members' addresses, read at most every five seconds and kept in memory in
//!   between, as the site keeps its directory.
//!
//! With `FLOOR_WRITES=site` it also writes what the site must write besides: the three
//! rate-limit counters (the ceiling, the network, the address from that network) in the same
//! transaction as the attempt, and an audit entry with the member, in tables indexed as the
//! site's are (`loadgen --set FLOOR_WRITES=site`). That is still one round trip each, as in
//! the site.
//!
//! Nothing else: no security headers, no encrypted session cookie, no rate limits, no audit
//! log, no middleware, no logging. It is not a site and must not be used as one; it exists to
//! show what is left to gain by changing the site's own code (see BENCHMARKS.md, "The floor of
//! this stack"). It reads the load generator's `LISTEN_ADDR`, `DATABASE_URL`, `BROKER_URL`
//! and `PUBLIC_URL`, and `HTTP_WORKERS` (default: one per core).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use askama::Template;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, AnyPool, Connection, Executor, Row};
use tokio::sync::Mutex;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS floor_attempts (nonce TEXT PRIMARY KEY, \
     email TEXT NOT NULL, binding TEXT NOT NULL, expires_at BIGINT NOT NULL); \
     CREATE TABLE IF NOT EXISTS floor_members (id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, \
     last_seen BIGINT NOT NULL); \
     CREATE TABLE IF NOT EXISTS floor_sessions (id TEXT PRIMARY KEY, member_id TEXT NOT NULL, \
     expires_at BIGINT NOT NULL); \
     CREATE TABLE IF NOT EXISTS floor_counters (key TEXT PRIMARY KEY, hits BIGINT NOT NULL, \
     expires_at BIGINT NOT NULL); \
     CREATE INDEX IF NOT EXISTS floor_counters_expires_at ON floor_counters (expires_at); \
     CREATE TABLE IF NOT EXISTS floor_audit (id TEXT PRIMARY KEY, at BIGINT NOT NULL, \
     action TEXT NOT NULL, actor TEXT, subject TEXT, detail TEXT); \
     CREATE INDEX IF NOT EXISTS floor_audit_at ON floor_audit (at); \
     CREATE INDEX IF NOT EXISTS floor_audit_action ON floor_audit (action)";

/// `FLOOR_WRITES=site`: the counters with the attempt. $1 to $4 the attempt, $5 to $7 the
/// counters' keys, $8 their expiry.
const COUNTED_LOGIN_SQLITE: &str = "BEGIN IMMEDIATE; \
     INSERT INTO floor_counters (key, hits, expires_at) VALUES ($5, 1, $8), ($6, 1, $8), \
     ($7, 1, $8) ON CONFLICT (key) DO UPDATE SET hits = hits + 1; \
     INSERT INTO floor_attempts (nonce, email, binding, expires_at) VALUES ($1, $2, $3, $4); \
     COMMIT";
const COUNTED_LOGIN_POSTGRES: &str = "WITH c AS (INSERT INTO floor_counters (key, hits, \
     expires_at) VALUES ($5, 1, $8), ($6, 1, $8), ($7, 1, $8) ON CONFLICT (key) DO UPDATE \
     SET hits = floor_counters.hits + 1 RETURNING hits) \
     INSERT INTO floor_attempts (nonce, email, binding, expires_at) \
     SELECT $1, $2, $3, $4 WHERE (SELECT max(hits) FROM c) < 1000000000";

// The attempt taken by a sign-in: its nonce ($6), binding ($7), address ($2), not expired.
macro_rules! attempt {
    () => {
        "nonce = $6 AND binding = $7 AND expires_at > $3 AND email = $2"
    };
}
// On SQLite, what the sign-in writes holds only while the attempt is there.
macro_rules! while_attempt {
    () => {
        concat!(
            " AND EXISTS (SELECT 1 FROM floor_attempts WHERE ",
            attempt!(),
            ")"
        )
    };
}
// $1 the member's id if new, $2 the address, $3 now, $4 the session's id, $5 its expiry.
macro_rules! member_sqlite {
    () => {
        concat!(
            "INSERT INTO floor_members (id, email, last_seen) SELECT $1, $2, $3 WHERE true",
            while_attempt!(),
            " ON CONFLICT (email) DO UPDATE SET last_seen = excluded.last_seen; "
        )
    };
}
macro_rules! session_sqlite {
    () => {
        concat!(
            "INSERT INTO floor_sessions (id, member_id, expires_at) \
             SELECT $4, id, $5 FROM floor_members WHERE email = $2",
            while_attempt!(),
            "; DELETE FROM floor_attempts WHERE ",
            attempt!(),
            " RETURNING email; COMMIT"
        )
    };
}
macro_rules! member_postgres {
    () => {
        concat!(
            "WITH t AS (DELETE FROM floor_attempts WHERE ",
            attempt!(),
            " RETURNING email), m AS (INSERT INTO floor_members (id, email, last_seen) \
             SELECT $1, $2, $3 FROM t ON CONFLICT (email) DO UPDATE \
             SET last_seen = excluded.last_seen RETURNING id), "
        )
    };
}
macro_rules! session_postgres {
    () => {
        "s AS (INSERT INTO floor_sessions (id, member_id, expires_at) SELECT $4, id, $5 FROM m) \
         SELECT email FROM t"
    };
}

/// The attempt taken, the member and the session, in one round trip as the site does: a
/// batch in one transaction on SQLite, one statement on Postgres. It returns the attempt's
/// address, or nothing (and writes nothing) when there was no such attempt.
const SIGN_IN_SQLITE: &str = concat!("BEGIN IMMEDIATE; ", member_sqlite!(), session_sqlite!());
const SIGN_IN_POSTGRES: &str = concat!(member_postgres!(), session_postgres!());
/// `FLOOR_WRITES=site`: also the member's audit entry ($8 its id).
const AUDITED_SIGN_IN_SQLITE: &str = concat!(
    "BEGIN IMMEDIATE; ",
    member_sqlite!(),
    "INSERT INTO floor_audit (id, at, action, actor, subject, detail) \
     SELECT $8, $3, 'sign_in', id, id, NULL FROM floor_members WHERE email = $2",
    while_attempt!(),
    "; ",
    session_sqlite!()
);
const AUDITED_SIGN_IN_POSTGRES: &str = concat!(
    member_postgres!(),
    "a AS (INSERT INTO floor_audit (id, at, action, actor, subject) \
     SELECT $8, $3, 'sign_in', id, id FROM m), ",
    session_postgres!()
);

const MEMBER: &str = "SELECT m.email FROM floor_sessions s \
     JOIN floor_members m ON m.id = s.member_id WHERE s.id = $1 AND s.expires_at > $2";

/// SQLite: one connection, held. Postgres: a pool.
enum Store {
    Held(Mutex<AnyConnection>),
    Pool(AnyPool),
}

struct State {
    store: Store,
    /// `FLOOR_WRITES=site`: the counters and the audit entry too.
    site_writes: bool,
    public_url: String,
    broker: String,
    keys: HashMap<String, DecodingKey>,
    /// The members page's list and when it was read.
    directory: std::sync::Mutex<Option<(Instant, Arc<Vec<String>>)>>,
}

/// How long the members page's list is kept, as the site's directory.
const DIRECTORY_TTL: Duration = Duration::from_secs(5);
const DIRECTORY: &str = "SELECT email FROM floor_members ORDER BY email LIMIT 100";

#[derive(Template)]
#[template(
    source = "<!doctype html><title>floor</title><form method=post action=/login>\
<input type=hidden name=\"csrf_token\" value=\"{{ token }}\">\
<input name=email type=email><button>Sign in</button></form>",
    ext = "html"
)]
struct Front<'a> {
    token: &'a str,
}

#[derive(Template)]
#[template(
    source = "<!doctype html><title>members</title><p>Signed in as {{ email }}.</p>\
<ul>{% for name in names.iter() %}<li>{{ name }}</li>{% endfor %}</ul>",
    ext = "html"
)]
struct Members<'a> {
    email: &'a str,
    names: &'a [String],
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    csrf_token: String,
}

#[derive(Deserialize)]
struct VerifyForm {
    id_token: String,
}

#[derive(Deserialize)]
struct Claims {
    email: String,
    nonce: String,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn random_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn cookie<'a>(req: &'a HttpRequest, name: &str) -> Option<actix_web::cookie::Cookie<'a>> {
    req.cookie(name)
}

fn refuse(status: actix_web::http::StatusCode) -> HttpResponse {
    HttpResponse::build(status).finish()
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().body("ok")
}

async fn front() -> HttpResponse {
    let token = random_token();
    match (Front { token: &token }).render() {
        Ok(body) => HttpResponse::Ok()
            .insert_header((
                header::SET_COOKIE,
                format!("clubhouse_csrf={token}; HttpOnly; SameSite=Lax; Path=/"),
            ))
            .content_type("text/html; charset=utf-8")
            .body(body),
        Err(_) => refuse(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
    }
}

async fn login(
    req: HttpRequest,
    form: web::Form<LoginForm>,
    state: web::Data<State>,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    let origin_ok = req
        .headers()
        .get(header::ORIGIN)
        .is_some_and(|o| o.as_bytes() == state.public_url.as_bytes());
    let csrf_ok = cookie(&req, "clubhouse_csrf").is_some_and(|c| c.value() == form.csrf_token);
    if !origin_ok || !csrf_ok || !form.email.contains('@') {
        return refuse(StatusCode::FORBIDDEN);
    }
    let (nonce, binding) = (random_token(), random_token());
    let network = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let sql = match (state.site_writes, &state.store) {
        (false, _) => {
            "INSERT INTO floor_attempts (nonce, email, binding, expires_at) VALUES ($1, $2, $3, $4)"
        }
        (true, Store::Held(_)) => COUNTED_LOGIN_SQLITE,
        (true, Store::Pool(_)) => COUNTED_LOGIN_POSTGRES,
    };
    let mut insert = sqlx::query(sql)
        .bind(&nonce)
        .bind(&form.email)
        .bind(&binding)
        .bind(now() + 600);
    if state.site_writes {
        let window = now() / 60;
        insert = insert
            .bind(format!("ceiling:{window}"))
            .bind(format!("ip:{network}:{window}"))
            .bind(format!("email:{network}:{}:{window}", form.email))
            .bind(now() + 60);
    }
    let stored = match &state.store {
        Store::Held(conn) => insert.execute(&mut *conn.lock().await).await,
        Store::Pool(pool) => insert.execute(pool).await,
    };
    if stored.is_err() {
        return refuse(StatusCode::SERVICE_UNAVAILABLE);
    }
    let Ok(mut url) = url::Url::parse(&format!("{}/auth", state.broker)) else {
        return refuse(StatusCode::INTERNAL_SERVER_ERROR);
    };
    url.query_pairs_mut()
        .append_pair("login_hint", &form.email)
        .append_pair("scope", "openid email")
        .append_pair("nonce", &nonce)
        .append_pair("response_type", "id_token")
        .append_pair("response_mode", "form_post")
        .append_pair("client_id", &state.public_url)
        .append_pair("redirect_uri", &format!("{}/verify", state.public_url));
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, url.as_str()))
        .insert_header((
            header::SET_COOKIE,
            format!("clubhouse_login={binding}; HttpOnly; SameSite=None; Path=/verify"),
        ))
        .finish()
}

async fn verify(
    req: HttpRequest,
    form: web::Form<VerifyForm>,
    state: web::Data<State>,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    let Some(binding) = cookie(&req, "clubhouse_login").map(|c| c.value().to_owned()) else {
        return refuse(StatusCode::BAD_REQUEST);
    };
    let Ok(head) = jsonwebtoken::decode_header(&form.id_token) else {
        return refuse(StatusCode::BAD_REQUEST);
    };
    let Some(key) = head.kid.as_deref().and_then(|kid| state.keys.get(kid)) else {
        return refuse(StatusCode::BAD_REQUEST);
    };
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[&state.broker]);
    validation.set_audience(&[&state.public_url]);
    let Ok(token) = jsonwebtoken::decode::<Claims>(&form.id_token, key, &validation) else {
        return refuse(StatusCode::BAD_REQUEST);
    };
    let claims = token.claims;
    let (member_id, session_id, t) = (random_token(), random_token(), now());
    let audit_id = random_token();
    let (sql_sqlite, sql_postgres) = if state.site_writes {
        (AUDITED_SIGN_IN_SQLITE, AUDITED_SIGN_IN_POSTGRES)
    } else {
        (SIGN_IN_SQLITE, SIGN_IN_POSTGRES)
    };
    let sign_in = |sql| {
        let query = sqlx::query(sql)
            .bind(&member_id)
            .bind(&claims.email)
            .bind(t)
            .bind(&session_id)
            .bind(t + 86400)
            .bind(&claims.nonce)
            .bind(&binding);
        if state.site_writes {
            query.bind(&audit_id)
        } else {
            query
        }
    };
    let taken = match &state.store {
        Store::Held(conn) => sign_in(sql_sqlite).fetch_all(&mut *conn.lock().await).await,
        Store::Pool(pool) => sign_in(sql_postgres).fetch_all(pool).await,
    };
    let written = match taken {
        Ok(rows) if !rows.is_empty() => Ok(()),
        Ok(_) => return refuse(StatusCode::BAD_REQUEST),
        Err(e) => Err(e),
    };
    match written {
        Ok(_) => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, "/members"))
            .insert_header((
                header::SET_COOKIE,
                format!("clubhouse_session={session_id}; HttpOnly; SameSite=Lax; Path=/"),
            ))
            .finish(),
        Err(_) => refuse(StatusCode::SERVICE_UNAVAILABLE),
    }
}

async fn members(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    use actix_web::http::StatusCode;
    let Some(session) = cookie(&req, "clubhouse_session").map(|c| c.value().to_owned()) else {
        return refuse(StatusCode::UNAUTHORIZED);
    };
    let read = sqlx::query(MEMBER).bind(&session).bind(now());
    let row = match &state.store {
        Store::Held(conn) => read.fetch_optional(&mut *conn.lock().await).await,
        Store::Pool(pool) => read.fetch_optional(pool).await,
    };
    let email = match row {
        Ok(Some(row)) => row.try_get::<String, _>(0).unwrap_or_default(),
        Ok(None) => return refuse(StatusCode::UNAUTHORIZED),
        Err(_) => return refuse(StatusCode::SERVICE_UNAVAILABLE),
    };
    let kept = state.directory.lock().ok().and_then(|kept| {
        kept.as_ref()
            .filter(|(read, _)| read.elapsed() < DIRECTORY_TTL)
            .map(|(_, names)| names.clone())
    });
    let names = match kept {
        Some(names) => names,
        None => {
            let read = sqlx::query_scalar::<_, String>(DIRECTORY);
            let names = match &state.store {
                Store::Held(conn) => read.fetch_all(&mut *conn.lock().await).await,
                Store::Pool(pool) => read.fetch_all(pool).await,
            };
            let Ok(names) = names.map(Arc::new) else {
                return refuse(StatusCode::SERVICE_UNAVAILABLE);
            };
            if let Ok(mut kept) = state.directory.lock() {
                *kept = Some((Instant::now(), names.clone()));
            }
            names
        }
    };
    match (Members {
        email: &email,
        names: &names,
    })
    .render()
    {
        Ok(body) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(body),
        Err(_) => refuse(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// A JSON document from the broker (its content type is not checked: only the contents
/// matter here).
async fn fetch_json<T: serde::de::DeserializeOwned>(
    client: &awc::Client,
    url: &str,
    what: &str,
) -> Result<T, String> {
    let body = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("{what}: {e}"))?
        .body()
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    serde_json::from_slice(&body).map_err(|e| format!("{what}: {e}"))
}

/// The broker's signing keys, from its discovery document.
async fn broker_keys(broker: &str) -> Result<HashMap<String, DecodingKey>, String> {
    let client = awc::Client::default();
    let discovery: serde_json::Value = fetch_json(
        &client,
        &format!("{broker}/.well-known/openid-configuration"),
        "discovery",
    )
    .await?;
    let jwks_uri = discovery["jwks_uri"]
        .as_str()
        .ok_or("discovery: no jwks_uri")?;
    let set: JwkSet = fetch_json(&client, jwks_uri, "keys").await?;
    Ok(set
        .keys
        .iter()
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            DecodingKey::from_jwk(jwk).ok().map(|key| (kid, key))
        })
        .collect())
}

async fn open(url: &str) -> Result<Store, sqlx::Error> {
    sqlx::any::install_default_drivers();
    if url.starts_with("sqlite:") {
        let mut conn = AnyConnection::connect(url).await?;
        conn.execute(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
             PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
        )
        .await?;
        conn.execute(SCHEMA).await?;
        Ok(Store::Held(Mutex::new(conn)))
    } else {
        let pool = AnyPoolOptions::new()
            .max_connections(10)
            .connect(url)
            .await?;
        for statement in SCHEMA.split("; ") {
            pool.execute(sqlx::AssertSqlSafe(statement.to_owned()))
                .await?;
        }
        Ok(Store::Pool(pool))
    }
}

fn setting(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

async fn run() -> Result<(), String> {
    let listen = setting("LISTEN_ADDR")?;
    let database = setting("DATABASE_URL")?;
    let broker = setting("BROKER_URL")?;
    let public_url = setting("PUBLIC_URL")?;
    let workers = match std::env::var("HTTP_WORKERS") {
        Ok(n) => n.parse().map_err(|_| "HTTP_WORKERS: a number")?,
        Err(_) => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
    };
    let keys = broker_keys(&broker).await?;
    let store = open(&database)
        .await
        .map_err(|e| format!("database: {e}"))?;
    let site_writes = std::env::var("FLOOR_WRITES").is_ok_and(|w| w == "site");
    let state = web::Data::from(Arc::new(State {
        store,
        site_writes,
        public_url,
        broker,
        keys,
        directory: std::sync::Mutex::new(None),
    }));
    HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/healthz", web::get().to(healthz))
            .route("/", web::get().to(front))
            .route("/login", web::post().to(login))
            .route("/verify", web::post().to(verify))
            .route("/members", web::get().to(members))
    })
    .workers(workers)
    .bind(&listen)
    .map_err(|e| format!("{listen}: {e}"))?
    .run()
    .await
    .map_err(|e| e.to_string())
}

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stack_floor: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
