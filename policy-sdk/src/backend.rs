//! Host facts a policy reads: backend status (`backends` interface) and spend against
//! budgets (`spend` interface), with helpers and test-friendly builders.

use std::collections::BTreeMap;

use crate::types::{Needs, ResponseFormat};

/// Where a backend runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    Local,
    Cloud,
}

/// What one model of a backend can do, as the host's connector can carry it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelCapabilities {
    pub model: String,
    /// Tool (function) calling.
    pub tools: bool,
    /// JSON mode (`response_format` `json_object`).
    pub json_object: bool,
    /// Structured output (`response_format` `json_schema`).
    pub json_schema: bool,
    /// Image parts in messages.
    pub vision: bool,
    pub logprobs: bool,
    /// `n` > 1.
    pub multiple_choices: bool,
    /// Context window, in tokens.
    pub context_window: u32,
    /// USD per million input tokens.
    pub usd_per_mtok_in: f64,
    /// USD per million output tokens.
    pub usd_per_mtok_out: f64,
}

impl ModelCapabilities {
    /// A text-only model: no tools, JSON, images, logprobs or several choices.
    pub fn text_only(model: impl Into<String>, context_window: u32) -> Self {
        Self {
            model: model.into(),
            tools: false,
            json_object: false,
            json_schema: false,
            vision: false,
            logprobs: false,
            multiple_choices: false,
            context_window,
            usd_per_mtok_in: 0.0,
            usd_per_mtok_out: 0.0,
        }
    }

    /// A model that can do everything the contract names.
    pub fn full(model: impl Into<String>, context_window: u32) -> Self {
        Self {
            tools: true,
            json_object: true,
            json_schema: true,
            vision: true,
            logprobs: true,
            multiple_choices: true,
            ..Self::text_only(model, context_window)
        }
    }

    /// The first need of `needs` (with `prompt_tokens`) this model cannot meet, by name
    /// (`tools`, `json_object`, `json_schema`, `vision`, `logprobs`, `n`,
    /// `context_window`); `None` when it meets them all.
    pub fn unmet(&self, needs: &Needs, prompt_tokens: u32) -> Option<&'static str> {
        let checks = [
            (!needs.tools.is_empty() && !self.tools, "tools"),
            (
                needs.response_format == ResponseFormat::JsonObject && !self.json_object,
                "json_object",
            ),
            (
                needs.response_format == ResponseFormat::JsonSchema && !self.json_schema,
                "json_schema",
            ),
            (needs.images > 0 && !self.vision, "vision"),
            (needs.logprobs && !self.logprobs, "logprobs"),
            (needs.n > 1 && !self.multiple_choices, "n"),
            (prompt_tokens > self.context_window, "context_window"),
        ];
        checks
            .into_iter()
            .find(|(unmet, _)| *unmet)
            .map(|(_, what)| what)
    }
}

/// Live status of one backend, as measured by the host.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendStatus {
    /// Name used in `Target::backend`.
    pub name: String,
    pub kind: BackendKind,
    /// Models served; the first is the default.
    pub models: Vec<String>,
    /// False while the circuit breaker is open or the backend is unavailable.
    pub healthy: bool,
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
    /// Fraction of recent requests that failed, 0.0..=1.0.
    pub error_rate: f64,
    /// Requests being served now.
    pub in_flight: u32,
    /// Requests waiting in the backend's queue.
    pub queue_depth: u32,
    /// USD per million input tokens (default model).
    pub usd_per_mtok_in: f64,
    /// USD per million output tokens (default model).
    pub usd_per_mtok_out: f64,
    /// Context window of the default model, in tokens.
    pub context_window: u32,
    /// Operator labels, e.g. `hipaa=true`, `region=eu`.
    pub labels: BTreeMap<String, String>,
    /// Per model, in `models` order (see [`BackendStatus::model`]).
    pub capabilities: Vec<ModelCapabilities>,
}

