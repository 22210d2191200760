//! Which version decides a request: the slot (model alias, else tenant, else the default),
//! then the slot's canary bucket, and shadow evaluation of a shadow candidate off the
//! response path. This is the policy set as the dispatcher's [`RoutingRule`].

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::{Candidate, CandidateMode, Disagreement, PolicySet, Slot, SlotConfig, lock};
use crate::dispatch::{GatewayHost, RouteEvaluation, RoutingRule};
use crate::domain::{PolicyRequest, Verdict};
use crate::policy::{Evaluation, policy_label};

/// Shadow disagreements kept as samples.
const SAMPLES: usize = 20;

/// Index of the slot deciding a request for `model` from `tenant`: the first scoped to
/// the model alias, else the first scoped to the tenant, else the default (0).
fn scoped_slot<I>(configs: I, model: &str, tenant: &str) -> usize
where
    I: Iterator + Clone,
    I::Item: Deref<Target = Arc<SlotConfig>>,
{
    configs
        .clone()
        .position(|c| c.models.iter().any(|m| m == model))
        .or_else(|| {
            configs
                .clone()
                .position(|c| c.tenants.iter().any(|t| t == tenant))
        })
        .unwrap_or(0)
}

/// The key a request's canary bucket comes from: its tenant, or its id for the
/// unauthenticated default tenant (which would otherwise put everyone in one bucket).
fn canary_key(request: &PolicyRequest) -> &str {
    if request.tenant == crate::config::defaults::TENANT {
        &request.id
    } else {
        &request.tenant
    }
}

/// A stable bucket in 0..10000 for canary assignment.
fn bucket(key: &str) -> u64 {
    policy_sdk::fnv::fnv1a(key.as_bytes()) % 10_000
}

/// Whether `key` falls in a canary serving `percent` % of traffic.
fn in_canary(key: &str, percent: f64) -> bool {
    (bucket(key) as f64) < percent * 100.0
}

/// Short text of a verdict for comparisons and samples.
fn summary(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Route(d) => {
            let targets: Vec<&str> = d.targets.iter().map(|t| t.backend.as_str()).collect();
            format!("route {}", targets.join(","))
        }
        Verdict::Reject(r) => format!("reject {}", r.status),
    }
}

impl Candidate {
    /// Counts one shadow decision: agreement, a disagreement (sampled), or, when either
    /// side failed and took its fallback, neither (a fallback says nothing of the rules).
    fn record_shadow(
        &self,
        request_id: &str,
        live: &Evaluation,
        shadow: &Evaluation,
        policy: &str,
    ) {
        let (live_failed, shadow_failed) = (live.failure.is_some(), shadow.failure.is_some());
        let (live, shadow) = (summary(&live.verdict), summary(&shadow.verdict));
        let outcome = if live_failed || shadow_failed {
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
            "fallback"
        } else if live == shadow {
            self.agree.fetch_add(1, Ordering::Relaxed);
            "agree"
        } else {
            self.disagree.fetch_add(1, Ordering::Relaxed);
            let mut samples = lock(&self.samples);
            if samples.len() < SAMPLES {
                samples.push(Disagreement {
                    request_id: request_id.to_owned(),
                    live,
                    candidate: shadow,
                });
            }
            "disagree"
        };
        metrics::counter!("switchyard_policy_shadow_total",
            "policy" => policy.to_owned(), "outcome" => outcome)
        .increment(1);
    }
}

impl PolicySet {
    /// The slot deciding `request`.
    fn select(&self, request: &PolicyRequest) -> &Arc<Slot> {
        let configs = self.slots.iter().map(|s| s.config.load());
        &self.slots[scoped_slot(configs, &request.model, &request.tenant)]
    }
}

impl RoutingRule for PolicySet {
    fn label(&self) -> String {
        policy_label(&self.slots[0].live().policy)
    }

    fn aliases(&self) -> Vec<String> {
        self.slots
            .iter()
            .flat_map(|s| s.config.load().models.clone())
            .collect()
    }

