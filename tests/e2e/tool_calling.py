"""End to end with the official `openai` Python SDK: a two-turn tool-calling conversation
through `switchyard serve` to three mock upstreams (Python HTTP servers), JSON and
streamed: an OpenAI-compatible one speaking OpenAI's wire format, which must get the
tools, the tool choice, the assistant's tool call and the tool result as the SDK sent
them; an Anthropic one speaking the Messages API (`tool_use` / `tool_result` blocks,
`input_json_delta` events) and a Gemini one speaking `generateContent` (`functionCall` /
`functionResponse` parts), which must get them translated into their own shapes.

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


LOOSE_TOOLS = [{"type": "function", "function": {
    k: v for k, v in TOOLS[0]["function"].items() if k != "strict"}}]
PARAMS = TOOLS[0]["function"]["parameters"]


def reply(handler, status, content_type, data: bytes):
    handler.send_response(status)
    handler.send_header("content-type", content_type)
    handler.send_header("content-length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def sse(events) -> bytes:
    return "".join((f"event: {name}\n" if name else "") + f"data: {json.dumps(data)}\n\n"
                   for name, data in events).encode()


class AnthropicUpstream(BaseHTTPRequestHandler):
    """The Messages API: turn 1 a `tool_use` block, turn 2 text."""

    seen = []
    CALL_ID = "toolu_01E2eWeather"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        assert self.path == "/v1/messages", self.path
        assert self.headers["x-api-key"] == "sk-ant-e2e" and self.headers["anthropic-version"]
        AnthropicUpstream.seen.append(body)
        second = any(isinstance(m["content"], list) and
                     any(b["type"] == "tool_result" for b in m["content"])
                     for m in body["messages"])
        usage = {"input_tokens": 40, "output_tokens": 9}
        if not body.get("stream"):
            content = ([{"type": "text", "text": "It is sunny in Paris."}] if second else
                       [{"type": "tool_use", "id": self.CALL_ID, "name": "get_weather",
                         "input": {"city": "Paris"}}])
            message = {"id": "msg_e2e", "type": "message", "role": "assistant",
                       "model": body["model"], "content": content,
                       "stop_reason": "end_turn" if second else "tool_use",
                       "stop_sequence": None, "usage": usage}
            reply(self, 200, "application/json", json.dumps(message).encode())
            return
        start = {"type": "message_start", "message": {
            "id": "msg_e2e", "type": "message", "role": "assistant", "content": [],
            "model": body["model"], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 40, "output_tokens": 1}}}
        events = [("message_start", start), ("ping", {"type": "ping"})]
        delta = lambda d: ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": d})
        if second:
            events += [("content_block_start", {"type": "content_block_start", "index": 0,
                                                "content_block": {"type": "text", "text": ""}}),
                       delta({"type": "text_delta", "text": "It is sunny"}),
                       delta({"type": "text_delta", "text": " in Paris."})]
        else:
            args = CALL["function"]["arguments"]
            events += [("content_block_start", {"type": "content_block_start", "index": 0,
                                                "content_block": {"type": "tool_use", "id": self.CALL_ID,
                                                                  "name": "get_weather", "input": {}}}),
                       delta({"type": "input_json_delta", "partial_json": ""}),
                       delta({"type": "input_json_delta", "partial_json": args[:8]}),
                       delta({"type": "input_json_delta", "partial_json": args[8:]})]
        events += [("content_block_stop", {"type": "content_block_stop", "index": 0}),
                   ("message_delta", {"type": "message_delta",
                                      "delta": {"stop_reason": "end_turn" if second else "tool_use",
                                                "stop_sequence": None},
                                      "usage": {"output_tokens": 9}}),
                   ("message_stop", {"type": "message_stop"})]
        reply(self, 200, "text/event-stream", sse(events))


class GeminiUpstream(BaseHTTPRequestHandler):
    """generateContent / streamGenerateContent: turn 1 a `functionCall` part, turn 2 text."""

    seen = []

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        stream = self.path == "/v1beta/models/gemini-mock:streamGenerateContent?alt=sse"
        assert stream or self.path == "/v1beta/models/gemini-mock:generateContent", self.path
        assert self.headers["x-goog-api-key"] == "gemini-e2e"
        GeminiUpstream.seen.append(body)
        second = any("functionResponse" in p for c in body["contents"] for p in c["parts"])
        usage = {"promptTokenCount": 40, "candidatesTokenCount": 9, "totalTokenCount": 49}
        if second:
            parts = [[{"text": "It is sunny"}], [{"text": " in Paris."}]]
        else:
            parts = [[{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]]
        responses = [{"candidates": [{"content": {"role": "model", "parts": p}, "index": 0}],
                      "usageMetadata": usage, "modelVersion": "gemini-mock-001",
                      "responseId": "e2e-gemini"} for p in parts]
        responses[-1]["candidates"][0]["finishReason"] = "STOP"
        if stream:
            reply(self, 200, "text/event-stream", sse([(None, r) for r in responses]))
            return
        whole = responses[0]
        whole["candidates"][0]["content"]["parts"] = [x for p in parts for x in p]
        whole["candidates"][0]["finishReason"] = "STOP"
        reply(self, 200, "application/json", json.dumps(whole).encode())


class ToolCallingThroughTheGateway(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.upstreams = []
        ports = {}
        for name, handler in [("compat", Upstream), ("anthropic", AnthropicUpstream),
                              ("gemini", GeminiUpstream)]:
            server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            cls.upstreams.append(server)
            ports[name] = server.server_address[1]
        cls.scratch = tempfile.mkdtemp(prefix="switchyard-e2e-tools-")
        config = os.path.join(cls.scratch, "switchyard.toml")
        port = free_port()
        with open(config, "w") as f:
            f.write(f"""
