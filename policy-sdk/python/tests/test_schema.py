"""policy-sdk/cases.schema.json: every shipped case file validates, invalid ones fail, and the
SDK's case-file reader agrees with the schema on all of them."""

import copy
import glob
import json
import os
import unittest

import jsonschema

from support import ROOT
from switchyard_policy import casefile

with open(os.path.join(ROOT, "policy-sdk", "cases.schema.json"), encoding="utf-8") as f:
    SCHEMA = json.load(f)
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

MINIMAL = {"cases": [{"name": "c", "request": {"messages": [{"role": "user", "content": "hi"}]}}]}


def shipped():
    found = glob.glob(os.path.join(ROOT, "policies", "**", "cases.json"), recursive=True)
    found += glob.glob(os.path.join(ROOT, "policy-sdk", "templates", "**", "cases.json"), recursive=True)
    return sorted(p for p in found if "node_modules" not in p)


def variant(change):
    data = copy.deepcopy(MINIMAL)
    change(data)
    return data


INVALID = {
    "unknown top-level key": variant(lambda d: d.update(bogus=1)),
    "no cases": {"params": {}},
    "unknown case key": variant(lambda d: d["cases"][0].update(expected={})),
    "unknown request key": variant(lambda d: d["cases"][0]["request"].update(user="x")),
    "unknown expect key": variant(lambda d: d["cases"][0].update(expect={"target": ["local"]})),
    "request without messages": variant(lambda d: d["cases"][0].update(request={"tenant": "a"})),
    "bad role": variant(lambda d: d["cases"][0]["request"]["messages"][0].update(role="robot")),
    "negative prompt_tokens": variant(lambda d: d["cases"][0]["request"].update(prompt_tokens=-1)),
    "fractional max_tokens": variant(lambda d: d["cases"][0]["request"].update(max_tokens=1.5)),
    "bad kind in expect": variant(lambda d: d["cases"][0].update(expect={"kinds": ["edge"]})),
    "reject over u16": variant(lambda d: d["cases"][0].update(expect={"reject": 70000})),
    "null expect": variant(lambda d: d["cases"][0].update(expect=None)),
    "param not a string": variant(lambda d: d.update(params={"a_share": 50})),
    "backend without kind": variant(lambda d: d.update(backends=[{"name": "x", "models": ["m"], "healthy": True,
                                                                   "context_window": 1}])),
    "spend without scope": variant(lambda d: d.update(spend={"acme": {"today_usd": 1.0}})),
    "bad response_format": variant(lambda d: d["cases"][0]["request"].update(needs={"response_format": "xml"})),
}


class Schema(unittest.TestCase):
    def test_schema_is_valid_draft_2020_12(self):
        jsonschema.Draft202012Validator.check_schema(SCHEMA)
        self.assertEqual(SCHEMA["$schema"], "https://json-schema.org/draft/2020-12/schema")

    def test_every_shipped_case_file_validates_and_parses(self):
        files = shipped()
        self.assertGreaterEqual(len(files), 7, files)
        for path in files:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            errors = [e.message for e in VALIDATOR.iter_errors(data)]
            self.assertEqual(errors, [], path)
            self.assertTrue(casefile.parse(data, path).cases, path)

    def test_invalid_files_fail_schema_and_reader(self):
        self.assertEqual(list(VALIDATOR.iter_errors(MINIMAL)), [])
        for what, data in INVALID.items():
            with self.subTest(what):
                self.assertFalse(VALIDATOR.is_valid(data), what)
                with self.assertRaises(casefile.CaseFileError):
                    casefile.parse(data)

    def test_host_facts_ignore_unknown_keys_like_the_host(self):
        data = variant(lambda d: d.update(backends=[{"name": "x", "kind": "local", "models": ["m"], "healthy": True,
                                                     "context_window": 1, "note": "ignored"}]))
        self.assertTrue(VALIDATOR.is_valid(data))
        self.assertEqual(casefile.parse(data).backends[0].name, "x")


if __name__ == "__main__":
    unittest.main()
