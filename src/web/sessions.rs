//! Server-side sessions: an actix-session store on the database, the cookie key, and a typed
//! wrapper so handlers never touch string keys.

use std::collections::HashMap;

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_session::{Session, SessionExt};
use actix_web::body::MessageBody;
use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::cookie::{Cookie, CookieJar, Key, SameSite};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::HeaderValue;
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpRequest, web};
use anyhow::anyhow;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngCore;
use secrecy::SecretString;
use std::future::{Ready, ready};
use std::time::Duration;

use crate::config::{Config, cookie_key_from_base64};
use crate::db::{self, Db, members::Member};
use crate::web::security::{self, CookieNames};

const MEMBER_ID: &str = "member_id";
const HANDLE: &str = "handle";
const USER_AGENT: &str = "user_agent";
const IP: &str = "ip";
/// The member row the store loads with the session. Never stored: it is the member as the
/// database holds them at the start of this request, not a copy kept in the session.
const LOADED_MEMBER: &str = "loaded_member";
/// Set instead of the state when the session could not be loaded because the database is out
/// of reach. Never stored either.
const UNAVAILABLE: &str = "database_unavailable";
const KEY_SETTING: &str = "session_cookie_key";
/// Set by [`MemberSession::sign_in`] when the sign-in already stored the session under this
/// key: the store's `save` hands the key to the cookie and writes nothing. Never stored.
const STORED_UNDER: &str = "stored_under_key";

/// The session cookie key, for [`carry_over_plain_cookie`].
#[derive(Clone)]
pub struct SessionCookieKey(pub Key);

/// Middleware, outside the session middleware: a member signed in before the session cookie of
/// an https site took its `__Host-` name stays signed in. A request that brings the cookie
/// under its previous name (`clubhouse_session`) and none under the new one has its value
/// carried over: actix-session encrypts the cookie with its name as associated data, so the
/// value is decrypted under the old name and encrypted again under the new one, handed to the
/// session middleware as if the browser had sent it, and set in the browser. The old cookie
/// is removed in the same answer. One that cannot be decrypted is only removed: that browser
/// is signed out, and signs in again as usual.
pub async fn carry_over_plain_cookie(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let old_name = CookieNames::PLAIN.session;
    let new_name = CookieNames::HOST.session;
    let (https, max_age) = req
        .app_data::<web::Data<Config>>()
        .map_or((false, Default::default()), |c| {
            (c.is_https(), c.session_max_age)
        });
    let key = req.app_data::<web::Data<SessionCookieKey>>().cloned();
    // Read from the header itself: `req.cookie()` would cache the parsed cookies before the
    // carried-over one is added.
    let (mut old_value, mut has_new) = (None, false);
    if https {
        for header in req.headers().get_all(actix_web::http::header::COOKIE) {
            let Ok(text) = header.to_str() else { continue };
            for pair in text.split(';') {
                let Ok(cookie) = Cookie::parse_encoded(pair.trim()) else {
                    continue;
                };
                if cookie.name() == old_name {
                    old_value = Some(cookie.value().to_owned());
                } else if cookie.name() == new_name {
                    has_new = true;
                }
            }
        }
    }
    let carried = match (&old_value, &key, has_new) {
        (Some(old), Some(key), false) => reencrypt(&key.0, old_name, new_name, old),
        _ => None,
    };
    if let Some(value) = &carried
        && let Ok(header) =
            HeaderValue::from_str(&Cookie::new(new_name, value.as_str()).encoded().to_string())
    {
        req.headers_mut()
            .append(actix_web::http::header::COOKIE, header);
    }
    let mut res = next.call(req).await?;
    if old_value.is_some() {
        let mut removal = Cookie::build(old_name, "")
            .path("/")
            .secure(true)
            .http_only(true)
            .finish();
        removal.make_removal();
        res.response_mut().add_cookie(&removal)?;
    }
    if let Some(value) = carried {
        let already_set = res.response().cookies().any(|c| c.name() == new_name);
        if !already_set {
            let cookie = Cookie::build(new_name, value)
                .path("/")
                .secure(true)
                .http_only(true)
                .same_site(SameSite::Lax)
                .max_age(CookieDuration::seconds(max_age.as_secs() as i64))
                .finish();
            res.response_mut().add_cookie(&cookie)?;
        }
    }
    Ok(res)
}

