//! Headless Chromium for the web interface's tests, driven over the
//! DevTools protocol (a JSON-RPC websocket): open pages, type, click where
//! a person would, evaluate JavaScript in the page, take screenshots.
//! Chromium comes from Debian (scripts/setup.sh installs it); without it
//! the tests fail and say so.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

/// The page size of every test, in CSS pixels.
const VIEWPORT: (u32, u32) = (1280, 860);

/// A headless Chromium with one page open; killed on drop.
pub struct Browser {
    page: WebSocket<TcpStream>,
    next_id: u64,
    /// Declared after the page, so that the process outlives its socket.
    _process: KillOnDrop,
    _profile: tempfile::TempDir,
}

/// A child process killed when dropped, also when a test panics before
/// it is fully set up.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Chromium executable: `$CHROMIUM`, or the first of Debian's and
/// others' names on the PATH.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return path.into();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "Chromium is not installed, and the web interface's tests drive it: run scripts/setup.sh (it installs Debian's chromium), or set CHROMIUM to a Chromium or Chrome binary"
            )
        })
}

impl Browser {
    /// Starts headless Chromium on a fresh profile (see the module docs).
    pub fn start() -> Self {
        let profile = tempfile::tempdir().expect("temp dir");
        let child = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--disable-crash-reporter",
                "--disable-breakpad",
                "--remote-debugging-port=0",
                &format!("--window-size={},{}", VIEWPORT.0, VIEWPORT.1),
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("Chromium does not start ({e}): run scripts/setup.sh"));
        let mut process = KillOnDrop(child);
        let endpoint = devtools_endpoint(&mut process.0);
        let host = endpoint
            .strip_prefix("ws://")
            .and_then(|r| r.split('/').next())
            .expect("a ws:// endpoint")
            .to_string();
        let page_url = page_target(&host);
        let stream = TcpStream::connect(&host).expect("connect to Chromium");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("read timeout");
        let (page, _) = tungstenite::client(page_url.as_str(), stream)
            .unwrap_or_else(|e| panic!("DevTools websocket {page_url}: {e}"));
        let mut browser = Self {
            page,
            next_id: 1,
            _process: process,
            _profile: profile,
        };
        browser.lay_out_as(VIEWPORT, false);
        browser
    }

    /// Lays pages out on a `size` screen, a phone's if `mobile`.
    fn lay_out_as(&mut self, size: (u32, u32), mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": size.0, "height": size.1, "deviceScaleFactor": 1, "mobile": mobile}),
        );
    }

    /// How many CSS pixels the page is wider than a phone's screen (390
    /// wide, as mobile browsers lay pages out), 0 if it fits; the page is
    /// back at the desktop size afterwards.
    pub fn overflow_on_a_phone(&mut self) -> f64 {
        let overflow = self
            .on_a_phone(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth",
            )
            .as_f64()
            .expect("a width");
        overflow.max(0.0)
    }

    /// The value of `expression` with the page laid out on a phone's
    /// screen (390×844); the page is back at the desktop size afterwards.
    pub fn on_a_phone(&mut self, expression: &str) -> Value {
        self.lay_out_as((390, 844), true);
        let value = self.eval(expression);
        self.lay_out_as(VIEWPORT, false);
        value
    }

    /// Calls the DevTools method `method`; its result (events that come
    /// in between are skipped).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.try_call(method, params)
            .unwrap_or_else(|e| panic!("{method} failed: {e}"))
    }

    /// [`call`](Self::call), with the browser's refusal as an error.
    fn try_call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        let message = json!({"id": id, "method": method, "params": params}).to_string();
        self.page
            .send(Message::text(message))
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        loop {
            let reply = self.page.read().unwrap_or_else(|e| panic!("{method}: {e}"));
            let Message::Text(text) = reply else { continue };
            let value: Value = serde_json::from_str(&text).expect("DevTools speaks JSON");
            if value["id"] != json!(id) {
                continue;
            }
            return match value.get("error") {
                Some(error) => Err(error.to_string()),
                None => Ok(value["result"].clone()),
            };
        }
    }

    /// Evaluates `expression` in the page (awaiting a promise); its value.
    pub fn eval(&mut self, expression: &str) -> Value {
        self.try_eval(expression)
            .unwrap_or_else(|e| panic!("{expression} failed: {e}"))
    }

    /// [`eval`](Self::eval), with an exception (or a page that went away
    /// while it ran) as an error.
    fn try_eval(&mut self, expression: &str) -> Result<Value, String> {
        let result = self.try_call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        )?;
        match result.get("exceptionDetails") {
            Some(e) => Err(e.to_string()),
            None => Ok(result["result"]["value"].clone()),
        }
    }

    /// Waits up to `limit` for `expression` to be true in the page (an
    /// exception, as while a page loads, counts as not yet); panics
    /// naming `what` and showing the page's text otherwise.
    pub fn wait_for(&mut self, what: &str, expression: &str, limit: Duration) {
        self.wait_for_value(what, expression, limit, |v| {
            (*v == json!(true)).then_some(())
        });
    }

    /// Waits up to `limit` for `expression`'s value to be one `accept`
    /// takes (an exception counts as not yet); what `accept` made of it.
    /// Panics like [`wait_for`](Self::wait_for) otherwise.
    fn wait_for_value<T>(
        &mut self,
        what: &str,
        expression: &str,
        limit: Duration,
        accept: impl Fn(&Value) -> Option<T>,
    ) -> T {
        let start = Instant::now();
        loop {
            let last = self.try_eval(expression);
            if let Some(taken) = last.as_ref().ok().and_then(&accept) {
                return taken;
            }
            if start.elapsed() > limit {
                let page = self.eval("location.href + '\\n' + document.body.innerText");
                panic!("timed out waiting for {what} (last: {last:?}); the page: {page}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Opens `url` and waits for it to load (as the URL `landed`, after
    /// any redirects).
    pub fn open(&mut self, url: &str, landed: &str) {
        self.call("Page.navigate", json!({"url": url}));
        let expression = format!(
            "location.href === {} && document.readyState === 'complete'",
            json!(landed)
        );
        self.wait_for(
            &format!("{url} to load"),
            &expression,
            Duration::from_secs(30),
        );
    }

    /// Clicks the middle of the first element matching `selector`, with
    /// the mouse, as a person would: once the page has loaded and the
    /// element itself is what lies under that point (a page still laying
    /// out, or a modal over it, would take the click elsewhere).
    pub fn click(&mut self, selector: &str) {
        let aim = format!(
            "(() => {{ if (document.readyState !== 'complete') return 'the page is loading'; \
             const e = document.querySelector({}); if (!e) return 'no such element'; \
             e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
             const x = r.x + r.width / 2, y = r.y + r.height / 2; \
             const hit = document.elementFromPoint(x, y); \
             return hit && e.contains(hit) ? [x, y] : 'covered by ' + (hit ? hit.outerHTML.slice(0, 200) : 'nothing'); }})()",
            json!(selector)
        );
        let (x, y) = self.wait_for_value(
            &format!("{selector} to be clickable"),
            &aim,
            Duration::from_secs(30),
            |at| Some((at[0].as_f64()?, at[1].as_f64()?)),
        );
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            );
        }
    }

    /// Types `text` into the element matching `selector`.
    pub fn type_into(&mut self, selector: &str, text: &str) {
        self.click(selector);
        self.call("Input.insertText", json!({"text": text}));
    }

    /// Saves a PNG screenshot of the page's top to `path`: the window's
    /// width, down to the end of the content or the window's height.
    pub fn screenshot(&mut self, path: &Path) {
        let height = self
            .eval("document.body.scrollHeight")
            .as_f64()
            .unwrap_or(f64::from(VIEWPORT.1))
            .min(f64::from(VIEWPORT.1));
        let clip = json!({"x": 0, "y": 0, "width": VIEWPORT.0, "height": height, "scale": 1});
        let shot = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "clip": clip}),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 screenshot");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// Reads Chromium's stderr until it names its DevTools websocket (then
/// keeps draining it, so Chromium never blocks on a full pipe).
fn devtools_endpoint(child: &mut Child) -> String {
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let start = Instant::now();
    let mut said = Vec::new();
    while start.elapsed() < Duration::from_secs(30) {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => match line.split_once("DevTools listening on ") {
                Some((_, url)) => return url.trim().to_string(),
                None => said.push(line),
            },
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    panic!(
        "Chromium did not open its DevTools port: {}",
        said.join("\n")
    );
}

/// The websocket URL of the open page of the browser whose DevTools
/// listen on `host` (host:port).
fn page_target(host: &str) -> String {
    let start = Instant::now();
    loop {
        let list = crate::http::get(host, "/json/list", &[]);
        let targets: Value = serde_json::from_slice(&list.body).expect("DevTools target list");
        let page = targets.as_array().and_then(|t| {
            t.iter()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
        });
        if let Some(url) = page {
            return url.to_string();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "Chromium opened no page: {targets}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
