"""Inside a componentize-py build: `WasmHost` (the Host over the generated `wit_world`
imports) and `export`, which turns a policy into the component's `Router` export.

    # app.py, the module componentize-py is pointed at
    from switchyard_policy.component import export
    from my_policy import MyPolicy
    Router = export(MyPolicy)
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from . import convert
from .backend import BackendStatus, SpendStatus
from .host import Fields, Host, HostError, LogLevel, field_pairs
from .pii import PiiMatch
from .policy import describe_error, resolve
from .types import PolicyInfo, Rejection


def wit_modules() -> Dict[str, Any]:
    """The generated import modules and `Err`, by name. Import them all at build time (when
    componentize-py pre-initialises `app`): an import at decision time reads files, and
    every file access traps inside the component."""
    from componentize_py_types import Err
    from wit_world.imports import backends, clock, embeddings, logging, params, pii, spend, tokens, types
    return {"backends": backends, "clock": clock, "embeddings": embeddings, "logging": logging, "params": params,
            "pii": pii, "spend": spend, "tokens": tokens, "types": types, "Err": Err}


class WasmHost(Host):
    """The Host of a running component over `wit` (from `wit_modules`): every call goes to
    the gateway through the WIT imports, except parameter reads, answered from one
    `params.all` call made on the first read. One WasmHost serves one decision."""

    def __init__(self, wit: Dict[str, Any]) -> None:
        self._wit = wit
        self._params: Optional[Dict[str, str]] = None

    def backends(self) -> List[BackendStatus]:
        return [convert.backend_from_wit(b) for b in self._wit["backends"].list()]

    def detect_pii(self, text: str) -> List[PiiMatch]:
        return convert.pii_from_wit(self._wit["pii"].detect(text))

    def count_tokens(self, text: str) -> int:
        return self._wit["tokens"].count(text)

    def spend(self, scope: str) -> SpendStatus:
        return convert.spend_from_wit(self._wit["spend"].get(scope))

    def params(self) -> Dict[str, str]:
        if self._params is None:
            self._params = dict(sorted((label.key, label.value) for label in self._wit["params"].all()))
        return dict(self._params)

    def param(self, key: str) -> Optional[str]:
        return self.params().get(key)

    def now_ms(self) -> int:
        return self._wit["clock"].now_ms()

    def log(self, level: LogLevel, message: str, fields: Fields = None) -> None:
        types = self._wit["types"]
        wit_level = self._wit["logging"].Level[LogLevel(level).name]
        self._wit["logging"].log(wit_level, message, [types.Label(k, v) for k, v in field_pairs(fields)])

    def embed(self, text: str) -> List[float]:
        try:
            return list(self._wit["embeddings"].embed(text))
        except self._wit["Err"] as e:
            raise HostError(str(e.value)) from None

    def score(self, classifier: str, text: str) -> float:
        try:
            return self._wit["embeddings"].score(classifier, text)
        except self._wit["Err"] as e:
            raise HostError(str(e.value)) from None


def export(policy: Any, info: Optional[PolicyInfo] = None) -> type:
    """The `Router` class componentize-py exports for `policy` (see `policy.resolve`).

    Each `route` call converts the WIT request, runs the policy with a fresh WasmHost and
    converts its Decision (or Rejection, returned as the WIT error). A policy that raises,
    or returns something the contract cannot carry, gets an error log line naming the
    problem and then traps, so the host uses its fallback decision.
    """
    from wit_world import exports

    wit = wit_modules()
    types, Err = wit["types"], wit["Err"]
    route, policy_info = resolve(policy, info)

    class Router(exports.Router):
        def info(self) -> Any:
            return convert.info_to_wit(policy_info, types)

        def route(self, request: Any) -> Any:
            host = WasmHost(wit)
            try:
                answer = route(convert.request_from_wit(request), host)
                convert.check_answer(answer)
            except Exception as e:
                host.log(LogLevel.ERROR, "policy failed; the host uses its fallback decision",
                         [("policy", policy_info.name), ("error", describe_error(e))])
                raise
            if isinstance(answer, Rejection):
                raise Err(convert.rejection_to_wit(answer, types))
            return convert.decision_to_wit(answer, types)

    Router.switchyard_export = True  # what cases.run_file recognises to run it through harness
    return Router
