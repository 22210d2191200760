"""Tests of app.py, the component entry, through componentize-py's real generated bindings
(switchyard_policy.harness) with the imports answered by the SDK's MockHost."""

import os
import unittest

from switchyard_policy import BackendStatus, LogLevel, Request, harness
from switchyard_policy.testing import MockHost

WIT = os.environ.get("SWITCHYARD_WIT") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "wit")
wit = harness.load_bindings(WIT)
import app  # noqa: E402  (its export needs the bindings first)


def fleet():
    return MockHost().with_backends([
        BackendStatus.cloud("big-cloud", "m1", context_window=100_000),
        BackendStatus.local("box", "m2"),
    ])


class AppTests(unittest.TestCase):
    def test_info(self):
        info = app.Router().info()
        self.assertIsInstance(info, wit.types.PolicyInfo)
        self.assertEqual((info.name, info.version), ("ab_split", "0.1.0"))

    def test_route_builds_wit_decision(self):
        host = fleet().with_params({"a_share": "100", "a_model": "m2"})
        with harness.serving(host):
            d = app.Router().route(harness.to_wit_request(Request.user("hi", tenant="acme")))
        self.assertIsInstance(d, wit.types.Decision)
        self.assertEqual(d.targets, [wit.types.Target("box", "m2"), wit.types.Target("big-cloud", None)])
        self.assertIn(wit.types.Label("ab-arm", "a"), d.labels)
        self.assertIsNone(d.messages)
        self.assertIsNone(d.max_tokens)

    def test_rejection_is_raised_as_err(self):
        from componentize_py_types import Err
        with harness.serving(MockHost().with_backends([])):
            with self.assertRaises(Err) as caught:
                app.Router().route(harness.to_wit_request(Request.user("hi", tenant="acme")))
        self.assertEqual(caught.exception.value, wit.types.Rejection(503, "ab_split: no backend fits this request"))

    def test_warning_goes_to_logging_import(self):
        host = fleet().with_param("a_share", "lots")
        with harness.serving(host):
            app.Router().route(harness.to_wit_request(Request.user("hi", tenant="acme")))
        self.assertEqual(host.logs()[0].level, LogLevel.WARN)
        self.assertEqual(host.logs()[0].fields, [("detail", "lots")])


if __name__ == "__main__":
    unittest.main()
