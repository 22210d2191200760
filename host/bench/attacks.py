#!/usr/bin/env python3
"""Hostile-client attacks against a real gateway process, with figures (issue 15).

    python3 host/bench/attacks.py [--bin target/release/switchyard] [--flood 1100]

Starts a fixed-reply upstream (in this process) and `switchyard serve` with the shipped
`hybrid` policy and the default limits, then, while a well-behaved client keeps sending
requests (one new connection per request, the harder case for a connection cap):

  flood    FLOOD connections that send headers and one body byte, then go silent;
  tenants  300 requests with distinct 300 KB tenant names, then 2,000 distinct valid names.

Prints, per attack: the other client's success rate and p50/p99 (quiet and under
attack), the gateway's RSS before and after, and the longest log line. Figures only; the
bounds are asserted by the tests in host/tests/gateway_hostile_clients.rs.
"""

import argparse
import http.client
import http.server
import json
import multiprocessing
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPLY = json.dumps({
    "id": "chatcmpl-attack", "object": "chat.completion", "created": 1700000000,
    "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
}).encode()
BODY = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "hi"}]})


class Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(REPLY)))
        self.end_headers()
        self.wfile.write(REPLY)

    def log_message(self, *args):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1])
    return 0


def one_request(port, headers=None):
    """Status and seconds of one request on a fresh connection (status 0: no answer)."""
    start = time.perf_counter()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("POST", "/v1/chat/completions", BODY,
                     {"content-type": "application/json", **(headers or {})})
        status = conn.getresponse().status
        conn.close()
    except OSError:
        status = 0
    return status, time.perf_counter() - start


def measure(port, seconds):
    """The well-behaved client for `seconds`: (sent, succeeded, p50 ms, p99 ms)."""
    lat, ok, sent = [], 0, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        status, took = one_request(port)
        sent += 1
        if status == 200:
            ok += 1
            lat.append(took)
    lat.sort()
    pct = lambda q: lat[min(len(lat) - 1, int(len(lat) * q))] * 1e3 if lat else float("nan")
    return sent, ok, pct(0.5), pct(0.99)


def report(name, quiet, attacked, rss_before, rss_after, extra=""):
    q_sent, q_ok, q50, q99 = quiet
    a_sent, a_ok, a50, a99 = attacked
    print(f"\n{name}{extra}")
    print(f"  other client quiet     : {q_ok}/{q_sent} ok, p50 {q50:.2f} ms, p99 {q99:.2f} ms")
    print(f"  other client attacked  : {a_ok}/{a_sent} ok ({100 * a_ok / max(a_sent, 1):.1f} %), "
          f"p50 {a50:.2f} ms, p99 {a99:.2f} ms (p99 {a99 / q99:.2f}x quiet)")
    print(f"  gateway RSS            : {rss_before / 1024:.1f} MB -> {rss_after / 1024:.1f} MB "
          f"({rss_after / rss_before:.2f}x)")


def flood(port, pid, count, hold):
    socks = []
    for _ in range(count):
        s = socket.socket()
        try:
            s.connect(("127.0.0.1", port))
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                      b"content-type: application/json\r\ncontent-length: 100000\r\n\r\n{")
            socks.append(s)
        except OSError:
            s.close()
    time.sleep(0.5)
    result = measure(port, hold)
    # How many of the silent connections the gateway has closed by now.
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            closed += s.recv(1 << 16) is not None
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        s.close()
    return result, len(socks), closed


def tenants(port):
    refused = 0
    for i in range(300):
        status, _ = one_request(port, {"x-switchyard-tenant": f"t{i}" + "x" * 300_000})
        refused += status == 400
    admitted = 0
    for i in range(2000):
        status, _ = one_request(port, {"x-switchyard-tenant": f"tenant-{i}"})
        admitted += status == 200
    return refused, admitted


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/switchyard"))
    ap.add_argument("--policy", default=os.path.join(ROOT, "target/policies/hybrid.wasm"))
    ap.add_argument("--flood", type=int, default=1100)
    ap.add_argument("--seconds", type=float, default=6.0)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.flood + 256)), hard))

    up_port, gw_port = free_port(), free_port()
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", up_port), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    tmp = tempfile.mkdtemp(prefix="switchyard-attacks.")
    cfg = os.path.join(tmp, "switchyard.toml")
    with open(cfg, "w") as f:
        f.write(f"""[server]
listen = "127.0.0.1:{gw_port}"
[policy]
path = "{args.policy}"
cache_dir = "{tmp}/cache"
[[backends]]
name = "bench"
kind = "openai_compatible"
base_url = "http://127.0.0.1:{up_port}/v1"
models = ["gpt-4o-mini"]
[ledger]
path = "{tmp}/ledger.db"
""")
    log_path = os.path.join(tmp, "gateway.log")
    log = open(log_path, "w")
    gw = subprocess.Popen([args.bin, "serve", "--config", cfg], stdout=log, stderr=log)
    try:
        for _ in range(600):
            if one_request(gw_port)[0] == 200:
                break
            time.sleep(0.1)
        else:
            sys.exit(f"gateway did not come up; log in {log_path}")
        print(f"gateway {args.bin} pid {gw.pid}; upstream :{up_port}; {os.cpu_count()} cores")

        quiet = measure(gw_port, args.seconds)
        rss0 = rss_kb(gw.pid)
        attacked, opened, closed = flood(gw_port, gw.pid, args.flood, args.seconds)
        time.sleep(1)
        report(f"flood: {args.flood} silent uploads", quiet, attacked, rss0, rss_kb(gw.pid),
               f" ({opened} opened, {closed} closed by the gateway within "
               f"{args.seconds + 0.5:.1f} s)")

        quiet = measure(gw_port, args.seconds)
        rss0 = rss_kb(gw.pid)
        # The attacker in its own process, so it does not hold this one's interpreter lock.
        with multiprocessing.Pool(1) as pool:
            pending = pool.apply_async(tenants, (gw_port,))
            attacked = measure(gw_port, args.seconds)
            refused, admitted = pending.get()
        report("tenants: 300 names of 300 KB, then 2,000 distinct valid names", quiet, attacked,
               rss0, rss_kb(gw.pid),
               f" ({refused}/300 refused with 400; {admitted}/2000 valid names admitted)")
    finally:
        gw.terminate()
        gw.wait(timeout=30)
        upstream.shutdown()
    log.close()
    longest = max((len(line) for line in open(log_path, "rb")), default=0)
    print(f"\nlongest gateway log line: {longest} bytes (log: {log_path})")


if __name__ == "__main__":
    main()
