"""Serves a policy at a steady request rate and counts the decisions that fell back.

Usage: python host/bench/policy_load.py SWITCHYARD_BIN POLICY.wasm [REQUESTS] [RATE]
       [POLICY_TOML]

Starts `switchyard serve` with mock upstreams (tests/e2e/hot_swap.py's gateway) deciding
with POLICY.wasm under POLICY_TOML (the `[policy]` settings, default the README's
`deadline_ms = 5`), sends REQUESTS (2000) chat requests at RATE (50) per second, and
prints the latency percentiles, the non-200 answers and the policy's fallback decisions
(`switchyard_policy_fallback_decisions_total` from /metrics).
"""

import concurrent.futures
import os
import re
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "e2e"))
import hot_swap  # noqa: E402


def metric_sum(base, name):
    """The sum of every series of counter `name`, by its `kind` label (or "all")."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out = {}
    for labels, value in re.findall(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.M):
        kind = re.search(r'kind="([^"]*)"', labels)
        key = kind.group(1) if kind else "all"
        out[key] = out.get(key, 0.0) + float(value)
    return out


def fallbacks(base):
    return sum(metric_sum(base, "switchyard_policy_fallback_decisions_total").values())


def timed_chat(base, text):
    started = time.time()
    status, _ = hot_swap.chat(base, text)
    return status, time.time() - started


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    binary, policy = sys.argv[1], sys.argv[2]
    requests = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    rate = float(sys.argv[4]) if len(sys.argv) > 4 else 50.0
    policy_toml = sys.argv[5] if len(sys.argv) > 5 else "deadline_ms = 5"
    proc, base, work, _ = hot_swap.start_gateway(binary, policy, policy_toml)
    texts = ["Summarise this memo in one line.", "Implement a binary search in Rust.",
             "Classify this ticket: refund request."]
    latencies, errors = [], 0
    try:
        before = fallbacks(base)
        started = time.time()
        with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
            futures = []
            for i in range(requests):
                delay = started + i / rate - time.time()
                if delay > 0:
                    time.sleep(delay)
                futures.append(pool.submit(timed_chat, base, texts[i % len(texts)]))
            for future in futures:
                status, seconds = future.result()
                latencies.append(seconds)
                errors += status != 200
        fell_back = fallbacks(base) - before
        failures = metric_sum(base, "switchyard_policy_failures_total")
    finally:
        hot_swap.stop_gateway(proc, work)
    latencies.sort()
    pct = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e3  # noqa: E731
    print(f"{os.path.basename(policy)} [{policy_toml}]: {requests} requests at {rate:g}/s: "
          f"non-200 {errors}, fallback decisions {fell_back:.0f} "
          f"(failures by kind: {failures or 'none'}), "
          f"latency p50 {pct(0.5):.1f} ms p99 {pct(0.99):.1f} ms (client-side, mock upstreams)")


if __name__ == "__main__":
    main()
