//! The dashboard in a real browser: Debian's headless Chromium driven over WebDriver
//! (`chromedriver`, through `fantoccini`), against real frames. The DOM hooks, URLs and session
//! rules the tests rely on are the dashboard's contract (issue 17). Every run saves screenshots
//! of the main pages under `target/screenshots/`.
//!
//! Timeouts are generous (20 s per wait) and nothing asserts on timing: Chromium and a frame
//! share two slow cores with the rest of the suite.

mod admin;
mod navigation;
mod packets_ui;

use crate::harness::{Frame, require};
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a wait for the page lasts before the test fails.
const WAIT: Duration = Duration::from_secs(20);

/// Where screenshots go: `target/screenshots/` of this build (`CARGO_TARGET_TMPDIR` is
/// `target/tmp`, so this follows `CARGO_TARGET_DIR` too).
pub fn screenshot_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let target = tmp.parent().map(PathBuf::from).unwrap_or(tmp);
    target.join("screenshots")
}

/// A headless Chromium behind its own `chromedriver`, with a fresh profile, pointed at a frame.
/// Dropping it kills chromedriver and the browser (their whole process group), even when the
/// test panics before [`close`](Self::close).
pub struct Browser {
    pub client: Client,
    _driver: Driver,
    /// The browser profile (`--user-data-dir`): fresh, so no cookie survives from another test.
    _profile: tempfile::TempDir,
    /// The frame's `http://127.0.0.1:PORT`.
    pub base: String,
    /// The test's name, for screenshot file names.
    test: String,
}

/// What a `fetch` run inside the page answered.
#[derive(Debug)]
pub struct PageResponse {
    pub status: u16,
    pub body: String,
}

impl PageResponse {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

impl Browser {
    /// Starts chromedriver and a browser session for `frame`; `None` (after a skip notice) when
    /// Chromium or chromedriver is not installed outside CI, a failure under `CI=true`.
    pub async fn start(test: &str, frame: &Frame) -> Option<Self> {
        if !require("chromium", test) || !require("chromedriver", test) {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Its own process group, so that drop ends chromedriver and every browser process it
        // started, even when the test panics before closing the session.
        let driver = Driver(
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap(),
        );
        let profile = tempfile::tempdir().unwrap();
        let client = connect(port, &profile).await;
        let browser = Self {
            client,
            _driver: driver,
            _profile: profile,
            base: frame.base.clone(),
            test: test.to_string(),
        };
        browser
            .client
            .set_window_size(1280, 900)
            .await
            .unwrap_or_else(|e| panic!("{test}: setting the window size: {e}"));
        Some(browser)
    }

    /// Opens `path` of the frame and waits until the document has loaded.
    pub async fn goto(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        self.client
            .goto(&url)
            .await
            .unwrap_or_else(|e| panic!("{}: opening {url}: {e}", self.test));
    }

    /// The current URL's path and query, e.g. `/packets/draft`.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        }
    }

