"""Reads a policy case file (`cases.json`) into SDK types, accepting exactly what the host's
`policy/cases.rs` accepts (unknown keys refused where it refuses them); errors name the place."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from .backend import BackendKind, BackendStatus, ModelCapabilities, SpendStatus
from .types import Message, Needs, ResponseFormat, Role


class CaseFileError(ValueError):
    """A case file the host would refuse; the message names the file and the place."""


@dataclass
class CaseRequest:
    messages: List[Message]
    id: Optional[str] = None
    model: Optional[str] = None
    tenant: Optional[str] = None
    labels: Dict[str, str] = field(default_factory=dict)
    max_tokens: Optional[int] = None
    temperature: Optional[float] = None
    streaming: bool = False
    prompt_tokens: Optional[int] = None
    needs: Needs = field(default_factory=Needs)
    explicit_model: bool = False


@dataclass
class Case:
    name: str
    request: CaseRequest
    backends: Optional[List[BackendStatus]] = None
    params: Dict[str, str] = field(default_factory=dict)
    spend: Dict[str, SpendStatus] = field(default_factory=dict)
    expect: Dict[str, Any] = field(default_factory=dict)


@dataclass
class CaseFile:
    cases: List[Case]
    backends: Optional[List[BackendStatus]] = None
    params: Dict[str, str] = field(default_factory=dict)
    spend: Dict[str, SpendStatus] = field(default_factory=dict)


def _fail(where: str, what: str) -> CaseFileError:
    return CaseFileError("%s: %s" % (where, what))


def _obj(v: Any, where: str, required=(), optional=(), strict=True) -> Dict[str, Any]:
    if not isinstance(v, dict):
        raise _fail(where, "expected an object")
    for key in required:
        if key not in v:
            raise _fail(where, "missing field %r" % key)
    if strict:
        for key in v:
            if key not in required and key not in optional:
                raise _fail(where, "unknown field %r (expected one of %s)" % (key, ", ".join(required + optional)))
    return v


def _str(v: Any, where: str) -> str:
    if not isinstance(v, str):
        raise _fail(where, "expected a string")
    return v


def _bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise _fail(where, "expected true or false")
    return v


def _uint(v: Any, where: str, top: int = 0xFFFFFFFF) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= top:
        raise _fail(where, "expected an integer in 0..=%d" % top)
    return v


def _num(v: Any, where: str) -> float:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise _fail(where, "expected a number")
    return float(v)


def _opt(read: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    return lambda v, where: None if v is None else read(v, where)


def _list(read: Callable[[Any, str], Any]) -> Callable[[Any, str], list]:
    def go(v: Any, where: str) -> list:
        if not isinstance(v, list):
            raise _fail(where, "expected an array")
        return [read(x, "%s[%d]" % (where, i)) for i, x in enumerate(v)]
    return go


def _map(read: Callable[[Any, str], Any]) -> Callable[[Any, str], dict]:
    def go(v: Any, where: str) -> dict:
        if not isinstance(v, dict):
            raise _fail(where, "expected an object")
        return {k: read(x, "%s.%s" % (where, k)) for k, x in v.items()}
    return go


def _enum(cls, where_name: str) -> Callable[[Any, str], Any]:
    def go(v: Any, where: str):
        try:
            return cls(v)
        except ValueError:
            raise _fail(where, "expected one of %s" % ", ".join(repr(e.value) for e in cls)) from None
    return go


def _fields(v: Dict[str, Any], where: str, spec: Dict[str, Callable[[Any, str], Any]]) -> Dict[str, Any]:
    return {k: spec[k](v[k], "%s.%s" % (where, k)) for k in spec if k in v}


def _message(v: Any, where: str) -> Message:
    o = _obj(v, where, ("role", "content"), strict=False)
    return Message(_enum(Role, "role")(o["role"], where + ".role"), _str(o["content"], where + ".content"))


def _capabilities(v: Any, where: str) -> ModelCapabilities:
    o = _obj(v, where, ("model", "context_window"), strict=False)
    spec = {"model": _str, "context_window": _uint, "usd_per_mtok_in": _num, "usd_per_mtok_out": _num}
    spec.update({k: _bool for k in ("tools", "json_object", "json_schema", "vision", "logprobs", "multiple_choices")})
    return ModelCapabilities(**_fields(o, where, spec))


def _backend(v: Any, where: str) -> BackendStatus:
    o = _obj(v, where, ("name", "kind", "models", "healthy", "context_window"), strict=False)
    spec = {"name": _str, "kind": _enum(BackendKind, "kind"), "models": _list(_str), "healthy": _bool,
            "latency_p50_ms": _num, "latency_p95_ms": _num, "error_rate": _num, "in_flight": _uint,
            "queue_depth": _uint, "usd_per_mtok_in": _num, "usd_per_mtok_out": _num, "context_window": _uint,
            "labels": _map(_str), "capabilities": _list(_capabilities)}
    return BackendStatus(**_fields(o, where, spec))


def _spend(v: Any, where: str) -> SpendStatus:
    o = _obj(v, where, ("scope",), strict=False)
    spec = {"scope": _str, "today_usd": _num, "month_usd": _num, "daily_budget_usd": _opt(_num),
            "monthly_budget_usd": _opt(_num), "hard_cap_usd": _opt(_num)}
    return SpendStatus(**_fields(o, where, spec))


def _needs(v: Any, where: str) -> Dict[str, Any]:
    o = _obj(v, where, strict=False)
    spec = {"tools": _list(_str), "response_format": _enum(ResponseFormat, "response_format"), "logprobs": _bool,
            "images": _uint, "n": _uint, "explicit_model": _bool}
    return _fields(o, where, spec)


def _request(v: Any, where: str) -> CaseRequest:
    keys = ("id", "model", "tenant", "labels", "max_tokens", "temperature", "streaming", "prompt_tokens", "needs")
    o = _obj(v, where, ("messages",), keys)
    spec = {"messages": _list(_message), "id": _opt(_str), "model": _opt(_str), "tenant": _opt(_str),
            "labels": _map(_str), "max_tokens": _opt(_uint), "temperature": _opt(_num), "streaming": _bool,
            "prompt_tokens": _opt(_uint)}
    fields = _fields(o, where, spec)
    needs = _needs(o["needs"], where + ".needs") if "needs" in o else {}
    explicit = needs.pop("explicit_model", False)
    return CaseRequest(needs=Needs(**needs), explicit_model=explicit, **fields)


EXPECT = {
    "targets": _opt(_list(_str)), "first": _opt(_str), "excludes": _opt(_list(_str)),
    "kinds": _opt(_list(_enum(BackendKind, "kind"))), "reject": _opt(lambda v, w: _uint(v, w, 0xFFFF)),
    "reason_contains": _opt(_str), "labels": _opt(_map(_str)), "max_tokens": _opt(_uint),
    "rewritten": _opt(_bool), "text_excludes": _opt(_list(_str)), "fallback": _opt(_bool),
}

_SHARED = {"backends": _opt(_list(_backend)), "params": _map(_str), "spend": _map(_spend)}


def _case(v: Any, where: str) -> Case:
    o = _obj(v, where, ("name", "request"), ("backends", "params", "spend", "expect"))
    name = _str(o["name"], where + ".name")
    where = "%s (%r)" % (where, name)
    expect = _obj(o.get("expect", {}), where + ".expect", (), tuple(EXPECT))
    expect = {k: x for k, x in _fields(expect, where + ".expect", EXPECT).items() if x is not None}
    return Case(name, _request(o["request"], where + ".request"), expect=expect,
                **_fields(o, where, _SHARED))


def parse(data: Any, where: str = "case file") -> CaseFile:
    """A case file from its parsed JSON; CaseFileError names what is wrong and where."""
    o = _obj(data, where, ("cases",), ("backends", "params", "spend"))
    return CaseFile(_list(_case)(o["cases"], where + ".cases"), **_fields(o, where, _SHARED))


def load(path: str) -> CaseFile:
    """Reads and parses the case file at `path`."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise CaseFileError("%s: cannot read: %s" % (path, e)) from None
    return parse(data, path)
