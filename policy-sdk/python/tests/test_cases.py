"""The native case runner: the shipped ab_split cases, the host's checks (cases.rs `check`),
host refusals and fallbacks, request defaults, and errors that name the case."""

import importlib.util
import json
import os
import sys
import tempfile
import unittest

from support import AB_SPLIT, TEMPLATE, WIT
from switchyard_policy import BackendKind, Decision, Message, Rejection, Target, cases, casefile, harness

sys.path.insert(0, AB_SPLIT)
import ab_split  # noqa: E402

AB_CASES = os.path.join(AB_SPLIT, "cases.json")


def parse_one(case, **file):
    return casefile.parse({"cases": [case], **file})


def hi(**request):
    return {"messages": [{"role": "user", "content": "hi"}], **request}


class ShippedCases(unittest.TestCase):
    def test_ab_split_cases_pass_natively(self):
        results = cases.check_file(self, ab_split.AbSplit, AB_CASES)
        self.assertEqual(len(results), 10)
        self.assertEqual(results[0].answer.labels["ab-bucket"], "3431")

    def test_ab_split_cases_pass_through_the_component_glue(self):
        harness.load_bindings(WIT)
        import app
        results = cases.assert_file(app.Router, AB_CASES)
        self.assertTrue(all(r.passed for r in results) and len(results) == 10)
        self.assertEqual(results[-1].answer, Rejection(503, "ab_split: no backend fits this request"))

    def test_a_wrong_policy_fails_with_case_names(self):
        def always_local(request, host):
            return Decision.to("local").because("local")

        results = cases.run_file(always_local, AB_CASES)
        self.assertFalse(all(r.passed for r in results))
        with self.assertRaises(AssertionError) as caught:
            cases.assert_file(always_local, AB_CASES)
        text = str(caught.exception)
        self.assertIn("case 'tenant hashed into arm B goes to cloud first': targets ['local'], expected", text)
        self.assertIn("case 'no backend can hold the prompt: 503': expected rejection 503, got a route", text)


    def test_the_template_policy_passes_its_cases(self):
        # The template's placeholders sit in strings only, so its policy module loads as it is.
        spec = importlib.util.spec_from_file_location("template_policy", os.path.join(TEMPLATE, "policy.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        results = cases.check_file(self, module.RoutingPolicy, os.path.join(TEMPLATE, "cases.json"))
        self.assertEqual(len(results), 9)


class Check(unittest.TestCase):

    def route(self, names):
        return Decision([Target(n) for n in names], "pii found", None, 256, {"route": "local"})

    def test_the_brief_format_and_checks(self):
        file = parse_one({"name": "c", "request": hi(tenant="acme"), "expect": {
            "targets": ["local"], "first": "local", "excludes": ["openai"], "kinds": ["local"],
            "reason_contains": "pii", "labels": {"route": "local"}, "max_tokens": 256, "rewritten": False}},
            params={"a": "b"})
        case = file.cases[0]
        host = cases.setup(file, case)
        req = cases.build_request(case, host)
        self.assertEqual((req.id, req.model, req.tenant, host.param("a")), ("c", "auto", "acme", "b"))
        self.assertGreater(req.prompt_tokens, 0)
        self.assertEqual(cases.check(case.expect, self.route(["local"]), host.backends()), [])
        bad = cases.check(case.expect, self.route(["openai", "local"]), host.backends())
        self.assertEqual(len(bad), 4, bad)

    def test_rejection_expectations(self):
        self.assertEqual(cases.check({"reject": 429}, Rejection(429, "budget"), []), [])
        self.assertEqual(cases.check({}, Rejection(429, "budget"), []), ["unexpected rejection 429: budget"])
        self.assertEqual(len(cases.check({"reject": 429}, self.route(["local"]), [])), 1)
        self.assertEqual(cases.check({"reject": 403, "reason_contains": "x"}, Rejection(429, "budget"), []),
                         ["rejected with 429, expected 403", "rejection message 'budget' lacks 'x'"])

    def test_rewrite_expectations(self):
        d = Decision.to("local").rewrite([Message.user("mail [email]")])
        self.assertEqual(cases.check({"rewritten": True, "text_excludes": ["@"]}, d, []), [])
        self.assertEqual(cases.check({"text_excludes": ["mail"]}, d, []), ["rewritten messages still contain 'mail'"])

    def test_kinds_use_the_case_backends(self):
        file = parse_one({"name": "k", "request": hi(), "expect": {"kinds": ["cloud"]}})
        host = cases.setup(file, file.cases[0])
        problems = cases.check(file.cases[0].expect, Decision.to_all(["openai", "local"]), host.backends())
        self.assertEqual(problems, ["target 'local' has kind local, expected one of ['cloud']"])
        self.assertEqual(file.cases[0].expect["kinds"], [BackendKind.CLOUD])


class HostChecksAndFallback(unittest.TestCase):
    def run_one(self, policy, expect=None):
        case = {"name": "one", "request": hi()}
        if expect is not None:
            case["expect"] = expect
        return cases.run(policy, parse_one(case))[0]

    def test_failures_are_guest_failures_unless_a_fallback_is_expected(self):
        def boom(request, host):
            raise KeyError("missing")

        failing = {
            boom: "guest failed: policy raised KeyError: 'missing' at ",
            (lambda r, h: Decision()): "guest failed: decision has no targets",
            (lambda r, h: Decision.to("ghost")): "guest failed: decision names unknown backend 'ghost'",
            (lambda r, h: Decision.to("local").cap_tokens(-1)): "guest failed: decision.max_tokens must be",
            (lambda r, h: "local"): "guest failed: route must return a Decision or a Rejection, got str",
        }
        for policy, problem in failing.items():
            result = self.run_one(policy)
            self.assertEqual(len(result.problems), 1)
            self.assertTrue(result.problems[0].startswith(problem), result.problems)
            self.assertTrue(self.run_one(policy, {"fallback": True}).passed)
        ok = self.run_one(lambda r, h: Decision.to("local"), {"fallback": True})
        self.assertEqual(ok.problems, ["expected the guest to fail (fallback)"])

    def test_request_defaults_and_explicit_model(self):
        seen = []

        def record(request, host):
            seen.append(request)
            return Decision.to("local")

        file = parse_one({"name": "n", "request": hi(model="gpt-4o-mini", labels={"b": "2", "a": "1"},
                                                      needs={"n": 2}), "spend": {"acme": {"scope": "x", "month_usd": 3}}})
        result = cases.run(record, file)[0]
        self.assertTrue(result.passed)
        r = seen[0]
        self.assertEqual((r.id, r.tenant, r.prompt_tokens, r.explicit_model, r.needs.n), ("n", "default", 1, True, 2))
        self.assertEqual(list(r.labels), ["a", "b"])
        self.assertEqual(result.host.spend("acme").scope, "acme")
        self.assertEqual(result.host.spend("acme").month_usd, 3.0)


class FileErrors(unittest.TestCase):
    def test_errors_name_the_case_and_field(self):
        with self.assertRaisesRegex(casefile.CaseFileError, r"cases\[1\] \('second'\)\.request\.messages\[0\]\.role"):
            casefile.parse({"cases": [{"name": "first", "request": hi()},
                                      {"name": "second", "request": {"messages": [{"role": "bot", "content": ""}]}}]})
        with self.assertRaisesRegex(casefile.CaseFileError, r"\('x'\)\.expect: unknown field 'frist'"):
            casefile.parse({"cases": [{"name": "x", "request": hi(), "expect": {"frist": "local"}}]})

    def test_unreadable_files(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            f.write("{not json")
        self.addCleanup(os.unlink, f.name)
        with self.assertRaisesRegex(casefile.CaseFileError, "cannot read"):
            cases.run_file(ab_split.AbSplit, f.name)
        with self.assertRaisesRegex(casefile.CaseFileError, "cannot read"):
            cases.run_file(ab_split.AbSplit, f.name + ".missing")
        with open(f.name, "w") as out:
            json.dump({"cases": [], "extra": 1}, out)
        with self.assertRaisesRegex(casefile.CaseFileError, "unknown field 'extra'"):
            cases.run_file(ab_split.AbSplit, f.name)


if __name__ == "__main__":
    unittest.main()
