//! The browser a test drives over HTTP: cookies kept like a browser keeps them, our forms with
//! their CSRF token, the broker's cross-site POST, and every page kept for the HTML checker.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;

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