impl BackendStatus {
    /// A healthy backend serving `model`, with zero latency, price and load and an
    /// 8192-token window; adjust with the builder methods.
    pub fn new(name: impl Into<String>, kind: BackendKind, model: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind,
            models: vec![model.into()],
            healthy: true,
            latency_p50_ms: 0.0,
            latency_p95_ms: 0.0,
            error_rate: 0.0,
            in_flight: 0,
            queue_depth: 0,
            usd_per_mtok_in: 0.0,
            usd_per_mtok_out: 0.0,
            context_window: 8192,
            labels: BTreeMap::new(),
            capabilities: Vec::new(),
        }
    }

    /// Sets what `model` can do (replacing what was said of it).
    pub fn capable(mut self, caps: ModelCapabilities) -> Self {
        self.capabilities.retain(|c| c.model != caps.model);
        self.capabilities.push(caps);
        self
    }

    /// What `model` can do: its entry in `capabilities`, else (a host that reports none)
    /// text only within the backend's context window.
    pub fn model(&self, model: &str) -> ModelCapabilities {
        self.capabilities
            .iter()
            .find(|c| c.model == model)
            .cloned()
            .unwrap_or_else(|| ModelCapabilities::text_only(model, self.context_window))
    }

    /// A local backend (see [`BackendStatus::new`]).
    pub fn local(name: impl Into<String>, model: impl Into<String>) -> Self {
        Self::new(name, BackendKind::Local, model)
    }

    /// A cloud backend (see [`BackendStatus::new`]).
    pub fn cloud(name: impl Into<String>, model: impl Into<String>) -> Self {
        Self::new(name, BackendKind::Cloud, model)
    }

    /// Adds a model it serves (after the default).
    pub fn also_serves(mut self, model: impl Into<String>) -> Self {
        self.models.push(model.into());
        self
    }

    /// Sets the prices, USD per million input and output tokens.
    pub fn price(mut self, usd_per_mtok_in: f64, usd_per_mtok_out: f64) -> Self {
        self.usd_per_mtok_in = usd_per_mtok_in;
        self.usd_per_mtok_out = usd_per_mtok_out;
        self
    }

    /// Sets the context window.
    pub fn context(mut self, tokens: u32) -> Self {
        self.context_window = tokens;
        self
    }

    /// Sets the p50 and p95 latency in milliseconds.
    pub fn latency(mut self, p50_ms: f64, p95_ms: f64) -> Self {
        self.latency_p50_ms = p50_ms;
        self.latency_p95_ms = p95_ms;
        self
    }

    /// Sets health.
    pub fn healthy(mut self, healthy: bool) -> Self {
        self.healthy = healthy;
        self
    }

    /// Sets the error rate, in-flight count and queue depth.
    pub fn load(mut self, error_rate: f64, in_flight: u32, queue_depth: u32) -> Self {
        self.error_rate = error_rate;
        self.in_flight = in_flight;
        self.queue_depth = queue_depth;
        self
    }

    /// Adds an operator label.
    pub fn with_label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// True for a local backend.
    pub fn is_local(&self) -> bool {
        self.kind == BackendKind::Local
    }

    /// True for a cloud backend.
    pub fn is_cloud(&self) -> bool {
        self.kind == BackendKind::Cloud
    }

    /// True when `tokens` fit its context window.
    pub fn fits(&self, tokens: u32) -> bool {
        tokens <= self.context_window
    }

    /// Its default model.
    pub fn default_model(&self) -> Option<&str> {
        self.models.first().map(String::as_str)
    }

    /// True when it serves `model`.
    pub fn serves(&self, model: &str) -> bool {
        self.models.iter().any(|m| m == model)
    }

    /// The value of operator label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// Estimated USD for `input` prompt tokens and `output` completion tokens.
    pub fn cost_usd(&self, input: u32, output: u32) -> f64 {
        (f64::from(input) * self.usd_per_mtok_in + f64::from(output) * self.usd_per_mtok_out)
            / 1_000_000.0
    }

    /// Price of a typical request (input and output weighted 3:1), USD per Mtok.
    pub fn blended_price(&self) -> f64 {
        (3.0 * self.usd_per_mtok_in + self.usd_per_mtok_out) / 4.0
    }

    /// Requests ahead of a new one: in flight plus queued.
    pub fn load_depth(&self) -> u32 {
        self.in_flight.saturating_add(self.queue_depth)
    }
}

/// Spend for a scope (tenant), USD. Budgets are `None` when unset.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpendStatus {
    pub scope: String,
    /// Settled plus reserved spend since 00:00 UTC today.
    pub today_usd: f64,
    /// Settled plus reserved spend since the first of this month (UTC).
    pub month_usd: f64,
    pub daily_budget_usd: Option<f64>,
    pub monthly_budget_usd: Option<f64>,
    /// Monthly hard cap: past it the host refuses requests itself.
    pub hard_cap_usd: Option<f64>,
}

