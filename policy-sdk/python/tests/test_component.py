"""The component glue through componentize-py's real generated bindings: conversions both ways,
`export`'s Router (info, route, rejection, failures), and WasmHost over the imports."""

import math
import unittest

from support import WIT
from switchyard_policy import (BackendStatus, Decision, LogLevel, Message, ModelCapabilities, Needs, Policy,
                               PolicyInfo, Rejection, Request, ResponseFormat, Role, SpendStatus, Target, convert,
                               harness)
from switchyard_policy.component import WasmHost, export, wit_modules
from switchyard_policy.testing import MockHost

wit = harness.load_bindings(WIT)
from componentize_py_types import Err  # noqa: E402  (generated with the bindings)


def full_request():
    return Request(id="r-9", model="gpt-4o", messages=[Message(Role.SYSTEM, "s"), Message(Role.TOOL, "t"),
                                                          Message(Role.ASSISTANT, "a"), Message(Role.USER, "ü")],
                   max_tokens=77, temperature=0.5, streaming=True, tenant="acme", labels={"a": "1", "user": "u"},
                   prompt_tokens=12, needs=Needs(["f"], ResponseFormat.JSON_SCHEMA, True, 2, 3), explicit_model=True)


class Conversions(unittest.TestCase):
    def test_request_round_trip_and_role_enums(self):
        r = full_request()
        w = convert.request_to_wit(r, wit.types)
        self.assertIs(w.messages[0].role, wit.types.Role.SYSTEM)
        self.assertIs(w.needs.response_format, wit.types.ResponseFormat.JSON_SCHEMA)
        back = convert.request_from_wit(w)
        self.assertEqual(back, r)
        self.assertIs(back.messages[1].role, Role.TOOL)

    def test_decision_round_trip(self):
        d = (Decision.to("local", "m").then("openai").because("why").label("k", "v").cap_tokens(9)
             .rewrite([Message.user("x")]))
        w = convert.decision_to_wit(d, wit.types)
        self.assertEqual(w.labels, [wit.types.Label("k", "v")])
        self.assertEqual(w.messages, [wit.types.Message(wit.types.Role.USER, "x")])
        self.assertEqual(convert.decision_from_wit(w), d)
        plain = convert.decision_to_wit(Decision.to("a"), wit.types)
        self.assertIsNone(plain.messages)
        self.assertIsNone(plain.max_tokens)

    def test_backend_spend_and_pii_round_trip(self):
        b = BackendStatus.cloud("c", "m", healthy=False, latency_p50_ms=1.5, latency_p95_ms=2.5, error_rate=0.1,
                                in_flight=3, queue_depth=4, usd_per_mtok_in=1.0, usd_per_mtok_out=2.0,
                                context_window=99, labels={"region": "eu"},
                                capabilities=[ModelCapabilities.full("m", 99)])
        self.assertEqual(convert.backend_from_wit(convert.backend_to_wit(b, wit.backends, wit.types)), b)
        for demo in MockHost().backends():
            self.assertEqual(convert.backend_from_wit(convert.backend_to_wit(demo, wit.backends, wit.types)), demo)
        s = wit.spend.SpendStatus("t", 1.0, 2.0, None, 5.0, None)
        self.assertEqual(convert.spend_from_wit(s), SpendStatus("t", 1.0, 2.0, None, 5.0, None))
        m = wit.pii.PiiMatch(wit.pii.PiiKind.US_SSN, 1, 4)
        self.assertEqual([(x.kind.value, x.start, x.end) for x in convert.pii_from_wit([m])], [("us-ssn", 1, 4)])

    def test_check_answer_names_the_field(self):
        bad = [
            (Decision([Target("a")], reason=5), "decision.reason"),
            (Decision(["a"]), r"decision.targets\[0\]"),
            (Decision([Target("a")], max_tokens=-1), "decision.max_tokens"),
            (Decision([Target("a")], max_tokens=2 ** 32), "decision.max_tokens"),
            (Decision([Target("a")], labels={"k": 1}), r"decision.labels\['k'\]"),
            (Decision([Target("a")], messages=[Message("user", "x")]), r"decision.messages\[0\]"),
            ({"targets": []}, "Decision or a Rejection"),
        ]
        for answer, field in bad:
            with self.assertRaisesRegex(convert.ContractError, field):
                convert.check_answer(answer)
        convert.check_answer(Decision.to("a"))
        convert.check_answer(Rejection(404, "x"))


