//! A small WebDriver client (over awc) driving Debian's Chromium through chromedriver and
//! Debian's Firefox ESR through geckodriver, with a screenshot of every page and an optional
//! axe-core accessibility check. Each browser test runs in every [`Kind`].
//!
//! Needs `chromium` and `chromium-driver`, and `firefox-esr` with `geckodriver` (`cargo install
//! geckodriver --locked`). Without one of them its tests say so and pass, unless
//! `CLUBHOUSE_REQUIRE_BROWSER` is set, as CI does: then both are required.

use std::cell::Cell;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Which browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Debian's Chromium, through chromedriver.
    Chromium,
    /// Debian's Firefox ESR, through geckodriver.
    Firefox,
}

impl Kind {
    /// Every browser the tests run in.
    pub const ALL: [Kind; 2] = [Kind::Chromium, Kind::Firefox];

    fn name(self) -> &'static str {
        match self {
            Kind::Chromium => "chromium",
            Kind::Firefox => "firefox",
        }
    }

    /// The browser and its driver, if both are installed.
    fn binaries(self) -> Result<(PathBuf, PathBuf), &'static str> {
        match self {
            Kind::Chromium => {
                let (browser, driver) = ("/usr/bin/chromium", "/usr/bin/chromedriver");
                if std::path::Path::new(browser).exists() && std::path::Path::new(driver).exists() {
                    Ok((browser.into(), driver.into()))
                } else {
                    Err("Chromium is not installed (apt-get install chromium chromium-driver)")
                }
            }
            Kind::Firefox => {
                let browser = PathBuf::from("/usr/bin/firefox-esr");
                let driver = std::env::var_os("PATH")
                    .into_iter()
                    .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                    .chain(std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin")))
                    .map(|dir| dir.join("geckodriver"))
                    .find(|p| p.exists());
                match driver {
                    Some(driver) if browser.exists() => Ok((browser, driver)),
                    _ => Err(
                        "Firefox is not installed (apt-get install firefox-esr; cargo install \
                         geckodriver --locked)",
                    ),
                }
            }
        }
    }
}

/// One running chromedriver or geckodriver process, and where it listens.
struct Endpoint {
    _child: Child,
    base: String,
}

