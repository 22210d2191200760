//! Contract `switchyard:policy@0.2.0`: the generated bindings (private), the host
//! context's answers to this version's imports, the WIT ↔ domain conversions, and the two
//! calls the runtime makes on a guest (`info`, `route`). New in 0.2: the request's needs
//! and explicit-model flag, per-model capabilities in the backend status, the
//! `embeddings` import.

use std::collections::BTreeMap;

use wasmtime::AsContextMut;
use wasmtime::component::{HasSelf, Linker};

use super::v0_1;
use crate::domain;
use crate::policy::PolicyInfo;
use crate::policy::budget::{self, EMBED_BYTES_PER_MS};
use crate::policy::imports::HostCtx;
use crate::policy::pii::Kind;

mod generated {
    wasmtime::component::bindgen!({
        world: "policy",
        path: "../../wit",
        // The imports whose cost scales with guest input: refused (a trap) once the
        // decision's deadline has passed or when the text is too big for what is left.
        imports: {
            "switchyard:policy/pii.detect": trappable,
            "switchyard:policy/tokens.count": trappable,
            "switchyard:policy/embeddings.embed": trappable,
            "switchyard:policy/embeddings.score": trappable,
        },
    });
}

use generated::exports::switchyard::policy::router::{
    Decision as WitDecision, Rejection as WitRejection,
};
use generated::switchyard::policy::{
    backends, clock, embeddings, logging, params, pii, spend, tokens, types,
};
pub(in crate::policy) use generated::{Policy, PolicyPre};

/// Links this contract's imports, answered by [`HostCtx`], into `linker`.
pub(in crate::policy) fn add_to_linker(linker: &mut Linker<HostCtx>) -> wasmtime::Result<()> {
    Policy::add_to_linker::<_, HasSelf<_>>(linker, |s| s)
}

/// The guest's `info()` export.
pub(in crate::policy) fn info(
    policy: &Policy,
    store: impl AsContextMut,
) -> wasmtime::Result<PolicyInfo> {
    let info = policy.switchyard_policy_router().call_info(store)?;
    Ok(PolicyInfo {
        name: info.name,
        version: info.version,
        description: info.description,
    })
}

/// The guest's `route()` export on a domain request.
pub(in crate::policy) fn route(
    policy: &Policy,
    store: impl AsContextMut,
    request: &domain::PolicyRequest,
) -> wasmtime::Result<Result<domain::Decision, domain::Rejection>> {
    let answer = policy
        .switchyard_policy_router()
        .call_route(store, &to_request(request))?;
    Ok(answer.map(from_decision).map_err(from_rejection))
}

impl types::Host for HostCtx {}

impl backends::Host for HostCtx {
    fn list(&mut self) -> Vec<backends::BackendStatus> {
        self.host.backends().into_iter().map(to_backend).collect()
    }
}

impl pii::Host for HostCtx {
    fn detect(&mut self, text: String) -> wasmtime::Result<Vec<pii::PiiMatch>> {
        budget::charge(self.deadline, "pii.detect", text.len())?;
        Ok(self
            .host
            .detect_pii(&text)
            .into_iter()
            .map(to_pii_match)
            .collect())
    }
}

impl tokens::Host for HostCtx {
    fn count(&mut self, text: String) -> wasmtime::Result<u32> {
        budget::charge(self.deadline, "tokens.count", text.len())?;
        Ok(self.host.count_tokens(&text))
    }
}

impl spend::Host for HostCtx {
    fn get(&mut self, scope: String) -> spend::SpendStatus {
        let s = self.host.spend(&scope);
        spend::SpendStatus {
            scope: s.scope,
            today_usd: s.today_usd,
            month_usd: s.month_usd,
            daily_budget_usd: s.daily_budget_usd,
            monthly_budget_usd: s.monthly_budget_usd,
            hard_cap_usd: s.hard_cap_usd,
        }
    }
}

