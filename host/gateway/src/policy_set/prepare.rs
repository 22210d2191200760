//! Preparing a version off the request path: compile (or take from the cache) and link
//! on a blocking thread, one smoke decision, then the self-test cases beside the
//! component. Nothing here touches a slot.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::SlotConfig;
use crate::domain::{ChatMessage, PolicyRequest, Role};
use crate::policy::{FailureKind, LoadedPolicy, PolicyEngine, StaticHost, cases};

/// Compiles (or takes from the cache) and links `bytes` on a blocking thread, makes one
/// smoke decision with the demo host (a guest that traps, loops or runs out of memory on
/// a plain request never goes live), then runs the self-test case file beside the
/// component when there is one.
pub(super) async fn prepare(
    engine: &PolicyEngine,
    config: &SlotConfig,
    bytes: Vec<u8>,
) -> Result<LoadedPolicy, String> {
    let started = Instant::now();
    let engine = engine.clone();
    let spec = config.spec();
    let policy = tokio::task::spawn_blocking(move || engine.load(spec, &bytes))
        .await
        .map_err(|e| format!("policy loader task failed: {e}"))?
        .map_err(|e| e.to_string())?;
    smoke(&policy).await?;
    self_test(&policy, config).await?;
    tracing::debug!(policy = %config.name, digest = %policy.digest(),
        prepare_ms = started.elapsed().as_millis() as u64, "policy version prepared");
    Ok(policy)
}

/// Runs the case file beside the component, when there is one: every case must pass.
async fn self_test(policy: &LoadedPolicy, config: &SlotConfig) -> Result<(), String> {
    let cases_file = config.cases_path();
    match tokio::fs::read_to_string(&cases_file).await {
        Ok(text) => {
            let file = cases::CaseFile::parse(&text)
                .map_err(|e| format!("{}: {e}", cases_file.display()))?;
            let failed: Vec<String> = cases::run(policy, &file)
                .await
                .into_iter()
                .filter(|r| !r.passed())
                .map(|r| format!("{}: {}", r.name, r.problems.join("; ")))
                .collect();
            if !failed.is_empty() {
                return Err(format!(
                    "self-test {} failed {} case(s): {}",
                    cases_file.display(),
                    failed.len(),
                    failed.join(" | ")
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("reading {}: {e}", cases_file.display())),
    }
    Ok(())
}

/// One plain request with the demo backends. Only crashes count: a decision naming a
/// backend the demo set lacks is fine (the policy's params may name real ones), and a
/// missed deadline counts only when the retries miss it too (a loaded machine must not
/// stop a gateway from starting).
async fn smoke(policy: &LoadedPolicy) -> Result<(), String> {
    let request = PolicyRequest {
        id: "smoke-test".to_owned(),
        model: "auto".to_owned(),
        messages: vec![ChatMessage {
            role: Role::User,
            content: "Classify the sentiment of: I love this product.".to_owned(),
        }],
        max_tokens: None,
        temperature: None,
        streaming: false,
        tenant: crate::config::defaults::TENANT.to_owned(),
        labels: BTreeMap::new(),
        prompt_tokens: 12,
    };
    let evaluation =
        cases::decide_patiently(policy, &request, Arc::new(StaticHost::default())).await;
    match evaluation.failure {
        Some(f)
            if matches!(
                f.kind,
                FailureKind::Trap
                    | FailureKind::Deadline
                    | FailureKind::Memory
                    | FailureKind::Timeout
            ) =>
        {
            Err(format!("smoke decision failed: {f}"))
        }
        _ => Ok(()),
    }
}
