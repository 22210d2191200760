//! Policy case files (`policies/<name>/cases.json`): parsing, running each case through
//! the real sandbox, and checking its expectations.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use super::{Evaluation, FailureKind, HostState, LoadedPolicy, PolicySpec, StaticHost};
use crate::domain::{
    BackendKind, BackendStatus, ChatMessage, PolicyRequest, RequestNeeds, SpendStatus, Verdict,
};

/// A whole case file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    #[serde(default)]
    pub backends: Option<Vec<BackendStatus>>,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    #[serde(default)]
    pub spend: BTreeMap<String, SpendStatus>,
    pub cases: Vec<Case>,
}

/// One case: a request, optional overrides, and what must hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    pub request: CaseRequest,
    #[serde(default)]
    pub backends: Option<Vec<BackendStatus>>,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    #[serde(default)]
    pub spend: BTreeMap<String, SpendStatus>,
    #[serde(default)]
    pub expect: Expect,
}

/// A request with every field but `messages` optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseRequest {
    pub messages: Vec<ChatMessage>,
    pub id: Option<String>,
    pub model: Option<String>,
    pub tenant: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    #[serde(default)]
    pub streaming: bool,
    pub prompt_tokens: Option<u32>,
    /// What the request needs (tools, JSON, logprobs, images, `n`); `explicit_model` is
    /// also set when a backend of the case serves `model`.
    #[serde(default)]
    pub needs: RequestNeeds,
}

/// Expectations; every key optional, all must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub targets: Option<Vec<String>>,
    pub first: Option<String>,
    pub excludes: Option<Vec<String>>,
    pub kinds: Option<Vec<BackendKind>>,
    pub reject: Option<u16>,
    pub reason_contains: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub max_tokens: Option<u32>,
    pub rewritten: Option<bool>,
    pub text_excludes: Option<Vec<String>>,
    pub fallback: Option<bool>,
}

/// The outcome of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    pub name: String,
    /// Empty when the case passed.
    pub problems: Vec<String>,
    pub verdict: Verdict,
    /// How long the (last) decision took, instantiation included.
    pub elapsed: std::time::Duration,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Errors reading a case file.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    #[error("case file is not valid: {0}")]
    Parse(#[from] serde_json::Error),
}

impl CaseFile {
    pub fn parse(text: &str) -> Result<Self, CaseError> {
        Ok(serde_json::from_str(text)?)
    }
}

/// Builds the request the host would send for `case` (prompt tokens counted by `host`).
pub fn build_request(case: &Case, host: &StaticHost) -> PolicyRequest {
    use super::HostState;
    let r = &case.request;
    let prompt_tokens = r.prompt_tokens.unwrap_or_else(|| {
        r.messages
            .iter()
            .map(|m| host.count_tokens(&m.content))
            .fold(0u32, u32::saturating_add)
    });
    let model = r.model.clone().unwrap_or_else(|| "auto".to_owned());
    let mut needs = r.needs.clone();
    needs.explicit_model |= host.backends.iter().any(|b| b.models.contains(&model));
    PolicyRequest {
        id: r.id.clone().unwrap_or_else(|| case.name.clone()),
        model,
        messages: r.messages.clone(),
        max_tokens: r.max_tokens,
        temperature: r.temperature,
        streaming: r.streaming,
        tenant: r.tenant.clone().unwrap_or_else(|| "default".to_owned()),
        labels: r.labels.clone(),
        prompt_tokens,
        needs,
    }
}

/// Extra attempts for a decision that missed its deadline.
const TIMING_RETRIES: usize = 2;

/// Decides `request`, trying again (up to [`TIMING_RETRIES`] times) when the decision
/// missed its deadline: self-tests check what a policy decides, not its speed, and a
/// busy machine or a fresh component's first (coldest) decision can miss a few-ms
/// deadline. A policy that is always too slow still fails.
pub async fn decide_patiently(
    policy: &LoadedPolicy,
    request: &PolicyRequest,
    host: Arc<dyn HostState>,
) -> Evaluation {
    let mut eval = policy.decide(request, host.clone()).await;
    for _ in 0..TIMING_RETRIES {
        let timing = eval
            .failure
            .as_ref()
            .is_some_and(|f| matches!(f.kind, FailureKind::Deadline | FailureKind::Timeout));
        if !timing {
            break;
        }
        eval = policy.decide(request, host.clone()).await;
    }
    eval
}