/// Starts the driver program and waits (bounded) until it is ready.
async fn spawn_endpoint(
    kind: Kind,
    driver_binary: &std::path::Path,
    client: &awc::Client,
) -> Endpoint {
    let port = crate::helpers::free_port();
    let mut command = Command::new(driver_binary);
    match kind {
        Kind::Chromium => command.arg(format!("--port={port}")),
        Kind::Firefox => command.args(["--host", "127.0.0.1", "--port", &port.to_string()]),
    };
    let child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the webdriver");
    let endpoint = Endpoint {
        _child: child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut res) = client.get(format!("{}/status", endpoint.base)).send().await
            && let Ok(v) = res.json::<Value>().await
            && v["value"]["ready"] == true
        {
            return endpoint;
        }
        assert!(
            Instant::now() < deadline,
            "the {} driver did not start",
            kind.name()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One WebDriver request; the answer's `value`.
async fn call_at(
    client: &awc::Client,
    base: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Value {
    let url = format!("{base}{path}");
    let req = match method {
        "GET" => client.get(url),
        "DELETE" => client.delete(url),
        _ => client.post(url),
    };
    let mut res = match body {
        Some(b) => req.send_json(&b).await,
        None => req.send().await,
    }
    .expect("webdriver request");
    let v: Value = res.json().limit(64 << 20).await.expect("webdriver answer");
    if !res.status().is_success() {
        panic!("webdriver {method} {path}: {v}");
    }
    v["value"].clone()
}

/// A running chromedriver or geckodriver. Chromium's driver serves any number of windows;
/// geckodriver serves one session at a time, so each further Firefox window gets a
/// geckodriver of its own.
pub struct Driver {
    main: Endpoint,
    main_in_use: Cell<bool>,
    driver_binary: PathBuf,
    client: awc::Client,
    kind: Kind,
    browser_binary: PathBuf,
}

/// Whether the browser tests must run here (CI) rather than be skipped.
fn required() -> bool {
    std::env::var_os("CLUBHOUSE_REQUIRE_BROWSER").is_some()
}

impl Driver {
    /// Starts the driver of `kind`, or `None` (with one line saying why) when that browser
    /// is missing.
    pub async fn start(kind: Kind) -> Option<Driver> {
        let (browser_binary, driver_binary) = match kind.binaries() {
            Ok(found) => found,
            Err(msg) => {
                assert!(!required(), "{msg}, and CLUBHOUSE_REQUIRE_BROWSER is set");
                eprintln!("browser tests skipped in {}: {msg}", kind.name());
                return None;
            }
        };
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(60))
            .finish();
        let main = spawn_endpoint(kind, &driver_binary, &client).await;
        Some(Driver {
            main,
            main_in_use: Cell::new(false),
            driver_binary,
            client,
            kind,
            browser_binary,
        })
    }

    /// A new browser with an empty profile of its own.
    pub async fn browser(&self, name: &str) -> Browser<'_> {
        let profile = std::env::temp_dir().join(format!(
            "clubhouse-{}-{}",
            self.kind.name(),
            uuid::Uuid::new_v4()
        ));
        let binary = self.browser_binary.display().to_string();
        let caps = match self.kind {
            Kind::Chromium => json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": binary,
                    "args": [
                        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        format!("--user-data-dir={}", profile.display()),
                        "--window-size=1000,900",
                    ],
                },
            }}}),
            // geckodriver makes a new, empty profile for every session. The preferences keep
            // Firefox off the network this machine does not have.
            Kind::Firefox => json!({"capabilities": {"alwaysMatch": {
                "browserName": "firefox",
                "moz:firefoxOptions": {
                    "binary": binary,
                    "args": ["-headless", "--width=1000", "--height=900"],
                    "prefs": {
                        "app.update.auto": false,
                        "app.update.enabled": false,
                        "browser.safebrowsing.malware.enabled": false,
                        "browser.safebrowsing.phishing.enabled": false,
                        "browser.shell.checkDefaultBrowser": false,
                        "browser.startup.homepage_override.mstone": "ignore",
                        "datareporting.healthreport.uploadEnabled": false,
                        "datareporting.policy.dataSubmissionEnabled": false,
                        "extensions.update.enabled": false,
                        "media.gmp-manager.updateEnabled": false,
                        "network.captive-portal-service.enabled": false,
                        "network.connectivity-service.enabled": false,
                        "network.dns.disablePrefetch": true,
                        "network.trr.mode": 5,
                        "toolkit.telemetry.enabled": false,
                    },
                },
            }}}),
        };
        let own = if self.kind == Kind::Firefox && self.main_in_use.get() {
            Some(spawn_endpoint(self.kind, &self.driver_binary, &self.client).await)
        } else {
            self.main_in_use.set(true);
            None
        };
        let base = own.as_ref().unwrap_or(&self.main).base.clone();
        let v = call_at(&self.client, &base, "POST", "/session", Some(caps)).await;
        let browser = Browser {
            driver: self,
            base,
            uses_main: own.is_none(),
            _own: own,
            id: v["sessionId"].as_str().expect("session id").to_owned(),
            name: match self.kind {
                Kind::Chromium => name.to_owned(),
                kind => format!("{}-{name}", kind.name()),
            },
            shots: Cell::new(0),
            profile,
        };
        if self.kind == Kind::Firefox {
            browser.resize(1000, 900).await;
        }
        browser
    }
}

/// One browser window with its own profile.
pub struct Browser<'a> {
    driver: &'a Driver,
    /// The driver process serving this window.
    base: String,
    uses_main: bool,
    _own: Option<Endpoint>,
    id: String,
    name: String,
    shots: Cell<u32>,
    profile: PathBuf,
}

/// Where screenshots go: `target/screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let dir = crate::helpers::target_dir().join("screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

fn axe_source() -> Option<String> {
    let path = std::env::var_os("AXE_CORE_JS")
        .map(PathBuf::from)
        .or_else(|| {
            let home = std::env::var_os("HOME")?;
            Some(PathBuf::from(home).join(".cache/clubhouse-npm/node_modules/axe-core/axe.min.js"))
        })?;
    std::fs::read_to_string(path).ok()
}

