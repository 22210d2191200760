//! Native case runner: the `cases.json` that `switchyard policy test` runs through the
//! sandbox, run against [`MockHost`] with `cargo test` (format:
//! `policy-sdk/cases.schema.json`; the expectations are the host's).

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::Deserialize;

use crate::backend::{BackendKind, BackendStatus, ModelCapabilities, SpendStatus};
use crate::host::{Host, Policy};
use crate::testing::{MockHost, demo_backends};
use crate::types::{Decision, Message, Needs, Rejection, Request, ResponseFormat, Role};

/// The outcome of one case: empty `problems` means it passed.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseOutcome {
    pub name: String,
    pub problems: Vec<String>,
}

/// Runs every case of the case file `json` against `P` on a [`MockHost`] (the demo
/// backends unless the file or case lists its own; the file's params merged with the
/// case's; its spend). A route that panics counts as the host's fallback.
pub fn run<P: Policy>(json: &str) -> Result<Vec<CaseOutcome>, String> {
    let file: File =
        serde_json::from_str(json).map_err(|e| format!("case file is not valid: {e}"))?;
    let mut outcomes = Vec::with_capacity(file.cases.len());
    for case in &file.cases {
        let backends: Vec<BackendStatus> = match case.backends.as_ref().or(file.backends.as_ref()) {
            Some(list) => list.iter().map(JsonBackend::to_status).collect(),
            None => demo_backends(),
        };
        let mut host = MockHost::new().with_backends(backends.clone());
        for (k, v) in file.params.iter().chain(&case.params) {
            host = host.with_param(k.clone(), v.clone());
        }
        for (scope, s) in file.spend.iter().chain(&case.spend) {
            host = host.with_spend(s.to_status(scope));
        }
        let request = case.request.to_request(&host, &backends);
        let routed = catch_unwind(AssertUnwindSafe(|| P::route(&host, &request)));
        let problems = match routed {
            Ok(verdict) => check(&case.expect, &verdict, &backends),
            Err(_) if case.expect.fallback == Some(true) => Vec::new(),
            Err(_) => vec!["route panicked (the host would use the fallback)".to_owned()],
        };
        outcomes.push(CaseOutcome {
            name: case.name.clone(),
            problems,
        });
    }
    Ok(outcomes)
}

/// [`run`] for a `#[test]`: panics naming every failed case and its problems.
pub fn assert_cases<P: Policy>(json: &str) {
    let outcomes = match run::<P>(json) {
        Ok(outcomes) => outcomes,
        Err(e) => panic!("{e}"),
    };
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.problems.is_empty())
        .map(|o| format!("FAIL {}: {}", o.name, o.problems.join("; ")))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} cases failed:\n{}",
        failed.len(),
        outcomes.len(),
        failed.join("\n")
    );
}

