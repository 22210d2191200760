"""Backend selection helpers (the Rust SDK's `select`): resolve names, filter by kind, order by
price or latency, keep healthy backends that fit ahead of the rest, honour explicit models."""

from __future__ import annotations

from typing import Iterable, List, Sequence, Tuple, Union

from .backend import BackendKind, BackendStatus
from .host import Host
from .types import Decision, Rejection, Request, Target

Outcome = Union[Decision, Rejection]


def named(backends: Sequence[BackendStatus], names: Iterable[str]) -> List[BackendStatus]:
    """The backends named in `names`, in that order; unknown names and repeats are skipped."""
    by_name = {b.name: b for b in reversed(backends)}
    out: List[BackendStatus] = []
    for name in names:
        b = by_name.get(name)
        if b is not None and all(o.name != name for o in out):
            out.append(b)
    return out


def of_kind(backends: Iterable[BackendStatus], kind: BackendKind) -> List[BackendStatus]:
    """The backends of `kind`, in the given order."""
    return [b for b in backends if b.kind == kind]


def usable(backends: Iterable[BackendStatus], tokens: int) -> List[BackendStatus]:
    """Drops backends whose window cannot hold `tokens`, then puts unhealthy ones behind the
    healthy ones (each group keeps its order)."""
    fitting = [b for b in backends if b.fits(tokens)]
    return [b for b in fitting if b.healthy] + [b for b in fitting if not b.healthy]


def by_price(backends: Iterable[BackendStatus]) -> List[BackendStatus]:
    """Sorted by blended price, cheapest first (stable)."""
    return sorted(backends, key=lambda b: b.blended_price())


def latency_key(b: BackendStatus) -> Tuple[float, float, int]:
    """Sort key: p95 latency, then error rate, then in-flight plus queue depth."""
    return (b.latency_p95_ms, b.error_rate, b.load_depth())


def names(backends: Iterable[BackendStatus]) -> List[str]:
    return [b.name for b in backends]


def decide(order: Sequence[BackendStatus], reason: str) -> Outcome:
    """A decision over `order` (default models) with `reason`, or a 503 rejection when empty."""
    if not order:
        return Rejection.unavailable("no backend can take the request (%s)" % reason)
    return Decision.to_all(names(order), reason)


def explicit_model(host: Host, request: Request, decided: Outcome) -> Outcome:
    """When the client asked for a model a backend serves (not an alias such as `auto`), keeps
    the targets whose backend serves it, each asked for that model; none left: a 403."""
    if isinstance(decided, Rejection) or request.model == "auto":
        return decided
    backends = host.backends()
    serving = {b.name for b in backends if b.serves(request.model)}
    if not serving:
        return decided
    targets = [Target(t.backend, request.model) for t in decided.targets if t.backend in serving]
    if not targets:
        return Rejection(403, 'model "%s" cannot serve this request (%s); ask for model "auto" to let the '
                              "policy choose" % (request.model, decided.reason))
    decided.targets = targets
    decided.reason += "+explicit-model"
    return decided


def capable_targets(host: Host, request: Request, decided: Outcome) -> Outcome:
    """Skips targets whose model cannot serve the request's needs (label `skipped` names
    them, e.g. `local:tools`); when none could, the decision is left as it was."""
    if isinstance(decided, Rejection):
        return decided
    backends = {b.name: b for b in reversed(host.backends())}
    skipped: List[str] = []
    kept: List[Target] = []
    for t in decided.targets:
        b = backends.get(t.backend)
        model = t.model or (b.default_model() if b else None)
        need = b.model(model).unmet(request.needs, request.prompt_tokens) if b and model else None
        if need is None:
            kept.append(t)
        else:
            skipped.append("%s:%s" % (t.backend, need))
    if skipped and kept:
        decided.targets = kept
        decided.label("skipped", ",".join(skipped))
    return decided


def honour_request(host: Host, request: Request, decided: Outcome) -> Outcome:
    """What every shipped Rust policy does with its rules' decision: `explicit_model`, then
    `capable_targets`."""
    return capable_targets(host, request, explicit_model(host, request, decided))
