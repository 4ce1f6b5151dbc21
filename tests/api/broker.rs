//! A Portier broker for tests: discovery, a key set, and tokens signed with a test key.
//!
//! It behaves as the real broker does towards a relying party: its discovery document sends
//! visitors to an authorization endpoint on another host name, its key set lists an Ed25519
//! key before the RSA one, and it counts how often each document is fetched. Instead of
//! emailing a link, tests mint the token the broker would post back (see `helpers`).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, RwLock};

use actix_web::{App, HttpResponse, HttpServer, web};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256, RSA_PKCS1_SHA384};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// An RSA key with its public JWK.
pub struct TestKey {
    pair: KeyPair,
    /// The key id the broker publishes it under.
    pub kid: String,
}

impl TestKey {
    fn generate(kid: &str) -> TestKey {
        TestKey {
            pair: KeyPair::generate(KeySize::Rsa2048).expect("RSA key generation"),
            kid: kid.to_owned(),
        }
    }

    /// The public key as the broker publishes it.
    pub fn jwk(&self) -> Value {
        let public = self.pair.public_key();
        json!({
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        })
    }

    /// The DER of the public key (what an attacker would use as an HMAC secret).
    pub fn public_der(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    fn sign_rsa(&self, sha384: bool, input: &[u8]) -> Vec<u8> {
        let mut sig = vec![0; self.pair.public_modulus_len()];
        let alg = if sha384 {
            &RSA_PKCS1_SHA384
        } else {
            &RSA_PKCS1_SHA256
        };
        self.pair
            .sign(alg, &SystemRandom::new(), input, &mut sig)
            .expect("RSA signing");
        sig
    }
}

/// The key the test broker signs with; generated once per test process.
pub static BROKER_KEY: LazyLock<TestKey> = LazyLock::new(|| TestKey::generate("test-key-1"));
/// The key the broker has after [`TestBroker::restart_with_new_keys`].
pub static NEXT_KEY: LazyLock<TestKey> = LazyLock::new(|| TestKey::generate("test-key-2"));
/// A key nobody publishes, for forged signatures.
pub static FORGER_KEY: LazyLock<TestKey> = LazyLock::new(|| TestKey::generate("test-key-1"));

fn b64json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json"))
}

