"""The `Host` protocol (what a policy may ask the gateway, mirroring the WIT imports) with
typed parameter helpers; `WasmHost` and `testing.MockHost` implement it."""

from __future__ import annotations

import abc
import enum
import math
import re
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from .backend import BackendStatus, SpendStatus
from .pii import PiiMatch

NO_EMBEDDING_MODEL = "no embedding model loaded"

Fields = Union[Mapping[str, str], Iterable[Tuple[str, str]], None]

_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?i:inf|infinity|nan)")
_U32 = re.compile(r"\+?[0-9]+")


class LogLevel(enum.IntEnum):
    """Severity of a log line."""

    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4


class HostError(Exception):
    """A host service answered with an error (e.g. `embed` without an embedding model)."""


def split_list(value: str) -> List[str]:
    """Splits a comma-separated list: items trimmed, blanks dropped."""
    return [part.strip() for part in value.split(",") if part.strip()]


def field_pairs(fields: Fields) -> List[Tuple[str, str]]:
    """Log fields as (key, value) string pairs, from a mapping or an iterable of pairs."""
    if fields is None:
        return []
    items = fields.items() if isinstance(fields, Mapping) else fields
    return [(str(k), str(v)) for k, v in items]


class Host(abc.ABC):
    """Read-only host facts and services. In a component it is `WasmHost` (the WIT imports);
    in native tests it is `testing.MockHost`."""

    @abc.abstractmethod
    def backends(self) -> List[BackendStatus]:
        """Every configured backend, in config order."""

    @abc.abstractmethod
    def detect_pii(self, text: str) -> List[PiiMatch]:
        """PII findings in `text` (UTF-8 byte offsets), sorted by start, non-overlapping."""

    @abc.abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens in `text`, counted with the host's tokenizer."""

    @abc.abstractmethod
    def spend(self, scope: str) -> SpendStatus:
        """Spend and budgets for `scope` (a tenant)."""

    @abc.abstractmethod
    def param(self, key: str) -> Optional[str]:
        """One policy parameter."""

    @abc.abstractmethod
    def params(self) -> Dict[str, str]:
        """Every policy parameter, sorted by key."""

    @abc.abstractmethod
    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch (UTC)."""

    @abc.abstractmethod
    def log(self, level: LogLevel, message: str, fields: Fields = None) -> None:
        """A structured log line; `fields` a dict or (key, value) pairs."""

    def embed(self, text: str) -> List[float]:
        """The host's sentence embedding of `text` (all-MiniLM-L6-v2: 384 dims, L2-normalised).
        Raises HostError when the host has no embedding model."""
        raise HostError(NO_EMBEDDING_MODEL)

    def score(self, classifier: str, text: str) -> float:
        """`text` scored 0.0..=1.0 by the classifier loaded as `classifier`; HostError if none."""
        raise HostError(NO_EMBEDDING_MODEL)

    def backend(self, name: str) -> Optional[BackendStatus]:
        """The backend named `name`."""
        return next((b for b in self.backends() if b.name == name), None)

    def param_or(self, key: str, default: str) -> str:
        """Parameter `key`, trimmed, or `default` when unset or blank."""
        value = self.param(key)
        return value.strip() if value is not None and value.strip() else default

    def _raw(self, key: str) -> Optional[str]:
        value = self.param(key)
        return value.strip() if value is not None and value.strip() else None

    def _warn_invalid(self, key: str) -> None:
        self.log(LogLevel.WARN, "invalid policy parameter, using its default",
                 [("param", key), ("value", self.param(key) or "")])

    def param_f64(self, key: str, default: float) -> float:
        """Parameter `key` as a number; `default` when unset, and a warning log plus
        `default` when it does not parse or is not finite."""
        raw = self._raw(key)
        if raw is None:
            return default
        if _FLOAT.fullmatch(raw):
            value = float(raw)
            if math.isfinite(value):
                return value
        self._warn_invalid(key)
        return default

    def param_u32(self, key: str, default: int) -> int:
        """Parameter `key` as an integer in 0..=4294967295 (see `param_f64`)."""
        raw = self._raw(key)
        if raw is None:
            return default
        if _U32.fullmatch(raw) and int(raw) <= 0xFFFFFFFF:
            return int(raw)
        self._warn_invalid(key)
        return default

    def param_bool(self, key: str, default: bool) -> bool:
        """Parameter `key` as a flag: true/yes/on/1 or false/no/off/0 (see `param_f64`)."""
        raw = self.param(key)
        if raw is None:
            return default
        value = raw.strip().lower()
        if value == "":
            return default
        if value in ("true", "yes", "on", "1"):
            return True
        if value in ("false", "no", "off", "0"):
            return False
        self._warn_invalid(key)
        return default

    def param_list(self, key: str) -> Optional[List[str]]:
        """Parameter `key` as a comma-separated list (trimmed, blanks dropped); None when unset."""
        value = self.param(key)
        return None if value is None else split_list(value)

    def param_list_or(self, key: str, default: Sequence[str]) -> List[str]:
        """`param_list`, or `default` when unset."""
        found = self.param_list(key)
        return list(default) if found is None else found
