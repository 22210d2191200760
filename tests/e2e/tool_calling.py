"""End to end with the official `openai` Python SDK: a two-turn tool-calling conversation
through `switchyard serve` to an OpenAI-compatible mock upstream (a Python HTTP server
speaking OpenAI's wire format), JSON and streamed. The mock checks that the tools, the
tool choice, the assistant's tool call and the tool result reached it as the SDK sent them.

Run by tests/e2e/run.sh (which installs the SDK into a virtualenv)."""

import json
import os
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BINARY = os.environ.get("SWITCHYARD_BIN", os.path.join(ROOT, "target", "debug", "switchyard"))

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"], "additionalProperties": False},
    "strict": True}}]
CALL = {"id": "call_w1", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
USAGE = {"prompt_tokens": 40, "completion_tokens": 9, "total_tokens": 49}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Upstream(BaseHTTPRequestHandler):
    """Turn 1 (no tool result yet): a call to get_weather. Turn 2: the answer."""

    seen = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        Upstream.seen.append(body)
        second = any(m.get("role") == "tool" for m in body["messages"])
        message = ({"role": "assistant", "content": "It is sunny in Paris.", "refusal": None}
                   if second else
                   {"role": "assistant", "content": None, "refusal": None, "tool_calls": [CALL]})
        finish = "stop" if second else "tool_calls"
        base = {"id": "chatcmpl-mock", "created": 1700000000, "model": body["model"]}
        if not body.get("stream"):
            reply = dict(base, object="chat.completion", usage=USAGE, choices=[
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}])
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        chunk = dict(base, object="chat.completion.chunk")
        if second:
            deltas = [{"role": "assistant", "content": ""}, {"content": "It is sunny"},
                      {"content": " in Paris."}]
        else:
            args = CALL["function"]["arguments"]
            deltas = [
                {"role": "assistant", "content": None, "tool_calls": [
                    {"index": 0, "id": CALL["id"], "type": "function",
                     "function": {"name": "get_weather", "arguments": ""}}]},
                {"tool_calls": [{"index": 0, "function": {"arguments": args[:8]}}]},
                {"tool_calls": [{"index": 0, "function": {"arguments": args[8:]}}]},
            ]
        events = [dict(chunk, choices=[{"index": 0, "delta": d, "finish_reason": None}])
                  for d in deltas]
        events.append(dict(chunk, choices=[{"index": 0, "delta": {}, "finish_reason": finish}]))
        events.append(dict(chunk, choices=[], usage=USAGE))
        data = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        self.wfile.write(data.encode())


class ToolCallingThroughTheGateway(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.upstream = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
        threading.Thread(target=cls.upstream.serve_forever, daemon=True).start()
        up_port = cls.upstream.server_address[1]
        cls.scratch = tempfile.mkdtemp(prefix="switchyard-e2e-tools-")
        config = os.path.join(cls.scratch, "switchyard.toml")
        port = free_port()
        with open(config, "w") as f:
            f.write(f"""
[server]
listen = "127.0.0.1:{port}"
[policy]
static_targets = ["compat"]
[ledger]
path = "{cls.scratch}/ledger.db"
[[backends]]
name = "compat"
kind = "openai_compatible"
base_url = "http://127.0.0.1:{up_port}/v1"
models = ["mock-4o"]
""")
        env = dict(os.environ, RUST_LOG="warn", XDG_CACHE_HOME=os.path.join(cls.scratch, "cache"))
        cls.proc = subprocess.Popen([BINARY, "serve", "--config", config], cwd=ROOT, env=env)
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
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
                raise RuntimeError("gateway not ready after 60 s")
            time.sleep(0.2)
        cls.client = openai.OpenAI(base_url=base + "/v1", api_key="not-needed", max_retries=0)

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait(timeout=60)
        cls.upstream.shutdown()

    def converse(self, stream: bool):
        Upstream.seen.clear()
        messages = [{"role": "user", "content": "What is the weather in Paris?"}]
        kwargs = dict(model="mock-4o", tools=TOOLS,
                      tool_choice={"type": "function", "function": {"name": "get_weather"}})
        if stream:
            chunks = list(self.client.chat.completions.create(
                messages=messages, stream=True, **kwargs))
            args = "".join(tc.function.arguments or "" for c in chunks if c.choices
                           for tc in (c.choices[0].delta.tool_calls or []))
            first = next(tc for c in chunks if c.choices
                         for tc in (c.choices[0].delta.tool_calls or []) if tc.id)
            self.assertEqual((first.id, first.function.name), (CALL["id"], "get_weather"))
            self.assertEqual(args, CALL["function"]["arguments"])
            finish = [c.choices[0].finish_reason for c in chunks
                      if c.choices and c.choices[0].finish_reason]
            self.assertEqual(finish, ["tool_calls"])
            self.assertFalse(any(c.usage for c in chunks), "no usage chunk was asked for")
            assistant = {"role": "assistant", "content": None, "tool_calls": [CALL]}
        else:
            raw = self.client.chat.completions.with_raw_response.create(messages=messages, **kwargs)
            self.assertEqual(raw.headers["x-switchyard-model"], "mock-4o")
            first = raw.parse()
            choice = first.choices[0]
            self.assertEqual(choice.finish_reason, "tool_calls")
            call = choice.message.tool_calls[0]
            self.assertEqual((call.id, call.function.name), (CALL["id"], "get_weather"))
            self.assertEqual(json.loads(call.function.arguments), {"city": "Paris"})
            assistant = choice.message.model_dump(exclude_none=True)
        messages += [assistant, {"role": "tool", "tool_call_id": CALL["id"], "content": "sunny, 24 C"}]
        second = self.client.chat.completions.create(messages=messages, **kwargs)
        self.assertEqual(second.choices[0].message.content, "It is sunny in Paris.")
        self.assertEqual(second.choices[0].finish_reason, "stop")
        # What the upstream got: the tools and the conversation as the SDK sent them.
        self.assertEqual(len(Upstream.seen), 2)
        for body in Upstream.seen:
            self.assertEqual(body["tools"], TOOLS)
            self.assertEqual(body["tool_choice"]["function"]["name"], "get_weather")
            self.assertEqual(body["model"], "mock-4o")
        turn2 = Upstream.seen[1]["messages"]
        self.assertEqual(turn2[1]["tool_calls"][0]["id"], CALL["id"])
        self.assertEqual(turn2[1]["tool_calls"][0]["function"]["arguments"],
                         CALL["function"]["arguments"])
        self.assertEqual(turn2[2], {"role": "tool", "tool_call_id": CALL["id"],
                                    "content": "sunny, 24 C"})

    def test_two_turn_tool_calling(self):
        self.converse(stream=False)

    def test_two_turn_tool_calling_streamed(self):
        self.converse(stream=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