/// How to sign a token.
pub enum Signature<'a> {
    /// RS256 with this key (the normal case).
    Rs256(&'a TestKey),
    /// RSASSA with SHA-384, for a header that says RS384.
    Rs384(&'a TestKey),
    /// HMAC-SHA256 with these bytes as the secret.
    Hs256(&'a [u8]),
    /// No signature at all (`alg: none`).
    None,
}

/// Builds a compact JWT from any header and claims.
pub fn sign(header: &Value, claims: &Value, signature: Signature<'_>) -> String {
    let input = format!("{}.{}", b64json(header), b64json(claims));
    let sig = match signature {
        Signature::Rs256(key) => key.sign_rsa(false, input.as_bytes()),
        Signature::Rs384(key) => key.sign_rsa(true, input.as_bytes()),
        Signature::Hs256(secret) => {
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
            aws_lc_rs::hmac::sign(&key, input.as_bytes())
                .as_ref()
                .to_vec()
        }
        Signature::None => Vec::new(),
    };
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// A running test broker.
#[derive(Clone)]
pub struct TestBroker {
    /// Its origin, which is also the `iss` of its tokens.
    pub origin: String,
    /// Where its discovery document sends visitors (another host name, same server).
    pub authorization_endpoint: String,
    /// How often discovery was fetched.
    pub discovery_fetches: Arc<AtomicUsize>,
    /// How often the key set was fetched.
    pub key_fetches: Arc<AtomicUsize>,
    /// While set, the broker answers every request with 503 (down behind its proxy).
    pub down: Arc<AtomicBool>,
    /// Milliseconds its discovery document and key set take to arrive (a slow broker).
    pub delay_ms: Arc<AtomicU64>,
    /// Whether it has been restarted with new keys.
    rotated: Arc<AtomicBool>,
    /// The discovery document it serves.
    discovery: Arc<RwLock<Value>>,
    /// The key set it publishes.
    published: Arc<RwLock<Value>>,
}

#[derive(Clone)]
struct BrokerState {
    discovery: Arc<RwLock<Value>>,
    keys: Arc<RwLock<Value>>,
    discovery_fetches: Arc<AtomicUsize>,
    key_fetches: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
}

/// The key set the broker publishes: an Ed25519 key first (as brokers with EdDSA enabled
/// list them), then its RSA key.
fn key_set(key: &TestKey) -> Value {
    json!({ "keys": [
        { "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
          "kid": "ed-key", "x": URL_SAFE_NO_PAD.encode([7u8; 32]) },
        key.jwk(),
    ]})
}

impl TestBroker {
    /// Starts a broker on `host` (an IP literal, e.g. `127.0.0.1` or `::1`), port 0, whose
    /// discovery sends visitors to `localhost`: another host name, as the official suite has it.
    pub fn start(host: &str) -> TestBroker {
        Self::start_with_auth_host(host, "localhost")
    }

    /// Starts a broker whose authorization endpoint is on `auth_host`. Browser tests use
    /// `127.0.0.1` for both, so that the broker is another site than the app on `localhost`.
    pub fn start_with_auth_host(host: &str, auth_host: &str) -> TestBroker {
        let listener = std::net::TcpListener::bind((host, 0)).expect("bind test broker");
        let port = listener.local_addr().expect("broker address").port();
        let origin = if host.contains(':') {
            format!("http://[{host}]:{port}")
        } else {
            format!("http://{host}:{port}")
        };
        let authorization_endpoint = format!("http://{auth_host}:{port}/auth");
        let state = BrokerState {
            discovery: Arc::new(RwLock::new(json!({
                "issuer": origin,
                "authorization_endpoint": authorization_endpoint,
                "jwks_uri": format!("{origin}/keys.json"),
                "scopes_supported": ["openid", "email"],
                "response_types_supported": ["id_token"],
                "response_modes_supported": ["form_post"],
                "id_token_signing_alg_values_supported": ["EdDSA", "RS256"],
            }))),
            keys: Arc::new(RwLock::new(key_set(&BROKER_KEY))),
            discovery_fetches: Arc::new(AtomicUsize::new(0)),
            key_fetches: Arc::new(AtomicUsize::new(0)),
            down: Arc::new(AtomicBool::new(false)),
            delay_ms: Arc::new(AtomicU64::new(0)),
        };
        let broker = TestBroker {
            origin,
            authorization_endpoint,
            discovery_fetches: state.discovery_fetches.clone(),
            key_fetches: state.key_fetches.clone(),
            down: state.down.clone(),
            delay_ms: state.delay_ms.clone(),
            rotated: Arc::new(AtomicBool::new(false)),
            published: state.keys.clone(),
            discovery: state.discovery.clone(),
        };
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(state.clone()))
                .route(
                    "/.well-known/openid-configuration",
                    web::get().to(|s: web::Data<BrokerState>| async move {
                        s.discovery_fetches.fetch_add(1, Ordering::SeqCst);
                        let delay = s.delay_ms.load(Ordering::SeqCst);
                        if delay > 0 {
                            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                        }
                        if s.down.load(Ordering::SeqCst) {
                            return HttpResponse::ServiceUnavailable().finish();
                        }
                        let doc = s.discovery.read().map(|d| d.clone()).unwrap_or_default();
                        HttpResponse::Ok()
                            .insert_header(("Cache-Control", "public, max-age=604800, s-maxage=0"))
                            .json(doc)
                    }),
                )
                .route("/auth", web::get().to(auth_page))
                .route(
                    "/keys.json",
                    web::get().to(|s: web::Data<BrokerState>| async move {
                        s.key_fetches.fetch_add(1, Ordering::SeqCst);
                        let delay = s.delay_ms.load(Ordering::SeqCst);
                        if delay > 0 {
                            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                        }
                        if s.down.load(Ordering::SeqCst) {
                            return HttpResponse::ServiceUnavailable().finish();
                        }
                        let keys = s.keys.read().map(|k| k.to_string()).unwrap_or_default();
                        // Labelled text/plain, as the official conformance suite's broker does.
                        HttpResponse::Ok()
                            .insert_header(("Cache-Control", "public, max-age=86400, s-maxage=0"))
                            .content_type("text/plain; charset=utf-8")
                            .body(keys)
                    }),
                )
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen test broker")
        .run();
        actix_web::rt::spawn(server);
        broker
    }

    /// Changes one field of the discovery document it serves from now on.
    pub fn set_discovery(&self, field: &str, value: &str) {
        if let Ok(mut doc) = self.discovery.write() {
            doc[field] = json!(value);
        }
    }

    /// The claims the broker would put in a token for this sign-in.
    pub fn claims(&self, client_id: &str, nonce: &str, email: &str) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({
            "iss": self.origin,
            "aud": client_id,
            "exp": now + 600,
            "iat": now,
            "auth_time": now,
            "nonce": nonce,
            "email": email,
            "email_original": email,
            "email_verified": true,
            "sub": email,
        })
    }

    /// A token as the broker would sign it.
    pub fn token(&self, claims: &Value) -> String {
        if self.rotated.load(Ordering::SeqCst) {
            let header = json!({ "alg": "RS256", "typ": "JWT", "kid": NEXT_KEY.kid });
            sign(&header, claims, Signature::Rs256(&NEXT_KEY))
        } else {
            sign(&rs256_header(), claims, Signature::Rs256(&BROKER_KEY))
        }
    }

    /// What a broker restarted with in-memory keys does: it publishes a new key (and no
    /// longer the old one), and signs with it from now on.
    pub fn restart_with_new_keys(&self) {
        if let Ok(mut published) = self.published.write() {
            *published = key_set(&NEXT_KEY);
        }
        self.rotated.store(true, Ordering::SeqCst);
    }
}

/// `GET /auth`: what the real broker does after the visitor confirmed their address, in one
/// page: a form that posts the token to the site's `redirect_uri`. The page is sandboxed as
/// the real broker's is, so the browser sends the POST cross-site with `Origin: null`. A
/// person (or a test) presses its button.
async fn auth_page(
    state: web::Data<BrokerState>,
    query: web::Query<std::collections::HashMap<String, String>>,
) -> HttpResponse {
    let get = |k: &str| query.get(k).cloned().unwrap_or_default();
    let now = chrono::Utc::now().timestamp();
    let email = get("login_hint").to_lowercase();
    let claims = json!({
        "iss": state.discovery.read().map(|d| d["issuer"].clone()).unwrap_or_default(),
        "aud": get("client_id"),
        "exp": now + 600,
        "iat": now,
        "nonce": get("nonce"),
        "email": email,
        "email_original": get("login_hint"),
        "email_verified": true,
        "sub": email,
    });
    let token = sign(&rs256_header(), &claims, Signature::Rs256(&BROKER_KEY));
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('"', "&quot;")
            .replace('<', "&lt;")
    };
    let body = format!(
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Test broker</title></head>
<body><main><h1>Test broker</h1><p>Signing in as {email}.</p>
<form method="post" action="{action}">
<input type="hidden" name="id_token" value="{token}">
<input type="hidden" name="state" value="{state}">
<button type="submit" id="continue">Continue</button>
</form></main></body></html>"#,
        email = escape(&email),
        action = escape(&get("redirect_uri")),
        state = escape(&get("state")),
    );
    HttpResponse::Ok()
        .insert_header(("Content-Security-Policy", "sandbox allow-forms"))
        .content_type("text/html; charset=utf-8")
        .body(body)
}

/// The header of the broker's tokens.
pub fn rs256_header() -> Value {
    json!({ "alg": "RS256", "typ": "JWT", "kid": BROKER_KEY.kid })
}
