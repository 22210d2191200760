//! wasm32 only: the generated bindings for world `policy`, `WasmHost` (the `Host` trait
//! over the WIT imports), conversions between WIT and SDK types, and the `Router`
//! adapter that [`export_policy!`](crate::export_policy) exports.

use std::cell::OnceCell;
use std::marker::PhantomData;

use crate::backend::{BackendKind, BackendStatus, ModelCapabilities, SpendStatus};
use crate::host::{Host, LogLevel, Policy};
use crate::pii::{PiiKind, PiiMatch};
use crate::types::{Decision, Message, Needs, PolicyInfo, Request, ResponseFormat, Role, Target};

/// The bindings generated from `wit/` (world `policy`). Policies never use them directly.
#[doc(hidden)]
#[allow(unsafe_code, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "policy",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_router",
        default_bindings_module: "policy_sdk::__wasm::bindings",
    });
}

use bindings::exports::switchyard::policy::router::Guest;
use bindings::switchyard::policy::{
    backends, clock, embeddings, logging, params, pii, spend, tokens, types,
};

/// The [`Host`] of a running component: every call goes to the gateway through the
/// WIT imports, except parameter reads: the first one fetches every parameter
/// (`params.all`, one import call) and the others are answered from that copy, so a
/// policy that reads many parameters pays for one call. One `WasmHost` serves one
/// decision.
#[derive(Debug, Default)]
pub struct WasmHost {
    /// Every parameter, sorted by key; fetched on the first read.
    params: OnceCell<Vec<(String, String)>>,
}

impl WasmHost {
    /// A host with nothing fetched yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn all_params(&self) -> &[(String, String)] {
        self.params.get_or_init(|| {
            let mut all: Vec<(String, String)> = params::all()
                .into_iter()
                .map(|l| (l.key, l.value))
                .collect();
            all.sort_by(|a, b| a.0.cmp(&b.0));
            all
        })
    }
}

impl Host for WasmHost {
    fn backends(&self) -> Vec<BackendStatus> {
        backends::list().into_iter().map(backend_from_wit).collect()
    }

    fn detect_pii(&self, text: &str) -> Vec<PiiMatch> {
        pii::detect(text)
            .into_iter()
            .map(|m| PiiMatch {
                kind: pii_kind_from_wit(m.kind),
                start: m.start as usize,
                end: m.end as usize,
            })
            .collect()
    }

    fn count_tokens(&self, text: &str) -> u32 {
        tokens::count(text)
    }

    fn spend(&self, scope: &str) -> SpendStatus {
        let s = spend::get(scope);
        SpendStatus {
            scope: s.scope,
            today_usd: s.today_usd,
            month_usd: s.month_usd,
            daily_budget_usd: s.daily_budget_usd,
            monthly_budget_usd: s.monthly_budget_usd,
            hard_cap_usd: s.hard_cap_usd,
        }
    }

    fn param(&self, key: &str) -> Option<String> {
        let all = self.all_params();
        all.binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .and_then(|i| all.get(i))
            .map(|(_, value)| value.clone())
    }

    fn params(&self) -> Vec<(String, String)> {
        self.all_params().to_vec()
    }

    fn now_ms(&self) -> u64 {
        clock::now_ms()
    }

    fn embed(&self, text: &str) -> Result<Vec<f32>, String> {
        embeddings::embed(text)
    }

    fn score(&self, classifier: &str, text: &str) -> Result<f64, String> {
        embeddings::score(classifier, text)
    }

    fn log(&self, level: LogLevel, message: &str, fields: &[(&str, &str)]) {
        let level = match level {
            LogLevel::Trace => logging::Level::Trace,
            LogLevel::Debug => logging::Level::Debug,
            LogLevel::Info => logging::Level::Info,
            LogLevel::Warn => logging::Level::Warn,
            LogLevel::Error => logging::Level::Error,
        };
        let fields: Vec<types::Label> = fields
            .iter()
            .map(|(k, v)| types::Label {
                key: (*k).to_owned(),
                value: (*v).to_owned(),
            })
            .collect();
        logging::log(level, message, &fields);
    }
}

/// Adapts a [`Policy`] to the generated `router` export.
#[doc(hidden)]
pub struct Router<P>(PhantomData<P>);

