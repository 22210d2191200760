//! `MockHost`: an in-memory [`Host`] for native policy unit tests, with the demo backend
//! set, per-scope spend, params, the real PII detector, a fixed clock and recorded logs.

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::backend::{BackendStatus, ModelCapabilities, SpendStatus};
use crate::host::{Host, LogLevel, NO_EMBEDDING_MODEL, estimate_tokens};
use crate::pii::{self, PiiMatch};

/// The demo backends, the same set as the host's `StaticHost::default()`: `local`
/// (smollm2-135m-instruct, free, 8192 ctx, 400/1200 ms), `openai` (gpt-4o, gpt-4o-mini;
/// $2.50/$10, 128k, 700/1500 ms), `anthropic` (claude-sonnet-4-5; $3/$15, 200k,
/// 900/1800 ms), `gemini` (gemini-2.0-flash; $0.10/$0.40, 1M, 500/900 ms). Capabilities
/// as the gateway's connectors report them: OpenAI's models can do everything (tools,
/// JSON, vision, logprobs, `n`), the local model text and JSON output (constrained
/// decoding), the others text only.
pub fn demo_backends() -> Vec<BackendStatus> {
    let priced = |caps: ModelCapabilities, b: &BackendStatus| ModelCapabilities {
        usd_per_mtok_in: b.usd_per_mtok_in,
        usd_per_mtok_out: b.usd_per_mtok_out,
        ..caps
    };
    let text_only = |b: BackendStatus| {
        let caps = ModelCapabilities::text_only(b.models[0].clone(), b.context_window);
        let caps = priced(caps, &b);
        b.capable(caps)
    };
    let openai = BackendStatus::cloud("openai", "gpt-4o")
        .also_serves("gpt-4o-mini")
        .price(2.5, 10.0)
        .context(128_000)
        .latency(700.0, 1500.0);
    let gpt4o = priced(ModelCapabilities::full("gpt-4o", 128_000), &openai);
    let mini = ModelCapabilities {
        usd_per_mtok_in: 0.15,
        usd_per_mtok_out: 0.60,
        ..ModelCapabilities::full("gpt-4o-mini", 128_000)
    };
    let mut local = text_only(
        BackendStatus::local("local", "smollm2-135m-instruct")
            .context(8192)
            .latency(400.0, 1200.0),
    );
    for caps in &mut local.capabilities {
        caps.json_object = true;
        caps.json_schema = true;
    }
    vec![
        local,
        openai.capable(gpt4o).capable(mini),
        text_only(
            BackendStatus::cloud("anthropic", "claude-sonnet-4-5")
                .price(3.0, 15.0)
                .context(200_000)
                .latency(900.0, 1800.0),
        ),
        text_only(
            BackendStatus::cloud("gemini", "gemini-2.0-flash")
                .price(0.10, 0.40)
                .context(1_000_000)
                .latency(500.0, 900.0),
        ),
    ]
}

/// A fake embedding model or classifier for [`MockHost::with_embed`] / [`MockHost::with_score`].
pub type EmbedFn = fn(&str) -> Result<Vec<f32>, String>;
/// A fake classifier: `(classifier, text)` → score.
pub type ScoreFn = fn(&str, &str) -> Result<f64, String>;

/// One recorded log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
    pub fields: Vec<(String, String)>,
}

impl LogLine {
    /// The value of field `key`.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// An in-memory host for tests. `MockHost::new()` has the [`demo_backends`], no spend
/// or params, the real PII detector, bytes/4 token counting and a fixed clock
/// (2026-01-01T00:00:00Z).
#[derive(Debug)]
pub struct MockHost {
    backends: Vec<BackendStatus>,
    spend: BTreeMap<String, SpendStatus>,
    params: BTreeMap<String, String>,
    pii: fn(&str) -> Vec<PiiMatch>,
    tokens: fn(&str) -> u32,
    embed: Option<EmbedFn>,
    score: Option<ScoreFn>,
    now_ms: u64,
    logs: RefCell<Vec<LogLine>>,
}

impl Default for MockHost {
    fn default() -> Self {
        Self::new()
    }
}

impl MockHost {
    /// The demo backends and defaults (see [`MockHost`]).
    pub fn new() -> Self {
        Self {
            backends: demo_backends(),
            spend: BTreeMap::new(),
            params: BTreeMap::new(),
            pii: pii::detect,
            tokens: estimate_tokens,
            embed: None,
            score: None,
            now_ms: 1_767_225_600_000,
            logs: RefCell::new(Vec::new()),
        }
    }

