"""End to end with the official `openai` Python SDK against `switchyard serve` on its
embedded default: the local SmolLM2 model and the shipped `hybrid` policy.

Run by tests/e2e/run.sh (which installs the SDK into a virtualenv)."""

import os
import socket
import subprocess
import sys
import time
import unittest
import urllib.request

import openai

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BINARY = os.environ.get("SWITCHYARD_BIN", os.path.join(ROOT, "target", "debug", "switchyard"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GatewayWithOpenAiSdk(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        port = free_port()
        cls.scratch = os.path.join(ROOT, "target", "e2e-openai-sdk")
        os.makedirs(cls.scratch, exist_ok=True)
        env = dict(os.environ, RUST_LOG="warn", XDG_CACHE_HOME=os.path.join(cls.scratch, "cache"))
        for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
            env.pop(key, None)  # local only: tests talk to 127.0.0.1 alone
        cls.proc = subprocess.Popen(
            [BINARY, "serve", "--listen", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env=env,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(base + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if cls.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {cls.proc.returncode}")
            if time.time() > deadline:
                raise RuntimeError("gateway not ready after 180 s")
            time.sleep(0.2)
        cls.client = openai.OpenAI(base_url=base + "/v1", api_key="not-needed", max_retries=0)

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait(timeout=60)

    def test_completion_with_usage_and_decision_headers(self):
        raw = self.client.chat.completions.with_raw_response.create(
            model="auto",
            messages=[{"role": "user", "content": "Classify the sentiment: I love this product."}],
            max_tokens=16,
            temperature=0,
        )
        completion = raw.parse()
        self.assertEqual(completion.object, "chat.completion")
        self.assertEqual(completion.model, "smollm2-135m-instruct")
        self.assertTrue(completion.choices[0].message.content.strip())
        self.assertIn(completion.choices[0].finish_reason, ("stop", "length"))
        self.assertGreater(completion.usage.prompt_tokens, 0)
        self.assertLessEqual(completion.usage.completion_tokens, 16)
        self.assertEqual(
            completion.usage.total_tokens,
            completion.usage.prompt_tokens + completion.usage.completion_tokens,
        )
        self.assertTrue(raw.headers["x-switchyard-policy"].startswith("hybrid@"))
        self.assertEqual(raw.headers["x-switchyard-backend"], "local")
        self.assertEqual(raw.headers["x-switchyard-reason"], "complexity:simple:classification")

    def test_pii_is_routed_by_the_privacy_stage(self):
        raw = self.client.chat.completions.with_raw_response.create(
            model="auto",
            messages=[{"role": "user", "content": "Email bob@example.com a short hello."}],
            max_tokens=8,
        )
        self.assertEqual(raw.headers["x-switchyard-reason"], "privacy:pii:email")
        self.assertEqual(raw.headers["x-switchyard-backend"], "local")

    def test_streaming_deltas_and_usage_chunk(self):
        stream = self.client.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "Extract the city: I live in Paris."}],
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        text, usage, finish = "", None, None
        for chunk in stream:
            self.assertEqual(chunk.object, "chat.completion.chunk")
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
            if chunk.usage is not None:
                usage = chunk.usage
        self.assertTrue(text.strip())
        self.assertIn(finish, ("stop", "length"))
        self.assertIsNotNone(usage)
        self.assertGreater(usage.completion_tokens, 0)

    def test_models_and_errors(self):
        ids = [m.id for m in self.client.models.list()]
        self.assertIn("auto", ids)
        self.assertIn("smollm2-135m-instruct", ids)
        with self.assertRaises(openai.APIStatusError) as caught:
            self.client.chat.completions.create(
                model="no-such-model", messages=[{"role": "user", "content": "hi"}]
            )
        self.assertIn(caught.exception.status_code, (400, 404))
        self.assertIn("no-such-model", str(caught.exception))


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() else 1)