/// A case's host (backends and spend), request, and spec (the file's params merged with
/// the case's; `policy`'s name and fallback).
fn setup(
    policy: &LoadedPolicy,
    file: &CaseFile,
    case: &Case,
) -> (StaticHost, PolicyRequest, PolicySpec) {
    let mut host = StaticHost::default();
    if let Some(b) = case.backends.clone().or_else(|| file.backends.clone()) {
        host.backends = b;
    }
    host.spend = file.spend.clone();
    host.spend.extend(case.spend.clone());
    let mut params = policy.spec().params.clone();
    params.extend(file.params.clone());
    params.extend(case.params.clone());
    let spec = PolicySpec {
        params,
        ..policy.spec().clone()
    };
    let request = build_request(case, &host);
    (host, request, spec)
}

/// Runs every case of `file` against `policy` (its spec's name and fallback are kept;
/// params are the file's merged with each case's).
pub async fn run(policy: &LoadedPolicy, file: &CaseFile) -> Vec<CaseResult> {
    let mut results = Vec::with_capacity(file.cases.len());
    for case in &file.cases {
        let (host, request, spec) = setup(policy, file, case);
        let backends = host.backends.clone();
        let policy = policy.with_spec(spec);
        let host: Arc<StaticHost> = Arc::new(host);
        let eval = if case.expect.fallback == Some(true) {
            policy.decide(&request, host.clone()).await
        } else {
            decide_patiently(&policy, &request, host.clone()).await
        };
        let mut problems = check(&case.expect, &eval.verdict, &backends);
        match (case.expect.fallback, &eval.failure) {
            (Some(true), None) => problems.push("expected the guest to fail (fallback)".into()),
            (Some(false) | None, Some(f)) => problems.push(format!("guest failed: {f}")),
            _ => {}
        }
        results.push(CaseResult {
            name: case.name.clone(),
            problems,
            verdict: eval.verdict,
            elapsed: eval.elapsed,
        });
    }
    results
}

/// A request id in the gateway's live format (`chatcmpl-` and hex digits), random each
/// call: what the smoke decision and the self-test give a policy, so that it cannot tell
/// them from live traffic by a fixed id.
pub fn live_like_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let random = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.finish()
    };
    format!(
        "chatcmpl-{:x}{:06x}",
        random() & 0xffff_ffff_ffff,
        random() & 0xff_ffff
    )
}

/// [`run`] with a fresh [`live_like_id`] for every case that names no id (what the
/// gateway's self-test does before a version goes live).
pub async fn run_with_live_ids(policy: &LoadedPolicy, file: &CaseFile) -> Vec<CaseResult> {
    let mut file = file.clone();
    for case in &mut file.cases {
        if case.request.id.is_none() {
            case.request.id = Some(live_like_id());
        }
    }
    run(policy, &file).await
}

/// Runs the cases of `file` again on reused instances (the whole file twice over, one
/// warm pool per parameter set) and describes each decision whose verdict differs from
/// the fresh-instance verdict in `fresh` (what [`run`] returned for the same file). A
/// policy that carries per-request state from one decision into the next shows up here;
/// only a policy with no difference is safe to run with `warm_instances`. `policy` must
/// be loaded with `warm_instances` of at least 1. Cases that expect a fallback are
/// skipped: a failed call never returns its instance to the pool.
pub async fn warm_differences(
    policy: &LoadedPolicy,
    file: &CaseFile,
    fresh: &[CaseResult],
) -> Vec<String> {
    let mut pools: Vec<LoadedPolicy> = Vec::new();
    let mut differences = Vec::new();
    for round in 1..=2 {
        for (case, fresh) in file.cases.iter().zip(fresh) {
            if case.expect.fallback == Some(true) {
                continue;
            }
            let (host, request, spec) = setup(policy, file, case);
            let pool = match pools.iter().position(|p| p.spec().params == spec.params) {
                Some(i) => i,
                None => {
                    pools.push(policy.with_spec(spec));
                    pools.len() - 1
                }
            };
            let eval = decide_patiently(&pools[pool], &request, Arc::new(host)).await;
            if eval.verdict != fresh.verdict {
                let show = |v: &Verdict| serde_json::to_string(v).unwrap_or_default();
                differences.push(format!(
                    "{} (round {round}): {} on a reused instance, {} on a fresh one",
                    case.name,
                    show(&eval.verdict),
                    show(&fresh.verdict)
                ));
            }
        }
    }
    differences
}

