// The native case runner: the shipped keyword cases.json, request building as the host
// does it, the host's checks and caps, `check` wording, and case-file errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { caseSetup, check, evaluate, loadCaseFile, parseCaseFile, runCases } from '../cases.js';
import { Decision, Rejection, definePolicy } from '../index.js';
import { policy as keyword } from '../../../policies/js/keyword/logic.js';

const KEYWORD_CASES = new URL('../../../policies/js/keyword/cases.json', import.meta.url);

test('the shipped keyword cases.json passes natively, every case', () => {
  const file = loadCaseFile(KEYWORD_CASES);
  const results = runCases(keyword, file);
  assert.equal(results.length, file.cases.length);
  assert.ok(results.length >= 9);
  for (const r of results) assert.deepEqual(r.problems, [], r.name);
});

test('a failing case names itself and what is wrong', () => {
  const file = loadCaseFile(KEYWORD_CASES);
  file.cases[0].expect.first = 'gemini';
  const [first] = runCases(keyword, file);
  assert.equal(first.name, 'local keyword goes local first');
  assert.deepEqual(first.problems, ['first target Some("local"), expected "gemini"']);
});

const one = (c, top = {}) => parseCaseFile(JSON.stringify({ ...top, cases: [{ name: 'c', request: { messages: [{ role: 'user', content: 'hi' }] }, ...c }] }));

test('requests are built as the host builds them', () => {
  const file = one({
    request: {
      messages: [{ role: 'user', content: '12345' }, { role: 'assistant', content: 'é' }],
      model: 'gpt-4o-mini', tenant: 'acme', labels: { z: '1', a: '2' }, temperature: 0.7, max_tokens: 9,
      needs: { tools: ['f'], response_format: 'json_schema', n: 2 },
    },
    params: { k: 'case' },
    spend: { acme: { scope: 'acme', today_usd: 1, daily_budget_usd: 5 } },
  }, { params: { k: 'file', f: '1' } });
  const { host, request } = caseSetup(file, file.cases[0]);
  assert.deepEqual(request, {
    id: 'c', model: 'gpt-4o-mini', messages: [{ role: 'user', content: '12345' }, { role: 'assistant', content: 'é' }],
    maxTokens: 9, temperature: 0.699999988079071, streaming: false, tenant: 'acme',
    labels: [{ key: 'a', value: '2' }, { key: 'z', value: '1' }], promptTokens: 3,
    needs: { tools: ['f'], responseFormat: 'json-schema', logprobs: false, images: 0, n: 2 }, explicitModel: true,
  });
  assert.deepEqual(host.params(), [{ key: 'f', value: '1' }, { key: 'k', value: 'case' }]);
  assert.deepEqual(host.spend('acme'), { scope: 'acme', todayUsd: 1, monthUsd: 0, dailyBudgetUsd: 5, monthlyBudgetUsd: undefined, hardCapUsd: undefined });
});

test('case backends replace the demo set, with the host defaults', () => {
  const file = one({ backends: [{ name: 'edge', kind: 'local', models: ['m'], healthy: false, context_window: 4096, labels: { b: '1', a: '2' } }] });
  const [edge] = caseSetup(file, file.cases[0]).host.backends();
  assert.deepEqual(edge, {
    name: 'edge', kind: 'local', models: ['m'], healthy: false, latencyP50Ms: 0, latencyP95Ms: 0, errorRate: 0, inFlight: 0,
    queueDepth: 0, usdPerMtokIn: 0, usdPerMtokOut: 0, contextWindow: 4096, labels: [{ key: 'a', value: '2' }, { key: 'b', value: '1' }], capabilities: [],
  });
});

const policyOf = (route) => definePolicy({ info: { name: 'p', version: '1', description: 'd' }, route });
const run = (route, c) => runCases(policyOf(route), one(c))[0];

test('guest failures use the fallback decision, like the sandbox', () => {
  const cases = [
    [() => { throw new Error('bug'); }, 'trap: Error: bug'],
    [() => new Decision([]), 'empty_targets: decision has no targets'],
    [() => Decision.to('nowhere'), 'unknown_backend: decision names unknown backend "nowhere"'],
    [() => ({ status: 200, message: 'ok?' }), 'bad_status: rejection status 200 is outside 400..=599'],
    [() => Decision.to('local').label('k', 'v'.repeat(257)), 'over_limit: decision is over a limit: label value bytes 257 over the cap of 256'],
    [() => Decision.to('local').reason('r'.repeat(300)), 'over_limit: decision is over a limit: reason bytes 300 over the cap of 256'],
  ];
  for (const [route, failure] of cases) {
    const r = run(route, {});
    assert.equal(r.failure, failure);
    assert.deepEqual(r.verdict, { route: { targets: [{ backend: 'local' }], reason: 'fallback' } });
    assert.deepEqual(r.problems, [`guest failed: ${failure}`]);
    assert.deepEqual(run(route, { expect: { fallback: true, first: 'local' } }).problems, []);
  }
  assert.deepEqual(run(() => Decision.to('gemini'), { expect: { fallback: true } }).problems, ['expected the guest to fail (fallback)']);
});

