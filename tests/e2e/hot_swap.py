"""Hot-swaps each `switchyard policy new` project's component into a running gateway.

Usage: python hot_swap.py SWITCHYARD_BIN START.wasm NEW.wasm [NEW.wasm ...]

Starts `switchyard serve` (mock OpenAI-compatible upstreams, one local and one cloud,
served from this process) deciding with START.wasm, then replaces the policy file with
each NEW.wasm in turn, as an operator would, and waits until responses name the new
version (`x-switchyard-policy: live@<sha256[:12]>`). Every request must be answered 200
by a backend; any error, or a version that never goes live within 120 s, fails.
SWITCHYARD_POLICY_CACHE names a compiled-component cache to share (default: a temp one).
"""

import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request


class Upstream(http.server.BaseHTTPRequestHandler):
    """A chat-completions endpoint answering every request with a fixed reply."""

    def do_POST(self):  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("content-length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        reply = json.dumps({
            "id": "chatcmpl-mock", "object": "chat.completion", "created": 1,
            "model": body.get("model", "mock"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "ok"}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
        }).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def serve_upstream():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chat(base, text):
    req = urllib.request.Request(
        f"{base}/v1/chat/completions",
        data=json.dumps({"model": "auto", "messages": [{"role": "user", "content": text}]}).encode(),
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers)


def wait_healthy(base, proc, deadline):
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"switchyard serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    sys.exit("switchyard serve did not answer /healthz within 120 s")


def start_gateway(binary, policy, policy_toml="deadline_ms = 50"):
    """`switchyard serve` deciding with a copy of `policy` (`work/live.wasm`), a local and a
    cloud mock upstream; `policy_toml` goes into its `[policy]` table. Returns (process,
    base URL, work folder, path of the live policy file) once /healthz answers."""
    local, cloud = serve_upstream(), serve_upstream()
    work = tempfile.mkdtemp(prefix="switchyard-gateway-")
    live = os.path.join(work, "live.wasm")
    shutil.copy(policy, live)
    port = free_port()
    config = os.path.join(work, "switchyard.toml")
    with open(config, "w") as f:
        f.write(f"""
[server]
listen = "127.0.0.1:{port}"
[policy]
path = "{live}"
cache_dir = "{os.environ.get('SWITCHYARD_POLICY_CACHE', work + '/cache')}"
fallback_targets = ["local"]
{policy_toml}
[ledger]
path = "{work}/ledger.db"
[[backends]]
name = "local"
kind = "openai_compatible"
locality = "local"
base_url = "http://127.0.0.1:{local.server_port}/v1"
models = ["small"]
[[backends]]
name = "openai"
kind = "openai_compatible"
base_url = "http://127.0.0.1:{cloud.server_port}/v1"
models = ["big"]
usd_per_mtok_in = 2.5
usd_per_mtok_out = 10.0
""")
    log = open(os.path.join(work, "gateway.log"), "w")
    proc = subprocess.Popen([binary, "serve", "--config", config], stdout=log, stderr=log)
    log.close()
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, proc, time.time() + 120)
    return proc, base, work, live


def stop_gateway(proc, work):
    proc.terminate()
    proc.wait(timeout=30)
    shutil.rmtree(work, ignore_errors=True)


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    binary, start, new = sys.argv[1], sys.argv[2], sys.argv[3:]
    proc, base, work, live = start_gateway(binary, start)
    try:
        for path in new:
            digest = hashlib.sha256(open(path, "rb").read()).hexdigest()[:12]
            want = f"live@{digest}"
            staged = live + ".new"
            shutil.copy(path, staged)
            os.replace(staged, live)
            started = time.time()
            while True:
                status, headers = chat(base, "Summarise this memo in one line.")
                if status != 200:
                    sys.exit(f"{path}: request answered {status} during the swap: {headers}")
                if headers.get("x-switchyard-policy") == want:
                    break
                if time.time() - started > 120:
                    sys.exit(f"{path}: {want} never went live (still {headers.get('x-switchyard-policy')})")
                time.sleep(0.25)
            print(f"hot swap: {path} live as {want} after {time.time() - started:.1f} s, "
                  f"answered by {headers.get('x-switchyard-backend')} "
                  f"({headers.get('x-switchyard-reason')})")
    finally:
        stop_gateway(proc, work)

if __name__ == "__main__":
    main()
