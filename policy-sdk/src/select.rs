//! Backend selection helpers shared by policies: resolve names from params, filter by
//! kind, order by price or latency, and keep healthy backends that fit ahead of the rest.

use std::cmp::Ordering;

use crate::backend::{BackendKind, BackendStatus};
use crate::host::Host;
use crate::types::{Decision, Rejection, Request, Target};

/// The backends named in `names`, in that order; unknown names and repeats are skipped.
pub fn named<'a>(backends: &'a [BackendStatus], names: &[String]) -> Vec<&'a BackendStatus> {
    let mut out: Vec<&BackendStatus> = Vec::new();
    for name in names {
        if let Some(b) = backends.iter().find(|b| &b.name == name)
            && !out.iter().any(|o| o.name == b.name)
        {
            out.push(b);
        }
    }
    out
}

/// The backends of `kind`, in config order.
pub fn of_kind(backends: &[BackendStatus], kind: BackendKind) -> Vec<&BackendStatus> {
    backends.iter().filter(|b| b.kind == kind).collect()
}

/// Drops backends whose context window cannot hold `tokens`, then moves unhealthy ones
/// behind the healthy ones (each group keeps its order).
pub fn usable(list: Vec<&BackendStatus>, tokens: u32) -> Vec<&BackendStatus> {
    let (healthy, unhealthy): (Vec<_>, Vec<_>) = list
        .into_iter()
        .filter(|b| b.fits(tokens))
        .partition(|b| b.healthy);
    healthy.into_iter().chain(unhealthy).collect()
}

/// Sorts by blended price, cheapest first (stable).
pub fn sort_by_price(list: &mut [&BackendStatus]) {
    list.sort_by(|a, b| a.blended_price().total_cmp(&b.blended_price()));
}

/// Orders by p95 latency, then error rate, then in-flight plus queue depth (stable).
pub fn compare_latency(a: &BackendStatus, b: &BackendStatus) -> Ordering {
    a.latency_p95_ms
        .total_cmp(&b.latency_p95_ms)
        .then(a.error_rate.total_cmp(&b.error_rate))
        .then(a.load_depth().cmp(&b.load_depth()))
}

/// The names of `list`, in order.
pub fn names(list: &[&BackendStatus]) -> Vec<String> {
    list.iter().map(|b| b.name.clone()).collect()
}

/// A decision over `order` (default models) with `reason`, or a 503 rejection when
/// `order` is empty: a policy never returns an empty target list.
pub fn decide(order: &[&BackendStatus], reason: &str) -> Result<Decision, Rejection> {
    if order.is_empty() {
        return Err(Rejection::unavailable(format!(
            "no backend can take the request ({reason})"
        )));
    }
    Ok(Decision::to_all(names(order)).reason(reason))
}

/// Honours an explicit model. When the client asked for a model some backend serves (not
/// an alias such as `auto`), keeps only the decision's targets whose backend serves it,
/// each asked for that model; when the policy's rules left none (privacy kept the request
/// local, the budget ruled the cloud out), a 403 naming the model and the decision's
/// reason. Any other decision, and a rejection, pass unchanged.
pub fn explicit_model(
    host: &dyn Host,
    request: &Request,
    decided: Result<Decision, Rejection>,
) -> Result<Decision, Rejection> {
    let mut d = decided?;
    if request.model == "auto" {
        return Ok(d);
    }
    let backends = host.backends();
    let serves = |name: &str| {
        backends
            .iter()
            .any(|b| b.name == name && b.serves(&request.model))
    };
    if !backends.iter().any(|b| b.serves(&request.model)) {
        return Ok(d);
    }
    let targets: Vec<Target> = d
        .targets
        .iter()
        .filter(|t| serves(&t.backend))
        .map(|t| Target::with_model(t.backend.clone(), request.model.clone()))
        .collect();
    if targets.is_empty() {
        return Err(Rejection::new(
            403,
            format!(
                "model {:?} cannot serve this request ({}); ask for model \"auto\" to let the policy choose",
                request.model, d.reason
            ),
        ));
    }
    d.targets = targets;
    d.reason = format!("{}+explicit-model", d.reason);
    Ok(d)
}