    /// Replaces the backend list.
    pub fn with_backends(mut self, backends: Vec<BackendStatus>) -> Self {
        self.backends = backends;
        self
    }

    /// Appends a backend.
    pub fn with_backend(mut self, backend: BackendStatus) -> Self {
        self.backends.push(backend);
        self
    }

    /// Changes the backend named `name` (no-op when absent).
    pub fn update_backend(mut self, name: &str, change: impl FnOnce(&mut BackendStatus)) -> Self {
        if let Some(b) = self.backends.iter_mut().find(|b| b.name == name) {
            change(b);
        }
        self
    }

    /// Marks the backend named `name` unhealthy.
    pub fn unhealthy(self, name: &str) -> Self {
        self.update_backend(name, |b| b.healthy = false)
    }

    /// Removes the backend named `name`.
    pub fn without_backend(mut self, name: &str) -> Self {
        self.backends.retain(|b| b.name != name);
        self
    }

    /// Sets a policy parameter.
    pub fn with_param(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.insert(key.into(), value.into());
        self
    }

    /// Sets the spend for `status.scope`.
    pub fn with_spend(mut self, status: SpendStatus) -> Self {
        self.spend.insert(status.scope.clone(), status);
        self
    }

    /// Replaces the PII detector.
    pub fn with_pii(mut self, detect: fn(&str) -> Vec<PiiMatch>) -> Self {
        self.pii = detect;
        self
    }

    /// Replaces the token counter.
    pub fn with_tokens(mut self, count: fn(&str) -> u32) -> Self {
        self.tokens = count;
        self
    }

    /// Answers `embed` with `embed` (without it: "no embedding model loaded").
    pub fn with_embed(mut self, embed: EmbedFn) -> Self {
        self.embed = Some(embed);
        self
    }

    /// Answers `score` with `score` (without it: "no embedding model loaded").
    pub fn with_score(mut self, score: ScoreFn) -> Self {
        self.score = Some(score);
        self
    }

    /// Fixes the clock at `now_ms` (milliseconds since the Unix epoch).
    pub fn at(mut self, now_ms: u64) -> Self {
        self.now_ms = now_ms;
        self
    }

    /// Every log line so far.
    pub fn logs(&self) -> Vec<LogLine> {
        self.logs.borrow().clone()
    }

    /// True when some log line's message contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.logs.borrow().iter().any(|l| l.message.contains(text))
    }
}

impl Host for MockHost {
    fn backends(&self) -> Vec<BackendStatus> {
        self.backends.clone()
    }

    fn detect_pii(&self, text: &str) -> Vec<PiiMatch> {
        (self.pii)(text)
    }

    fn count_tokens(&self, text: &str) -> u32 {
        (self.tokens)(text)
    }

    fn spend(&self, scope: &str) -> SpendStatus {
        self.spend
            .get(scope)
            .cloned()
            .unwrap_or_else(|| SpendStatus::new(scope))
    }

    fn param(&self, key: &str) -> Option<String> {
        self.params.get(key).cloned()
    }

