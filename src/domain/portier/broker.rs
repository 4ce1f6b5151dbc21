//! The broker's discovery document and signing keys, fetched with awc and cached.
//!
//! The cache follows the broker's `Cache-Control: max-age` or `Expires` (clamped between a floor
//! and a cap), lets one request fetch while concurrent ones wait for its result, keeps serving
//! the previous value when a refresh fails, and refetches the keys on an unknown key id at most
//! once per cool-down period (a broker restarted with in-memory keys has new ones).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use actix_web::http::header::{self, HeaderMap, HttpDate};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

/// Shortest time we keep a document, whatever the broker says.
const MIN_TTL: Duration = Duration::from_secs(60);
/// Longest time we keep a document (the broker rotates keys daily).
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a document is kept when the broker gives no caching headers.
const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);
/// After a failed refresh, how long the stale value is served before trying again; doubled
/// after each further failure in a row, up to [`MAX_RETRY_AFTER_FAILURE`].
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);
/// The longest wait between two tries while the broker keeps failing.
const MAX_RETRY_AFTER_FAILURE: Duration = Duration::from_secs(10 * 60);
/// How long a failure to fetch a document we have no copy of is remembered: requests in that
/// time get the same failure at once instead of each asking a broker that is down.
pub const FAILURE_MEMORY: Duration = Duration::from_secs(5);
/// Largest document we read from the broker.
const MAX_BODY: usize = 256 * 1024;

/// The parts of the broker's OpenID configuration we use.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    /// Where visitors are sent to sign in.
    pub authorization_endpoint: String,
    /// Where the signing keys are published.
    pub jwks_uri: String,
}

/// A key usable to check a token's signature.
#[derive(Clone)]
pub struct SigningKey {
    /// The algorithm the key is published for; a token must name the same.
    pub algorithm: Algorithm,
    /// The public key.
    pub key: DecodingKey,
}