    /// Waits (up to 20 s) for an element matching `css` in the current frame.
    pub async fn wait(&self, css: &str) -> Element {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.client.find(Locator::Css(css)).await {
                Ok(element) => return element,
                Err(e) if e.is_no_such_element() && Instant::now() < deadline => {}
                Err(e) => panic!(
                    "{}: waiting for `{css}` on {}: {e}\n{}",
                    self.test,
                    self.path().await,
                    self.excerpt().await
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (up to 20 s) until `check` holds; panics with `what` and the page otherwise.
    pub async fn until(&self, what: &str, mut check: impl AsyncFnMut() -> bool) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{}: timed out waiting for: {what} (on {})\n{}",
            self.test,
            self.path().await,
            self.excerpt().await
        );
    }

    /// Whether an element matches `css` now (no waiting).
    pub async fn exists(&self, css: &str) -> bool {
        match self.client.find_all(Locator::Css(css)).await {
            Ok(found) => !found.is_empty(),
            Err(e) => panic!("{}: looking for `{css}`: {e}", self.test),
        }
    }

    /// The `textContent` of the first element matching `css` (waits for it), trimmed. Read in
    /// one script, so a list the page redraws meanwhile cannot leave a stale element.
    pub async fn text(&self, css: &str) -> String {
        let script =
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;";
        let deadline = Instant::now() + WAIT;
        loop {
            if let Value::String(text) = self.js(script, vec![json!(css)]).await {
                return text.trim().to_string();
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}: waiting for the text of `{css}` on {}\n{}",
                    self.test,
                    self.path().await,
                    self.excerpt().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The trimmed `textContent` of every element matching `css`, in page order (no waiting).
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let script =
            "return [...document.querySelectorAll(arguments[0])].map((e) => e.textContent.trim());";
        let found = self.js(script, vec![json!(css)]).await;
        found
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect()
    }

    /// Clicks the first element matching `css` (waits for it; again if the page redrew it
    /// between finding and clicking).
    pub async fn click(&self, css: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let element = self.wait(css).await;
            match element.click().await {
                Ok(()) => return,
                Err(e) if e.is_stale_element_reference() && Instant::now() < deadline => {}
                Err(e) => panic!("{}: clicking `{css}`: {e}", self.test),
            }
        }
    }

    /// Replaces the value of the field matching `css` with `text`, as typed keys.
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.wait(css).await;
        element.clear().await.unwrap();
        element
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("{}: typing into `{css}`: {e}", self.test));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the current frame.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("{}: running script: {e}\n{script}", self.test))
    }

    /// `fetch(path)` from the current page, same-origin credentials (the session cookie, if
    /// any), with `headers` and an optional body.
    pub async fn fetch(
        &self,
        method: &str,
        path: &str,
        headers: Value,
        body: Option<&str>,
    ) -> PageResponse {
        let script = r#"
            const [method, path, headers, body, done] = arguments;
            const init = { method, headers, credentials: 'same-origin' };
            if (body !== null) init.body = body;
            fetch(path, init)
              .then(async (r) => done({ status: r.status, body: await r.text() }))
              .catch((e) => done({ status: 0, body: String(e) }));
        "#;
        let answer = self
            .client
            .execute_async(
                script,
                vec![json!(method), json!(path), headers, json!(body)],
            )
            .await
            .unwrap_or_else(|e| panic!("{}: fetch {method} {path}: {e}", self.test));
        PageResponse {
            status: answer["status"].as_u64().unwrap() as u16,
            body: answer["body"].as_str().unwrap_or_default().to_string(),
        }
    }

    /// Switches into the iframe matching `css` (waits for it); [`leave_frame`](Self::leave_frame)
    /// comes back.
    pub async fn enter_frame(&self, css: &str) {
        let element = self.wait(css).await;
        element
            .enter_frame()
            .await
            .unwrap_or_else(|e| panic!("{}: entering frame `{css}`: {e}", self.test));
    }

    /// Back to the parent document (the top one: shard pages are one frame deep).
    pub async fn leave_frame(&self) {
        self.client.enter_parent_frame().await.unwrap();
    }

    /// Whether an alert, confirm or prompt is open (the session leaves them open).
    pub async fn alert_open(&self) -> bool {
        match self.client.get_alert_text().await {
            Ok(_) => true,
            Err(e) if e.is_no_such_alert() => false,
            Err(e) => panic!("{}: asking for an alert: {e}", self.test),
        }
    }

    /// Saves a screenshot of the viewport as `target/screenshots/{test}-{page}.png`.
    pub async fn screenshot(&self, page: &str) -> PathBuf {
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("{}: screenshot of {page}: {e}", self.test));
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}-{page}.png", self.test));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Ends the session (the browser quits), then chromedriver.
    pub async fn close(self) {
        let client = self.client.clone();
        let _ = client.close().await;
        drop(self);
    }

    /// The start of the top document's text, for failure messages.
    async fn excerpt(&self) -> String {
        let script = "return (document.body ? document.body.innerText : '').slice(0, 1500);";
        match self.client.execute(script, vec![]).await {
            Ok(Value::String(text)) => format!("page text: {text}"),
            Ok(other) => format!("page text: {other}"),
            Err(e) => format!("(no page text: {e})"),
        }
    }
}

/// A running chromedriver, leader of its process group (it and the browser it starts).
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for chromedriver on `port` and opens a session: headless Chromium with `profile` and no
/// background networking (the machine's network is closed; Chromium would try Google's hosts).
async fn connect(port: u16, profile: &tempfile::TempDir) -> Client {
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not listen on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let options = json!({
        "binary": "/usr/bin/chromium",
        "args": [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            format!("--user-data-dir={}", profile.path().display()),
            "--window-size=1280,900",
        ],
    });
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("browserName".into(), json!("chrome"));
    capabilities.insert("goog:chromeOptions".into(), options);
    // Leave alerts open, so a test can see one (the XSS test) instead of it being dismissed.
    capabilities.insert("unhandledPromptBehavior".into(), json!("ignore"));
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .unwrap_or_else(|e| panic!("opening a chromedriver session: {e}"))
}

/// The frame serves the shell page, whose title the browser reads; the harness end to end.
#[tokio::test(flavor = "multi_thread")]
async fn the_shell_loads_in_chromium() {
    let _heavy = crate::harness::cpu_heavy().await;
    let data = crate::harness::data_dir("");
    let frame = Frame::start(data.path());
    let Some(browser) = Browser::start("shell", &frame).await else {
        return;
    };
    browser.goto("/").await;
    let title = browser.client.title().await.unwrap();
    assert!(!title.trim().is_empty(), "the shell page has a <title>");
    assert_eq!(browser.path().await, "/");
    let shot = browser.screenshot("home").await;
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{}", shot.display());
    browser.close().await;
}