    fn params(&self) -> Vec<(String, String)> {
        self.params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn now_ms(&self) -> u64 {
        self.now_ms
    }

    fn embed(&self, text: &str) -> Result<Vec<f32>, String> {
        match self.embed {
            Some(embed) => embed(text),
            None => Err(NO_EMBEDDING_MODEL.to_owned()),
        }
    }

    fn score(&self, classifier: &str, text: &str) -> Result<f64, String> {
        match self.score {
            Some(score) => score(classifier, text),
            None => Err(NO_EMBEDDING_MODEL.to_owned()),
        }
    }

    fn log(&self, level: LogLevel, message: &str, fields: &[(&str, &str)]) {
        self.logs.borrow_mut().push(LogLine {
            level,
            message: message.to_owned(),
            fields: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pii::PiiKind;

    #[test]
    fn defaults() {
        let host = MockHost::new();
        let names: Vec<String> = host.backends().into_iter().map(|b| b.name).collect();
        assert_eq!(names, ["local", "openai", "anthropic", "gemini"]);
        assert_eq!(host.count_tokens("12345"), 2);
        assert_eq!(host.detect_pii("mail a@b.io")[0].kind, PiiKind::Email);
        assert_eq!(host.spend("acme").scope, "acme");
        assert_eq!(host.now_ms(), 1_767_225_600_000);
        assert!(host.params().is_empty());
        assert_eq!(host.embed("hi"), Err(NO_EMBEDDING_MODEL.to_owned()));
        assert_eq!(
            host.score("router", "hi"),
            Err(NO_EMBEDDING_MODEL.to_owned())
        );
        let openai = host.backend("openai").map(|b| b.model("gpt-4o-mini"));
        assert!(openai.is_some_and(|c| c.tools && c.vision && c.usd_per_mtok_in == 0.15));
        let local = host
            .backend("local")
            .map(|b| b.model("smollm2-135m-instruct"));
        assert!(local.is_some_and(|c| !c.tools && c.context_window == 8192));
    }

    #[test]
    fn fake_embeddings_and_classifier() {
        let host = MockHost::new()
            .with_embed(|text| Ok(vec![text.len() as f32, 0.0]))
            .with_score(|name, _| {
                if name == "router" {
                    Ok(0.9)
                } else {
                    Err("unknown".into())
                }
            });
        assert_eq!(host.embed("abc"), Ok(vec![3.0, 0.0]));
        assert_eq!(host.score("router", "x"), Ok(0.9));
        assert!(host.score("other", "x").is_err());
    }

    #[test]
    fn builders() {
        let host = MockHost::new()
            .unhealthy("openai")
            .without_backend("gemini")
            .with_backend(BackendStatus::cloud("x", "m"))
            .with_param("a", "1")
            .with_spend(SpendStatus::new("acme").spent(1.0, 2.0))
            .with_pii(|_| Vec::new())
            .with_tokens(|_| 7)
            .at(5);
        assert_eq!(host.backend("openai").map(|b| b.healthy), Some(false));
        assert!(host.backend("gemini").is_none() && host.backend("x").is_some());
        assert_eq!(host.param("a").as_deref(), Some("1"));
        assert_eq!(host.spend("acme").month_usd, 2.0);
        assert!(host.detect_pii("a@b.io").is_empty());
        assert_eq!((host.count_tokens(""), host.now_ms()), (7, 5));
    }

    #[test]
    fn param_helpers_and_logs() {
        let host = MockHost::new()
            .with_param("f", " 0.5 ")
            .with_param("bad", "x")
            .with_param("n", "12")
            .with_param("b", "Yes")
            .with_param("list", " a, ,b ,")
            .with_param("blank", " ");
        assert_eq!(host.param_f64("f", 1.0), 0.5);
        assert_eq!(host.param_f64("missing", 1.0), 1.0);
        assert_eq!(host.param_f64("blank", 1.0), 1.0);
        assert_eq!(host.param_f64("missing", f64::INFINITY), f64::INFINITY);
        assert_eq!(host.param_u32("n", 1), 12);
        assert!(host.param_bool("b", false));
        assert_eq!(host.param_list("list"), Some(vec!["a".into(), "b".into()]));
        assert_eq!(host.param_list_or("missing", &["z"]), ["z"]);
        assert_eq!(host.param_or("blank", "d"), "d");
        assert!(host.logs().is_empty());
        assert_eq!(host.param_u32("bad", 3), 3);
        let logs = host.logs();
        assert_eq!(logs.len(), 1);
        let inf = MockHost::new().with_param("f", "inf");
        assert_eq!(inf.param_f64("f", 2.0), 2.0);
        assert_eq!(inf.logs().len(), 1);
        assert_eq!(logs[0].level, LogLevel::Warn);
        assert_eq!(logs[0].field("param"), Some("bad"));
        assert!(host.logged("invalid policy parameter"));
    }
}
