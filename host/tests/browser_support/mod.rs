//! Headless Chromium (Debian's `chromium` package) driven through the DevTools protocol
//! over `--remote-debugging-pipe` (fd 3 in, fd 4 out, NUL-separated JSON): launch, one
//! page, navigate, evaluate, wait for a condition, screenshots. A missing browser fails
//! the test with how to install it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Longest wait for one protocol call.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Where screenshots go (kept as CI artifacts).
pub fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/ui-screenshots"
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The browser binary: `SWITCHYARD_CHROMIUM`, else `chromium` on the PATH. Panics (the
/// test fails, never skips) when there is none.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("SWITCHYARD_CHROMIUM") {
        return PathBuf::from(path);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromium"))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "headless Chromium is required for the dashboard test and was not found: \
             install Debian's package (`apt-get install -y chromium`; tests/run.sh does) \
             or set SWITCHYARD_CHROMIUM to the binary"
        )
    })
}

/// A running headless Chromium with one page attached.
pub struct Browser {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    next_id: u64,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium with a `width`×`height` window and opens a blank page. Its own log
    /// goes to `log`.
    pub async fn launch(width: u32, height: u32, log: &Path) -> Self {
        let binary = chromium();
        let profile = tempfile::Builder::new()
            .prefix("switchyard-chromium-")
            .tempdir()
            .unwrap();
        // The protocol pipe is fd 3 (commands in) and fd 4 (answers out): the shell maps
        // them onto the pipes given as stdin and stdout before exec'ing the browser.
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>&2"#)
            .arg(&binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-sync",
                "--disable-component-update",
                "--mute-audio",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--window-size={width},{height}"))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(log).unwrap()))
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let input = child.stdin.take().unwrap();
        let output = BufReader::new(child.stdout.take().unwrap());
        let mut browser = Self {
            child,
            input,
            output,
            next_id: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = browser
            .call_browser("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let target_id = target["targetId"].as_str().unwrap().to_owned();
        let attached = browser
            .call_browser(
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await;
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        browser.call("Page.enable", json!({})).await;
        browser.viewport(width, height, false).await;
        browser
    }

    /// One call; the protocol's error when it failed.
    async fn send(
        &mut self,
        method: &str,
        params: Value,
        session: Option<String>,
    ) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = Value::String(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        let exchange = async {
            self.input.write_all(&bytes).await.unwrap();
            self.input.flush().await.unwrap();
            loop {
                let mut frame = Vec::new();
                let n = self.output.read_until(0, &mut frame).await.unwrap();
                assert!(n > 0, "chromium closed the protocol pipe (see its log)");
                frame.pop();
                let reply: Value = serde_json::from_slice(&frame).unwrap();
                if reply["id"] == id {
                    return reply;
                }
            }
        };
        let reply = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| panic!("chromium did not answer {method}"));
        match reply.get("error") {
            Some(error) => Err(error.clone()),
            None => Ok(reply["result"].clone()),
        }
    }

    async fn call_browser(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, None)
            .await
            .unwrap_or_else(|e| panic!("{method} failed: {e}"))
    }

    /// A protocol call on the page.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(method, params, Some(session))
            .await
            .unwrap_or_else(|e| panic!("{method} failed: {e}"))
    }

    /// `expression`'s value, or `None` when it threw or the page was between documents.
    async fn try_eval(&mut self, expression: &str) -> Option<Value> {
        let session = self.session.clone();
        let result = self
            .send(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
                Some(session),
            )
            .await
            .ok()?;
        if result.get("exceptionDetails").is_some() {
            return None;
        }
        Some(result["result"]["value"].clone())
    }

    /// Emulates a `width`×`height` screen (`mobile`: a phone's).
    pub async fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        )
        .await;
    }

    /// Loads `url` and waits for the document to finish loading.
    pub async fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
        self.wait_for("document.readyState === 'complete'", "the page to load")
            .await;
    }

    /// The value of `expression` (awaited when it is a promise); panics on an exception.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression} threw: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Waits (up to 30 s) until `expression` is true; on timeout fails with the page's
    /// text and saves a screenshot.
    pub async fn wait_for(&mut self, expression: &str, what: &str) {
        let start = Instant::now();
        loop {
            if self.try_eval(&format!("!!({expression})")).await == Some(Value::Bool(true)) {
                return;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let text = self
                    .try_eval("document.body ? document.body.innerText : ''")
                    .await;
                self.screenshot("timeout.png").await;
                panic!("timed out waiting for {what} ({expression}); page text:\n{text:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves the page as PNG under [`screenshot_dir`]; returns the path.
    pub async fn screenshot(&mut self, name: &str) -> PathBuf {
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        let path = screenshot_dir().join(name);
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Closes the browser (killed if it does not exit within 5 s).
    pub async fn close(mut self) {
        self.next_id += 1;
        let mut bytes =
            serde_json::to_vec(&json!({"id": self.next_id, "method": "Browser.close"})).unwrap();
        bytes.push(0);
        let _ = self.input.write_all(&bytes).await;
        let _ = self.input.flush().await;
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}
