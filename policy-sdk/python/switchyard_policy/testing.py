"""`MockHost`: an in-memory `Host` for native policy tests, at parity with the Rust SDK's
`testing::MockHost` (demo backends, spend, params, PII via patterns.json, bytes/4 tokens,
a fixed clock, recorded logs)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Dict, List, Optional, Tuple

from . import pii
from .backend import BackendStatus, ModelCapabilities, SpendStatus
from .host import NO_EMBEDDING_MODEL, Fields, Host, HostError, LogLevel, field_pairs
from .types import estimate_tokens

DEFAULT_NOW_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def demo_backends() -> List[BackendStatus]:
    """The demo backends (the host's `StaticHost::default()`): `local` (smollm2-135m-instruct,
    free, 8192 ctx, 400/1200 ms), `openai` (gpt-4o, gpt-4o-mini; $2.50/$10, 128k, 700/1500 ms),
    `anthropic` (claude-sonnet-4-5; $3/$15, 200k, 900/1800 ms), `gemini` (gemini-2.0-flash;
    $0.10/$0.40, 1M, 500/900 ms). OpenAI's models can do everything, the local model text and
    JSON output (constrained decoding), the others text only."""

    def text_only(b: BackendStatus) -> BackendStatus:
        caps = ModelCapabilities.text_only(b.models[0], b.context_window)
        b.capabilities = [replace(caps, usd_per_mtok_in=b.usd_per_mtok_in, usd_per_mtok_out=b.usd_per_mtok_out)]
        return b

    openai = BackendStatus.cloud("openai", "gpt-4o", usd_per_mtok_in=2.5, usd_per_mtok_out=10.0,
                                 context_window=128_000, latency_p50_ms=700.0, latency_p95_ms=1500.0)
    openai.models.append("gpt-4o-mini")
    openai.capabilities = [
        replace(ModelCapabilities.full("gpt-4o", 128_000), usd_per_mtok_in=2.5, usd_per_mtok_out=10.0),
        replace(ModelCapabilities.full("gpt-4o-mini", 128_000), usd_per_mtok_in=0.15, usd_per_mtok_out=0.60),
    ]
    local = text_only(BackendStatus.local("local", "smollm2-135m-instruct", context_window=8192,
                                          latency_p50_ms=400.0, latency_p95_ms=1200.0))
    local.capabilities = [replace(local.capabilities[0], json_object=True, json_schema=True)]
    return [
        local,
        openai,
        text_only(BackendStatus.cloud("anthropic", "claude-sonnet-4-5", usd_per_mtok_in=3.0, usd_per_mtok_out=15.0,
                                      context_window=200_000, latency_p50_ms=900.0, latency_p95_ms=1800.0)),
        text_only(BackendStatus.cloud("gemini", "gemini-2.0-flash", usd_per_mtok_in=0.10, usd_per_mtok_out=0.40,
                                      context_window=1_000_000, latency_p50_ms=500.0, latency_p95_ms=900.0)),
    ]


@dataclass
class LogLine:
    """One recorded log line."""

    level: LogLevel
    message: str
    fields: List[Tuple[str, str]]

    def field(self, key: str) -> Optional[str]:
        """The value of field `key`."""
        return next((v for k, v in self.fields if k == key), None)


class MockHost(Host):
    """An in-memory host. `MockHost()` has the demo backends, no spend or params, the real
    PII detector, bytes/4 token counting and a fixed clock (2026-01-01T00:00:00Z). The
    builder methods change it in place and return it, for chaining."""

    def __init__(self) -> None:
        self._backends = demo_backends()
        self._spend: Dict[str, SpendStatus] = {}
        self._params: Dict[str, str] = {}
        self._pii: Callable[[str], List[pii.PiiMatch]] = pii.detect
        self._tokens: Callable[[str], int] = estimate_tokens
        self._embed: Optional[Callable[[str], List[float]]] = None
        self._score: Optional[Callable[[str, str], float]] = None
        self._now_ms = DEFAULT_NOW_MS
        self._logs: List[LogLine] = []

    def with_backends(self, backends: List[BackendStatus]) -> "MockHost":
        """Replaces the backend list."""
        self._backends = list(backends)
        return self

    def with_backend(self, backend: BackendStatus) -> "MockHost":
        """Appends a backend."""
        self._backends.append(backend)
        return self

    def update_backend(self, name: str, change: Callable[[BackendStatus], None]) -> "MockHost":
        """Changes the backend named `name` in place (no-op when absent)."""
        for b in self._backends:
            if b.name == name:
                change(b)
                break
        return self

    def unhealthy(self, name: str) -> "MockHost":
        """Marks the backend named `name` unhealthy."""
        return self.update_backend(name, lambda b: setattr(b, "healthy", False))

    def without_backend(self, name: str) -> "MockHost":
        """Removes the backend named `name`."""
        self._backends = [b for b in self._backends if b.name != name]
        return self

    def with_param(self, key: str, value: str) -> "MockHost":
        self._params[key] = value
        return self

    def with_params(self, params: Dict[str, str]) -> "MockHost":
        self._params.update(params)
        return self

    def with_spend(self, status: SpendStatus) -> "MockHost":
        """Sets the spend for `status.scope`."""
        self._spend[status.scope] = status
        return self

    def with_pii(self, detect: Callable[[str], List[pii.PiiMatch]]) -> "MockHost":
        self._pii = detect
        return self

    def with_tokens(self, count: Callable[[str], int]) -> "MockHost":
        self._tokens = count
        return self

    def with_embed(self, embed: Callable[[str], List[float]]) -> "MockHost":
        """Answers `embed` with `embed` (without it: HostError "no embedding model loaded")."""
        self._embed = embed
        return self

    def with_score(self, score: Callable[[str, str], float]) -> "MockHost":
        self._score = score
        return self

    def at(self, now_ms: int) -> "MockHost":
        """Fixes the clock at `now_ms` (milliseconds since the Unix epoch)."""
        self._now_ms = now_ms
        return self

    def logs(self) -> List[LogLine]:
        """Every log line so far."""
        return list(self._logs)

    def logged(self, text: str) -> bool:
        """True when some log line's message contains `text`."""
        return any(text in line.message for line in self._logs)

    def backends(self) -> List[BackendStatus]:
        """Copies: a policy that changes them changes nothing here (as across the WIT boundary)."""
        return [replace(b, models=list(b.models), labels=dict(b.labels),
                        capabilities=[replace(c) for c in b.capabilities]) for b in self._backends]

    def detect_pii(self, text: str) -> List[pii.PiiMatch]:
        return self._pii(text)

    def count_tokens(self, text: str) -> int:
        return self._tokens(text)

    def spend(self, scope: str) -> SpendStatus:
        found = self._spend.get(scope)
        return replace(found) if found is not None else SpendStatus(scope)

    def param(self, key: str) -> Optional[str]:
        return self._params.get(key)

    def params(self) -> Dict[str, str]:
        return dict(sorted(self._params.items()))

    def now_ms(self) -> int:
        return self._now_ms

    def log(self, level: LogLevel, message: str, fields: Fields = None) -> None:
        self._logs.append(LogLine(LogLevel(level), message, field_pairs(fields)))

    def embed(self, text: str) -> List[float]:
        if self._embed is None:
            raise HostError(NO_EMBEDDING_MODEL)
        return self._embed(text)

    def score(self, classifier: str, text: str) -> float:
        if self._score is None:
            raise HostError(NO_EMBEDDING_MODEL)
        return self._score(classifier, text)
