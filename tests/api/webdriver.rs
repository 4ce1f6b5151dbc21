//! A small WebDriver client (over awc) driving Debian's Chromium through chromedriver, with a
//! screenshot of every page and an optional axe-core accessibility check.
//!
//! Needs `chromium` and `chromium-driver`. Without them the browser tests say so and pass,
//! unless `CLUBHOUSE_REQUIRE_BROWSER` is set, as CI does.

use std::cell::Cell;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A running chromedriver.
pub struct Driver {
    _child: Child,
    base: String,
    client: awc::Client,
}

/// Whether the browser tests must run here (CI) rather than be skipped.
fn required() -> bool {
    std::env::var_os("CLUBHOUSE_REQUIRE_BROWSER").is_some()
}

impl Driver {
    /// Starts chromedriver, or `None` (with one line saying why) when Chromium is missing.
    pub async fn start() -> Option<Driver> {
        let present = ["/usr/bin/chromium", "/usr/bin/chromedriver"]
            .iter()
            .all(|p| std::path::Path::new(p).exists());
        if !present {
            let msg = "Chromium is not installed (apt-get install chromium chromium-driver)";
            assert!(!required(), "{msg}, and CLUBHOUSE_REQUIRE_BROWSER is set");
            eprintln!("browser tests skipped: {msg}");
            return None;
        }
        let port = crate::helpers::free_port();
        let child = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let driver = Driver {
            _child: child,
            base: format!("http://127.0.0.1:{port}"),
            client: awc::Client::builder()
                .timeout(Duration::from_secs(60))
                .finish(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut res) = driver
                .client
                .get(format!("{}/status", driver.base))
                .send()
                .await
                && let Ok(v) = res.json::<Value>().await
                && v["value"]["ready"] == true
            {
                return Some(driver);
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.client.get(url),
            "DELETE" => self.client.delete(url),
            _ => self.client.post(url),
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

    /// A new browser with an empty profile of its own.
    pub async fn browser(&self, name: &str) -> Browser<'_> {
        let profile =
            std::env::temp_dir().join(format!("clubhouse-chromium-{}", uuid::Uuid::new_v4()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    format!("--user-data-dir={}", profile.display()),
                    "--window-size=1000,900",
                ],
            },
        }}});
        let v = self.call("POST", "/session", Some(caps)).await;
        Browser {
            driver: self,
            id: v["sessionId"].as_str().expect("session id").to_owned(),
            name: name.to_owned(),
            shots: Cell::new(0),
            profile,
        }
    }
}

/// One browser window with its own profile.
pub struct Browser<'a> {
    driver: &'a Driver,
    id: String,
    name: String,
    shots: Cell<u32>,
    profile: PathBuf,
}

/// Where screenshots go: `target/screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.parent()?.parent()?.to_path_buf()))
        .expect("target dir");
    let dir = target.join("screenshots");
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
        self.driver
            .call(method, &format!("/session/{}{path}", self.id), body)
            .await
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

    /// The page's HTML.
    pub async fn source(&self) -> String {
        self.call("GET", "/source", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn element(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let res = self
                .driver
                .client
                .post(format!("{}/session/{}/element", self.driver.base, self.id))
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
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