impl SpendStatus {
    /// No spend and no budgets for `scope`.
    pub fn new(scope: impl Into<String>) -> Self {
        Self {
            scope: scope.into(),
            ..Self::default()
        }
    }

    /// Sets today's and this month's spend.
    pub fn spent(mut self, today_usd: f64, month_usd: f64) -> Self {
        self.today_usd = today_usd;
        self.month_usd = month_usd;
        self
    }

    /// Sets the daily budget.
    pub fn daily_budget(mut self, usd: f64) -> Self {
        self.daily_budget_usd = Some(usd);
        self
    }

    /// Sets the monthly budget.
    pub fn monthly_budget(mut self, usd: f64) -> Self {
        self.monthly_budget_usd = Some(usd);
        self
    }

    /// Sets the monthly hard cap.
    pub fn hard_cap(mut self, usd: f64) -> Self {
        self.hard_cap_usd = Some(usd);
        self
    }

    /// Fraction of the daily budget spent today (`None` without a positive budget).
    pub fn daily_fraction(&self) -> Option<f64> {
        fraction(self.today_usd, self.daily_budget_usd)
    }

    /// Fraction of the monthly budget spent this month (`None` without a positive budget).
    pub fn monthly_fraction(&self) -> Option<f64> {
        fraction(self.month_usd, self.monthly_budget_usd)
    }

    /// The larger of the daily and monthly fractions (`None` without any budget).
    pub fn budget_fraction(&self) -> Option<f64> {
        match (self.daily_fraction(), self.monthly_fraction()) {
            (Some(d), Some(m)) => Some(d.max(m)),
            (d, m) => d.or(m),
        }
    }

    /// True when this month's spend reached the hard cap.
    pub fn over_hard_cap(&self) -> bool {
        self.hard_cap_usd.is_some_and(|cap| self.month_usd >= cap)
    }

    /// USD left before the nearest budget or cap (`None` without any).
    pub fn remaining_usd(&self) -> Option<f64> {
        [
            self.daily_budget_usd.map(|b| b - self.today_usd),
            self.monthly_budget_usd.map(|b| b - self.month_usd),
            self.hard_cap_usd.map(|b| b - self.month_usd),
        ]
        .into_iter()
        .flatten()
        .reduce(f64::min)
    }
}

fn fraction(spent: f64, budget: Option<f64>) -> Option<f64> {
    budget
        .filter(|b| b.is_finite() && *b > 0.0)
        .map(|b| if spent.is_finite() { spent / b } else { 0.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_helpers() {
        let b = BackendStatus::cloud("openai", "gpt-4o")
            .also_serves("gpt-4o-mini")
            .price(2.5, 10.0)
            .context(128_000)
            .load(0.1, 2, 3)
            .with_label("region", "eu");
        assert!(b.is_cloud() && !b.is_local());
        assert!(b.fits(128_000) && !b.fits(128_001));
        assert_eq!(b.default_model(), Some("gpt-4o"));
        assert!(b.serves("gpt-4o-mini"));
        assert_eq!(b.label("region"), Some("eu"));
        assert!((b.cost_usd(1_000_000, 100_000) - 3.5).abs() < 1e-9);
        assert_eq!(b.load_depth(), 5);
    }

    #[test]
    fn spend_fractions() {
        let s = SpendStatus::new("acme")
            .spent(8.0, 50.0)
            .daily_budget(10.0)
            .monthly_budget(200.0)
            .hard_cap(300.0);
        assert_eq!(s.daily_fraction(), Some(0.8));
        assert_eq!(s.monthly_fraction(), Some(0.25));
        assert_eq!(s.budget_fraction(), Some(0.8));
        assert_eq!(s.remaining_usd(), Some(2.0));
        assert!(!s.over_hard_cap());
        assert!(
            SpendStatus::new("x")
                .spent(0.0, 300.0)
                .hard_cap(300.0)
                .over_hard_cap()
        );
        assert_eq!(SpendStatus::new("x").budget_fraction(), None);
        assert_eq!(
            SpendStatus::new("x").daily_budget(0.0).daily_fraction(),
            None
        );
    }
}
