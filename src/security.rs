//! Defenses at the HTTP edge: the sign-in binding cookie, CSRF tokens, the client IP behind
//! trusted proxies, and the security headers every response carries.

use std::net::IpAddr;

use actix_web::body::MessageBody;
use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::{DefaultHeaders, Next};
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::future::{Ready, ready};

use crate::config::Config;
use crate::error::AppError;
use crate::portier::ATTEMPT_TTL;
use crate::sessions::hex;

/// The cookie that binds a sign-in to the browser that started it.
pub const BINDING_COOKIE: &str = "clubhouse_login";
/// The cookie that holds this browser's CSRF secret.
pub const CSRF_COOKIE: &str = "clubhouse_csrf";
/// The form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf_token";

fn random_token() -> String {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

/// SHA-256 as lowercase hex: how binding cookies and addresses are kept when only a
/// comparison is needed.
pub fn sha256_hex(value: &str) -> String {
    hex(&Sha256::digest(value.as_bytes()))
}

/// A fresh binding cookie for `POST /login`, and the hash to store with the attempt.
///
/// `SameSite=None` so that the broker's cross-site POST to `/verify` carries it; `Secure`
/// because browsers require it with `SameSite=None` (they accept it on `http://localhost`);
/// `Path=/verify` so no other request carries it; it lives as long as the attempt.
pub fn new_binding() -> (Cookie<'static>, String) {
    let value = random_token();
    let hash = sha256_hex(&value);
    let cookie = Cookie::build(BINDING_COOKIE, value)
        .path("/verify")
        .http_only(true)
        .secure(true)
        .same_site(SameSite::None)
        .max_age(CookieDuration::seconds(ATTEMPT_TTL.as_secs() as i64))
        .finish();
    (cookie, hash)
}

/// The hash of the binding cookie this request carries, if any.
pub fn presented_binding(req: &HttpRequest) -> Option<String> {
    req.cookie(BINDING_COOKIE).map(|c| sha256_hex(c.value()))
}

/// A cookie that removes the binding cookie once it has served.
pub fn spent_binding() -> Cookie<'static> {
    let mut cookie = Cookie::build(BINDING_COOKIE, "")
        .path("/verify")
        .http_only(true)
        .secure(true)
        .same_site(SameSite::None)
        .finish();
    cookie.make_removal();
    cookie
}

/// The key CSRF tokens are signed with (derived from the session cookie key).
#[derive(Clone)]
pub struct CsrfKey(pub Vec<u8>);

/// This browser's CSRF secret (from its cookie, or new), placed in the request by
/// [`csrf_cookie`].
#[derive(Clone)]
struct CsrfSecret(String);

/// Middleware: makes sure every browser holds a CSRF secret cookie, setting one when absent.
pub async fn csrf_cookie(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let existing = req
        .cookie(CSRF_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| v.len() == 43 && URL_SAFE_NO_PAD.decode(v).is_ok());
    let secure = req
        .app_data::<web::Data<Config>>()
        .is_some_and(|c| c.is_https());
    let (secret, fresh) = match existing {
        Some(v) => (v, false),
        None => (random_token(), true),
    };
    req.extensions_mut().insert(CsrfSecret(secret.clone()));
    let mut res = next.call(req).await?;
    if fresh {
        let cookie = Cookie::build(CSRF_COOKIE, secret)
            .path("/")
            .http_only(true)
            .secure(secure)
            .same_site(SameSite::Lax)
            .finish();
        res.response_mut().add_cookie(&cookie)?;
    }
    Ok(res)
}

/// The CSRF token for this browser's forms, and the check of a submitted one.
///
/// A signed double-submit token: the form carries HMAC(key, secret), the cookie carries the
/// secret. A page on another site can neither read the token nor make one for a cookie it
/// planted. On top of that, a state-changing request must come from our own origin according
/// to `Origin` and `Sec-Fetch-Site`, when the browser sends them.
pub struct Csrf {
    token: String,
    from_elsewhere: bool,
    key: Vec<u8>,
    secret: String,
}