    fn decide<'a>(
        &'a self,
        request: &'a PolicyRequest,
        host: Arc<GatewayHost>,
    ) -> BoxFuture<'a, RouteEvaluation> {
        let slot = self.select(request).clone();
        async move {
            slot.decisions.fetch_add(1, Ordering::Relaxed);
            let mut version = slot.live();
            let mut shadow = None;
            if let Some(c) = slot.candidate() {
                match c.mode {
                    CandidateMode::Canary { percent } => {
                        if in_canary(canary_key(request), percent) {
                            c.served.fetch_add(1, Ordering::Relaxed);
                            version = c.version.clone();
                        }
                    }
                    CandidateMode::Shadow => shadow = Some(c),
                }
            }
            let evaluation = version.policy.decide(request, host.clone()).await;
            if let Some(c) = shadow {
                // Evaluated off the response path: the client never waits for the shadow.
                let request = request.clone();
                let live = evaluation.clone();
                let name = version.policy.name().to_owned();
                tokio::spawn(async move {
                    let candidate = c.version.policy.decide(&request, host).await;
                    c.served.fetch_add(1, Ordering::Relaxed);
                    c.record_shadow(&request.id, &live, &candidate, &name);
                });
            }
            RouteEvaluation {
                policy: policy_label(&version.policy),
                verdict: evaluation.verdict,
                failure: evaluation.failure.map(|f| f.to_string()),
                elapsed: evaluation.elapsed,
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;
    use crate::domain::{Decision, Rejection};

    fn config(name: &str, models: &[&str], tenants: &[&str]) -> SlotConfig {
        SlotConfig {
            name: name.to_owned(),
            path: PathBuf::from(format!("{name}.wasm")),
            params: BTreeMap::new(),
            fallback: Decision::to_backends(["local"], "fallback"),
            models: models.iter().map(|m| (*m).to_owned()).collect(),
            tenants: tenants.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    fn request(model: &str, tenant: &str, id: &str) -> PolicyRequest {
        PolicyRequest {
            id: id.to_owned(),
            model: model.to_owned(),
            messages: Vec::new(),
            max_tokens: None,
            temperature: None,
            streaming: false,
            tenant: tenant.to_owned(),
            labels: BTreeMap::new(),
            prompt_tokens: 0,
            needs: Default::default(),
        }
    }

    #[test]
    fn model_alias_beats_tenant_beats_default() {
        let configs = [
            config("default", &[], &[]),
            config("acme", &[], &["acme"]),
            config("private", &["auto-private"], &[]),
        ]
        .map(Arc::new);
        let pick = |model, tenant| scoped_slot(configs.iter(), model, tenant);
        assert_eq!(pick("auto-private", "acme"), 2);
        assert_eq!(pick("auto", "acme"), 1);
        assert_eq!(pick("auto", "other"), 0);
        assert_eq!(pick("auto-private", "other"), 2);
    }

    #[test]
    fn the_first_matching_slot_wins() {
        let configs = [
            config("default", &[], &[]),
            config("a", &[], &["acme"]),
            config("b", &[], &["acme"]),
        ]
        .map(Arc::new);
        assert_eq!(scoped_slot(configs.iter(), "auto", "acme"), 1);
    }

    #[test]
    fn buckets_are_stable_and_spread() {
        assert_eq!(bucket("acme"), bucket("acme"));
        let in_ten = (0..10_000)
            .filter(|i| bucket(&format!("tenant-{i}")) < 1_000)
            .count();
        assert!((900..=1_100).contains(&in_ten), "{in_ten}");
    }

    #[test]
    fn canary_buckets_by_tenant_or_by_request_for_the_default_tenant() {
        let tenant = crate::config::defaults::TENANT;
        assert_eq!(canary_key(&request("auto", "acme", "r1")), "acme");
        assert_eq!(canary_key(&request("auto", tenant, "r1")), "r1");
        assert!(!in_canary("acme", 0.0));
        assert!(in_canary("acme", 100.0));
    }

    #[test]
    fn summaries_name_first_targets_or_the_status() {
        let route = Verdict::Route(Decision::to_backends(["local", "openai"], "x"));
        assert_eq!(summary(&route), "route local,openai");
        let reject = Verdict::Reject(Rejection {
            status: 429,
            message: "no".to_owned(),
        });
        assert_eq!(summary(&reject), "reject 429");
    }
}