/// A private (encrypted) cookie value made for `from`, made again for `to`; `None` when it
/// was not made with `key`.
fn reencrypt(key: &Key, from: &str, to: &str, value: &str) -> Option<String> {
    let mut jar = CookieJar::new();
    jar.add_original(Cookie::new(from.to_owned(), value.to_owned()));
    let plain = jar.private(key).get(from)?;
    let mut out = CookieJar::new();
    out.private_mut(key)
        .add(Cookie::new(to.to_owned(), plain.value().to_owned()));
    out.get(to).map(|c| c.value().to_owned())
}

/// The cookie key: `SESSION_KEY` when set, otherwise the one stored in the database (created on
/// the first start), so that sessions survive restarts and all instances agree.
pub async fn cookie_key(configured: Option<&SecretString>, pool: &Db) -> anyhow::Result<Key> {
    if let Some(key) = configured {
        return cookie_key_from_base64(key).map_err(|e| anyhow!("SESSION_KEY: {e}"));
    }
    let mut fresh = [0u8; 64];
    rand::rng().fill_bytes(&mut fresh);
    let stored = db::settings::get_or_insert(pool, KEY_SETTING, &STANDARD.encode(fresh)).await?;
    cookie_key_from_base64(&SecretString::from(stored))
        .map_err(|e| anyhow!("the session key stored in the database is damaged: {e}"))
}

/// Keeps session state in the `sessions` table. The cookie carries a random key; the table
/// holds only its SHA-256, so a copy of the database does not hold usable cookies.
///
/// A session ends after `idle` without requests, and `max_age` after it was created however
/// busy it is. Its expiry is moved forward when it is used, at most once per tenth of `idle`
/// (and at least daily), so a busy member does not cost a write per request.
#[derive(Clone)]
pub struct DbSessionStore {
    pool: Db,
    idle: i64,
    max_age: i64,
}

impl DbSessionStore {
    /// A store on this pool with these lifetimes.
    pub fn new(pool: Db, idle: Duration, max_age: Duration) -> Self {
        DbSessionStore {
            pool,
            idle: idle.as_secs() as i64,
            max_age: max_age.as_secs() as i64,
        }
    }

    fn refresh_step(&self) -> i64 {
        (self.idle / 10).min(86_400)
    }
}

/// The table's id for a cookie's session key.
pub fn session_id(key: &SessionKey) -> String {
    security::sha256_hex(key.as_ref())
}

/// The string values of the state (actix-session keeps each as JSON).
fn state_strings(state: &HashMap<String, String>) -> HashMap<&str, String> {
    [MEMBER_ID, HANDLE, USER_AGENT, IP]
        .into_iter()
        .filter_map(|k| {
            let v = serde_json::from_str::<String>(state.get(k)?).ok()?;
            Some((k, v))
        })
        .collect()
}

fn owner<'a>(values: &'a HashMap<&str, String>) -> db::sessions::Owner<'a> {
    db::sessions::Owner {
        member_id: values.get(MEMBER_ID).map(String::as_str),
        handle: values.get(HANDLE).map(String::as_str),
        user_agent: values.get(USER_AGENT).map(String::as_str),
        ip: values.get(IP).map(String::as_str),
    }
}

impl SessionStore for DbSessionStore {
    async fn load(
        &self,
        session_key: &SessionKey,
    ) -> Result<Option<HashMap<String, String>>, LoadError> {
        let now = db::now();
        let id = session_id(session_key);
        let live = match db::sessions::load(&self.pool, &id, now, now - self.max_age).await {
            Ok(Some(live)) => live,
            Ok(None) => return Ok(None),
            // actix-session would answer a bare 500 to a failed load. Instead the request
            // goes on with a session that says so: members-only pages answer 503 (see
            // `MemberSession::database_unavailable`), and since this state is never changed,
            // nothing is written and the browser keeps its cookie for when the database is
            // back.
            Err(e) if db::is_unavailable(&e) => {
                tracing::warn!(error = %e, "could not load a session: the database is unavailable");
                // actix-session keeps each value as JSON: this is the JSON `true`.
                return Ok(Some(HashMap::from([(
                    UNAVAILABLE.to_owned(),
                    "true".to_owned(),
                )])));
            }
            Err(e) => return Err(LoadError::Other(e.into())),
        };
        if live.expires_at < now + self.idle - self.refresh_step() {
            db::sessions::touch(&self.pool, &id, now, now + self.idle)
                .await
                .map_err(|e| LoadError::Other(e.into()))?;
        }
        let mut state: HashMap<String, String> =
            serde_json::from_str(&live.state).map_err(|e| LoadError::Deserialization(e.into()))?;
        state.remove(LOADED_MEMBER);
        state.remove(STORED_UNDER);
        if let Some(member) = &live.member {
            let member = serde_json::to_string(member).map_err(|e| LoadError::Other(e.into()))?;
            state.insert(LOADED_MEMBER.to_owned(), member);
        }
        Ok(Some(state))
    }

