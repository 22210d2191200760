//! Every default value of the configuration, in one place, and the model price table.

/// Listen address of `switchyard serve`.
pub const LISTEN: &str = "127.0.0.1:8080";
/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Time a client gets to send its request headers.
pub const HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Open client connections at most (lowered to half the file limit when that is smaller).
pub const MAX_CONNECTIONS: usize = 8_192;
/// Time a client gets to send a whole request body.
pub const BODY_READ_TIMEOUT_MS: u64 = 30_000;
/// Slowest accepted request body upload, after [`BODY_RATE_GRACE_MS`].
pub const BODY_MIN_BYTES_PER_S: u64 = 1_024;
/// Time a body upload gets before its rate is checked.
pub const BODY_RATE_GRACE_MS: u64 = 2_000;
/// Distinct tenant names tracked when no tenants are configured.
pub const MAX_TENANTS: usize = 10_000;
/// Upstream TCP (and TLS) connect timeout.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Upstream time to response headers (and, for streams, the first event).
pub const FIRST_BYTE_TIMEOUT_MS: u64 = 60_000;
/// Base backoff between retries of one backend.
pub const RETRY_BACKOFF_MS: u64 = 200;
/// Most retries a backend may be configured with.
pub const MAX_RETRIES: u32 = 5;
/// Longest upstream `Retry-After` honoured before retrying; a longer one moves on to
/// the next target instead.
pub const MAX_RETRY_AFTER_MS: u64 = 5_000;
/// Upstream whole-request timeout.
pub const TOTAL_TIMEOUT_MS: u64 = 600_000;
/// Context window assumed for a cloud model the price table does not know.
pub const CONTEXT_WINDOW: u32 = 128_000;
/// Warm instances of the embedded default's shipped policy ([`POLICY_PATH`], `hybrid`,
/// which keeps no per-request state: CI runs its case file with `policy test --warm`);
/// another `--policy` gets none. Enough for every runtime worker to decide on a reused
/// instance on a machine of up to 16 cores.
pub const EMBEDDED_WARM_INSTANCES: usize = 16;
/// Local backend request queue.
pub const LOCAL_QUEUE_CAPACITY: usize = 64;
/// Local backend device.
pub const LOCAL_DEVICE: &str = "auto";
/// Client label naming a request's data class (`[privacy] data_class_label`).
pub const DATA_CLASS_LABEL: &str = "data-class";
/// Tenant of requests that name none.
pub const TENANT: &str = "default";
/// Spend ledger database (SQLite, WAL).
pub const LEDGER_PATH: &str = "switchyard-ledger.db";
/// Completion tokens assumed when reserving budget for a request without `max_tokens`.
pub const ESTIMATE_COMPLETION_TOKENS: u32 = 1024;
/// Policy artifact of the embedded default configuration.
pub const POLICY_PATH: &str = "target/policies/hybrid.wasm";
/// Decision log file size before rotation.
pub const DECISION_LOG_MAX_MB: u64 = 100;
/// Rotated decision log files kept.
pub const DECISION_LOG_KEEP: u32 = 5;
/// Env var of the admin API's bearer token.
pub const ADMIN_TOKEN_ENV: &str = "SWITCHYARD_ADMIN_TOKEN";
/// Quiet time before a changed policy or config file is re-read.
pub const WATCH_DEBOUNCE_MS: u64 = 25;
/// Epoch deadline of one policy decision.
pub const POLICY_DEADLINE_MS: u64 = 5;
/// ... of a large component's decision (an embedded interpreter: Python, JavaScript),
/// when `deadline_ms` is not set.
pub const POLICY_LARGE_GUEST_DEADLINE_MS: u64 = 50;
/// Limit on a whole policy call, host calls included.
pub const POLICY_OUTER_TIMEOUT_MS: u64 = 50;
/// Linear memory cap of one policy instance.
pub const POLICY_MEMORY_MB: usize = 64;

/// Compiled-policy cache: `$XDG_CACHE_HOME/switchyard/policies`, else
/// `$HOME/.cache/switchyard/policies`; none when neither is set.
pub fn policy_cache_dir(env: impl Fn(&str) -> Option<String>) -> Option<std::path::PathBuf> {
    let base = env("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            env("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| std::path::Path::new(&h).join(".cache"))
        })?;
    Some(base.join("switchyard").join("policies"))
}
/// Base URLs of the providers.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com/v1";
pub const GEMINI_BASE_URL: &str = "https://generativelanguage.googleapis.com/v1beta";
/// Env vars holding the providers' API keys.
pub const OPENAI_KEY_ENV: &str = "OPENAI_API_KEY";
pub const ANTHROPIC_KEY_ENV: &str = "ANTHROPIC_API_KEY";
pub const GEMINI_KEY_ENV: &str = "GEMINI_API_KEY";

/// Known list prices, USD per million tokens (input, output), and context windows.
pub fn model_card(model: &str) -> Option<(f64, f64, u32)> {
    let card = match model {
        "gpt-4o" => (2.50, 10.00, 128_000),
        "gpt-4o-mini" => (0.15, 0.60, 128_000),
        "gpt-4.1" => (2.00, 8.00, 1_047_576),
        "gpt-4.1-mini" => (0.40, 1.60, 1_047_576),
        "claude-sonnet-4-5" => (3.00, 15.00, 200_000),
        "claude-haiku-4-5" => (1.00, 5.00, 200_000),
        "claude-opus-4-1" => (15.00, 75.00, 200_000),
        "gemini-2.0-flash" => (0.10, 0.40, 1_000_000),
        "gemini-2.5-flash" => (0.30, 2.50, 1_000_000),
        "gemini-2.5-pro" => (1.25, 10.00, 1_000_000),
        // Embedding models: input tokens only.
        "text-embedding-3-small" => (0.02, 0.0, 8_191),
        "text-embedding-3-large" => (0.13, 0.0, 8_191),
        "text-embedding-ada-002" => (0.10, 0.0, 8_191),
        "gemini-embedding-001" => (0.15, 0.0, 2_048),
        _ => return None,
    };
    Some(card)
}