fn sign(key: &[u8], secret: &str) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(secret.as_bytes());
    mac
}

impl Csrf {
    /// The token to put in the forms of this page.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Accepts the submitted token only if it was made for this browser and the request comes
    /// from this site; otherwise a 403 before anything is changed.
    pub fn check(&self, submitted: Option<&str>) -> Result<(), AppError> {
        if self.from_elsewhere {
            return Err(AppError::CsrfRejected("request from another site"));
        }
        let submitted = submitted.ok_or(AppError::CsrfRejected("no token"))?;
        let bytes = hex_decode(submitted).ok_or(AppError::CsrfRejected("malformed token"))?;
        sign(&self.key, &self.secret)
            .verify_slice(&bytes)
            .map_err(|_| AppError::CsrfRejected("wrong token"))
    }
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl FromRequest for Csrf {
    type Error = AppError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let secret = req.extensions().get::<CsrfSecret>().cloned();
        let key = req.app_data::<web::Data<CsrfKey>>().map(|k| k.0.clone());
        let public_url = req
            .app_data::<web::Data<Config>>()
            .map(|c| c.public_url.clone())
            .unwrap_or_default();
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let from_elsewhere = header("origin").is_some_and(|o| o != public_url)
            || header("sec-fetch-site").is_some_and(|s| s != "same-origin" && s != "none");
        ready(match (secret, key) {
            (Some(CsrfSecret(secret)), Some(key)) => Ok(Csrf {
                token: hex(&sign(&key, &secret).finalize().into_bytes()),
                from_elsewhere,
                key,
                secret,
            }),
            _ => Err(AppError::internal(anyhow::anyhow!(
                "the CSRF middleware or key is not installed"
            ))),
        })
    }
}

/// The visitor's IP: the socket's peer, or, when the peer is a trusted proxy, the nearest
/// address in `X-Forwarded-For` that is not one of the trusted proxies.
pub fn client_ip(req: &HttpRequest, trusted: &[IpAddr]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let hops: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut nearest = peer;
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => nearest = ip,
            Ok(ip) => return Some(ip),
            // Garbage in the header: trust nothing further out.
            Err(_) => break,
        }
    }
    Some(nearest)
}

/// Headers on every response. The Content-Security-Policy allows no script and no inline
/// style; forms may post to us and be redirected to the broker (the sign-in form's 303).
pub fn security_headers(config: &Config) -> DefaultHeaders {
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' {}; \
         frame-ancestors 'none'; base-uri 'none'",
        config.broker_url
    );
    let mut headers = DefaultHeaders::new()
        .add(("Content-Security-Policy", csp))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("Referrer-Policy", "same-origin"))
        .add(("X-Frame-Options", "DENY"))
        // Every page is personal or short-lived; the stylesheet sets its own caching.
        .add(("Cache-Control", "no-store"));
    if config.is_https() {
        headers = headers.add(("Strict-Transport-Security", "max-age=31536000"));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn client_ip_believes_only_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let req = TestRequest::default()
            .peer_addr("10.0.0.1:5000".parse().unwrap())
            .insert_header(("x-forwarded-for", "198.51.100.7, 203.0.113.9"))
            .to_http_request();
        assert_eq!(
            client_ip(&req, &[proxy]),
            Some("203.0.113.9".parse().unwrap())
        );
        assert_eq!(
            client_ip(&req, &[]),
            Some(proxy),
            "untrusted peer: header ignored"
        );

        let req = TestRequest::default()
            .peer_addr("10.0.0.1:5000".parse().unwrap())
            .insert_header(("x-forwarded-for", "198.51.100.7, 10.0.0.2"))
            .to_http_request();
        let trusted = [proxy, "10.0.0.2".parse().unwrap()];
        assert_eq!(
            client_ip(&req, &trusted),
            Some("198.51.100.7".parse().unwrap())
        );
    }
}
