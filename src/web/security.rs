//! Defenses at the HTTP edge: the sign-in binding cookie, CSRF tokens, the client IP behind
//! trusted proxies, and the security headers every response carries.

use std::net::IpAddr;

use actix_web::body::MessageBody;
use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{DefaultHeaders, Next};
use actix_web::{HttpMessage, HttpRequest, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::config::{Config, canonical_ip};
use crate::domain::portier::ATTEMPT_TTL;

/// The names of the site's cookies. On https each carries the `__Host-` prefix: browsers then
/// accept it only with `Secure`, `Path=/` and no `Domain`, so a page on a sibling subdomain
/// (`blog.example.org` beside `club.example.org`) can neither plant nor shadow it. On
/// `http://localhost` browsers ignore prefixes' rules, so the plain names serve there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieNames {
    /// The session cookie.
    pub session: &'static str,
    /// The cookie that binds a sign-in to the browser that started it.
    pub binding: &'static str,
    /// The cookie that holds this browser's CSRF secret.
    pub csrf: &'static str,
}

impl CookieNames {
    /// The plain names, for a site on http (development on localhost).
    pub const PLAIN: CookieNames = CookieNames {
        session: "clubhouse_session",
        binding: "clubhouse_login",
        csrf: "clubhouse_csrf",
    };
    /// The prefixed names, for a site on https.
    pub const HOST: CookieNames = CookieNames {
        session: "__Host-clubhouse_session",
        binding: "__Host-clubhouse_login",
        csrf: "__Host-clubhouse_csrf",
    };

    /// The names for this site.
    pub fn for_site(config: &Config) -> CookieNames {
        if config.is_https() {
            CookieNames::HOST
        } else {
            CookieNames::PLAIN
        }
    }

    /// The path of the binding cookie: only `/verify` reads it; `__Host-` requires `/`.
    fn binding_path(&self) -> &'static str {
        if self.binding.starts_with("__Host-") {
            "/"
        } else {
            "/verify"
        }
    }
}
/// The form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf_token";

/// 32 random bytes, base64url: CSRF secrets, binding cookies, session keys.
pub fn random_token() -> String {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

/// SHA-256 as lowercase hex: how binding cookies and addresses are kept when only a
/// comparison is needed.
pub fn sha256_hex(value: &str) -> String {
    format!("{:x}", Sha256::digest(value.as_bytes()))
}

/// A fresh binding cookie for `POST /login`, and the hash to store with the attempt.
///
/// `SameSite=None` so that the broker's cross-site POST to `/verify` carries it; `Secure`
/// because browsers require it with `SameSite=None` (they accept it on `http://localhost`);
/// `Path=/verify` on http, so no other request carries it, and `/` on https, as its `__Host-`
/// prefix requires; it lives as long as the attempt.
pub fn new_binding(names: CookieNames) -> (Cookie<'static>, String) {
    let value = random_token();
    let hash = sha256_hex(&value);
    let cookie = Cookie::build(names.binding, value)
        .path(names.binding_path())
        .http_only(true)
        .secure(true)
        .same_site(SameSite::None)
        .max_age(CookieDuration::seconds(ATTEMPT_TTL.as_secs() as i64))
        .finish();
    (cookie, hash)
}

/// The hash of the binding cookie this request carries, if any.
pub fn presented_binding(req: &HttpRequest, names: CookieNames) -> Option<String> {
    req.cookie(names.binding).map(|c| sha256_hex(c.value()))
}

/// A cookie that removes the binding cookie once it has served.
pub fn spent_binding(names: CookieNames) -> Cookie<'static> {
    let mut cookie = Cookie::build(names.binding, "")
        .path(names.binding_path())
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
    let names = req
        .app_data::<web::Data<Config>>()
        .map_or(CookieNames::PLAIN, |c| CookieNames::for_site(c));
    let existing = req
        .cookie(names.csrf)
        .map(|c| c.value().to_owned())
        .filter(|v| v.len() == 43 && URL_SAFE_NO_PAD.decode(v).is_ok());
    let secure = names == CookieNames::HOST;
    let (secret, fresh) = match existing {
        Some(v) => (v, false),
        None => (random_token(), true),
    };
    req.extensions_mut().insert(CsrfSecret(secret.clone()));
    let mut res = next.call(req).await?;
    if fresh {
        let cookie = Cookie::build(names.csrf, secret)
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
    pub fn check(&self, submitted: Option<&str>) -> Result<(), CsrfRejected> {
        if self.from_elsewhere {
            return Err(CsrfRejected("request from another site"));
        }
        let submitted = submitted.ok_or(CsrfRejected("no token"))?;
        let bytes = hex_decode(submitted).ok_or(CsrfRejected("malformed token"))?;
        sign(&self.key, &self.secret)
            .verify_slice(&bytes)
            .map_err(|_| CsrfRejected("wrong token"))
    }

    /// The token of this request's browser (from the secret the CSRF middleware put in the
    /// request), and whether the request came from another site. `None` when the middleware
    /// or the key is not installed.
    pub fn for_request(req: &HttpRequest) -> Option<Csrf> {
        let secret = req.extensions().get::<CsrfSecret>().cloned()?;
        let key = req.app_data::<web::Data<CsrfKey>>().map(|k| k.0.clone())?;
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
        let CsrfSecret(secret) = secret;
        Some(Csrf {
            token: format!("{:x}", sign(&key, &secret).finalize().into_bytes()),
            from_elsewhere,
            key,
            secret,
        })
    }
}

/// Why a submitted CSRF token was refused (for the log; the visitor reads one page for all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsrfRejected(pub &'static str);

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The network a client is counted under by the rate limits: an IPv4 address by itself, an
/// IPv6 address by its /64 (one host is routinely given a whole /64, so counting single IPv6
/// addresses would let it choose new ones at will).
pub fn client_network(ip: IpAddr) -> String {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            format!("{}/64", std::net::Ipv6Addr::from(prefix))
        }
    }
}

