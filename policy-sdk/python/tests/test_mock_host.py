"""MockHost parity with the Rust SDK's testing::MockHost (values from policy-sdk/src/testing.rs)."""

import unittest

from switchyard_policy import BackendStatus, HostError, LogLevel, NO_EMBEDDING_MODEL, PiiKind, SpendStatus
from switchyard_policy.testing import DEFAULT_NOW_MS, MockHost


class Defaults(unittest.TestCase):
    def test_defaults(self):
        host = MockHost()
        self.assertEqual([b.name for b in host.backends()], ["local", "openai", "anthropic", "gemini"])
        self.assertEqual(host.count_tokens("12345"), 2)
        self.assertEqual(host.count_tokens("é"), 1)
        self.assertEqual(host.detect_pii("mail a@b.io")[0].kind, PiiKind.EMAIL)
        self.assertEqual(host.spend("acme"), SpendStatus("acme"))
        self.assertEqual(host.now_ms(), 1_767_225_600_000)
        self.assertEqual(DEFAULT_NOW_MS, 1_767_225_600_000)
        self.assertEqual(host.params(), {})
        for call in (lambda: host.embed("hi"), lambda: host.score("router", "hi")):
            with self.assertRaisesRegex(HostError, NO_EMBEDDING_MODEL):
                call()

    def test_demo_backends(self):
        host = MockHost()
        local, openai, anthropic, gemini = host.backends()
        self.assertTrue(local.is_local() and openai.is_cloud())
        self.assertEqual((local.models, local.context_window, local.latency_p50_ms, local.latency_p95_ms),
                         (["smollm2-135m-instruct"], 8192, 400.0, 1200.0))
        self.assertEqual((openai.models, openai.usd_per_mtok_in, openai.usd_per_mtok_out, openai.context_window),
                         (["gpt-4o", "gpt-4o-mini"], 2.5, 10.0, 128_000))
        self.assertEqual((anthropic.usd_per_mtok_in, anthropic.usd_per_mtok_out, anthropic.context_window,
                          anthropic.latency_p95_ms), (3.0, 15.0, 200_000, 1800.0))
        self.assertEqual((gemini.usd_per_mtok_in, gemini.usd_per_mtok_out, gemini.context_window,
                          gemini.latency_p50_ms), (0.10, 0.40, 1_000_000, 500.0))
        mini = host.backend("openai").model("gpt-4o-mini")
        self.assertTrue(mini.tools and mini.vision and mini.usd_per_mtok_in == 0.15 and mini.usd_per_mtok_out == 0.60)
        small = host.backend("local").model("smollm2-135m-instruct")
        self.assertTrue(not small.tools and small.context_window == 8192)
        self.assertTrue(small.json_object and small.json_schema and not small.vision)
        self.assertEqual(host.backend("anthropic").model("claude-sonnet-4-5").usd_per_mtok_out, 15.0)
        self.assertFalse(host.backend("gemini").model("gemini-2.0-flash").json_object)

    def test_backends_are_copies(self):
        host = MockHost()
        host.backends()[0].healthy = False
        host.backends()[1].models.append("x")
        self.assertTrue(host.backend("local").healthy)
        self.assertEqual(host.backend("openai").models, ["gpt-4o", "gpt-4o-mini"])


class Builders(unittest.TestCase):
    def test_builders(self):
        host = (MockHost().unhealthy("openai").without_backend("gemini").with_backend(BackendStatus.cloud("x", "m"))
                .with_param("a", "1").with_spend(SpendStatus("acme", 1.0, 2.0)).with_pii(lambda t: [])
                .with_tokens(lambda t: 7).at(5))
        self.assertFalse(host.backend("openai").healthy)
        self.assertIsNone(host.backend("gemini"))
        self.assertIsNotNone(host.backend("x"))
        self.assertEqual(host.param("a"), "1")
        self.assertEqual(host.spend("acme").month_usd, 2.0)
        self.assertEqual(host.detect_pii("a@b.io"), [])
        self.assertEqual((host.count_tokens(""), host.now_ms()), (7, 5))

    def test_fake_embeddings_and_classifier(self):
        def score(name, _text):
            if name != "router":
                raise HostError("unknown")
            return 0.9

        host = MockHost().with_embed(lambda text: [float(len(text)), 0.0]).with_score(score)
        self.assertEqual(host.embed("abc"), [3.0, 0.0])
        self.assertEqual(host.score("router", "x"), 0.9)
        with self.assertRaises(HostError):
            host.score("other", "x")


class ParamHelpers(unittest.TestCase):
    def test_param_helpers_and_logs(self):
        host = (MockHost().with_param("f", " 0.5 ").with_param("bad", "x").with_param("n", "12")
                .with_param("b", "Yes").with_param("list", " a, ,b ,").with_param("blank", " "))
        self.assertEqual(host.param_f64("f", 1.0), 0.5)
        self.assertEqual(host.param_f64("missing", 1.0), 1.0)
        self.assertEqual(host.param_f64("blank", 1.0), 1.0)
        self.assertEqual(host.param_f64("missing", float("inf")), float("inf"))
        self.assertEqual(host.param_u32("n", 1), 12)
        self.assertTrue(host.param_bool("b", False))
        self.assertEqual(host.param_list("list"), ["a", "b"])
        self.assertEqual(host.param_list_or("missing", ["z"]), ["z"])
        self.assertEqual(host.param_or("blank", "d"), "d")
        self.assertEqual(host.logs(), [])
        self.assertEqual(host.param_u32("bad", 3), 3)
        logs = host.logs()
        self.assertEqual(len(logs), 1)
        self.assertEqual(logs[0].level, LogLevel.WARN)
        self.assertEqual(logs[0].field("param"), "bad")
        self.assertEqual(logs[0].field("value"), "x")
        self.assertTrue(host.logged("invalid policy parameter"))
        inf = MockHost().with_param("f", "inf")
        self.assertEqual(inf.param_f64("f", 2.0), 2.0)
        self.assertEqual(len(inf.logs()), 1)

    def test_parsing_follows_rust(self):
        host = MockHost().with_params({"u": "1_000", "neg": "-1", "big": "4294967296", "plus": "+7", "e": "1e3",
                                       "under": "1_0.5", "dot": ".5", "nan": "NaN", "flag": "maybe"})
        self.assertEqual(host.param_u32("u", 9), 9)
        self.assertEqual(host.param_u32("neg", 9), 9)
        self.assertEqual(host.param_u32("big", 9), 9)
        self.assertEqual(host.param_u32("plus", 9), 7)
        self.assertEqual(host.param_f64("e", 0.0), 1000.0)
        self.assertEqual(host.param_f64("under", 0.0), 0.0)
        self.assertEqual(host.param_f64("dot", 0.0), 0.5)
        self.assertEqual(host.param_f64("nan", 1.0), 1.0)
        self.assertFalse(host.param_bool("flag", False))
        self.assertEqual(len(host.logs()), 6)

    def test_log_fields_from_dict_or_pairs(self):
        host = MockHost()
        host.log(LogLevel.INFO, "one", {"k": "v"})
        host.log(LogLevel.ERROR, "two", [("a", 1)])
        host.log(LogLevel.DEBUG, "three")
        self.assertEqual([(l.level, l.fields) for l in host.logs()],
                         [(LogLevel.INFO, [("k", "v")]), (LogLevel.ERROR, [("a", "1")]), (LogLevel.DEBUG, [])])


if __name__ == "__main__":
    unittest.main()