/// What every shipped policy does with its rules' decision: [`explicit_model`], then
/// [`capable_targets`].
pub fn honour_request(
    host: &dyn Host,
    request: &Request,
    decided: Result<Decision, Rejection>,
) -> Result<Decision, Rejection> {
    capable_targets(host, request, explicit_model(host, request, decided))
}

/// Skips the decision's targets whose model cannot serve the request: tools, JSON mode or
/// a JSON schema, images, logprobs or `n` > 1 it cannot do, or a prompt over its context
/// window ([`ModelCapabilities::unmet`](crate::ModelCapabilities::unmet); a target without
/// a model is its backend's default). What was skipped is named in label `skipped`
/// (`local:tools,anthropic:tools`). When no target can serve the request the decision is
/// left as it was: the host then refuses the request itself, naming the field it cannot
/// honour (400 `unsupported_parameter`). A rejection passes unchanged.
pub fn capable_targets(
    host: &dyn Host,
    request: &Request,
    decided: Result<Decision, Rejection>,
) -> Result<Decision, Rejection> {
    let mut d = decided?;
    let backends = host.backends();
    let mut skipped: Vec<String> = Vec::new();
    let kept: Vec<Target> = d
        .targets
        .iter()
        .filter(|t| {
            let Some(b) = backends.iter().find(|b| b.name == t.backend) else {
                return true;
            };
            let Some(model) = t.model.as_deref().or(b.default_model()) else {
                return true;
            };
            match b.model(model).unmet(&request.needs, request.prompt_tokens) {
                None => true,
                Some(need) => {
                    skipped.push(format!("{}:{need}", t.backend));
                    false
                }
            }
        })
        .cloned()
        .collect();
    if skipped.is_empty() || kept.is_empty() {
        return Ok(d);
    }
    d.targets = kept;
    Ok(d.label("skipped", skipped.join(",")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::testing::demo_backends;

    #[test]
    fn named_skips_unknown_and_repeats() {
        let all = demo_backends();
        let want = ["gemini", "nope", "local", "gemini"].map(String::from);
        assert_eq!(names(&named(&all, &want)), ["gemini", "local"]);
    }

    #[test]
    fn usable_drops_small_windows_and_puts_unhealthy_last() {
        let mut all = demo_backends();
        all[1].healthy = false;
        let list: Vec<&BackendStatus> = all.iter().collect();
        assert_eq!(
            names(&usable(list.clone(), 10)),
            ["local", "anthropic", "gemini", "openai"]
        );
        assert_eq!(names(&usable(list, 150_000)), ["anthropic", "gemini"]);
    }

    #[test]
    fn price_and_latency_order() {
        let all = demo_backends();
        let mut cloud = of_kind(&all, BackendKind::Cloud);
        sort_by_price(&mut cloud);
        assert_eq!(names(&cloud), ["gemini", "openai", "anthropic"]);
        let mut by_latency: Vec<&BackendStatus> = all.iter().collect();
        by_latency.sort_by(|a, b| compare_latency(a, b));
        assert_eq!(
            names(&by_latency),
            ["gemini", "local", "openai", "anthropic"]
        );
    }

    #[test]
    fn an_explicit_model_keeps_only_the_targets_serving_it() {
        let host = crate::testing::MockHost::new();
        let all = host.backends();
        let order: Vec<&BackendStatus> = all.iter().collect();
        let decided = || decide(&order, "why");
        let mut request = Request::user("hi");
        // `auto` and names no backend serves are the policy's to decide.
        assert_eq!(explicit_model(&host, &request, decided()), decided());
        request.model = "scoped-alias".into();
        assert_eq!(explicit_model(&host, &request, decided()), decided());
        request.model = "claude-sonnet-4-5".into();
        let d = explicit_model(&host, &request, decided()).map(|d| {
            let models: Vec<Option<String>> = d.targets.iter().map(|t| t.model.clone()).collect();
            (d.backends().join(","), models, d.reason)
        });
        assert_eq!(
            d,
            Ok((
                "anthropic".to_owned(),
                vec![Some("claude-sonnet-4-5".to_owned())],
                "why+explicit-model".to_owned()
            ))
        );
        // The policy's rules left no backend serving it: a clear 4xx, never another model.
        let local_only = decide(&[&all[0]], "privacy:pii:email");
        let r = explicit_model(&host, &request, local_only);
        assert!(r.is_err_and(|r| r.status == 403
            && r.message.contains("claude-sonnet-4-5")
            && r.message.contains("privacy:pii:email")));
    }

    #[test]
    fn targets_that_cannot_serve_the_needs_are_skipped() {
        use crate::types::{Needs, ResponseFormat};
        let host = crate::testing::MockHost::new();
        let all = host.backends();
        let order: Vec<&BackendStatus> = all.iter().collect();
        let decided = || decide(&order, "why");
        let plain = Request::user("hi");
        assert_eq!(capable_targets(&host, &plain, decided()), decided());

        let tools = Request::user("weather?").needs(Needs {
            tools: vec!["get_weather".into()],
            ..Needs::default()
        });
        let d = capable_targets(&host, &tools, decided()).unwrap();
        assert_eq!(d.backends(), ["openai"]);
        assert_eq!(
            d.labels.get("skipped").map(String::as_str),
            Some("local:tools,anthropic:tools,gemini:tools")
        );
        // JSON output: the local model (constrained decoding) and OpenAI.
        for format in [ResponseFormat::JsonObject, ResponseFormat::JsonSchema] {
            let r = Request::user("x").needs(Needs {
                response_format: format,
                ..Needs::default()
            });
            let d = capable_targets(&host, &r, decided()).unwrap();
            assert_eq!(d.backends(), ["local", "openai"], "{format:?}");
        }
        // Each other need on its own: images, logprobs, n.
        for needs in [
            Needs {
                images: 1,
                ..Needs::default()
            },
            Needs {
                logprobs: true,
                ..Needs::default()
            },
            Needs {
                n: 2,
                ..Needs::default()
            },
        ] {
            let r = Request::user("x").needs(needs.clone());
            let d = capable_targets(&host, &r, decided()).unwrap();
            assert_eq!(d.backends(), ["openai"], "{needs:?}");
        }
        // The target's own model counts: a capable model on a backend whose default is not.
        let host = host.update_backend("gemini", |b| {
            b.models.push("gemini-vision".into());
            b.capabilities
                .push(crate::ModelCapabilities::full("gemini-vision", 1_000_000));
        });
        let images = Request::user("x").needs(Needs {
            images: 2,
            ..Needs::default()
        });
        let d = Decision::to("local")
            .then_target(Target::with_model("gemini", "gemini-vision"))
            .then("gemini");
        let d = capable_targets(&host, &images, Ok(d)).unwrap();
        assert_eq!(d.targets, [Target::with_model("gemini", "gemini-vision")]);
        // A prompt over a model's window is skipped too.
        let long = Request::user("x").prompt_tokens(150_000);
        let d = capable_targets(&host, &long, decided()).unwrap();
        assert_eq!(d.backends(), ["anthropic", "gemini"]);
        // Nobody can: left as decided, for the host to refuse by field name.
        let host = host.without_backend("openai");
        let all = host.backends();
        let order: Vec<&BackendStatus> = all.iter().collect();
        assert_eq!(
            capable_targets(&host, &tools, decide(&order, "why")),
            decide(&order, "why")
        );
        // An explicit model first narrows the targets, then the needs are checked.
        let host = crate::testing::MockHost::new();
        let all = host.backends();
        let order: Vec<&BackendStatus> = all.iter().collect();
        let explicit = tools.clone().explicit("gpt-4o-mini");
        let d = honour_request(&host, &explicit, decide(&order, "why")).unwrap();
        assert_eq!(d.targets, [Target::with_model("openai", "gpt-4o-mini")]);
    }

    #[test]
    fn decide_rejects_an_empty_order() {
        let all = demo_backends();
        let d = decide(&[&all[0]], "why").map(|d| (d.backends().join(","), d.reason));
        assert_eq!(d, Ok(("local".to_owned(), "why".to_owned())));
        let r = decide(&[], "why");
        assert!(r.is_err_and(|r| r.status == 503 && r.message.contains("no backend")));
    }
}