    async fn save(
        &self,
        mut session_state: HashMap<String, String>,
        _cookie_ttl: &CookieDuration,
    ) -> Result<SessionKey, SaveError> {
        session_state.remove(LOADED_MEMBER);
        session_state.remove(UNAVAILABLE);
        if let Some(stored) = session_state.remove(STORED_UNDER) {
            let key = serde_json::from_str::<String>(&stored)
                .map_err(|e| SaveError::Serialization(e.into()))?;
            return SessionKey::try_from(key).map_err(|e| SaveError::Other(e.into()));
        }
        let state = serde_json::to_string(&session_state)
            .map_err(|e| SaveError::Serialization(e.into()))?;
        let key = SessionKey::try_from(security::random_token())
            .map_err(|e| SaveError::Other(e.into()))?;
        let now = db::now();
        let values = state_strings(&session_state);
        db::sessions::insert(
            &self.pool,
            &session_id(&key),
            &owner(&values),
            &state,
            now,
            now + self.idle,
        )
        .await
        .map_err(|e| SaveError::Other(e.into()))?;
        Ok(key)
    }

    async fn update(
        &self,
        session_key: SessionKey,
        mut session_state: HashMap<String, String>,
        _cookie_ttl: &CookieDuration,
    ) -> Result<SessionKey, UpdateError> {
        session_state.remove(LOADED_MEMBER);
        session_state.remove(UNAVAILABLE);
        session_state.remove(STORED_UNDER);
        let state = serde_json::to_string(&session_state)
            .map_err(|e| UpdateError::Serialization(e.into()))?;
        let now = db::now();
        // A session revoked or expired meanwhile stays gone: nothing is written back.
        let values = state_strings(&session_state);
        db::sessions::update(
            &self.pool,
            &session_id(&session_key),
            &owner(&values),
            &state,
            now,
            now + self.idle,
        )
        .await
        .map_err(|e| UpdateError::Other(e.into()))?;
        Ok(session_key)
    }

    async fn update_ttl(
        &self,
        session_key: &SessionKey,
        _cookie_ttl: &CookieDuration,
    ) -> Result<(), anyhow::Error> {
        let now = db::now();
        db::sessions::touch(&self.pool, &session_id(session_key), now, now + self.idle).await?;
        Ok(())
    }

    async fn delete(&self, session_key: &SessionKey) -> Result<(), anyhow::Error> {
        db::sessions::delete(&self.pool, &session_id(session_key)).await?;
        Ok(())
    }
}

/// The visitor's session, with typed accessors.
pub struct MemberSession(Session);

impl MemberSession {
    /// The signed-in member's id, if any.
    pub fn member_id(&self) -> Option<String> {
        self.0.get::<String>(MEMBER_ID).ok().flatten()
    }

    /// The signed-in member as the database held them when this request's session was
    /// loaded (one statement loads both). `None` when anonymous, or when the member is gone.
    pub fn member(&self) -> Option<Member> {
        self.0.get::<Member>(LOADED_MEMBER).ok().flatten()
    }

    /// Whether the browser presented a session that could not be loaded because the database
    /// is out of reach (it is neither signed in nor anonymous, and works again later).
    pub fn database_unavailable(&self) -> bool {
        self.0.get::<bool>(UNAVAILABLE).ok().flatten() == Some(true)
    }

    /// This session's public handle (what the member's session list calls it).
    pub fn handle(&self) -> Option<String> {
        self.0.get::<String>(HANDLE).ok().flatten()
    }

