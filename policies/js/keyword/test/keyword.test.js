// Native unit tests of the keyword router's logic on the SDK's MockHost.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { callRoute } from '../../../../policy-sdk/js/index.js';
import { MockHost, backendStatus, userRequest } from '../../../../policy-sdk/js/testing.js';
import { policy, keywordMatcher, splitPatterns, scannedText, POLICY_INFO } from '../logic.js';

function backend(name, kind, extra = {}) {
  return backendStatus(name, kind, `${name}-model`, {
    latencyP50Ms: 400,
    latencyP95Ms: 1200,
    usdPerMtokIn: kind === 'local' ? 0 : 2.5,
    usdPerMtokOut: kind === 'local' ? 0 : 10,
    ...extra,
  });
}

// Deliberately not the demo names, so a hard-coded name would fail these tests.
const FLEET = [
  backend('cloud-x', 'cloud'),
  backend('edge-1', 'local'),
  backend('cloud-y', 'cloud'),
  backend('edge-2', 'local'),
];

function mockHost({ backends = FLEET, params = {} } = {}) {
  return new MockHost().withBackends(backends).withParams(params);
}

const req = (content, extra = {}) => userRequest(content, { tenant: 'acme', ...extra });
/** The contract's result, as the component returns it: { ok: decision } or { err: rejection }. */
const decide = (request, host) => callRoute(policy, request, host);

const names = (out) => out.ok.targets.map((t) => t.backend);
const label = (out, key) => out.ok.labels.find((l) => l.key === key)?.value;

test('info names the policy', () => {
  assert.equal(POLICY_INFO.name, 'keyword');
});

test('default local keyword routes to local backends first, cloud as fallback', () => {
  const out = decide(req('Please translate this into French'), mockHost());
  assert.deepEqual(names(out), ['edge-1', 'edge-2', 'cloud-x', 'cloud-y']);
  assert.equal(label(out, 'route'), 'local');
  assert.equal(label(out, 'keyword'), 'translate');
  assert.equal(out.ok.reason, 'keyword:local:translate');
});

test('default cloud keyword routes to cloud', () => {
  const out = decide(req('Refactor this module and explain the architecture'), mockHost());
  assert.deepEqual(names(out).slice(0, 2), ['cloud-x', 'cloud-y']);
  assert.equal(label(out, 'route'), 'cloud');
});

test('no match uses the default route from params', () => {
  const host = mockHost({ params: { default: 'cloud' } });
  const out = decide(req('hello there'), host);
  assert.equal(label(out, 'route'), 'cloud');
  assert.equal(label(out, 'keyword-rule'), 'default');
  assert.equal(decide(req('hello there'), mockHost()).ok.labels[0].value, 'local');
});

test('keywords from params replace the defaults and match on word boundaries', () => {
  const host = mockHost({ params: { local_keywords: 'invoice, receipt', cloud_keywords: 'poem' } });
  assert.equal(label(decide(req('Total on this INVOICE?'), host), 'route'), 'local');
  assert.equal(label(decide(req('write a poem'), host), 'route'), 'cloud');
  // "poems" and "receipts" are other words: no match, default route
  assert.equal(label(decide(req('poems about receipts'), host), 'keyword-rule'), 'default');
  // the default keyword list is no longer active
  assert.equal(label(decide(req('translate this'), host), 'keyword-rule'), 'default');
});

test('regex patterns from params, JSON array or one per line', () => {
  const json = mockHost({ params: { cloud_patterns: '["\\\\bdef\\\\s+\\\\w+\\\\(", "```"]', cloud_keywords: '' } });
  const out = decide(req('def foo(x): return x'), json);
  assert.equal(label(out, 'route'), 'cloud');
  assert.equal(label(out, 'keyword'), '/\\bdef\\s+\\w+\\(/');
  const lines = mockHost({ params: { local_patterns: '^yes|no$\n\\d{4}-\\d{2}-\\d{2}', local_keywords: '' } });
  assert.equal(label(decide(req('is 2024-01-05 a monday'), lines), 'route'), 'local');
});

test('invalid pattern is skipped with a warning, not a crash', () => {
  const host = mockHost({ params: { cloud_patterns: '(unclosed', cloud_keywords: 'poem' } });
  const out = decide(req('a poem'), host);
  assert.equal(label(out, 'route'), 'cloud');
  assert.equal(host.logs().length, 1);
  assert.equal(host.logs()[0].level, 'warn');
  assert.equal(host.logs()[0].fields.detail.length > 0, true);
});