impl Browser<'_> {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.id);
        call_at(&self.driver.client, &self.base, method, &path, body).await
    }

    /// Opens a URL.
    pub async fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url }))).await;
    }

    /// Resizes the window (a phone is about 390 by 844).
    pub async fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        self.call("GET", "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The page's HTML. While the window is between two pages, Firefox has no document to
    /// give ("documentElement is null"): asked again until one has loaded, for 10 s at most.
    pub async fn source(&self) -> String {
        let url = format!("{}/session/{}/source", self.base, self.id);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut res = self
                .driver
                .client
                .get(&url)
                .send()
                .await
                .expect("webdriver request");
            let v: Value = res.json().limit(64 << 20).await.expect("webdriver answer");
            if res.status().is_success() {
                return v["value"].as_str().unwrap_or_default().to_owned();
            }
            let between_pages = v["value"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("documentElement is null"));
            assert!(
                between_pages && Instant::now() < deadline,
                "webdriver GET /source: {v}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn element(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let res = self
                .driver
                .client
                .post(format!("{}/session/{}/element", self.base, self.id))
                .send_json(&json!({"using": "css selector", "value": css}))
                .await;
            if let Ok(mut res) = res
                && res.status().is_success()
                && let Ok(v) = res.json::<Value>().await
            {
                return v["value"][ELEMENT].as_str().expect("element id").to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no element {css} on {}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types into the element matching `css`.
    pub async fn type_into(&self, css: &str, text: &str) {
        let el = self.element(css).await;
        self.call(
            "POST",
            &format!("/element/{el}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) {
        let el = self.element(css).await;
        self.call("POST", &format!("/element/{el}/click"), Some(json!({})))
            .await;
    }

    /// Waits (bounded) until the URL satisfies `pred`; returns it.
    pub async fn wait_for_url(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let url = self.url().await;
            if pred(&url) {
                return url;
            }
            assert!(
                Instant::now() < deadline,
                "waited for {what}, still at {url}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (bounded) until the page contains `text`.
    pub async fn wait_for_text(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let html = self.source().await;
            if html.contains(text) {
                return html;
            }
            assert!(
                Instant::now() < deadline,
                "waited for {text:?} on {}:\n{html}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a PNG of the page under `target/screenshots/`, and, when axe-core is available,
    /// checks the page for serious or critical accessibility violations.
    pub async fn capture(&self, label: &str) {
        let n = self.shots.get() + 1;
        self.shots.set(n);
        let png = self.call("GET", "/screenshot", None).await;
        let bytes = STANDARD
            .decode(png.as_str().unwrap_or_default())
            .expect("png");
        let file = screenshot_dir().join(format!("{}-{n:02}-{label}.png", self.name));
        std::fs::write(&file, bytes).expect("write screenshot");
        self.check_accessibility(label).await;
    }

    async fn check_accessibility(&self, label: &str) {
        let Some(axe) = axe_source() else {
            assert!(
                std::env::var_os("CLUBHOUSE_REQUIRE_AXE").is_none(),
                "axe-core is missing and CLUBHOUSE_REQUIRE_AXE is set"
            );
            return;
        };
        // Our own pages only: the broker's are not ours to fix.
        let url = self.url().await;
        if !url.starts_with("http://localhost") {
            return;
        }
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": format!("{axe}\nreturn true;"), "args": []})),
        )
        .await;
        let script = "const done = arguments[arguments.length - 1];\
            axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations\
              .filter(v => v.impact === 'serious' || v.impact === 'critical')\
              .map(v => v.impact + ' ' + v.id + ': ' + v.help + ' @ ' + v.nodes.map(n => n.target.join(' ')).join(', '))));";
        let found = self
            .call(
                "POST",
                "/execute/async",
                Some(json!({"script": script, "args": []})),
            )
            .await;
        let found: Vec<String> = serde_json::from_value(found).unwrap_or_default();
        assert!(
            found.is_empty(),
            "accessibility problems on {label} ({url}): {found:#?}"
        );
    }

    /// Closes the window and removes its profile.
    pub async fn close(self) {
        self.call("DELETE", "", None).await;
        if self.uses_main {
            self.driver.main_in_use.set(false);
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