/// The broker could not give us what we asked for.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    /// The request failed: connection refused, timeout, TLS, DNS.
    #[error("could not reach the broker at {url}: {reason}")]
    Unreachable {
        /// What we asked for.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The broker answered with an error status.
    #[error("the broker answered {status} for {url}")]
    Status {
        /// What we asked for.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The answer was not the JSON we expected.
    #[error("the broker's answer for {url} is not usable: {reason}")]
    BadDocument {
        /// What we asked for.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

struct Cached<T> {
    value: Arc<T>,
    fresh_until: Instant,
}

impl<T> Cached<T> {
    fn fresh(&self, now: Instant) -> Option<Arc<T>> {
        (now < self.fresh_until).then(|| self.value.clone())
    }
}

type KeySet = HashMap<String, SigningKey>;

#[derive(Default)]
struct State {
    discovery: Option<Cached<Discovery>>,
    keys: Option<Cached<KeySet>>,
    last_key_fetch: Option<Instant>,
    /// Refreshes that failed in a row (reset by a success): sets the retry back-off.
    failures: u32,
    /// The last failure to fetch the discovery document while we had no copy, and until when
    /// it stands in for asking again.
    discovery_failure: Option<(Instant, BrokerError)>,
    /// The same for the key set.
    keys_failure: Option<(Instant, BrokerError)>,
    fetches: crate::domain::metrics::BrokerFetches,
}

/// One trusted broker and what we know about it. Shared by all workers behind an `Arc`; each
/// worker passes its own `awc::Client`, since clients cannot move between threads.
pub struct Broker {
    origin: String,
    timeout: Duration,
    refetch_cooldown: Duration,
    state: Mutex<State>,
    discovery_fetch: tokio::sync::Mutex<()>,
    keys_fetch: tokio::sync::Mutex<()>,
}

impl Broker {
    /// A broker at `origin` (also the `iss` its tokens must carry).
    pub fn new(origin: &str, timeout: Duration, refetch_cooldown: Duration) -> Broker {
        Broker {
            origin: origin.to_owned(),
            timeout,
            refetch_cooldown,
            state: Mutex::new(State::default()),
            discovery_fetch: tokio::sync::Mutex::new(()),
            keys_fetch: tokio::sync::Mutex::new(()),
        }
    }

    /// The broker's origin, which is also the issuer its tokens must name.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// How often documents were fetched, for the metrics page.
    pub fn fetches(&self) -> crate::domain::metrics::BrokerFetches {
        self.state().fetches
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain data replaced whole; a panic elsewhere cannot leave it half-written.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The discovery document, from the cache or the broker.
    pub async fn discovery(&self, client: &awc::Client) -> Result<Arc<Discovery>, BrokerError> {
        if let Some(d) = self.fresh_discovery() {
            return Ok(d);
        }
        let _one_fetch_at_a_time = self.discovery_fetch.lock().await;
        if let Some(d) = self.fresh_discovery() {
            return Ok(d);
        }
        if let Some(e) = self.recent_failure(|s| &mut s.discovery_failure) {
            return Err(e);
        }
        let url = format!("{}/.well-known/openid-configuration", self.origin);
        let fetched = self
            .fetch_json::<Discovery>(client, &url)
            .await
            .and_then(|(doc, ttl)| check_endpoints(&url, doc).map(|doc| (doc, ttl)));
        match fetched {
            Ok((doc, ttl)) => {
                let doc = Arc::new(doc);
                let mut state = self.state();
                state.discovery = Some(Cached {
                    value: doc.clone(),
                    fresh_until: Instant::now() + ttl,
                });
                state.failures = 0;
                state.discovery_failure = None;
                state.fetches.discovery += 1;
                Ok(doc)
            }
            Err(e) => self.stale(e, |s| (&mut s.discovery, &mut s.discovery_failure)),
        }
    }

    fn fresh_discovery(&self) -> Option<Arc<Discovery>> {
        self.state().discovery.as_ref()?.fresh(Instant::now())
    }

    fn fresh_keys(&self) -> Option<Arc<KeySet>> {
        self.state().keys.as_ref()?.fresh(Instant::now())
    }

    /// A failure to fetch, remembered for [`FAILURE_MEMORY`], that answers for the broker.
    fn recent_failure(
        &self,
        slot: impl FnOnce(&mut State) -> &mut Option<(Instant, BrokerError)>,
    ) -> Option<BrokerError> {
        let mut state = self.state();
        let failure = slot(&mut state);
        match failure {
            Some((until, e)) if Instant::now() < *until => Some(e.clone()),
            Some(_) => {
                *failure = None;
                None
            }
            None => None,
        }
    }

    /// On a failed refresh, keeps serving the previous value for a while and says so in the log;
    /// with no previous value, remembers the failure for [`FAILURE_MEMORY`].
    #[allow(clippy::type_complexity)]
    fn stale<T>(
        &self,
        error: BrokerError,
        slots: impl FnOnce(&mut State) -> (&mut Option<Cached<T>>, &mut Option<(Instant, BrokerError)>),
    ) -> Result<Arc<T>, BrokerError> {
        let mut state = self.state();
        state.failures = state.failures.saturating_add(1);
        state.fetches.failed += 1;
        let doublings = state.failures.saturating_sub(1).min(16);
        let wait = RETRY_AFTER_FAILURE
            .saturating_mul(2u32.pow(doublings))
            .min(MAX_RETRY_AFTER_FAILURE);
        let (slot, failure) = slots(&mut state);
        match slot {
            Some(cached) => {
                tracing::warn!(
                    %error,
                    retry_in_s = wait.as_secs(),
                    "broker refresh failed; using the previous copy"
                );
                cached.fresh_until = Instant::now() + wait;
                Ok(cached.value.clone())
            }
            None => {
                *failure = Some((Instant::now() + FAILURE_MEMORY, error.clone()));
                Err(error)
            }
        }
    }

    /// The key with id `kid`, or `None` when the broker does not publish it.
    pub async fn key(
        &self,
        client: &awc::Client,
        kid: &str,
    ) -> Result<Option<SigningKey>, BrokerError> {
        let keys = match self.fresh_keys() {
            Some(keys) => keys,
            None => self.refresh_keys(client, false).await?,
        };
        if let Some(key) = keys.get(kid) {
            return Ok(Some(key.clone()));
        }
        // An unknown kid may mean the broker has new keys. Look again, but not more often than
        // the cool-down allows, so that forged kids cannot make us hammer the broker.
        let keys = self.refresh_keys(client, true).await?;
        Ok(keys.get(kid).cloned())
    }

    async fn refresh_keys(
        &self,
        client: &awc::Client,
        unknown_kid: bool,
    ) -> Result<Arc<KeySet>, BrokerError> {
        let _one_fetch_at_a_time = self.keys_fetch.lock().await;
        {
            let state = self.state();
            let now = Instant::now();
            let recently = state
                .last_key_fetch
                .is_some_and(|t| now.duration_since(t) < self.refetch_cooldown);
            if let Some(keys) = &state.keys {
                // Fetched by another request while we waited, or too soon to ask again.
                if (!unknown_kid && now < keys.fresh_until) || (unknown_kid && recently) {
                    return Ok(keys.value.clone());
                }
            }
        }
        if let Some(e) = self.recent_failure(|s| &mut s.keys_failure) {
            return Err(e);
        }
        let discovery = self.discovery(client).await?;
        self.state().last_key_fetch = Some(Instant::now());
        match self
            .fetch_json::<JwkSetDocument>(client, &discovery.jwks_uri)
            .await
        {
            Ok((doc, ttl)) => {
                let keys = Arc::new(doc.usable_keys());
                if keys.is_empty() {
                    tracing::warn!(url = %discovery.jwks_uri, "the broker publishes no RS256 key");
                }
                let mut state = self.state();
                state.keys = Some(Cached {
                    value: keys.clone(),
                    fresh_until: Instant::now() + ttl,
                });
                state.failures = 0;
                state.keys_failure = None;
                state.fetches.keys += 1;
                Ok(keys)
            }
            Err(e) => self.stale(e, |s| (&mut s.keys, &mut s.keys_failure)),
        }
    }

    async fn fetch_json<T: serde::de::DeserializeOwned>(
        &self,
        client: &awc::Client,
        url: &str,
    ) -> Result<(T, Duration), BrokerError> {
        let mut response = client
            .get(url)
            .timeout(self.timeout)
            .insert_header((header::ACCEPT, "application/json"))
            .send()
            .await
            .map_err(|e| BrokerError::Unreachable {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
        if !response.status().is_success() {
            return Err(BrokerError::Status {
                url: url.to_owned(),
                status: response.status().as_u16(),
            });
        }
        let ttl = cache_ttl(response.headers(), SystemTime::now());
        // Parsed whatever the Content-Type says: some brokers label their JSON text/plain.
        let body = response
            .body()
            .limit(MAX_BODY)
            .await
            .map_err(|e| BrokerError::BadDocument {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
        let doc = serde_json::from_slice::<T>(&body).map_err(|e| BrokerError::BadDocument {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        Ok((doc, ttl))
    }
}

/// Refuses a discovery document whose endpoints could be read or changed on the way: they must
/// be https, or on this machine, like `BROKER_URL` itself.
fn check_endpoints(url: &str, doc: Discovery) -> Result<Discovery, BrokerError> {
    for (name, endpoint) in [
        ("authorization_endpoint", &doc.authorization_endpoint),
        ("jwks_uri", &doc.jwks_uri),
    ] {
        if !crate::config::is_https_or_loopback(endpoint) {
            return Err(BrokerError::BadDocument {
                url: url.to_owned(),
                reason: format!(
                    "its {name} {endpoint:?} is not https (only a broker on this machine may use \
                     http)"
                ),
            });
        }
    }
    Ok(doc)
}

#[derive(Deserialize)]
struct JwkSetDocument {
    keys: Vec<serde_json::Value>,
}

impl JwkSetDocument {
    /// The RS256 keys with an id. Other keys (Ed25519 ones come first on brokers that enable
    /// EdDSA) and keys we cannot parse are left out, one by one.
    fn usable_keys(self) -> KeySet {
        let mut set = HashMap::new();
        for value in self.keys {
            let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
                continue;
            };
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            let is_rsa = matches!(jwk.algorithm, AlgorithmParameters::RSA(_));
            let alg_ok = matches!(jwk.common.key_algorithm, None | Some(KeyAlgorithm::RS256));
            if !(is_rsa && alg_ok) {
                continue;
            }
            if let Ok(key) = DecodingKey::from_jwk(&jwk) {
                set.insert(
                    kid,
                    SigningKey {
                        algorithm: Algorithm::RS256,
                        key,
                    },
                );
            }
        }
        set
    }
}

/// How long a response may be kept: `Cache-Control: max-age`, else `Expires`, else a default;
/// always between [`MIN_TTL`] and [`MAX_TTL`].
pub fn cache_ttl(headers: &HeaderMap, now: SystemTime) -> Duration {
    let max_age = headers
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',').find_map(|directive| {
                let (name, value) = directive.trim().split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("max-age")
                    .then(|| value.trim().trim_matches('"').parse::<u64>().ok())?
            })
        })
        .map(Duration::from_secs);
    let expires = || {
        let value = headers.get(header::EXPIRES)?.to_str().ok()?;
        let at: SystemTime = value.parse::<HttpDate>().ok()?.into();
        Some(at.duration_since(now).unwrap_or(Duration::ZERO))
    };
    max_age
        .or_else(expires)
        .unwrap_or(DEFAULT_TTL)
        .clamp(MIN_TTL, MAX_TTL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn ttl_follows_max_age_then_expires_within_bounds() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let h = headers(&[("cache-control", "public, max-age=3600, s-maxage=0")]);
        assert_eq!(cache_ttl(&h, now), Duration::from_secs(3600));
        let h = headers(&[("cache-control", "public, max-age=604800")]);
        assert_eq!(cache_ttl(&h, now), MAX_TTL);
        let h = headers(&[("cache-control", "max-age=0")]);
        assert_eq!(cache_ttl(&h, now), MIN_TTL);
        let expires = HttpDate::from(now + Duration::from_secs(7200)).to_string();
        let h = headers(&[("cache-control", "public"), ("expires", &expires)]);
        assert_eq!(cache_ttl(&h, now), Duration::from_secs(7200));
        assert_eq!(cache_ttl(&headers(&[]), now), DEFAULT_TTL);
    }
}