test('config is compiled once per set of params and recompiled when they change', () => {
  const params = { cloud_patterns: '(unclosed', cloud_keywords: 'sonnet' };
  const host = mockHost({ params });
  assert.equal(label(decide(req('a sonnet'), host), 'route'), 'cloud');
  assert.equal(label(decide(req('a sonnet'), host), 'route'), 'cloud');
  assert.equal(host.logs().length, 1, 'the bad pattern is compiled (and reported) once');
  host.withParam('cloud_keywords', 'haiku');
  assert.equal(label(decide(req('a sonnet'), host), 'keyword-rule'), 'default');
  assert.equal(label(decide(req('a haiku'), host), 'route'), 'cloud');
  assert.equal(host.logs().length, 2, 'changed params are compiled again');
});

test('more matches win; a tie goes to the tie route', () => {
  const host = mockHost({ params: { local_keywords: 'a1,a2', cloud_keywords: 'b1', tie: 'cloud' } });
  assert.equal(label(decide(req('a1 a2 b1'), host), 'route'), 'local');
  assert.equal(label(decide(req('a1 b1'), host), 'route'), 'cloud');
  assert.equal(label(decide(req('a1 b1'), host), 'keyword-rule'), 'tie');
});

test('scope: last user message by default, all messages on request', () => {
  const messages = [
    { role: 'system', content: 'You translate.' },
    { role: 'user', content: 'implement a parser' },
    { role: 'assistant', content: 'ok' },
    { role: 'user', content: 'hello' },
  ];
  assert.equal(scannedText(messages, 'last-user'), 'hello');
  assert.equal(scannedText(messages, 'user'), 'implement a parser\nhello');
  const r = req('', { messages });
  assert.equal(label(decide(r, mockHost()), 'keyword-rule'), 'default');
  assert.equal(label(decide(r, mockHost({ params: { scope: 'user' } })), 'route'), 'cloud');
  assert.equal(label(decide(r, mockHost({ params: { scope: 'all' } })), 'keyword-rule'), 'tie');
});

test('backend names from params, unknown names dropped, order kept', () => {
  const host = mockHost({
    params: { local_backends: 'edge-2,ghost', cloud_backends: 'cloud-y', local_keywords: 'x' },
  });
  assert.deepEqual(names(decide(req('x'), host)), ['edge-2', 'cloud-y']);
});

test('unhealthy backends go last; fallback_other_kind=false keeps one kind', () => {
  const backends = [backend('edge-1', 'local', { healthy: false }), backend('edge-2', 'local'), backend('c', 'cloud')];
  const out = decide(req('summarize this'), mockHost({ backends }));
  assert.deepEqual(names(out), ['edge-2', 'c', 'edge-1']);
  const strict = decide(req('summarize this'), mockHost({ backends, params: { fallback_other_kind: 'false' } }));
  assert.deepEqual(names(strict), ['edge-2', 'edge-1']);
});

test('all local backends unhealthy: healthy cloud first, labelled degraded', () => {
  const backends = [backend('edge-1', 'local', { healthy: false }), backend('c', 'cloud')];
  const out = decide(req('summarize this'), mockHost({ backends }));
  assert.deepEqual(names(out), ['c', 'edge-1']);
  assert.equal(label(out, 'route'), 'local');
  assert.equal(label(out, 'keyword-degraded'), 'true');
});

test('no local backend at all: degraded to cloud, labelled', () => {
  const out = decide(req('summarize this'), mockHost({ backends: [backend('c', 'cloud')] }));
  assert.deepEqual(names(out), ['c']);
  assert.equal(label(out, 'keyword-degraded'), 'true');
});

test('no backends: rejection 503', () => {
  const out = decide(req('hi'), mockHost({ backends: [] }));
  assert.equal(out.err.status, 503);
});

test('helpers: phrase and punctuation keywords, pattern parsing', () => {
  assert.ok(keywordMatcher('step by step').test('think Step  by\nstep please'));
  assert.ok(keywordMatcher('tl;dr').test('tl;dr: what is it'));
  assert.ok(!keywordMatcher('tl;dr').test('xtl;dr'));
  assert.deepEqual(splitPatterns('["a,b", "c"]'), ['a,b', 'c']);
  assert.deepEqual(splitPatterns('a\n\n b \n'), ['a', 'b']);
});

test('a \\p{..} pattern is skipped with a warning, as the component engine refuses it', () => {
  const host = mockHost({ params: { cloud_patterns: '\\p{Lu}{3}', cloud_keywords: '' } });
  const out = decide(req('ABC'), host);
  assert.equal(label(out, 'keyword-rule'), 'default');
  assert.match(host.logs()[0].fields.detail, /invalid property name/);
});