/// Checks `expect` against a verdict; returns the problems found.
pub fn check(expect: &Expect, verdict: &Verdict, backends: &[BackendStatus]) -> Vec<String> {
    let mut problems = Vec::new();
    let decision = match verdict {
        Verdict::Reject(r) => {
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
        Verdict::Route(d) => d,
    };
    if let Some(status) = expect.reject {
        problems.push(format!("expected rejection {status}, got a route"));
    }
    let names: Vec<&str> = decision
        .targets
        .iter()
        .map(|t| t.backend.as_str())
        .collect();
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
    if let Some(excl) = &expect.excludes {
        for e in excl {
            if names.contains(&e.as_str()) {
                problems.push(format!("targets {names:?} include excluded {e:?}"));
            }
        }
    }
    if let Some(kinds) = &expect.kinds {
        for name in &names {
            let kind = backends.iter().find(|b| b.name == *name).map(|b| b.kind);
            if !kind.is_some_and(|k| kinds.contains(&k)) {
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
    if let Some(labels) = &expect.labels {
        for (k, v) in labels {
            if decision.labels.get(k) != Some(v) {
                problems.push(format!(
                    "label {k}={:?}, expected {v:?}",
                    decision.labels.get(k)
                ));
            }
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
    if let Some(excl) = &expect.text_excludes {
        for m in decision.messages.iter().flatten() {
            for e in excl {
                if m.content.contains(e.as_str()) {
                    problems.push(format!("rewritten messages still contain {e:?}"));
                }
            }
        }
    }
    problems
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::{Decision, Rejection};

    fn route(names: &[&str]) -> Verdict {
        Verdict::Route(Decision {
            max_tokens: Some(256),
            labels: BTreeMap::from([("route".to_owned(), "local".to_owned())]),
            ..Decision::to_backends(names.iter().copied(), "pii found")
        })
    }

    #[test]
    fn parses_the_brief_format_and_checks() {
        let file = CaseFile::parse(
            r#"{"params":{"a":"b"},"cases":[{"name":"c","request":{"messages":[{"role":"user","content":"hi"}],"tenant":"acme"},
            "expect":{"targets":["local"],"first":"local","excludes":["openai"],"kinds":["local"],"reason_contains":"pii",
            "labels":{"route":"local"},"max_tokens":256,"rewritten":false}}]}"#,
        )
        .unwrap();
        let host = StaticHost::default();
        let case = &file.cases[0];
        let req = build_request(case, &host);
        assert_eq!(
            (req.id.as_str(), req.model.as_str(), req.tenant.as_str()),
            ("c", "auto", "acme")
        );
        assert!(req.prompt_tokens > 0);
        assert!(check(&case.expect, &route(&["local"]), &host.backends).is_empty());
        let bad = check(&case.expect, &route(&["openai", "local"]), &host.backends);
        assert_eq!(bad.len(), 4, "{bad:?}");
    }

    #[test]
    fn rejection_expectations() {
        let expect = Expect {
            reject: Some(429),
            ..Expect::default()
        };
        let v = Verdict::Reject(Rejection {
            status: 429,
            message: "budget".into(),
        });
        assert!(check(&expect, &v, &[]).is_empty());
        assert_eq!(check(&Expect::default(), &v, &[]).len(), 1);
        assert_eq!(check(&expect, &route(&["local"]), &[]).len(), 1);
    }

    #[test]
    fn live_like_ids_vary_and_look_live() {
        let ids: std::collections::BTreeSet<String> = (0..50).map(|_| live_like_id()).collect();
        assert_eq!(ids.len(), 50);
        for id in &ids {
            let hex = id.strip_prefix("chatcmpl-").unwrap();
            assert!(
                hex.len() >= 6 && hex.chars().all(|c| c.is_ascii_hexdigit()),
                "{id}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(CaseFile::parse(r#"{"cases":[],"bogus":1}"#).is_err());
    }
}