impl params::Host for HostCtx {
    fn get(&mut self, key: String) -> Option<String> {
        self.params.get(&key).cloned()
    }
    fn all(&mut self) -> Vec<types::Label> {
        to_labels(&self.params)
    }
}

impl clock::Host for HostCtx {
    fn now_ms(&mut self) -> u64 {
        self.host.now_ms()
    }
}

impl logging::Host for HostCtx {
    /// The same lines, caps and rate limit as 0.1's `log`.
    fn log(&mut self, level: logging::Level, message: String, fields: Vec<types::Label>) {
        let level = match level {
            logging::Level::Trace => v0_1::logging::Level::Trace,
            logging::Level::Debug => v0_1::logging::Level::Debug,
            logging::Level::Info => v0_1::logging::Level::Info,
            logging::Level::Warn => v0_1::logging::Level::Warn,
            logging::Level::Error => v0_1::logging::Level::Error,
        };
        let fields = fields
            .into_iter()
            .map(|l| v0_1::types::Label {
                key: l.key,
                value: l.value,
            })
            .collect();
        v0_1::logging::Host::log(self, level, message, fields);
    }
}

impl embeddings::Host for HostCtx {
    fn embed(&mut self, text: String) -> wasmtime::Result<Result<Vec<f32>, String>> {
        budget::charge_at(
            self.deadline,
            "embeddings.embed",
            text.len(),
            EMBED_BYTES_PER_MS,
        )?;
        Ok(self.host.scorer().embed(&text).map(|v| v.to_vec()))
    }
    fn score(&mut self, classifier: String, text: String) -> wasmtime::Result<Result<f64, String>> {
        budget::charge_at(
            self.deadline,
            "embeddings.score",
            text.len(),
            EMBED_BYTES_PER_MS,
        )?;
        Ok(self.host.scorer().score(&classifier, &text))
    }
}

fn to_backend(b: domain::BackendStatus) -> backends::BackendStatus {
    backends::BackendStatus {
        name: b.name,
        kind: match b.kind {
            domain::BackendKind::Local => backends::BackendKind::Local,
            domain::BackendKind::Cloud => backends::BackendKind::Cloud,
        },
        models: b.models,
        healthy: b.healthy,
        latency_p50_ms: b.latency_p50_ms,
        latency_p95_ms: b.latency_p95_ms,
        error_rate: b.error_rate,
        in_flight: b.in_flight,
        queue_depth: b.queue_depth,
        usd_per_mtok_in: b.usd_per_mtok_in,
        usd_per_mtok_out: b.usd_per_mtok_out,
        context_window: b.context_window,
        labels: to_labels(&b.labels),
        capabilities: b
            .capabilities
            .into_iter()
            .map(|c| backends::ModelCapabilities {
                model: c.model,
                tools: c.tools,
                json_object: c.json_object,
                json_schema: c.json_schema,
                vision: c.vision,
                logprobs: c.logprobs,
                multiple_choices: c.multiple_choices,
                context_window: c.context_window,
                usd_per_mtok_in: c.usd_per_mtok_in,
                usd_per_mtok_out: c.usd_per_mtok_out,
            })
            .collect(),
    }
}

fn to_pii_match(m: policy_sdk::pii::PiiMatch) -> pii::PiiMatch {
    pii::PiiMatch {
        kind: match m.kind {
            Kind::Email => pii::PiiKind::Email,
            Kind::Phone => pii::PiiKind::Phone,
            Kind::CreditCard => pii::PiiKind::CreditCard,
            Kind::UsSsn => pii::PiiKind::UsSsn,
            Kind::Iban => pii::PiiKind::Iban,
            Kind::IpAddress => pii::PiiKind::IpAddress,
            Kind::ApiKey => pii::PiiKind::ApiKey,
        },
        start: u32::try_from(m.start).unwrap_or(u32::MAX),
        end: u32::try_from(m.end).unwrap_or(u32::MAX),
    }
}