    /// Starts the signed-in session `prepared` for `member_id` under its new session key, so
    /// that a session id planted before sign-in is worthless afterwards. The device and
    /// address are kept so the member can recognize the session in their list. `stored`: the
    /// sign-in already wrote its row (see [`PreparedSession`]); otherwise the store writes it.
    pub fn sign_in(
        &self,
        prepared: &PreparedSession,
        member_id: &str,
        stored: bool,
    ) -> Result<(), actix_session::SessionInsertError> {
        self.0.renew();
        self.0.clear();
        self.0.insert(HANDLE, &prepared.row.handle)?;
        self.0.insert(USER_AGENT, &prepared.row.user_agent)?;
        self.0.insert(IP, &prepared.row.ip)?;
        self.0.insert(MEMBER_ID, member_id)?;
        if stored {
            self.0.insert(STORED_UNDER, prepared.key.as_str())?;
        }
        Ok(())
    }

    /// Ends the session: the row is deleted and the cookie removed.
    pub fn sign_out(&self) {
        self.0.purge();
    }
}

/// A signed-in session made before the sign-in finishes, so that the sign-in stores it in its
/// own round trip (`POST /verify` then writes once): a new random key, its row, and its state
/// with the member's id left out, to be filled in by the statement that decides who the
/// member is. The state is the same as the store would write.
pub struct PreparedSession {
    key: String,
    /// The row to store.
    pub row: db::sessions::NewSession,
}

impl PreparedSession {
    /// A session for a browser with this User-Agent (its first 300 characters) at `ip`, that
    /// ends after `idle` unless used.
    pub fn new(user_agent: &str, ip: &str, idle: Duration) -> Result<Self, serde_json::Error> {
        let key = security::random_token();
        let mut raw = [0u8; 12];
        rand::rng().fill_bytes(&mut raw);
        let handle = URL_SAFE_NO_PAD.encode(raw);
        let user_agent: String = user_agent.chars().take(300).collect();
        // actix-session keeps each value as JSON, and the state is a JSON object of them.
        let values = HashMap::from([
            (HANDLE, serde_json::to_string(&handle)?),
            (USER_AGENT, serde_json::to_string(&user_agent)?),
            (IP, serde_json::to_string(ip)?),
        ]);
        let object = serde_json::to_string(&values)?;
        // The member's id comes last: the object without its closing brace, then
        // `,"member_id":"\"` + id + `\""}`. An id is a uuid: nothing in it needs escaping.
        let open = object.strip_suffix('}').unwrap_or(&object);
        let state_before = format!("{open},{}:\"\\\"", serde_json::to_string(MEMBER_ID)?);
        Ok(PreparedSession {
            row: db::sessions::NewSession {
                id: security::sha256_hex(&key),
                state_before,
                state_after: "\\\"\"}".to_owned(),
                expires_at: db::now() + idle.as_secs() as i64,
                handle,
                user_agent,
                ip: ip.to_owned(),
            },
            key,
        })
    }
}

impl FromRequest for MemberSession {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(MemberSession(req.get_session())))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use actix_session::storage::SessionKey;

    #[test]
    fn a_session_id_is_the_keys_sha256_in_lowercase_hex() {
        let key = SessionKey::try_from("abc".to_owned()).unwrap();
        assert_eq!(
            super::session_id(&key),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_prepared_session_is_stored_with_the_state_the_store_would_write() {
        let user_agent = "Browser \"quoted\" \\ {braces}, \u{e9}t\u{e9}";
        let prepared =
            super::PreparedSession::new(user_agent, "192.0.2.7", Duration::from_secs(60)).unwrap();
        let row = &prepared.row;
        let member = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        let stored = format!("{}{member}{}", row.state_before, row.state_after);
        let state: HashMap<String, String> = serde_json::from_str(&stored).unwrap();
        let values = super::state_strings(&state);
        assert_eq!(values.len(), 4, "{stored}");
        assert_eq!(values["member_id"], member);
        assert_eq!(values["user_agent"], user_agent);
        assert_eq!(values["ip"], "192.0.2.7");
        assert_eq!(values["handle"], row.handle);
        // The row's id is the SHA-256 of the cookie's key, as for any session.
        let key = SessionKey::try_from(prepared.key.clone()).unwrap();
        assert_eq!(super::session_id(&key), row.id);
    }

    #[test]
    fn a_prepared_session_keeps_the_first_300_characters_of_the_user_agent() {
        let long = "x".repeat(400);
        let prepared = super::PreparedSession::new(&long, "", Duration::from_secs(60)).unwrap();
        assert_eq!(prepared.row.user_agent.len(), 300);
    }
}
