//! The routing rule the dispatcher asks for each request: the live policy set, or a
//! fixed target list from config.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::GatewayHost;
use crate::domain::{Decision, PolicyRequest, Verdict};

/// What a routing rule returned for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteEvaluation {
    /// `name@short_digest` of the rule version that decided (shown in responses).
    pub policy: String,
    pub verdict: Verdict,
    /// Set when the rule failed and `verdict` is the configured fallback.
    pub failure: Option<String>,
    pub elapsed: Duration,
}

/// A routing rule: the policy set, or a fixed list. Object-safe.
pub trait RoutingRule: Send + Sync + 'static {
    /// `name@short_digest`, shown in the `x-switchyard-policy` header.
    fn label(&self) -> String;
    /// Model aliases besides `auto` that this rule decides (scoped policies).
    fn aliases(&self) -> Vec<String> {
        Vec::new()
    }
    fn decide<'a>(
        &'a self,
        request: &'a PolicyRequest,
        host: Arc<GatewayHost>,
    ) -> BoxFuture<'a, RouteEvaluation>;
}

/// A fixed ordered target list (config `policy.static_targets`): primary first. A request
/// for a model some backend serves (not an alias) goes only to the listed backends that
/// serve it, else to every backend that does.
#[derive(Debug, Clone)]
pub struct StaticTargets {
    targets: Vec<String>,
}

impl StaticTargets {
    pub fn new(targets: Vec<String>) -> Self {
        Self { targets }
    }
}

impl RoutingRule for StaticTargets {
    fn label(&self) -> String {
        "static@config".to_owned()
    }
    fn decide<'a>(
        &'a self,
        request: &'a PolicyRequest,
        host: Arc<GatewayHost>,
    ) -> BoxFuture<'a, RouteEvaluation> {
        let serving = host.serving(&request.model);
        let decision = if serving.is_empty() {
            Decision::to_backends(&self.targets, "static route")
        } else {
            let listed: Vec<&String> = self
                .targets
                .iter()
                .filter(|t| serving.contains(&t.as_str()))
                .collect();
            let mut decision = if listed.is_empty() {
                Decision::to_backends(serving, "static route: explicit model")
            } else {
                Decision::to_backends(listed, "static route: explicit model")
            };
            for target in &mut decision.targets {
                target.model = Some(request.model.clone());
            }
            decision
        };
        std::future::ready(RouteEvaluation {
            policy: self.label(),
            verdict: Verdict::Route(decision),
            failure: None,
            elapsed: Duration::ZERO,
        })
        .boxed()
    }
}