/// What must hold of a verdict (the host's `check` in `policy/cases.rs`).
fn check(
    expect: &Expect,
    verdict: &Result<Decision, Rejection>,
    backends: &[BackendStatus],
) -> Vec<String> {
    let mut problems = Vec::new();
    if expect.fallback == Some(true) {
        problems.push("expected the policy to fail (fallback), it returned".to_owned());
    }
    let decision = match verdict {
        Err(r) => {
            match expect.reject {
                Some(status) if status == r.status => {}
                Some(status) => {
                    problems.push(format!("rejected with {}, expected {status}", r.status))
                }
                None => problems.push(format!("unexpected rejection {}: {}", r.status, r.message)),
            }
            if let Some(s) = &expect.reason_contains
                && !r.message.contains(s.as_str())
            {
                problems.push(format!("rejection message {:?} lacks {s:?}", r.message));
            }
            return problems;
        }
        Ok(d) => d,
    };
    if let Some(status) = expect.reject {
        problems.push(format!("expected rejection {status}, got a route"));
    }
    let names = decision.backends();
    if let Some(want) = &expect.targets
        && names != want.iter().map(String::as_str).collect::<Vec<_>>()
    {
        problems.push(format!("targets {names:?}, expected {want:?}"));
    }
    if let Some(first) = &expect.first
        && names.first() != Some(&first.as_str())
    {
        problems.push(format!(
            "first target {:?}, expected {first:?}",
            names.first()
        ));
    }
    for e in expect.excludes.iter().flatten() {
        if names.contains(&e.as_str()) {
            problems.push(format!("targets {names:?} include excluded {e:?}"));
        }
    }
    if let Some(kinds) = &expect.kinds {
        for name in &names {
            let kind = backends.iter().find(|b| b.name == *name).map(|b| b.kind);
            if !kind.is_some_and(|k| kinds.iter().any(|want| want.kind() == k)) {
                problems.push(format!(
                    "target {name:?} has kind {kind:?}, expected one of {kinds:?}"
                ));
            }
        }
    }
    if let Some(s) = &expect.reason_contains
        && !decision.reason.contains(s.as_str())
    {
        problems.push(format!("reason {:?} lacks {s:?}", decision.reason));
    }
    for (k, v) in expect.labels.iter().flatten() {
        if decision.labels.get(k) != Some(v) {
            problems.push(format!(
                "label {k}={:?}, expected {v:?}",
                decision.labels.get(k)
            ));
        }
    }
    if let Some(max) = expect.max_tokens
        && decision.max_tokens != Some(max)
    {
        problems.push(format!(
            "max_tokens {:?}, expected {max}",
            decision.max_tokens
        ));
    }
    if let Some(rewritten) = expect.rewritten
        && decision.messages.is_some() != rewritten
    {
        problems.push(format!(
            "rewritten is {}, expected {rewritten}",
            decision.messages.is_some()
        ));
    }
    for m in decision.messages.iter().flatten() {
        for e in expect.text_excludes.iter().flatten() {
            if m.content.contains(e.as_str()) {
                problems.push(format!("rewritten messages still contain {e:?}"));
            }
        }
    }
    problems
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    backends: Option<Vec<JsonBackend>>,
    #[serde(default)]
    params: BTreeMap<String, String>,
    #[serde(default)]
    spend: BTreeMap<String, JsonSpend>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    request: JsonRequest,
    #[serde(default)]
    backends: Option<Vec<JsonBackend>>,
    #[serde(default)]
    params: BTreeMap<String, String>,
    #[serde(default)]
    spend: BTreeMap<String, JsonSpend>,
    #[serde(default)]
    expect: Expect,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Expect {
    targets: Option<Vec<String>>,
    first: Option<String>,
    excludes: Option<Vec<String>>,
    kinds: Option<Vec<JsonKind>>,
    reject: Option<u16>,
    reason_contains: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    max_tokens: Option<u32>,
    rewritten: Option<bool>,
    text_excludes: Option<Vec<String>>,
    fallback: Option<bool>,
}

#[derive(Deserialize, Clone, Copy, Debug)]
#[serde(rename_all = "lowercase")]
enum JsonKind {
    Local,
    Cloud,
}

impl JsonKind {
    fn kind(self) -> BackendKind {
        match self {
            JsonKind::Local => BackendKind::Local,
            JsonKind::Cloud => BackendKind::Cloud,
        }
    }
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum JsonRole {
    System,
    User,
    Assistant,
    Tool,
}

#[derive(Deserialize)]
struct JsonMessage {
    role: JsonRole,
    content: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonRequest {
    messages: Vec<JsonMessage>,
    id: Option<String>,
    model: Option<String>,
    tenant: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    max_tokens: Option<u32>,
    temperature: Option<f32>,
    #[serde(default)]
    streaming: bool,
    prompt_tokens: Option<u32>,
    #[serde(default)]
    needs: JsonNeeds,
}

impl JsonRequest {
    /// The request the host builds: tokens counted by `host` unless given; an explicit
    /// model when the request says so or a backend of the case serves `model`.
    fn to_request(&self, host: &MockHost, backends: &[BackendStatus]) -> Request {
        let messages: Vec<Message> = self
            .messages
            .iter()
            .map(|m| {
                let role = match m.role {
                    JsonRole::System => Role::System,
                    JsonRole::User => Role::User,
                    JsonRole::Assistant => Role::Assistant,
                    JsonRole::Tool => Role::Tool,
                };
                Message::new(role, m.content.clone())
            })
            .collect();
        let prompt_tokens = self.prompt_tokens.unwrap_or_else(|| {
            messages
                .iter()
                .map(|m| host.count_tokens(&m.content))
                .fold(0u32, u32::saturating_add)
        });
        let model = self.model.clone().unwrap_or_else(|| "auto".to_owned());
        let explicit_model =
            self.needs.explicit_model || backends.iter().any(|b| b.models.contains(&model));
        let mut request = Request::new(messages).prompt_tokens(prompt_tokens);
        request.id = self.id.clone().unwrap_or_else(|| "req-1".to_owned());
        request.model = model;
        request.max_tokens = self.max_tokens;
        request.temperature = self.temperature;
        request.streaming = self.streaming;
        request.tenant = self.tenant.clone().unwrap_or_else(|| "default".to_owned());
        request.labels = self.labels.clone();
        request.needs = self.needs.to_needs();
        request.explicit_model = explicit_model;
        request
    }
}

#[derive(Deserialize)]
#[serde(default)]
struct JsonNeeds {
    tools: Vec<String>,
    response_format: JsonFormat,
    logprobs: bool,
    images: u32,
    n: u32,
    explicit_model: bool,
}

impl Default for JsonNeeds {
    fn default() -> Self {
        Self {
            tools: Vec::new(),
            response_format: JsonFormat::Text,
            logprobs: false,
            images: 0,
            n: 1,
            explicit_model: false,
        }
    }
}

impl JsonNeeds {
    fn to_needs(&self) -> Needs {
        Needs {
            tools: self.tools.clone(),
            response_format: match self.response_format {
                JsonFormat::Text => ResponseFormat::Text,
                JsonFormat::JsonObject => ResponseFormat::JsonObject,
                JsonFormat::JsonSchema => ResponseFormat::JsonSchema,
            },
            logprobs: self.logprobs,
            images: self.images,
            n: self.n,
        }
    }
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum JsonFormat {
    Text,
    JsonObject,
    JsonSchema,
}

#[derive(Deserialize)]
struct JsonBackend {
    name: String,
    kind: JsonKind,
    models: Vec<String>,
    healthy: bool,
    #[serde(default)]
    latency_p50_ms: f64,
    #[serde(default)]
    latency_p95_ms: f64,
    #[serde(default)]
    error_rate: f64,
    #[serde(default)]
    in_flight: u32,
    #[serde(default)]
    queue_depth: u32,
    #[serde(default)]
    usd_per_mtok_in: f64,
    #[serde(default)]
    usd_per_mtok_out: f64,
    context_window: u32,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    capabilities: Vec<JsonCapabilities>,
}

impl JsonBackend {
    fn to_status(&self) -> BackendStatus {
        BackendStatus {
            name: self.name.clone(),
            kind: self.kind.kind(),
            models: self.models.clone(),
            healthy: self.healthy,
            latency_p50_ms: self.latency_p50_ms,
            latency_p95_ms: self.latency_p95_ms,
            error_rate: self.error_rate,
            in_flight: self.in_flight,
            queue_depth: self.queue_depth,
            usd_per_mtok_in: self.usd_per_mtok_in,
            usd_per_mtok_out: self.usd_per_mtok_out,
            context_window: self.context_window,
            labels: self.labels.clone(),
            capabilities: self
                .capabilities
                .iter()
                .map(JsonCapabilities::to_caps)
                .collect(),
        }
    }
}

#[derive(Deserialize)]
struct JsonCapabilities {
    model: String,
    #[serde(default)]
    tools: bool,
    #[serde(default)]
    json_object: bool,
    #[serde(default)]
    json_schema: bool,
    #[serde(default)]
    vision: bool,
    #[serde(default)]
    logprobs: bool,
    #[serde(default)]
    multiple_choices: bool,
    context_window: u32,
    #[serde(default)]
    usd_per_mtok_in: f64,
    #[serde(default)]
    usd_per_mtok_out: f64,
}

impl JsonCapabilities {
    fn to_caps(&self) -> ModelCapabilities {
        ModelCapabilities {
            model: self.model.clone(),
            tools: self.tools,
            json_object: self.json_object,
            json_schema: self.json_schema,
            vision: self.vision,
            logprobs: self.logprobs,
            multiple_choices: self.multiple_choices,
            context_window: self.context_window,
            usd_per_mtok_in: self.usd_per_mtok_in,
            usd_per_mtok_out: self.usd_per_mtok_out,
        }
    }
}

#[derive(Deserialize)]
struct JsonSpend {
    /// Required as in the host's format; the map key is the scope the host answers for.
    #[serde(rename = "scope")]
    _scope: String,
    #[serde(default)]
    today_usd: f64,
    #[serde(default)]
    month_usd: f64,
    #[serde(default)]
    daily_budget_usd: Option<f64>,
    #[serde(default)]
    monthly_budget_usd: Option<f64>,
    #[serde(default)]
    hard_cap_usd: Option<f64>,
}

impl JsonSpend {
    fn to_status(&self, scope: &str) -> SpendStatus {
        SpendStatus {
            scope: scope.to_owned(),
            today_usd: self.today_usd,
            month_usd: self.month_usd,
            daily_budget_usd: self.daily_budget_usd,
            monthly_budget_usd: self.monthly_budget_usd,
            hard_cap_usd: self.hard_cap_usd,
        }
    }
}
