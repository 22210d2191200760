"""SDK types and selection helpers (the Rust SDK's types.rs, backend.rs and select.rs tests)."""

import unittest

from switchyard_policy import (BackendKind, BackendStatus, Decision, Message, Needs, Rejection, Request,
                               ResponseFormat, Role, SpendStatus, Target, select)
from switchyard_policy.testing import MockHost, demo_backends


class RequestAndDecision(unittest.TestCase):
    def test_request_helpers(self):
        r = Request.of([Message.system("be brief"), Message.user("first"), Message.assistant("ok"),
                        Message.user("second")], labels={"task": "qa"}, max_tokens=10)
        self.assertEqual(r.text(), "be brief\nfirst\nok\nsecond")
        self.assertEqual(r.last_user_text(), "second")
        self.assertEqual(r.label("task"), "qa")
        self.assertIsNone(r.label("nope"))
        self.assertEqual(r.prompt_tokens, 2 + 2 + 1 + 2)
        self.assertEqual(r.needed_context(), r.prompt_tokens + 10)
        self.assertEqual(Request.of([]).last_user_text(), "")
        self.assertIs(r.messages[0].role, Role.SYSTEM)
        self.assertEqual((r.id, r.model, r.tenant, r.needs.n), ("req-1", "auto", "default", 1))

    def test_decision_builder(self):
        d = (Decision.to("local").then("openai").then("openai", "gpt-4o-mini").because("pii:email")
             .label("k", "v").cap_tokens(100).cap_tokens(200).rewrite([Message.user("x")]))
        self.assertEqual(d.backends(), ["local", "openai", "openai"])
        self.assertEqual(d.targets[2], Target("openai", "gpt-4o-mini"))
        self.assertEqual(d.max_tokens, 100)
        self.assertEqual(d.labels, {"k": "v"})
        self.assertIsNotNone(d.messages)
        self.assertEqual(Decision.to_all(["a", "b"]).backends(), ["a", "b"])

    def test_rejection_status_is_clamped(self):
        self.assertEqual(Rejection(429, "x").status, 429)
        self.assertEqual(Rejection(200, "x").status, 500)
        self.assertEqual(Rejection.unavailable("x").status, 503)


class Backends(unittest.TestCase):
    def test_backend_helpers(self):
        b = BackendStatus.cloud("openai", "gpt-4o", usd_per_mtok_in=2.5, usd_per_mtok_out=10.0,
                                context_window=128_000, error_rate=0.1, in_flight=2, queue_depth=3,
                                labels={"region": "eu"})
        b.models.append("gpt-4o-mini")
        self.assertTrue(b.is_cloud() and not b.is_local())
        self.assertTrue(b.fits(128_000) and not b.fits(128_001))
        self.assertEqual(b.default_model(), "gpt-4o")
        self.assertTrue(b.serves("gpt-4o-mini"))
        self.assertEqual(b.label("region"), "eu")
        self.assertAlmostEqual(b.cost_usd(1_000_000, 100_000), 3.5)
        self.assertEqual(b.load_depth(), 5)

    def test_unmet_needs(self):
        caps = BackendStatus.local("l", "m").model("m")
        self.assertIsNone(caps.unmet(Needs(), 10))
        self.assertEqual(caps.unmet(Needs(tools=["f"]), 10), "tools")
        self.assertEqual(caps.unmet(Needs(response_format=ResponseFormat.JSON_SCHEMA), 10), "json_schema")
        self.assertEqual(caps.unmet(Needs(n=2), 10), "n")
        self.assertEqual(caps.unmet(Needs(), 9000), "context_window")

    def test_spend_fractions(self):
        s = SpendStatus("acme", 8.0, 50.0, 10.0, 200.0, 300.0)
        self.assertEqual(s.daily_fraction(), 0.8)
        self.assertEqual(s.monthly_fraction(), 0.25)
        self.assertEqual(s.budget_fraction(), 0.8)
        self.assertEqual(s.remaining_usd(), 2.0)
        self.assertFalse(s.over_hard_cap())
        self.assertTrue(SpendStatus("x", month_usd=300.0, hard_cap_usd=300.0).over_hard_cap())
        self.assertIsNone(SpendStatus("x").budget_fraction())
        self.assertIsNone(SpendStatus("x", daily_budget_usd=0.0).daily_fraction())


class Select(unittest.TestCase):
    def test_named_skips_unknown_and_repeats(self):
        self.assertEqual(select.names(select.named(demo_backends(), ["gemini", "nope", "local", "gemini"])),
                         ["gemini", "local"])

    def test_usable_drops_small_windows_and_puts_unhealthy_last(self):
        all_ = demo_backends()
        all_[1].healthy = False
        self.assertEqual(select.names(select.usable(all_, 10)), ["local", "anthropic", "gemini", "openai"])
        self.assertEqual(select.names(select.usable(all_, 150_000)), ["anthropic", "gemini"])

    def test_price_and_latency_order(self):
        all_ = demo_backends()
        cloud = select.by_price(select.of_kind(all_, BackendKind.CLOUD))
        self.assertEqual(select.names(cloud), ["gemini", "openai", "anthropic"])
        self.assertEqual(select.names(sorted(all_, key=select.latency_key)), ["gemini", "local", "openai", "anthropic"])

    def test_decide_and_explicit_model(self):
        self.assertEqual(select.decide([], "x").status, 503)
        host = MockHost()
        d = select.decide(host.backends(), "r")
        asked = Request.user("hi", model="gpt-4o-mini", explicit_model=True)
        out = select.explicit_model(host, asked, d)
        self.assertEqual(out.targets, [Target("openai", "gpt-4o-mini")])
        self.assertEqual(out.reason, "r+explicit-model")
        refused = select.explicit_model(host, asked, Decision.to("local").because("private"))
        self.assertEqual(refused.status, 403)
        self.assertIn("private", refused.message)

    def test_capable_targets_skips_and_labels(self):
        host = MockHost()
        asked = Request.user("hi", needs=Needs(tools=["lookup"]))
        out = select.honour_request(host, asked, Decision.to_all(["local", "openai", "gemini"]))
        self.assertEqual(out.backends(), ["openai"])
        self.assertEqual(out.labels["skipped"], "local:tools,gemini:tools")
        kept = select.capable_targets(host, asked, Decision.to("local"))
        self.assertEqual(kept.backends(), ["local"])


if __name__ == "__main__":
    unittest.main()
