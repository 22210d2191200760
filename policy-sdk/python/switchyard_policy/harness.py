"""Native test harness for the component glue: generates componentize-py's real `wit_world`
bindings and answers their imports from a `MockHost`, so an `app.py`'s `Router` runs
natively with the exact generated types it gets inside the component (the generated code
needs Python >= 3.11).

    harness.load_bindings("wit")                 # generate (once) and import wit_world
    with harness.serving(MockHost()) as wit:     # imports answered by the mock host
        decision = app.Router().route(harness.to_wit_request(Request.user("hi")))
"""

from __future__ import annotations

import atexit
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from types import SimpleNamespace
from typing import Any, Callable, Dict, Optional, Tuple, Union

from . import convert
from .host import HostError, LogLevel
from .testing import MockHost
from .types import Decision, Rejection, Request

_IMPORTS = ("backends", "clock", "embeddings", "logging", "params", "pii", "spend", "tokens", "types")


def componentize_py() -> str:
    """The componentize-py beside this interpreter (a venv), else the one on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "componentize-py")
    found = here if os.path.exists(here) else shutil.which("componentize-py")
    if found is None:
        raise RuntimeError("componentize-py not found beside %s or on PATH; install it (pip install "
                           "componentize-py) into the environment that runs the tests" % sys.executable)
    return found


def load_bindings(wit_dir: str, out_dir: Optional[str] = None) -> SimpleNamespace:
    """Generates the bindings of world `policy` in `wit_dir` (into `out_dir`, default a fresh
    temporary folder), puts them on sys.path and returns the `wit_world.imports` modules."""
    if "wit_world" not in sys.modules:
        if out_dir is None:
            out_dir = tempfile.mkdtemp(prefix="switchyard-bindings-")
            atexit.register(shutil.rmtree, out_dir, True)
        done = subprocess.run([componentize_py(), "-d", wit_dir, "-w", "policy", "bindings", out_dir],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError("componentize-py bindings failed for %s: %s" % (wit_dir, done.stderr.strip()))
        sys.path.insert(0, out_dir)
    return SimpleNamespace(**{name: importlib.import_module("wit_world.imports." + name) for name in _IMPORTS})


def to_wit_request(request: Request) -> Any:
    """An SDK Request as the generated `types.Request` (load_bindings first)."""
    return convert.request_to_wit(request, importlib.import_module("wit_world.imports.types"))


class serving:
    """`with serving(host) as wit:` answers every generated import function from `host` until
    the block ends (a class, not a generator: componentize-py's `Err` is a frozen exception
    that a generator-based context manager cannot re-raise)."""

    def __init__(self, host: MockHost) -> None:
        if "wit_world" not in sys.modules:
            raise RuntimeError("no wit_world bindings loaded: call harness.load_bindings(wit_dir) first")
        self.wit = SimpleNamespace(**{n: importlib.import_module("wit_world.imports." + n) for n in _IMPORTS})
        self.answers = _answers(host, self.wit)
        self.saved: Dict[Tuple[Any, str], Any] = {}

    def __enter__(self) -> SimpleNamespace:
        self.saved = {key: getattr(*key) for key in self.answers}
        for (module, name), answer in self.answers.items():
            setattr(module, name, answer)
        return self.wit

    def __exit__(self, *exc: Any) -> bool:
        for (module, name), original in self.saved.items():
            setattr(module, name, original)
        return False


def _answers(host: MockHost, wit: SimpleNamespace) -> Dict[Tuple[Any, str], Callable[..., Any]]:
    from componentize_py_types import Err
    types = wit.types

    def embed(text):
        try:
            return host.embed(text)
        except HostError as e:
            raise Err(str(e)) from None

    def score(classifier, text):
        try:
            return host.score(classifier, text)
        except HostError as e:
            raise Err(str(e)) from None

    return {
        (wit.backends, "list"): lambda: [convert.backend_to_wit(b, wit.backends, types) for b in host.backends()],
        (wit.pii, "detect"): lambda text: [wit.pii.PiiMatch(wit.pii.PiiKind[m.kind.name], m.start, m.end)
                                           for m in host.detect_pii(text)],
        (wit.tokens, "count"): host.count_tokens,
        (wit.spend, "get"): lambda scope: wit.spend.SpendStatus(**vars(host.spend(scope))),
        (wit.params, "get"): host.param,
        (wit.params, "all"): lambda: [types.Label(k, v) for k, v in host.params().items()],
        (wit.clock, "now_ms"): host.now_ms,
        (wit.logging, "log"): lambda level, message, fields: host.log(
            LogLevel[level.name], message, [(f.key, f.value) for f in fields]),
        (wit.embeddings, "embed"): embed,
        (wit.embeddings, "score"): score,
    }


def component_route(router: type) -> Callable[[Request, MockHost], Union[Decision, Rejection]]:
    """A `route(request, host)` that runs the exported `Router` class (what `component.export`
    made, e.g. `app.Router`) through the generated types, its imports answered by `host`."""
    from componentize_py_types import Err

    def route(request: Request, host: MockHost) -> Union[Decision, Rejection]:
        with serving(host):
            try:
                return convert.decision_from_wit(router().route(to_wit_request(request)))
            except Err as e:
                return Rejection(e.value.status, e.value.message)

    return route
