//! Shared by the gateway tests: mock upstreams, built policy components, a config writer,
//! a `switchyard serve` process handle that is killed on drop, and log capture for the
//! secret scan after the suite (`tests/log_scan.sh`).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::routing::post;
use serde_json::{Value, json};

/// A component built by `bash policies/build.sh` (tests/run.sh runs it before the tests).
pub fn built_policy(name: &str) -> PathBuf {
    let out = std::env::var("SWITCHYARD_POLICY_OUT")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target/policies").into());
    let path = Path::new(&out).join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `bash policies/build.sh` first (tests/run.sh does)",
        path.display()
    );
    path
}

/// One compiled-component cache for every test process: each component compiles once.
pub fn cache_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/test-policy-cache"
    ))
}

/// A fresh scratch directory for one test, removed when the guard drops.
pub fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("switchyard-{name}-"))
        .tempdir()
        .unwrap()
}

/// An OpenAI-compatible upstream that answers every request with `reply` (as SSE with a
/// usage chunk when asked to stream).
pub async fn spawn_upstream(reply: &'static str) -> SocketAddr {
    use axum::response::IntoResponse;
    let handler = move |body: String| async move {
        let body: Value = serde_json::from_str(&body).unwrap();
        if body["stream"] == true {
            let chunk = json!({"id": "c", "object": "chat.completion.chunk", "created": 1,
                "model": body["model"], "choices": [{"index": 0, "delta": {"content": reply},
                "finish_reason": "stop"}]});
            let usage = json!({"id": "c", "object": "chat.completion.chunk", "created": 1,
                "model": body["model"], "choices": [],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}});
            let text = format!("data: {chunk}\n\ndata: {usage}\n\ndata: [DONE]\n\n");
            return ([("content-type", "text/event-stream")], text).into_response();
        }
        axum::Json(json!({
            "id": "chatcmpl-mock", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        }))
        .into_response()
    };
    // Any body size: a provider's limit is not what these tests are about, and a mock
    // that answers 413 mid-upload races the gateway's write (reset or 413, by timing).
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(handler))
        .layer(axum::extract::DefaultBodyLimit::disable());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

pub fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A config with a local-locality backend `local` and a cloud backend `openai`, both
/// mock upstreams, deciding with the component at `policy`. `extra` is appended.
pub fn write_config(
    dir: &Path,
    policy: &Path,
    local: SocketAddr,
    cloud: SocketAddr,
    extra: &str,
) -> PathBuf {
    let toml = format!(
        r#"
        [policy]
        path = "{policy}"
        cache_dir = "{cache}"
        fallback_targets = ["local"]
        deadline_ms = 50
        outer_timeout_ms = 500
        [ledger]
        path = "{ledger}"
        [[backends]]
        name = "local"
        kind = "openai_compatible"
        locality = "local"
        base_url = "http://{local}/v1"
        models = ["small"]
        [[backends]]
        name = "openai"
        kind = "openai_compatible"
        base_url = "http://{cloud}/v1"
        models = ["big"]
        usd_per_mtok_in = 2.5
        usd_per_mtok_out = 10.0
        {extra}
        "#,
        policy = policy.display(),
        cache = cache_dir().display(),
        ledger = dir.join("ledger.db").display(),
    );
    let path = dir.join("switchyard.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// The admin token the spawned gateways accept.
pub const ADMIN_TOKEN: &str = "test-admin-token-never-log-me";

/// Where every gateway the tests run logs at trace level, when set (tests/run.sh sets
/// it; `tests/log_scan.sh` then searches those logs for the test keys).
pub fn log_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("SWITCHYARD_TEST_LOG_DIR")?);
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir)
}

/// Log filter for captured logs: the gateway and its HTTP stack (where a key could leak)
/// at trace level, the rest (the wasm compiler's chatter) at info.
const CAPTURE_FILTER: &str = "info,switchyard=trace,reqwest=trace,hyper=trace,hyper_util=trace,\
                              h2=trace,axum=trace,tower=trace,tower_http=trace";

/// A new log file in [`log_dir`] for this test process (`what` names it).
fn log_file(what: &str) -> Option<std::fs::File> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let exe = std::env::current_exe().ok()?;
    let test = exe.file_stem()?.to_string_lossy().into_owned();
    let name = format!("{test}-{}-{n}-{what}.log", std::process::id());
    std::fs::File::create(log_dir()?.join(name)).ok()
}

/// In-process gateways: with [`log_dir`] set, this process logs everything there.
pub fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Some(file) = log_file("in-process") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(CAPTURE_FILTER))
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .try_init();
        }
    });
}

/// `switchyard serve --config CONFIG`, logging at trace level when [`log_dir`] is set,
/// else at `warn`.
pub fn serve_command(config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    let filter = if log_dir().is_some() {
        CAPTURE_FILTER
    } else {
        "warn"
    };
    cmd.arg("serve")
        .arg("--config")
        .arg(config)
        .env("SWITCHYARD_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", filter);
    cmd
}

/// A running `switchyard serve`, killed on drop.
pub struct Gateway {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    /// Starts the gateway and waits until `/readyz` answers (compiling a large JS or
    /// Python component takes seconds on a loaded machine).
    pub async fn start(config: &Path) -> Self {
        let addr = free_port();
        let child = serve_command(config)
            .arg("--listen")
            .arg(addr.to_string())
            .stdout(Stdio::null())
            .stderr(log_file("serve").map_or_else(Stdio::inherit, Stdio::from))
            .spawn()
            .unwrap();
        let mut gateway = Gateway { child, addr };
        let client = reqwest::Client::new();
        let start = Instant::now();
        loop {
            let ready = client
                .get(format!("http://{addr}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return gateway;
            }
            if let Ok(Some(status)) = gateway.child.try_wait() {
                panic!("gateway exited during startup: {status}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "gateway did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A chat completion; returns status, headers and body.
    pub async fn chat(
        &self,
        client: &reqwest::Client,
        text: &str,
        tenant: &str,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let response = client
            .post(self.url("/v1/chat/completions"))
            .header("x-switchyard-tenant", tenant)
            .json(&json!({"model": "auto", "messages": [{"role": "user", "content": text}]}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, headers, body)
    }

    /// An admin API call with the test token.
    pub async fn admin(&self, client: &reqwest::Client, path: &str, body: Vec<u8>) -> (u16, Value) {
        let response = client
            .post(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `GET /admin/policies` with the admin token.
    pub async fn admin_report(&self, client: &reqwest::Client) -> Value {
        client
            .get(self.url("/admin/policies"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// `name@short_digest` of a component file, as the gateway labels responses.
pub fn label(name: &str, file: &Path) -> String {
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(std::fs::read(file).unwrap()));
    format!("{name}@{}", &digest[..12])
}