impl<P: Policy + 'static> Guest for Router<P> {
    fn info() -> types::PolicyInfo {
        let PolicyInfo {
            name,
            version,
            description,
        } = P::info();
        types::PolicyInfo {
            name,
            version,
            description,
        }
    }

    fn route(request: types::Request) -> Result<types::Decision, types::Rejection> {
        match P::route(&WasmHost::new(), &request_from_wit(request)) {
            Ok(d) => Ok(decision_to_wit(d)),
            Err(r) => Err(types::Rejection {
                status: r.status,
                message: r.message,
            }),
        }
    }
}

fn role_from_wit(role: types::Role) -> Role {
    match role {
        types::Role::System => Role::System,
        types::Role::User => Role::User,
        types::Role::Assistant => Role::Assistant,
        types::Role::Tool => Role::Tool,
    }
}

fn role_to_wit(role: Role) -> types::Role {
    match role {
        Role::System => types::Role::System,
        Role::User => types::Role::User,
        Role::Assistant => types::Role::Assistant,
        Role::Tool => types::Role::Tool,
    }
}

fn labels_to_wit(labels: impl IntoIterator<Item = (String, String)>) -> Vec<types::Label> {
    labels
        .into_iter()
        .map(|(key, value)| types::Label { key, value })
        .collect()
}

fn request_from_wit(r: types::Request) -> Request {
    Request {
        id: r.id,
        model: r.model,
        messages: r
            .messages
            .into_iter()
            .map(|m| Message::new(role_from_wit(m.role), m.content))
            .collect(),
        max_tokens: r.max_tokens,
        temperature: r.temperature,
        streaming: r.streaming,
        tenant: r.tenant,
        labels: r.labels.into_iter().map(|l| (l.key, l.value)).collect(),
        prompt_tokens: r.prompt_tokens,
        needs: Needs {
            tools: r.needs.tools,
            response_format: match r.needs.response_format {
                types::ResponseFormat::Text => ResponseFormat::Text,
                types::ResponseFormat::JsonObject => ResponseFormat::JsonObject,
                types::ResponseFormat::JsonSchema => ResponseFormat::JsonSchema,
            },
            logprobs: r.needs.logprobs,
            images: r.needs.images,
            n: r.needs.n,
        },
        explicit_model: r.explicit_model,
    }
}

fn decision_to_wit(d: Decision) -> types::Decision {
    types::Decision {
        targets: d
            .targets
            .into_iter()
            .map(|Target { backend, model }| types::Target { backend, model })
            .collect(),
        reason: d.reason,
        messages: d.messages.map(|ms| {
            ms.into_iter()
                .map(|m| types::Message {
                    role: role_to_wit(m.role),
                    content: m.content,
                })
                .collect()
        }),
        max_tokens: d.max_tokens,
        labels: labels_to_wit(d.labels),
    }
}

fn backend_from_wit(b: backends::BackendStatus) -> BackendStatus {
    BackendStatus {
        name: b.name,
        kind: match b.kind {
            backends::BackendKind::Local => BackendKind::Local,
            backends::BackendKind::Cloud => BackendKind::Cloud,
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
        labels: b.labels.into_iter().map(|l| (l.key, l.value)).collect(),
        capabilities: b
            .capabilities
            .into_iter()
            .map(|c| ModelCapabilities {
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

fn pii_kind_from_wit(kind: pii::PiiKind) -> PiiKind {
    match kind {
        pii::PiiKind::Email => PiiKind::Email,
        pii::PiiKind::Phone => PiiKind::Phone,
        pii::PiiKind::CreditCard => PiiKind::CreditCard,
        pii::PiiKind::UsSsn => PiiKind::UsSsn,
        pii::PiiKind::Iban => PiiKind::Iban,
        pii::PiiKind::IpAddress => PiiKind::IpAddress,
        pii::PiiKind::ApiKey => PiiKind::ApiKey,
    }
}

/// Exports a [`Policy`] as the component's `router` (on wasm32; a no-op natively, so
/// policy crates invoke it unconditionally).
///
/// ```ignore
/// policy_sdk::export_policy!(MyPolicy);
/// ```
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        #[allow(unsafe_code)]
        const _: () = {
            type __SwitchyardRouter = $crate::__wasm::Router<$policy>;
    $crate::__wasm::bindings::__export_router!(__SwitchyardRouter with_types_in $crate::__wasm::bindings);
        };
    };
}
