// The mock PII detector against policy-sdk/pii/fixtures.json (every case, byte offsets)
// and its pattern file against the shared policy-sdk/pii/patterns.json.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { detect, loadPatterns, CHECKS } from '../pii.js';

const shared = (name) => readFileSync(new URL(`../../pii/${name}`, import.meta.url), 'utf8');
const fixtures = JSON.parse(shared('fixtures.json')).cases;

test('the SDK ships an exact copy of the shared patterns.json', () => {
  assert.equal(readFileSync(new URL('../pii-patterns.json', import.meta.url), 'utf8'), shared('patterns.json'));
});

test('every pattern compiles and names a known check', () => {
  const patterns = loadPatterns();
  assert.equal(patterns.length, JSON.parse(shared('patterns.json')).patterns.length);
  for (const check of Object.keys(JSON.parse(shared('patterns.json')).checks)) assert.ok(CHECKS[check], check);
});

test(`fixtures.json: all ${fixtures.length} cases match exactly`, () => {
  assert.ok(fixtures.length >= 30);
  for (const c of fixtures) {
    const bytes = Buffer.from(c.text, 'utf8');
    const got = detect(c.text).map((m) => ({ end: m.end, kind: m.kind, match: bytes.subarray(m.start, m.end).toString('utf8'), start: m.start }));
    assert.deepEqual(got, c.findings, c.text);
  }
});

test('offsets are UTF-8 bytes, never inside a character', () => {
  const text = 'café ünïcode — bob@exämple.com 🙂 123-45-6789';
  const found = detect(text);
  const ssn = found.find((m) => m.kind === 'us-ssn');
  assert.equal(Buffer.from(text).subarray(ssn.start, ssn.end).toString(), '123-45-6789');
  assert.equal(ssn.start, Buffer.byteLength(text) - 11);
});

test('findings are sorted and never overlap', () => {
  const found = detect('a@b.io 123-45-6789 10.0.0.1 a@b.io');
  assert.deepEqual(found.map((m) => m.kind), ['email', 'us-ssn', 'ip-address', 'email']);
  for (let i = 1; i < found.length; i += 1) assert.ok(found[i - 1].end <= found[i].start);
});