test('check: the brief format and the host wording', () => {
  const file = one({
    expect: { targets: ['local'], first: 'local', excludes: ['openai'], kinds: ['local'], reason_contains: 'pii', labels: { route: 'local' }, max_tokens: 256, rewritten: false },
  });
  const backends = caseSetup(file, file.cases[0]).host.backends();
  const route = (targets) => ({ route: { targets: targets.map((backend) => ({ backend })), reason: 'pii found', messages: undefined, maxTokens: 256, labels: { route: 'local' } } });
  assert.deepEqual(check(file.cases[0].expect, route(['local']), backends), []);
  assert.deepEqual(check(file.cases[0].expect, route(['openai', 'local']), backends), [
    'targets ["openai", "local"], expected ["local"]',
    'first target Some("openai"), expected "local"',
    'targets ["openai", "local"] include excluded "openai"',
    'target "openai" has kind Some(Cloud), expected one of [Local]',
  ]);
});

test('check: rejection expectations', () => {
  const reject = { reject: { status: 429, message: 'budget' } };
  assert.deepEqual(check({ reject: 429 }, reject, []), []);
  assert.deepEqual(check({}, reject, []), ['unexpected rejection 429: budget']);
  assert.deepEqual(check({ reject: 403, reasonContains: 'x' }, reject, []), ['rejected with 429, expected 403', 'rejection message "budget" lacks "x"']);
  assert.deepEqual(run(() => Decision.to('local'), { expect: { reject: 429 } }).problems, ['expected rejection 429, got a route']);
  assert.deepEqual(run(() => new Rejection(429, 'over budget'), { expect: { reject: 429, reason_contains: 'budget' } }).problems, []);
});

test('check: labels, max_tokens, rewritten, text_excludes', () => {
  const d = () => Decision.to('local').label('route', 'local').capTokens(5).rewrite([{ role: 'user', content: 'mail [email]' }]);
  assert.deepEqual(run(d, { expect: { labels: { route: 'cloud', x: 'y' }, max_tokens: 6, rewritten: false, text_excludes: ['[email]'] } }).problems, [
    'label route=Some("local"), expected "cloud"', 'label x=None, expected "y"', 'max_tokens Some(5), expected 6',
    'rewritten is true, expected false', 'rewritten messages still contain "[email]"',
  ]);
});

test('case-file errors name the field', () => {
  const bad = (text, pattern) => assert.throws(() => parseCaseFile(text), pattern);
  bad('{', /case file is not valid/);
  bad('{"cases":[],"bogus":1}', /\(file\): unknown field "bogus"/);
  bad('{}', /missing field "cases"/);
  bad('{"cases":[{"name":"x","request":{"messages":[]},"expect":{"firts":"a"}}]}', /cases\[0\]\.expect: unknown field "firts"/);
  bad('{"cases":[{"name":"x","request":{"messages":[{"role":"User","content":"a"}]}}]}', /cases\[0\]\.request\.messages\[0\]\.role: expected one of system, user/);
  bad('{"cases":[{"name":"x","request":{"messages":[]},"params":{"a":1}}]}', /cases\[0\]\.params\.a: expected a string/);
  bad('{"backends":[{"name":"x","kind":"local","models":[],"healthy":true}],"cases":[]}', /backends\[0\]: missing field "context_window"/);
  bad('{"spend":{"a":{"today_usd":1}},"cases":[]}', /spend\.a\.scope: expected a string/);
});

test('evaluate gives the verdict in the host shape: labels as a map, the last one wins', () => {
  const host = caseSetup(one({}), one({}).cases[0]).host;
  const { verdict } = evaluate(policyOf(() => ({ targets: [{ backend: 'local' }], labels: [{ key: 'a', value: '1' }, { key: 'a', value: '2' }] })), {}, host);
  assert.deepEqual(verdict.route.labels, { a: '2' });
});