class Glue(unittest.TestCase):
    class Echo(Policy):
        name, version, description = "echo", "1.2.3", "echoes"

        def route(self, request, host):
            if request.tenant == "refused":
                return Rejection(429, "budget")
            if request.tenant == "broken":
                raise ValueError("boom")
            if request.tenant == "shapeless":
                return Decision([Target("local")], max_tokens=-5)
            d = Decision.to_all([b.name for b in host.backends()], request.messages[0].role.value)
            d.label("pii", ",".join(m.kind.value for m in host.detect_pii(request.text())))
            d.label("tokens", str(host.count_tokens("abcdefgh"))).label("now", str(host.now_ms()))
            d.label("spend", str(host.spend(request.tenant).month_usd)).label("p", host.param_or("p", "-"))
            return d

    def route(self, tenant, host, text="mail a@b.io"):
        with harness.serving(host):
            return export(self.Echo)().route(harness.to_wit_request(Request.user(text, tenant=tenant)))

    def test_info(self):
        info = export(self.Echo)().info()
        self.assertEqual(info, wit.types.PolicyInfo("echo", "1.2.3", "echoes"))
        override = export(self.Echo, PolicyInfo("x", "9", "y"))().info()
        self.assertEqual(override.name, "x")

    def test_route_reads_every_import(self):
        host = MockHost().with_spend(SpendStatus("acme", month_usd=4.5)).with_param("p", "q").at(42)
        d = self.route("acme", host)
        labels = {l.key: l.value for l in d.labels}
        self.assertEqual([t.backend for t in d.targets], ["local", "openai", "anthropic", "gemini"])
        self.assertEqual(d.reason, "user")
        self.assertEqual(labels, {"pii": "email", "tokens": "2", "now": "42", "spend": "4.5", "p": "q"})

    def test_rejection_is_the_wit_error(self):
        with self.assertRaises(Err) as caught:
            self.route("refused", MockHost())
        self.assertEqual(caught.exception.value, wit.types.Rejection(429, "budget"))

    def test_failures_are_logged_then_trap(self):
        for tenant, error in (("broken", "ValueError: boom at "), ("shapeless", "ContractError: decision.max_tokens")):
            host = MockHost()
            with self.assertRaises(Exception) as caught:
                self.route(tenant, host)
            self.assertNotIsInstance(caught.exception, Err)
            (line,) = host.logs()
            self.assertEqual(line.level, LogLevel.ERROR)
            self.assertEqual(line.field("policy"), "echo")
            self.assertTrue(line.field("error").startswith(error), line.field("error"))

    def test_plain_function_policy(self):
        def short(request, host):
            """Everything local."""
            return Decision.to("local", None).because("fn")

        router = export(short)()
        self.assertEqual((router.info().name, router.info().description), ("short", "Everything local."))
        with harness.serving(MockHost()):
            self.assertEqual(router.route(harness.to_wit_request(Request.user("x"))).reason, "fn")
        with self.assertRaisesRegex(TypeError, "route"):
            export(42)


class Host(unittest.TestCase):
    def test_params_are_fetched_once_and_embeddings_map_errors(self):
        calls = []
        with harness.serving(MockHost().with_param("b", "2").with_param("a", "1")
                             .with_embed(lambda t: [0.5] * 3)) as bindings:
            real_all = bindings.params.all
            bindings.params.all = lambda: calls.append(1) or real_all()
            host = WasmHost(wit_modules())
            self.assertEqual(host.params(), {"a": "1", "b": "2"})
            self.assertEqual((host.param("a"), host.param("zz"), host.param_u32("b", 0)), ("1", None, 2))
            self.assertEqual(len(calls), 1)
            self.assertEqual(host.embed("x"), [0.5, 0.5, 0.5])
            from switchyard_policy import HostError
            with self.assertRaisesRegex(HostError, "no embedding model loaded"):
                host.score("router", "x")
            host.log(LogLevel.TRACE, "t", {"k": "v"})
            self.assertTrue(math.isfinite(host.backends()[0].latency_p50_ms))


if __name__ == "__main__":
    unittest.main()
