"""Native case runner: runs a policy's `cases.json` against `MockHost` with the host's own
expectations (`check` of `host/gateway/src/policy/cases.rs`) and the host's checks on an
answer (known, non-empty targets; a status in 400..=599).

    results = run_file(MyPolicy, "cases.json")      # CaseResult per case
    assert_file(MyPolicy, "cases.json")              # AssertionError naming each failed case
    check_file(self, MyPolicy, "cases.json")         # unittest: one subTest per case
    run_file(app.Router, "cases.json")               # through the component glue (see harness)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Union

from . import casefile
from .backend import BackendStatus
from .convert import ContractError, check_answer
from .policy import describe_error, resolve
from .testing import MockHost
from .types import Decision, Rejection, Request

Answer = Union[Decision, Rejection, None]


@dataclass
class CaseResult:
    """The outcome of one case; `problems` is empty when it passed. `answer` is None when the
    policy failed (raised, or answered what the host refuses): the host's fallback case."""

    name: str
    problems: List[str] = field(default_factory=list)
    answer: Answer = None
    host: Optional[MockHost] = None

    @property
    def passed(self) -> bool:
        return not self.problems


def build_request(case: casefile.Case, host: MockHost) -> Request:
    """The request the host would send for `case` (prompt tokens counted by `host`)."""
    r = case.request
    prompt_tokens = r.prompt_tokens
    if prompt_tokens is None:
        prompt_tokens = min(sum(host.count_tokens(m.content) for m in r.messages), 0xFFFFFFFF)
    model = r.model if r.model is not None else "auto"
    explicit = r.explicit_model or any(model in b.models for b in host.backends())
    return Request(id=r.id if r.id is not None else case.name, model=model, messages=copy.deepcopy(r.messages),
                   max_tokens=r.max_tokens, temperature=r.temperature, streaming=r.streaming,
                   tenant=r.tenant if r.tenant is not None else "default", labels=dict(sorted(r.labels.items())),
                   prompt_tokens=prompt_tokens, needs=copy.deepcopy(r.needs), explicit_model=explicit)


def setup(file: casefile.CaseFile, case: casefile.Case) -> MockHost:
    """A case's host: its (or the file's) backends, the file's spend and params merged with the case's."""
    host = MockHost()
    backends = case.backends if case.backends is not None else file.backends
    if backends is not None:
        host.with_backends(copy.deepcopy(backends))
    for scope, status in {**file.spend, **case.spend}.items():
        host.with_spend(replace(status, scope=scope))
    return host.with_params({**file.params, **case.params})


def host_failure(answer: Any, backends: List[BackendStatus]) -> Optional[str]:
    """Why the host would refuse `answer` and use the fallback (None: it takes it)."""
    try:
        check_answer(answer)
    except ContractError as e:
        return str(e)
    if isinstance(answer, Rejection):
        if not 400 <= answer.status <= 599:
            return "rejection status %d is outside 400..=599" % answer.status
        return None
    if not answer.targets:
        return "decision has no targets"
    known = {b.name for b in backends}
    for t in answer.targets:
        if t.backend not in known:
            return "decision names unknown backend %r" % t.backend
    return None


