//! Preparing a version off the request path: compile (or take from the cache) and link
//! on a blocking thread, smoke decisions, then the self-test cases beside the component,
//! all with random request ids in the live format. Nothing here touches a slot.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::SlotConfig;
use super::uploads::{Upload, UploadStage};
use crate::domain::{ChatMessage, PolicyRequest, Role};
use crate::policy::{FailureKind, LoadedPolicy, PolicyEngine, StaticHost, cases};

/// Compiles (or takes from the cache) and links `bytes` on a blocking thread, makes
/// smoke decisions with the demo host (a guest that traps, loops or runs out of memory on
/// a plain request never goes live), then runs the self-test case file beside the
/// component when there is one. `progress`, when given, follows the stages.
pub(super) async fn prepare(
    engine: &PolicyEngine,
    config: &SlotConfig,
    bytes: Vec<u8>,
    progress: Option<&Upload>,
) -> Result<LoadedPolicy, String> {
    let started = Instant::now();
    let stage = |s| {
        if let Some(upload) = progress {
            upload.stage(s);
        }
    };
    stage(UploadStage::Compiling);
    let engine = engine.clone();
    let spec = config.spec();
    let policy = tokio::task::spawn_blocking(move || engine.load(spec, &bytes))
        .await
        .map_err(|e| format!("policy loader task failed: {e}"))?
        .map_err(|e| e.to_string())?;
    stage(UploadStage::Testing);
    smoke(&policy).await?;
    self_test(&policy, config).await?;
    tracing::debug!(policy = %config.name, digest = %policy.digest(),
        prepare_ms = started.elapsed().as_millis() as u64, "policy version prepared");
    Ok(policy)
}

/// Runs the case file beside the component, when there is one: every case must pass.
/// Cases that name no request id get a random one in the live format.
async fn self_test(policy: &LoadedPolicy, config: &SlotConfig) -> Result<(), String> {
    let cases_file = config.cases_path();
    match tokio::fs::read_to_string(&cases_file).await {
        Ok(text) => {
            let file = cases::CaseFile::parse(&text)
                .map_err(|e| format!("{}: {e}", cases_file.display()))?;
            let failed: Vec<String> = cases::run_with_live_ids(policy, &file)
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

/// Plain requests the smoke decisions make, each under a fresh random id in the live
/// format ([`cases::live_like_id`]): a policy that misbehaves only on live traffic cannot
/// pass by recognising a fixed smoke id.
const SMOKE_PROMPTS: [&str; 3] = [
    "Classify the sentiment of: I love this product.",
    "Write a Python function that merges two sorted lists, and explain its complexity.",
    "Summarize in one sentence: the meeting moved to Thursday at 10am in room 4.",
];

/// The smoke requests, each with a new random id.
fn smoke_requests() -> Vec<PolicyRequest> {
    SMOKE_PROMPTS
        .iter()
        .map(|prompt| PolicyRequest {
            id: cases::live_like_id(),
            model: "auto".to_owned(),
            messages: vec![ChatMessage {
                role: Role::User,
                content: (*prompt).to_owned(),
            }],
            max_tokens: None,
            temperature: None,
            streaming: false,
            tenant: crate::config::defaults::TENANT.to_owned(),
            labels: BTreeMap::new(),
            prompt_tokens: crate::domain::estimate_tokens(prompt),
            needs: Default::default(),
        })
        .collect()
}

/// The smoke requests with the demo backends. Only crashes count: a decision naming a
/// backend the demo set lacks is fine (the policy's params may name real ones), and a
/// missed deadline counts only when the retries miss it too (a loaded machine must not
/// stop a gateway from starting).
async fn smoke(policy: &LoadedPolicy) -> Result<(), String> {
    for request in smoke_requests() {
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
                        | FailureKind::OverLimit
                ) =>
            {
                return Err(format!("smoke decision ({}) failed: {f}", request.id));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoke_requests_carry_fresh_live_format_ids() {
        let first: Vec<String> = smoke_requests().into_iter().map(|r| r.id).collect();
        let second: Vec<String> = smoke_requests().into_iter().map(|r| r.id).collect();
        let all: std::collections::BTreeSet<&String> = first.iter().chain(&second).collect();
        assert_eq!(all.len(), 6, "{first:?} {second:?}");
        assert!(first.iter().all(|id| id.starts_with("chatcmpl-")));
        assert_ne!(first, ["smoke-test"; 3]);
    }
}