/// The visitor's IP: the socket's peer, or, when the peer is a trusted proxy, the nearest
/// address in `X-Forwarded-For` that is not one of the trusted proxies. Addresses are compared
/// in their [canonical](canonical_ip) form.
pub fn client_ip(req: &HttpRequest, trusted: &[IpAddr]) -> Option<IpAddr> {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|t| canonical_ip(*t) == ip);
    let peer = canonical_ip(req.peer_addr()?.ip());
    if !is_trusted(peer) {
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
        match hop.parse::<IpAddr>().map(canonical_ip) {
            Ok(ip) if is_trusted(ip) => nearest = ip,
            Ok(ip) => return Some(ip),
            // Garbage in the header: trust nothing further out.
            Err(_) => break,
        }
    }
    Some(nearest)
}

/// The client network of a request, as the rate limits count it (see [`client_network`]);
/// `unknown` when the request has no peer address.
pub fn network_of(req: &HttpRequest, trusted: &[IpAddr]) -> String {
    client_ip(req, trusted).map_or_else(|| "unknown".to_owned(), client_network)
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

    #[test]
    fn ipv4_mapped_addresses_are_their_ipv4_address() {
        // A server on [::] sees its IPv4 proxy as ::ffff:10.0.0.1.
        let req = TestRequest::default()
            .peer_addr("[::ffff:10.0.0.1]:5000".parse().unwrap())
            .insert_header(("x-forwarded-for", "::ffff:198.51.100.7"))
            .to_http_request();
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(
            client_ip(&req, &[proxy]),
            Some("198.51.100.7".parse().unwrap())
        );
        // And a proxy configured in its mapped form matches an IPv4 peer.
        let req = TestRequest::default()
            .peer_addr("10.0.0.1:5000".parse().unwrap())
            .insert_header(("x-forwarded-for", "198.51.100.8"))
            .to_http_request();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            client_ip(&req, &[mapped]),
            Some("198.51.100.8".parse().unwrap())
        );
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_network(a), "2001:db8:1:2::/64");
        assert_eq!(client_network(a), client_network(b));
        assert_ne!(client_network(a), client_network(other));
        assert_eq!(client_network("192.0.2.1".parse().unwrap()), "192.0.2.1");
        assert_eq!(
            client_network("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1"
        );
    }
}