def check(expect: Dict[str, Any], answer: Union[Decision, Rejection], backends: List[BackendStatus]) -> List[str]:
    """The problems with `answer` under `expect` (the checks of the host's `check`)."""
    problems: List[str] = []
    reason_contains = expect.get("reason_contains")
    if isinstance(answer, Rejection):
        want = expect.get("reject")
        if want is None:
            problems.append("unexpected rejection %d: %s" % (answer.status, answer.message))
        elif want != answer.status:
            problems.append("rejected with %d, expected %d" % (answer.status, want))
        if reason_contains is not None and reason_contains not in answer.message:
            problems.append("rejection message %r lacks %r" % (answer.message, reason_contains))
        return problems
    if "reject" in expect:
        problems.append("expected rejection %d, got a route" % expect["reject"])
    names = answer.backends()
    if "targets" in expect and names != expect["targets"]:
        problems.append("targets %r, expected %r" % (names, expect["targets"]))
    if "first" in expect and (names[0] if names else None) != expect["first"]:
        problems.append("first target %r, expected %r" % (names[0] if names else None, expect["first"]))
    for e in expect.get("excludes", []):
        if e in names:
            problems.append("targets %r include excluded %r" % (names, e))
    if "kinds" in expect:
        kinds = {b.name: b.kind for b in reversed(backends)}
        for name in names:
            if kinds.get(name) not in expect["kinds"]:
                problems.append("target %r has kind %s, expected one of %s" % (
                    name, kinds[name].value if name in kinds else None, [k.value for k in expect["kinds"]]))
    if reason_contains is not None and reason_contains not in answer.reason:
        problems.append("reason %r lacks %r" % (answer.reason, reason_contains))
    for k, v in expect.get("labels", {}).items():
        if answer.labels.get(k) != v:
            problems.append("label %s=%r, expected %r" % (k, answer.labels.get(k), v))
    if "max_tokens" in expect and answer.max_tokens != expect["max_tokens"]:
        problems.append("max_tokens %r, expected %d" % (answer.max_tokens, expect["max_tokens"]))
    if "rewritten" in expect and (answer.messages is not None) != expect["rewritten"]:
        problems.append("rewritten is %s, expected %s" % (answer.messages is not None, expect["rewritten"]))
    for m in answer.messages or []:
        for e in expect.get("text_excludes", []):
            if e in m.content:
                problems.append("rewritten messages still contain %r" % e)
    return problems


def run_case(policy: Any, file: casefile.CaseFile, case: casefile.Case) -> CaseResult:
    """Runs one case of `file` against `policy` (see `policy.resolve`), or against an exported
    `Router` class (`app.Router`) through the generated bindings (`harness.load_bindings` first)."""
    if getattr(policy, "switchyard_export", False):
        from .harness import component_route
        route = component_route(policy)
    else:
        route, _ = resolve(policy)
    host = setup(file, case)
    request = build_request(case, host)
    backends = host.backends()
    result = CaseResult(case.name, host=host)
    try:
        answer = route(request, host)
        failure = host_failure(answer, backends)
    except Exception as e:  # the component would trap: the host uses the fallback
        failure = "policy raised %s" % describe_error(e)
    if failure is not None:
        if case.expect.get("fallback") is not True:
            result.problems.append("guest failed: %s" % failure)
        return result
    result.answer = answer
    result.problems = check(case.expect, answer, backends)
    if case.expect.get("fallback") is True:
        result.problems.append("expected the guest to fail (fallback)")
    return result


def run(policy: Any, file: casefile.CaseFile) -> List[CaseResult]:
    """Runs every case of `file` against `policy`."""
    return [run_case(policy, file, case) for case in file.cases]


def run_file(policy: Any, path: str) -> List[CaseResult]:
    """Runs every case of the case file at `path`; CaseFileError when the file is not valid."""
    return run(policy, casefile.load(path))


def report(results: List[CaseResult]) -> str:
    """One line per failed case: `case NAME: problem; problem`."""
    return "\n".join("case %r: %s" % (r.name, "; ".join(r.problems)) for r in results if not r.passed)


def assert_file(policy: Any, path: str) -> List[CaseResult]:
    """`run_file`, raising AssertionError naming every failed case (for pytest)."""
    results = run_file(policy, path)
    failed = [r for r in results if not r.passed]
    if failed:
        raise AssertionError("%s: %d of %d cases failed\n%s" % (path, len(failed), len(results), report(results)))
    return results


def check_file(test: Any, policy: Any, path: str) -> List[CaseResult]:
    """For a unittest.TestCase: one subTest per case, failing with that case's problems."""
    results = run_file(policy, path)
    test.assertTrue(results, "%s has no cases" % path)
    for r in results:
        with test.subTest(case=r.name):
            test.assertEqual(r.problems, [], "case %r failed" % r.name)
    return results
