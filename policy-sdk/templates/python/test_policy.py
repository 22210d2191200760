"""Tests of __TITLE__: the rules with the SDK's MockHost, cases.json through the native case
runner, and app.py's Router through componentize-py's generated bindings (run by test.sh)."""

import os
import unittest

from switchyard_policy import BackendStatus, Rejection, Request, cases, harness
from switchyard_policy.testing import MockHost

from policy import RoutingPolicy

HERE = os.path.dirname(os.path.abspath(__file__))


def route(request, host=None):
    return RoutingPolicy().route(request, host or MockHost())


class Rules(unittest.TestCase):
    def test_code_goes_to_the_cheapest_cloud_first(self):
        d = route(Request.user("please fix", labels={"task": "code"}))
        self.assertEqual(d.backends(), ["gemini", "openai", "anthropic", "local"])
        self.assertEqual(d.labels["route"], "code-cloud")

    def test_code_words_are_whole_word_starts(self):
        self.assertEqual(route(Request.user("Debug my SQL query")).labels["route"], "code-cloud")
        self.assertEqual(route(Request.user("classes of ships")).labels["route"], "local-first")

    def test_code_words_from_params(self):
        host = MockHost().with_param("code_words", "kotlin, swift")
        self.assertEqual(route(Request.user("A Swift question"), host).labels["route"], "code-cloud")
        self.assertEqual(route(Request.user("implement it"), host).labels["route"], "local-first")

    def test_legal_never_leaves_local(self):
        host = MockHost().with_backend(BackendStatus.local("edge", "tiny", context_window=2048))
        d = route(Request.user("implement this", tenant="legal"), host)
        self.assertEqual(d.backends(), ["local", "edge"])
        self.assertEqual(route(Request.user("x", tenant="legal", prompt_tokens=9000)).status, 503)

    def test_unhealthy_local_goes_last_and_is_flagged(self):
        d = route(Request.user("hello", tenant="legal"), MockHost().unhealthy("local"))
        self.assertEqual((d.backends(), d.labels.get("degraded")), (["local"], "true"))
        d = route(Request.user("hello"), MockHost().unhealthy("local"))
        self.assertEqual(d.backends(), ["gemini", "openai", "anthropic", "local"])

    def test_no_backend_at_all(self):
        self.assertIsInstance(route(Request.user("hi"), MockHost().with_backends([])), Rejection)


class Cases(unittest.TestCase):
    def test_cases_json(self):
        cases.check_file(self, RoutingPolicy, os.path.join(HERE, "cases.json"))

    def test_cases_json_through_the_component_glue(self):
        harness.load_bindings(os.environ.get("SWITCHYARD_WIT") or os.path.join(HERE, "wit"))
        import app
        cases.assert_file(app.Router, os.path.join(HERE, "cases.json"))


if __name__ == "__main__":
    unittest.main()
