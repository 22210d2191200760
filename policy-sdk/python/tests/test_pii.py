"""The mock PII detector against the shared fixtures and patterns (policy-sdk/pii/)."""

import json
import os
import tempfile
import unittest

from support import PII_DIR
from switchyard_policy import pii


class SharedFiles(unittest.TestCase):
    def test_every_fixture_matches_exactly(self):
        with open(os.path.join(PII_DIR, "fixtures.json"), encoding="utf-8") as f:
            cases = json.load(f)["cases"]
        self.assertGreaterEqual(len(cases), 30)
        for case in cases:
            text = case["text"]
            found = [{"kind": m.kind.value, "start": m.start, "end": m.end, "match": m.text_of(text)}
                     for m in pii.detect(text)]
            self.assertEqual(found, case["findings"], text)

    def test_packaged_patterns_equal_the_shared_file(self):
        with open(os.path.join(PII_DIR, "patterns.json"), encoding="utf-8") as shared, \
                open(pii.PATTERNS_FILE, encoding="utf-8") as packaged:
            self.assertEqual(json.load(packaged), json.load(shared))

    def test_every_check_named_in_the_file_exists(self):
        with open(pii.PATTERNS_FILE, encoding="utf-8") as f:
            data = json.load(f)
        self.assertEqual(set(data["checks"]), set(pii.CHECKS))


class Detector(unittest.TestCase):
    def test_offsets_are_utf8_bytes(self):
        text = "café 🙂 bob@example.com"
        (m,) = pii.detect(text)
        self.assertEqual((m.kind, m.start, m.end), (pii.PiiKind.EMAIL, 11, 26))
        self.assertEqual(text.encode()[m.start:m.end], b"bob@example.com")

    def test_sorted_and_non_overlapping(self):
        found = pii.detect("a@b.io 123-45-6789 10.0.0.1 a@b.io")
        self.assertEqual(len(found), 4)
        self.assertTrue(all(a.end <= b.start for a, b in zip(found, found[1:])))

    def test_bad_patterns_file_is_a_clear_error(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump({"patterns": [{"kind": "email", "regex": "(", "check": "none"}]}, f)
        self.addCleanup(os.unlink, f.name)
        with self.assertRaisesRegex(ValueError, "PII pattern 0 in .* is not usable"):
            pii.load_patterns(f.name)
        with self.assertRaisesRegex(ValueError, "cannot read PII patterns"):
            pii.load_patterns(f.name + ".missing")


if __name__ == "__main__":
    unittest.main()