fn to_labels(map: &BTreeMap<String, String>) -> Vec<types::Label> {
    map.iter()
        .map(|(k, v)| types::Label {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

fn from_labels(labels: Vec<types::Label>) -> BTreeMap<String, String> {
    labels.into_iter().map(|l| (l.key, l.value)).collect()
}

fn to_role(role: domain::Role) -> types::Role {
    match role {
        domain::Role::System => types::Role::System,
        domain::Role::User => types::Role::User,
        domain::Role::Assistant => types::Role::Assistant,
        domain::Role::Tool => types::Role::Tool,
    }
}

fn from_role(role: types::Role) -> domain::Role {
    match role {
        types::Role::System => domain::Role::System,
        types::Role::User => domain::Role::User,
        types::Role::Assistant => domain::Role::Assistant,
        types::Role::Tool => domain::Role::Tool,
    }
}

fn to_request(r: &domain::PolicyRequest) -> types::Request {
    let needs = &r.needs;
    types::Request {
        id: r.id.clone(),
        model: r.model.clone(),
        messages: r
            .messages
            .iter()
            .map(|m| types::Message {
                role: to_role(m.role),
                content: m.content.clone(),
            })
            .collect(),
        max_tokens: r.max_tokens,
        temperature: r.temperature,
        streaming: r.streaming,
        tenant: r.tenant.clone(),
        labels: to_labels(&r.labels),
        prompt_tokens: r.prompt_tokens,
        needs: types::Needs {
            tools: needs.tools.clone(),
            response_format: match needs.response_format {
                domain::ResponseFormat::Text => types::ResponseFormat::Text,
                domain::ResponseFormat::JsonObject => types::ResponseFormat::JsonObject,
                domain::ResponseFormat::JsonSchema => types::ResponseFormat::JsonSchema,
            },
            logprobs: needs.logprobs,
            images: needs.images,
            n: needs.n,
        },
        explicit_model: needs.explicit_model,
    }
}

fn from_decision(d: WitDecision) -> domain::Decision {
    domain::Decision {
        targets: d
            .targets
            .into_iter()
            .map(|t| domain::Target {
                backend: t.backend,
                model: t.model,
            })
            .collect(),
        reason: d.reason,
        messages: d.messages.map(|ms| {
            ms.into_iter()
                .map(|m| domain::ChatMessage {
                    role: from_role(m.role),
                    content: m.content,
                })
                .collect()
        }),
        max_tokens: d.max_tokens,
        labels: from_labels(d.labels),
    }
}

fn from_rejection(r: WitRejection) -> domain::Rejection {
    domain::Rejection {
        status: r.status,
        message: r.message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_labels_and_needs_convert() {
        for role in [
            domain::Role::System,
            domain::Role::User,
            domain::Role::Assistant,
            domain::Role::Tool,
        ] {
            assert_eq!(from_role(to_role(role)), role);
        }
        let labels = BTreeMap::from([("a".to_owned(), "1".to_owned())]);
        assert_eq!(from_labels(to_labels(&labels)), labels);
        let request = domain::PolicyRequest {
            id: "r".into(),
            model: "gpt-4o".into(),
            messages: Vec::new(),
            max_tokens: None,
            temperature: None,
            streaming: false,
            tenant: "t".into(),
            labels: BTreeMap::new(),
            prompt_tokens: 0,
            needs: domain::RequestNeeds {
                tools: vec!["f".into()],
                response_format: domain::ResponseFormat::JsonSchema,
                logprobs: true,
                images: 2,
                n: 3,
                explicit_model: true,
            },
        };
        let wit = to_request(&request);
        assert_eq!(wit.needs.tools, ["f"]);
        assert!(matches!(
            wit.needs.response_format,
            types::ResponseFormat::JsonSchema
        ));
        assert!(wit.needs.logprobs && wit.explicit_model);
        assert_eq!((wit.needs.images, wit.needs.n), (2, 3));
    }
}
