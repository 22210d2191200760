"""Native unit tests of AbSplit with the SDK's MockHost (python3 -m unittest)."""

import unittest

import ab_split
from switchyard_policy import BackendKind, BackendStatus, LogLevel, Rejection, Request, Target
from switchyard_policy.testing import MockHost


def backend(name, kind, healthy=True, context_window=8192, models=None):
    return BackendStatus(name, BackendKind(kind), models or [name + "-model"], healthy=healthy,
                         context_window=context_window)


# Deliberately not the demo names: a hard-coded backend name fails these tests.
FLEET = [backend("cloud-x", "cloud"), backend("edge-1", "local"), backend("cloud-y", "cloud")]


def host(backends=FLEET, params=None):
    return MockHost().with_backends(backends).with_params(params or {})


def request(tenant="acme", rid="req-1", labels=None, prompt_tokens=10, max_tokens=None):
    return Request.user("hi", id=rid, tenant=tenant, labels=dict(labels or {}), prompt_tokens=prompt_tokens,
                        max_tokens=max_tokens)


def decide(req, mock):
    return ab_split.AbSplit().route(req, mock)


def decide_ok(req, mock):
    decision = decide(req, mock)
    assert not isinstance(decision, Rejection), decision
    return decision


def names(decision):
    return decision.backends()


class HashTests(unittest.TestCase):
    def test_fnv1a64_reference_vectors(self):
        self.assertEqual(ab_split.fnv1a64(b""), 0xCBF29CE484222325)
        self.assertEqual(ab_split.fnv1a64(b"a"), 0xAF63DC4C8601EC8C)
        self.assertEqual(ab_split.fnv1a64(b"foobar"), 0x85944171F73967E8)

    def test_buckets_in_range_and_salt_reshuffles(self):
        tenants = ["t%d" % i for i in range(2000)]
        plain = [ab_split.bucket_of(t) for t in tenants]
        salted = [ab_split.bucket_of(t, "v2") for t in tenants]
        self.assertTrue(all(0 <= b < ab_split.BUCKETS for b in plain))
        moved = sum(1 for a, b in zip(plain, salted) if (a < 5000) != (b < 5000))
        self.assertGreater(moved, 800)  # about half change arm under a new salt


class SplitTests(unittest.TestCase):
    def share_of_a(self, a_share, n=20000):
        mock = host(params={"a_share": str(a_share)})
        arms = [decide_ok(request(tenant="tenant-%d" % i), mock).labels["ab-arm"] for i in range(n)]
        return arms.count("a") / n

    def test_split_ratio_within_tolerance(self):
        for share in (50, 10, 33.3):
            self.assertAlmostEqual(self.share_of_a(share), share / 100, delta=0.015, msg=share)

    def test_extremes(self):
        self.assertEqual(self.share_of_a(0, 2000), 0.0)
        self.assertEqual(self.share_of_a(100, 2000), 1.0)

    def test_same_tenant_same_arm_across_requests(self):
        mock = host(params={"a_share": "50"})
        for i in range(200):
            tenant = "tenant-%d" % i
            arms = {decide_ok(request(tenant=tenant, rid="r%d" % j), mock).labels["ab-arm"] for j in range(5)}
            self.assertEqual(len(arms), 1, tenant)

    def test_default_tenant_falls_back_to_user_then_request_id(self):
        mock = host()
        by_user = decide_ok(request(tenant="default", labels={"user": "u1"}), mock)
        self.assertEqual(by_user.labels["ab-key"], "user")
        by_id = decide_ok(request(tenant="default"), mock)
        self.assertEqual(by_id.labels["ab-key"], "request")
        self.assertEqual(by_id.labels["ab-bucket"], str(ab_split.bucket_of("req-1")))
        tenant = decide_ok(request(tenant="acme", labels={"user": "u1"}), mock)
        self.assertEqual(tenant.labels["ab-key"], "tenant")

    def test_key_param(self):
        mock = host(params={"key": "request"})
        d = decide_ok(request(tenant="acme", rid="abc"), mock)
        self.assertEqual(d.labels["ab-key"], "request")
        self.assertEqual(d.labels["ab-bucket"], str(ab_split.bucket_of("abc")))


class TargetTests(unittest.TestCase):
    def test_arm_a_prefers_local_then_other_arm(self):
        d = decide_ok(request(), host(params={"a_share": "100"}))
        self.assertEqual(names(d), ["edge-1", "cloud-x", "cloud-y"])
        self.assertEqual(d.labels["ab-arm"], "a")
        self.assertEqual(d.reason, "ab:ab:a")

    def test_arm_b_prefers_cloud(self):
        d = decide_ok(request(), host(params={"a_share": "0", "experiment": "canary"}))
        self.assertEqual(names(d), ["cloud-x", "cloud-y", "edge-1"])
        self.assertEqual(d.labels["ab-experiment"], "canary")
        self.assertEqual(d.reason, "ab:canary:b")

    def test_names_from_params_override_kinds(self):
        params = {"a_share": "100", "a_backends": "cloud-y, ghost", "b_backends": "edge-1"}
        d = decide_ok(request(), host(params=params))
        self.assertEqual(names(d), ["cloud-y", "edge-1"])

    def test_kind_any_and_model_override(self):
        fleet = [backend("c1", "cloud", models=["big", "small"]), backend("l1", "local")]
        params = {"a_share": "0", "b_kind": "any", "b_model": "small"}
        d = decide_ok(request(), host(backends=fleet, params=params))
        self.assertEqual(d.targets, [Target("c1", "small"), Target("l1", None)])

    def test_unhealthy_arm_degrades_to_other_arm(self):
        fleet = [backend("edge-1", "local", healthy=False), backend("cloud-x", "cloud")]
        d = decide_ok(request(), host(backends=fleet, params={"a_share": "100"}))
        self.assertEqual(names(d), ["cloud-x", "edge-1"])
        self.assertEqual(d.labels["ab-arm"], "a")
        self.assertEqual(d.labels["ab-degraded"], "true")

    def test_context_window_filter(self):
        fleet = [backend("edge-1", "local", context_window=4096), backend("cloud-x", "cloud", context_window=128000)]
        d = decide_ok(request(prompt_tokens=4000, max_tokens=500), host(backends=fleet, params={"a_share": "100"}))
        self.assertEqual(names(d), ["cloud-x"])

    def test_nothing_fits_rejects_503(self):
        rejection = decide(request(), host(backends=[]))
        self.assertEqual(rejection, Rejection(503, "ab_split: no backend fits this request"))

    def test_bad_share_warns_and_uses_default(self):
        mock = host(params={"a_share": "150"})
        self.assertAlmostEqual(
            sum(decide_ok(request(tenant="t%d" % i), mock).labels["ab-arm"] == "a" for i in range(4000)) / 4000,
            0.5, delta=0.03)
        self.assertEqual(mock.logs()[0].level, LogLevel.WARN)
        self.assertEqual(mock.logs()[0].field("detail"), "150")


if __name__ == "__main__":
    unittest.main()