[server]
listen = "127.0.0.1:{port}"
[policy]
static_targets = ["compat", "claude", "gem"]
[ledger]
path = "{cls.scratch}/ledger.db"
[[backends]]
name = "compat"
kind = "openai_compatible"
base_url = "http://127.0.0.1:{ports['compat']}/v1"
models = ["mock-4o"]
[[backends]]
name = "claude"
kind = "anthropic"
base_url = "http://127.0.0.1:{ports['anthropic']}/v1"
api_key_env = "E2E_ANTHROPIC_KEY"
models = ["claude-mock"]
[[backends]]
name = "gem"
kind = "gemini"
base_url = "http://127.0.0.1:{ports['gemini']}/v1beta"
api_key_env = "E2E_GEMINI_KEY"
models = ["gemini-mock"]
""")
        env = dict(os.environ, RUST_LOG="warn", XDG_CACHE_HOME=os.path.join(cls.scratch, "cache"),
                   E2E_ANTHROPIC_KEY="sk-ant-e2e", E2E_GEMINI_KEY="gemini-e2e")
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
        for server in cls.upstreams:
            server.shutdown()

    def converse(self, stream: bool, model: str, tools, call_id: str, seen: list):
        """Two turns with the SDK; returns what the upstream got, turn by turn."""
        seen.clear()
        messages = [{"role": "user", "content": "What is the weather in Paris?"}]
        kwargs = dict(model=model, tools=tools,
                      tool_choice={"type": "function", "function": {"name": "get_weather"}})
        if stream:
            chunks = list(self.client.chat.completions.create(
                messages=messages, stream=True, **kwargs))
            args = "".join(tc.function.arguments or "" for c in chunks if c.choices
                           for tc in (c.choices[0].delta.tool_calls or []))
            first = next(tc for c in chunks if c.choices
                         for tc in (c.choices[0].delta.tool_calls or []) if tc.id)
            self.assertEqual((first.id, first.function.name), (call_id, "get_weather"))
            self.assertEqual(json.loads(args), {"city": "Paris"})
            finish = [c.choices[0].finish_reason for c in chunks
                      if c.choices and c.choices[0].finish_reason]
            self.assertEqual(finish, ["tool_calls"])
            self.assertFalse(any(c.usage for c in chunks), "no usage chunk was asked for")
            assistant = {"role": "assistant", "content": None, "tool_calls": [
                {"id": call_id, "type": "function",
                 "function": {"name": "get_weather", "arguments": args}}]}
        else:
            raw = self.client.chat.completions.with_raw_response.create(messages=messages, **kwargs)
            self.assertEqual(raw.headers["x-switchyard-model"], model)
            first = raw.parse()
            choice = first.choices[0]
            self.assertEqual(choice.finish_reason, "tool_calls")
            call = choice.message.tool_calls[0]
            self.assertEqual((call.id, call.function.name), (call_id, "get_weather"))
            self.assertEqual(json.loads(call.function.arguments), {"city": "Paris"})
            assistant = choice.message.model_dump(exclude_none=True)
        messages += [assistant, {"role": "tool", "tool_call_id": call_id, "content": "sunny, 24 C"}]
        if stream:
            chunks = list(self.client.chat.completions.create(
                messages=messages, stream=True, stream_options={"include_usage": True}, **kwargs))
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            self.assertEqual(text, "It is sunny in Paris.")
            self.assertEqual(chunks[-1].choices, [])
            self.assertEqual(chunks[-1].usage.total_tokens, 49)
        else:
            second = self.client.chat.completions.create(messages=messages, **kwargs)
            self.assertEqual(second.choices[0].message.content, "It is sunny in Paris.")
            self.assertEqual(second.choices[0].finish_reason, "stop")
            self.assertEqual(second.usage.total_tokens, 49)
        self.assertEqual(len(seen), 2)
        return list(seen)

    def openai_compatible(self, stream: bool):
        seen = self.converse(stream, "mock-4o", TOOLS, CALL["id"], Upstream.seen)
        # What the upstream got: the tools and the conversation as the SDK sent them.
        for body in seen:
            self.assertEqual(body["tools"], TOOLS)
            self.assertEqual(body["tool_choice"]["function"]["name"], "get_weather")
            self.assertEqual(body["model"], "mock-4o")
        turn2 = seen[1]["messages"]
        self.assertEqual(turn2[1]["tool_calls"][0]["id"], CALL["id"])
        self.assertEqual(json.loads(turn2[1]["tool_calls"][0]["function"]["arguments"]),
                         {"city": "Paris"})
        self.assertEqual(turn2[2], {"role": "tool", "tool_call_id": CALL["id"],
                                    "content": "sunny, 24 C"})

    def anthropic(self, stream: bool):
        call_id = AnthropicUpstream.CALL_ID
        seen = self.converse(stream, "claude-mock", LOOSE_TOOLS, call_id, AnthropicUpstream.seen)
        for body in seen:
            self.assertEqual(body["model"], "claude-mock")
            self.assertEqual(body["tools"], [{"name": "get_weather",
                                              "description": "Current weather of a city",
                                              "input_schema": PARAMS}])
            self.assertEqual(body["tool_choice"], {"type": "tool", "name": "get_weather"})
        self.assertEqual(seen[1]["messages"][1:], [
            {"role": "assistant", "content": [{"type": "tool_use", "id": call_id,
                                               "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id,
                                          "content": "sunny, 24 C"}]}])

    def gemini(self, stream: bool):
        seen = self.converse(stream, "gemini-mock", LOOSE_TOOLS, "call_0", GeminiUpstream.seen)
        for body in seen:
            self.assertEqual(body["tools"], [{"functionDeclarations": [{
                "name": "get_weather", "description": "Current weather of a city",
                "parametersJsonSchema": PARAMS}]}])
            self.assertEqual(body["toolConfig"], {"functionCallingConfig": {
                "mode": "ANY", "allowedFunctionNames": ["get_weather"]}})
        self.assertEqual(seen[1]["contents"][1:], [
            {"role": "model", "parts": [{"functionCall": {"name": "get_weather",
                                                          "args": {"city": "Paris"}}}]},
            {"role": "user", "parts": [{"functionResponse": {
                "name": "get_weather", "response": {"content": "sunny, 24 C"}}}]}])

    def test_two_turn_tool_calling(self):
        self.openai_compatible(stream=False)

    def test_two_turn_tool_calling_streamed(self):
        self.openai_compatible(stream=True)

    def test_two_turn_tool_calling_through_anthropic(self):
        self.anthropic(stream=False)

    def test_two_turn_tool_calling_through_anthropic_streamed(self):
        self.anthropic(stream=True)

    def test_two_turn_tool_calling_through_gemini(self):
        self.gemini(stream=False)

    def test_two_turn_tool_calling_through_gemini_streamed(self):
        self.gemini(stream=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
