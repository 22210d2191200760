"""Tests of app.py, the component entry, with the generated WIT bindings replaced
by in-memory fakes (the real ones exist only inside a componentize-py build)."""

import enum
import sys
import types as pytypes
import unittest
from dataclasses import dataclass
from typing import List, Optional


class Err(Exception):
    def __init__(self, value):
        super().__init__(value)
        self.value = value


@dataclass
class Label:
    key: str
    value: str


@dataclass
class Target:
    backend: str
    model: Optional[str]


@dataclass
class Decision:
    targets: List[Target]
    reason: str
    messages: object
    max_tokens: Optional[int]
    labels: List[Label]


@dataclass
class Rejection:
    status: int
    message: str


@dataclass
class PolicyInfo:
    name: str
    version: str
    description: str


class BackendKind(enum.Enum):
    LOCAL = 0
    CLOUD = 1


class Level(enum.Enum):
    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4


@dataclass
class BackendStatus:
    name: str
    kind: BackendKind
    models: List[str]
    healthy: bool
    context_window: int


STATE = {"backends": [], "params": {}, "logs": []}


def install_fake_bindings():
    def module(name, **attrs):
        m = pytypes.ModuleType(name)
        m.__dict__.update(attrs)
        sys.modules[name] = m
        return m

    module("componentize_py_types", Err=Err)
    t = module("wit_world.imports.types", Label=Label, Target=Target, Decision=Decision, Request=object,
               Rejection=Rejection, PolicyInfo=PolicyInfo)
    b = module("wit_world.imports.backends", BackendKind=BackendKind, list=lambda: list(STATE["backends"]))
    p = module("wit_world.imports.params", all=lambda: [Label(k, v) for k, v in STATE["params"].items()],
               get=lambda k: STATE["params"].get(k))
    lg = module("wit_world.imports.logging", Level=Level,
                log=lambda level, message, fields: STATE["logs"].append((level, message, fields)))
    module("wit_world.imports", types=t, backends=b, params=p, logging=lg)
    module("wit_world.exports", Router=object)
    module("wit_world")


install_fake_bindings()
import app  # noqa: E402  (needs the fake bindings first)


def request(tenant):
    return pytypes.SimpleNamespace(id="r1", tenant=tenant, prompt_tokens=5, max_tokens=None, labels=[],
                                   messages=[], model="auto")


class AppTests(unittest.TestCase):
    def setUp(self):
        STATE["backends"] = [
            BackendStatus("big-cloud", BackendKind.CLOUD, ["m1"], True, 100000),
            BackendStatus("box", BackendKind.LOCAL, ["m2"], True, 8192),
        ]
        STATE["params"] = {"a_share": "100", "a_model": "m2"}
        STATE["logs"] = []

    def test_info(self):
        info = app.Router().info()
        self.assertEqual(info, PolicyInfo("ab_split", "0.1.0", info.description))

    def test_route_builds_wit_decision(self):
        d = app.Router().route(request("acme"))
        self.assertIsInstance(d, Decision)
        self.assertEqual(d.targets, [Target("box", "m2"), Target("big-cloud", None)])
        self.assertIn(Label("ab-arm", "a"), d.labels)
        self.assertIsNone(d.messages)
        self.assertIsNone(d.max_tokens)

    def test_rejection_is_raised_as_err(self):
        STATE["backends"] = []
        with self.assertRaises(Err) as caught:
            app.Router().route(request("acme"))
        self.assertEqual(caught.exception.value, Rejection(503, "ab_split: no backend fits this request"))

    def test_warning_goes_to_logging_import(self):
        STATE["params"] = {"a_share": "lots"}
        app.Router().route(request("acme"))
        self.assertEqual(STATE["logs"][0][0], Level.WARN)
        self.assertEqual(STATE["logs"][0][2], [Label("detail", "lots")])


if __name__ == "__main__":
    unittest.main()
