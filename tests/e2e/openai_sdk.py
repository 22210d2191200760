"""End to end with the official `openai` Python SDK against `switchyard serve` on its
embedded default: the local SmolLM2 model and the shipped `hybrid` policy. Structured
output: 50 `json_schema` requests whose replies must all parse and validate, a pydantic
model through the SDK's `parse`, and a streamed `json_object` reply.

Run by tests/e2e/run.sh (which installs the SDK into a virtualenv)."""

import json
import os
import socket
import subprocess
import sys
import time
import unittest
import urllib.request

import jsonschema
import openai
import pydantic

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BINARY = os.environ.get("SWITCHYARD_BIN", os.path.join(ROOT, "target", "debug", "switchyard"))


PEOPLE = [("Maria Lopez", 34, "Madrid", "nurse"), ("Kenji Sato", 51, "Osaka", "chef"),
          ("Amara Okafor", 27, "Lagos", "engineer"), ("Lars Nilsson", 62, "Uppsala", "teacher"),
          ("Priya Raman", 45, "Chennai", "doctor"), ("Tom Baker", 19, "Leeds", "student"),
          ("Sofia Rossi", 38, "Turin", "architect"), ("Omar Haddad", 56, "Amman", "pilot"),
          ("Chen Wei", 31, "Shanghai", "lawyer"), ("Ana Costa", 23, "Porto", "designer"),
          ("Jonas Weber", 47, "Hamburg", "baker"), ("Fatima Zahra", 29, "Rabat", "pharmacist"),
          ("Liam Murphy", 70, "Cork", "farmer"), ("Yuki Tanaka", 35, "Kyoto", "writer"),
          ("Elena Petrova", 42, "Sofia", "scientist"), ("Diego Ramirez", 33, "Lima", "musician"),
          ("Hannah Cohen", 58, "Haifa", "judge"), ("Kwame Mensah", 40, "Accra", "banker"),
          ("Isla Brown", 26, "Perth", "vet"), ("Mateo Silva", 64, "Montevideo", "sailor"),
          ("Noor Khan", 30, "Lahore", "journalist"), ("Erik Larsen", 49, "Bergen", "fisher"),
          ("Mei Lin", 22, "Taipei", "dancer"), ("Pierre Martin", 55, "Lyon", "plumber"),
          ("Zara Ali", 37, "Dubai", "accountant")]
REVIEWS = ["The battery lasts two days and the screen is gorgeous.",
           "Arrived broken and support never answered my emails.",
           "It works, nothing special, does what the box says.",
           "Best headphones I have owned, the noise cancelling is superb.",
           "The zipper broke after a week. Disappointed.",
           "Decent coffee maker but it is very loud in the morning.",
           "Fast delivery, great price, would buy again.",
           "The app crashes every time I open the settings page.",
           "Comfortable shoes, though they run a size small.",
           "Terrible smell from the plastic, returned it immediately.",
           "My kids love this board game, we play it every weekend.",
           "The blender is powerful but the lid leaks.",
           "Average sound quality for the price, okay for podcasts.",
           "This jacket kept me warm on a minus twenty day. Amazing.",
           "Instructions were confusing and two screws were missing.",
           "Nice lamp, soft light, looks lovely on my desk.",
           "The mattress sagged within three months.",
           "Good keyboard, satisfying keys, a bit heavy to carry.",
           "Cheap material, the mug cracked in the dishwasher.",
           "Excellent camera for beginners, sharp photos.",
           "It is fine. Not great, not bad.",
           "The vacuum is quiet and picks up all the pet hair.",
           "Wrong colour sent and the refund took a month.",
           "Sturdy tent, survived a storm without a leak.",
           "The watch strap irritates my skin."]
PERSON = {"type": "object", "additionalProperties": False,
          "required": ["name", "age", "city", "job"],
          "properties": {"name": {"type": "string", "maxLength": 40},
                         "age": {"type": "integer", "minimum": 0, "maximum": 120},
                         "city": {"type": "string", "maxLength": 40},
                         "job": {"type": "string", "maxLength": 40}}}
REVIEW = {"type": "object", "additionalProperties": False,
          "required": ["sentiment", "stars", "summary"],
          "properties": {"sentiment": {"enum": ["positive", "negative", "mixed"]},
                         "stars": {"type": "integer", "minimum": 1, "maximum": 5},
                         "summary": {"type": "string", "maxLength": 80}}}


class City(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=40)
    country: str = pydantic.Field(max_length=40)
    population_millions: float


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

    def test_json_schema_replies_parse_and_match_over_50_prompts(self):
        cases = [(f"Extract the person as JSON: {n} is {a} years old, lives in {c} and works "
                  f"as a {j}.", "person", PERSON, n) for n, a, c, j in PEOPLE]
        cases += [(f"Classify this product review as JSON: {r}", "review", REVIEW, None)
                  for r in REVIEWS]
        self.assertEqual(len(cases), 50)
        names_right = 0
        for i, (prompt, name, schema, want_name) in enumerate(cases):
            temperature = 0 if i % 2 == 0 else 0.7
            completion = self.client.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": prompt}],
                response_format={"type": "json_schema",
                                 "json_schema": {"name": name, "schema": schema, "strict": True}},
                max_tokens=300, temperature=temperature, seed=i)
            choice = completion.choices[0]
            reply = choice.message.content
            self.assertEqual(choice.finish_reason, "stop", f"{prompt}: {reply!r}")
            value = json.loads(reply)
            jsonschema.validate(value, schema)
            names_right += want_name is not None and value["name"] == want_name
        print(f"\n50 of 50 json_schema replies parse and validate; the person's name is exact "
              f"in {names_right} of {len(PEOPLE)}", file=sys.stderr)

    def test_pydantic_model_through_the_sdk_parse_helper(self):
        completion = self.client.chat.completions.parse(
            model="auto", messages=[{"role": "user", "content": "Describe Paris as JSON."}],
            response_format=City, max_tokens=200, temperature=0)
        city = completion.choices[0].message.parsed
        self.assertIsInstance(city, City)
        self.assertEqual(completion.choices[0].finish_reason, "stop")

    def test_streamed_json_object(self):
        stream = self.client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "Give three colours as JSON."}],
            response_format={"type": "json_schema", "json_schema": {"name": "colours", "schema": {
                "type": "object", "required": ["colours"], "additionalProperties": False,
                "properties": {"colours": {"type": "array", "maxItems": 3, "items": {
                    "type": "string", "maxLength": 20}}}}}},
            max_tokens=120, temperature=0, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        self.assertLessEqual(len(json.loads(text)["colours"]), 3)
        stream = self.client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "A JSON object about cats."}],
            response_format={"type": "json_object"}, max_tokens=200, temperature=0.7, seed=3,
            stream=True)
        chunks = [c for c in stream if c.choices]
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason]
        if finish == ["stop"]:
            self.assertIsInstance(json.loads(text), dict)
        else:
            self.assertEqual(finish, ["length"])
            self.assertTrue(text.startswith("{"), text)

    def test_a_response_format_the_local_model_cannot_honour_is_a_clear_400(self):
        with self.assertRaises(openai.BadRequestError) as caught:
            self.client.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": "hi"}],
                response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {
                    "type": "integer", "minimum": 5, "maximum": 1}}})
        self.assertIn("response_format", str(caught.exception))


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() else 1)
