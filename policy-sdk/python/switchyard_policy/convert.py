"""Conversions between the SDK's types and componentize-py's generated `wit_world` types
(both ways), and the checks a policy's answer must pass to cross the component boundary."""

from __future__ import annotations

from types import ModuleType
from typing import Any, List

from .backend import BackendKind, BackendStatus, ModelCapabilities, SpendStatus
from .pii import PiiKind, PiiMatch
from .types import Decision, Message, Needs, PolicyInfo, Rejection, Request, ResponseFormat, Role, Target

U32_MAX = 0xFFFFFFFF


class ContractError(TypeError):
    """A policy's answer has a shape the contract cannot carry (names the field)."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _u32(v: Any, where: str) -> None:
    if not _is_int(v) or not 0 <= v <= U32_MAX:
        raise ContractError("%s must be an integer in 0..=4294967295, got %r" % (where, v))


def _str(v: Any, where: str) -> None:
    if not isinstance(v, str):
        raise ContractError("%s must be a str, got %s" % (where, type(v).__name__))


def _messages(messages: Any, where: str) -> None:
    if not isinstance(messages, list):
        raise ContractError("%s must be a list of Message, got %s" % (where, type(messages).__name__))
    for i, m in enumerate(messages):
        if not isinstance(m, Message) or not isinstance(m.role, Role):
            raise ContractError("%s[%d] must be a Message with a Role, got %r" % (where, i, m))
        _str(m.content, "%s[%d].content" % (where, i))


def check_answer(answer: Any) -> None:
    """Raises ContractError naming the field when `answer` (what `route` returned) is not a
    Decision or Rejection the contract can carry. The host's own checks (targets non-empty
    and known, status 400..=599) are made by the host and by the case runner."""
    if isinstance(answer, Rejection):
        if not _is_int(answer.status) or not 0 <= answer.status <= 0xFFFF:
            raise ContractError("rejection.status must be an integer in 0..=65535, got %r" % (answer.status,))
        _str(answer.message, "rejection.message")
        return
    if not isinstance(answer, Decision):
        raise ContractError("route must return a Decision or a Rejection, got %s" % type(answer).__name__)
    if not isinstance(answer.targets, list):
        raise ContractError("decision.targets must be a list of Target, got %s" % type(answer.targets).__name__)
    for i, t in enumerate(answer.targets):
        if not isinstance(t, Target):
            raise ContractError("decision.targets[%d] must be a Target, got %r" % (i, t))
        _str(t.backend, "decision.targets[%d].backend" % i)
        if t.model is not None:
            _str(t.model, "decision.targets[%d].model" % i)
    _str(answer.reason, "decision.reason")
    if answer.messages is not None:
        _messages(answer.messages, "decision.messages")
    if answer.max_tokens is not None:
        _u32(answer.max_tokens, "decision.max_tokens")
    if not isinstance(answer.labels, dict):
        raise ContractError("decision.labels must be a dict of str to str, got %s" % type(answer.labels).__name__)
    for k, v in answer.labels.items():
        _str(k, "a decision.labels key")
        _str(v, "decision.labels[%r]" % (k,))


def request_from_wit(r: Any) -> Request:
    """A generated `types.Request` as an SDK Request."""
    return Request(
        id=r.id,
        model=r.model,
        messages=[Message(Role[m.role.name], m.content) for m in r.messages],
        max_tokens=r.max_tokens,
        temperature=r.temperature,
        streaming=r.streaming,
        tenant=r.tenant,
        labels={label.key: label.value for label in r.labels},
        prompt_tokens=r.prompt_tokens,
        needs=Needs(list(r.needs.tools), ResponseFormat[r.needs.response_format.name], r.needs.logprobs,
                    r.needs.images, r.needs.n),
        explicit_model=r.explicit_model,
    )


def request_to_wit(r: Request, types: ModuleType) -> Any:
    """An SDK Request as a generated `types.Request` (for tests and tools)."""
    return types.Request(
        r.id, r.model, [types.Message(types.Role[m.role.name], m.content) for m in r.messages], r.max_tokens,
        r.temperature, r.streaming, r.tenant, [types.Label(k, v) for k, v in r.labels.items()], r.prompt_tokens,
        types.Needs(list(r.needs.tools), types.ResponseFormat[r.needs.response_format.name], r.needs.logprobs,
                    r.needs.images, r.needs.n),
        r.explicit_model)


def decision_to_wit(d: Decision, types: ModuleType) -> Any:
    """A checked SDK Decision as a generated `types.Decision`."""
    messages = None
    if d.messages is not None:
        messages = [types.Message(types.Role[m.role.name], m.content) for m in d.messages]
    return types.Decision(
        targets=[types.Target(t.backend, t.model) for t in d.targets],
        reason=d.reason,
        messages=messages,
        max_tokens=d.max_tokens,
        labels=[types.Label(k, v) for k, v in d.labels.items()],
    )


def decision_from_wit(d: Any) -> Decision:
    """A generated `types.Decision` as an SDK Decision (labels: the last of a key wins, as the host)."""
    messages = None if d.messages is None else [Message(Role[m.role.name], m.content) for m in d.messages]
    return Decision([Target(t.backend, t.model) for t in d.targets], d.reason, messages, d.max_tokens,
                    {label.key: label.value for label in d.labels})


def rejection_to_wit(r: Rejection, types: ModuleType) -> Any:
    return types.Rejection(r.status, r.message)


def info_to_wit(info: PolicyInfo, types: ModuleType) -> Any:
    for name in ("name", "version", "description"):
        _str(getattr(info, name), "info." + name)
    return types.PolicyInfo(info.name, info.version, info.description)


def backend_from_wit(b: Any) -> BackendStatus:
    """A generated `backends.BackendStatus` as an SDK BackendStatus."""
    return BackendStatus(
        name=b.name, kind=BackendKind[b.kind.name], models=list(b.models), healthy=b.healthy,
        latency_p50_ms=b.latency_p50_ms, latency_p95_ms=b.latency_p95_ms, error_rate=b.error_rate,
        in_flight=b.in_flight, queue_depth=b.queue_depth, usd_per_mtok_in=b.usd_per_mtok_in,
        usd_per_mtok_out=b.usd_per_mtok_out, context_window=b.context_window,
        labels={label.key: label.value for label in b.labels},
        capabilities=[
            ModelCapabilities(c.model, c.tools, c.json_object, c.json_schema, c.vision, c.logprobs,
                              c.multiple_choices, c.context_window, c.usd_per_mtok_in, c.usd_per_mtok_out)
            for c in b.capabilities
        ],
    )


def backend_to_wit(b: BackendStatus, backends: ModuleType, types: ModuleType) -> Any:
    """An SDK BackendStatus as a generated `backends.BackendStatus` (for tests and tools)."""
    return backends.BackendStatus(
        b.name, backends.BackendKind[b.kind.name], list(b.models), b.healthy, b.latency_p50_ms, b.latency_p95_ms,
        b.error_rate, b.in_flight, b.queue_depth, b.usd_per_mtok_in, b.usd_per_mtok_out, b.context_window,
        [types.Label(k, v) for k, v in b.labels.items()],
        [backends.ModelCapabilities(c.model, c.tools, c.json_object, c.json_schema, c.vision, c.logprobs,
                                    c.multiple_choices, c.context_window, c.usd_per_mtok_in, c.usd_per_mtok_out)
         for c in b.capabilities])


def spend_from_wit(s: Any) -> SpendStatus:
    return SpendStatus(s.scope, s.today_usd, s.month_usd, s.daily_budget_usd, s.monthly_budget_usd, s.hard_cap_usd)


def pii_from_wit(matches: List[Any]) -> List[PiiMatch]:
    return [PiiMatch(PiiKind[m.kind.name], m.start, m.end) for m in matches]
