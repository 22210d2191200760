//! Shared helpers for the `policy_*` integration tests: locating built policy components,
//! specs with a recognisable fallback, requests, and reading the failure counter.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use switchyard::domain::{ChatMessage, Decision, PolicyRequest, Role, Target};
use switchyard::policy::PolicySpec;

/// The workspace root (`host/..`).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// `${SWITCHYARD_POLICY_OUT:-target/policies}`, relative paths taken from the workspace root.
pub fn policy_out() -> PathBuf {
    let out = std::env::var_os("SWITCHYARD_POLICY_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/policies"));
    if out.is_absolute() {
        out
    } else {
        workspace_root().join(out)
    }
}

/// Path of a built policy, `None` when it has not been built.
pub fn policy_path(name: &str) -> Option<PathBuf> {
    let path = policy_out().join(format!("{name}.wasm"));
    path.is_file().then_some(path)
}

/// Bytes of a built policy; panics with the command to build it when missing.
pub fn require_policy(name: &str) -> Vec<u8> {
    let path = policy_out().join(format!("{name}.wasm"));
    match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) => panic!(
            "policy component {} is missing ({e}); build the policies first: \
             `bash policies/build.sh` (tests/run.sh does this before `cargo test`)",
            path.display()
        ),
    }
}

/// The decision every test spec falls back to: `gemini`, reason `test-fallback`.
pub fn fallback_decision() -> Decision {
    Decision {
        targets: vec![Target {
            backend: "gemini".into(),
            model: None,
        }],
        reason: "test-fallback".into(),
        messages: None,
        max_tokens: None,
        labels: BTreeMap::new(),
    }
}

pub fn spec(name: &str) -> PolicySpec {
    PolicySpec {
        name: name.into(),
        params: BTreeMap::new(),
        fallback: fallback_decision(),
    }
}

/// A user request carrying `labels`.
pub fn request(id: &str, text: &str, labels: &[(&str, &str)]) -> PolicyRequest {
    PolicyRequest {
        id: id.into(),
        model: "auto".into(),
        messages: vec![ChatMessage {
            role: Role::User,
            content: text.into(),
        }],
        max_tokens: None,
        temperature: None,
        streaming: false,
        tenant: "default".into(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        prompt_tokens: 8,
        needs: Default::default(),
    }
}

/// A request asking the misbehave guest for `mode`.
pub fn misbehave(mode: &str) -> PolicyRequest {
    request(&format!("req-{mode}"), "hello", &[("misbehave", mode)])
}

/// Value of `switchyard_policy_failures_total{policy,kind}` in the Prometheus text, 0 if absent.
pub fn failure_count(rendered: &str, policy: &str, kind: &str) -> u64 {
    rendered
        .lines()
        .filter(|l| l.starts_with("switchyard_policy_failures_total{"))
        .filter(|l| {
            l.contains(&format!("policy=\"{policy}\"")) && l.contains(&format!("kind=\"{kind}\""))
        })
        .filter_map(|l| l.rsplit(' ').next())
        .filter_map(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// Installs the process-wide Prometheus recorder exactly once (tests run on many threads).
pub fn metrics() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        if let Err(e) = switchyard::metrics::install() {
            panic!("installing the metrics recorder: {e}");
        }
    });
}

/// Current `switchyard_policy_failures_total{policy,kind}`.
pub fn failures(policy: &str, kind: &str) -> u64 {
    let rendered = switchyard::metrics::render().unwrap_or_default();
    failure_count(&rendered, policy, kind)
}
