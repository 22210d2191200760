//! Contract `switchyard:policy@0.1.0`: the generated bindings (private), the import
//! traits the host context implements, the WIT ↔ domain conversions, and the two calls
//! the runtime makes on a guest (`info`, `route`).

use std::collections::BTreeMap;

use wasmtime::AsContextMut;
use wasmtime::component::{HasSelf, Linker};

use crate::domain;
use crate::policy::PolicyInfo;
use crate::policy::pii::Kind;

mod generated {
    wasmtime::component::bindgen!({
        world: "policy",
        path: "../../wit/v0.1",
        // The imports whose cost scales with guest input: refused (a trap) once the
        // decision's deadline has passed or when the text is too big for what is left.
        imports: {
            "switchyard:policy/pii.detect": trappable,
            "switchyard:policy/tokens.count": trappable,
        },
    });
}

use generated::exports::switchyard::policy::router::{
    Decision as WitDecision, Rejection as WitRejection,
};
pub(in crate::policy) use generated::switchyard::policy::{
    backends, clock, logging, params, pii, spend, tokens, types,
};
pub(in crate::policy) use generated::{Policy, PolicyPre};

/// Links this contract's imports, answered by `T`, into `linker`.
pub(in crate::policy) fn add_to_linker<T>(linker: &mut Linker<T>) -> wasmtime::Result<()>
where
    T: backends::Host
        + clock::Host
        + logging::Host
        + params::Host
        + pii::Host
        + spend::Host
        + tokens::Host
        + types::Host
        + 'static,
{
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

pub(in crate::policy) fn to_backend(b: domain::BackendStatus) -> backends::BackendStatus {
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
    }
}

pub(in crate::policy) fn to_pii_match(m: policy_sdk::pii::PiiMatch) -> pii::PiiMatch {
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

pub(in crate::policy) fn to_spend(s: domain::SpendStatus) -> spend::SpendStatus {
    spend::SpendStatus {
        scope: s.scope,
        today_usd: s.today_usd,
        month_usd: s.month_usd,
        daily_budget_usd: s.daily_budget_usd,
        monthly_budget_usd: s.monthly_budget_usd,
        hard_cap_usd: s.hard_cap_usd,
    }
}

pub(in crate::policy) fn to_labels(map: &BTreeMap<String, String>) -> Vec<types::Label> {
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
    fn roles_and_labels_round_trip() {
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
    }

    #[test]
    fn pii_spans_saturate_instead_of_wrapping() {
        let m = to_pii_match(policy_sdk::pii::PiiMatch {
            kind: Kind::Email,
            start: 3,
            end: usize::MAX,
        });
        assert_eq!((m.start, m.end), (3, u32::MAX));
        assert!(matches!(m.kind, pii::PiiKind::Email));
    }
}
