"""Host facts a policy reads: backend status (WIT `backends`) and spend against budgets (`spend`)."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional

from .types import Needs, ResponseFormat


class BackendKind(enum.Enum):
    """Where a backend runs."""

    LOCAL = "local"
    CLOUD = "cloud"


@dataclass
class ModelCapabilities:
    """What one model of a backend can do, as the host's connector can carry it."""

    model: str
    tools: bool = False
    json_object: bool = False
    json_schema: bool = False
    vision: bool = False
    logprobs: bool = False
    multiple_choices: bool = False
    context_window: int = 8192
    usd_per_mtok_in: float = 0.0
    usd_per_mtok_out: float = 0.0

    @classmethod
    def text_only(cls, model: str, context_window: int) -> "ModelCapabilities":
        """A text-only model: no tools, JSON, images, logprobs or several choices."""
        return cls(model, context_window=context_window)

    @classmethod
    def full(cls, model: str, context_window: int) -> "ModelCapabilities":
        """A model that can do everything the contract names."""
        return cls(model, True, True, True, True, True, True, context_window)

    def unmet(self, needs: Needs, prompt_tokens: int) -> Optional[str]:
        """The first need this model cannot meet, by name (`tools`, `json_object`,
        `json_schema`, `vision`, `logprobs`, `n`, `context_window`); None when it meets all."""
        checks = [
            (bool(needs.tools) and not self.tools, "tools"),
            (needs.response_format == ResponseFormat.JSON_OBJECT and not self.json_object, "json_object"),
            (needs.response_format == ResponseFormat.JSON_SCHEMA and not self.json_schema, "json_schema"),
            (needs.images > 0 and not self.vision, "vision"),
            (needs.logprobs and not self.logprobs, "logprobs"),
            (needs.n > 1 and not self.multiple_choices, "n"),
            (prompt_tokens > self.context_window, "context_window"),
        ]
        return next((what for unmet, what in checks if unmet), None)


@dataclass
class BackendStatus:
    """Live status of one backend, as measured by the host. Defaults: healthy, free, idle,
    an 8192-token window (as the Rust SDK's `BackendStatus::new`)."""

    name: str
    kind: BackendKind
    models: List[str]
    healthy: bool = True
    latency_p50_ms: float = 0.0
    latency_p95_ms: float = 0.0
    error_rate: float = 0.0
    in_flight: int = 0
    queue_depth: int = 0
    usd_per_mtok_in: float = 0.0
    usd_per_mtok_out: float = 0.0
    context_window: int = 8192
    labels: Dict[str, str] = field(default_factory=dict)
    capabilities: List[ModelCapabilities] = field(default_factory=list)

    @classmethod
    def local(cls, name: str, model: str, **fields) -> "BackendStatus":
        return cls(name, BackendKind.LOCAL, [model], **fields)

    @classmethod
    def cloud(cls, name: str, model: str, **fields) -> "BackendStatus":
        return cls(name, BackendKind.CLOUD, [model], **fields)

    def is_local(self) -> bool:
        return self.kind == BackendKind.LOCAL

    def is_cloud(self) -> bool:
        return self.kind == BackendKind.CLOUD

    def fits(self, tokens: int) -> bool:
        """True when `tokens` fit its context window."""
        return tokens <= self.context_window

    def default_model(self) -> Optional[str]:
        return self.models[0] if self.models else None

    def serves(self, model: str) -> bool:
        return model in self.models

    def label(self, key: str) -> Optional[str]:
        """The value of operator label `key`."""
        return self.labels.get(key)

    def model(self, model: str) -> ModelCapabilities:
        """What `model` can do: its `capabilities` entry, else text only within the window."""
        for caps in self.capabilities:
            if caps.model == model:
                return replace(caps)
        return ModelCapabilities.text_only(model, self.context_window)

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        """Estimated USD for `input_tokens` prompt and `output_tokens` completion tokens."""
        return (input_tokens * self.usd_per_mtok_in + output_tokens * self.usd_per_mtok_out) / 1_000_000.0

    def blended_price(self) -> float:
        """Price of a typical request (input and output weighted 3:1), USD per Mtok."""
        return (3.0 * self.usd_per_mtok_in + self.usd_per_mtok_out) / 4.0

    def load_depth(self) -> int:
        """Requests ahead of a new one: in flight plus queued."""
        return self.in_flight + self.queue_depth


def _fraction(spent: float, budget: Optional[float]) -> Optional[float]:
    if budget is None or not math.isfinite(budget) or budget <= 0.0:
        return None
    return spent / budget if math.isfinite(spent) else 0.0


@dataclass
class SpendStatus:
    """Spend for a scope (tenant), USD. Budgets are None when unset."""

    scope: str
    today_usd: float = 0.0
    month_usd: float = 0.0
    daily_budget_usd: Optional[float] = None
    monthly_budget_usd: Optional[float] = None
    hard_cap_usd: Optional[float] = None

    def daily_fraction(self) -> Optional[float]:
        """Fraction of the daily budget spent today (None without a positive budget)."""
        return _fraction(self.today_usd, self.daily_budget_usd)

    def monthly_fraction(self) -> Optional[float]:
        return _fraction(self.month_usd, self.monthly_budget_usd)

    def budget_fraction(self) -> Optional[float]:
        """The larger of the daily and monthly fractions (None without any budget)."""
        found = [f for f in (self.daily_fraction(), self.monthly_fraction()) if f is not None]
        return max(found) if found else None

    def over_hard_cap(self) -> bool:
        """True when this month's spend reached the hard cap."""
        return self.hard_cap_usd is not None and self.month_usd >= self.hard_cap_usd

    def remaining_usd(self) -> Optional[float]:
        """USD left before the nearest budget or cap (None without any)."""
        left = [
            budget - spent
            for budget, spent in (
                (self.daily_budget_usd, self.today_usd),
                (self.monthly_budget_usd, self.month_usd),
                (self.hard_cap_usd, self.month_usd),
            )
            if budget is not None
        ]
        return min(left) if left else None
