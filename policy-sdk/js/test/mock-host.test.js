// MockHost parity with the Rust SDK's testing.rs: the same defaults, builders, param
// helpers and log lines (the facts its tests assert), in the bindings' shapes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MockHost, MOCK_NOW_MS, backendStatus, spendStatus } from '../testing.js';
import { NO_EMBEDDING_MODEL, modelCapabilities } from '../index.js';

test('defaults: demo backends, bytes/4 tokens, PII, spend, fixed clock, no params or embeddings', () => {
  const host = new MockHost();
  assert.deepEqual(host.backends().map((b) => b.name), ['local', 'openai', 'anthropic', 'gemini']);
  assert.equal(host.countTokens('12345'), 2);
  assert.equal(host.countTokens('é'), 1);
  assert.equal(host.detectPii('mail a@b.io')[0].kind, 'email');
  assert.deepEqual(host.spend('acme'), {
    scope: 'acme', todayUsd: 0, monthUsd: 0, dailyBudgetUsd: undefined, monthlyBudgetUsd: undefined, hardCapUsd: undefined,
  });
  assert.equal(host.nowMs(), 1_767_225_600_000);
  assert.equal(MOCK_NOW_MS, Date.UTC(2026, 0, 1));
  assert.deepEqual(host.params(), []);
  assert.deepEqual(host.embed('hi'), { err: NO_EMBEDDING_MODEL });
  assert.deepEqual(host.score('router', 'hi'), { err: 'no embedding model loaded' });
  const mini = modelCapabilities(host.backend('openai'), 'gpt-4o-mini');
  assert.ok(mini.tools && mini.vision && mini.usdPerMtokIn === 0.15 && mini.usdPerMtokOut === 0.6);
  const local = modelCapabilities(host.backend('local'), 'smollm2-135m-instruct');
  assert.ok(!local.tools && local.contextWindow === 8192);
});

test('demo backends: prices, windows, latencies and capabilities of the host demo set', () => {
  const b = Object.fromEntries(new MockHost().backends().map((x) => [x.name, x]));
  assert.deepEqual([b.local.kind, b.openai.kind, b.anthropic.kind, b.gemini.kind], ['local', 'cloud', 'cloud', 'cloud']);
  assert.deepEqual(b.openai.models, ['gpt-4o', 'gpt-4o-mini']);
  assert.deepEqual([b.openai.usdPerMtokIn, b.openai.usdPerMtokOut, b.openai.contextWindow], [2.5, 10, 128000]);
  assert.deepEqual([b.anthropic.usdPerMtokIn, b.anthropic.usdPerMtokOut, b.anthropic.contextWindow], [3, 15, 200000]);
  assert.deepEqual([b.gemini.usdPerMtokIn, b.gemini.usdPerMtokOut, b.gemini.contextWindow], [0.1, 0.4, 1000000]);
  assert.deepEqual([b.local.latencyP50Ms, b.local.latencyP95Ms, b.gemini.latencyP95Ms], [400, 1200, 900]);
  assert.equal(b.openai.capabilities.length, 2);
  assert.ok(b.anthropic.capabilities.every((c) => !c.tools && !c.vision && c.usdPerMtokIn === 3));
  // the same field order as the bindings (a deepEqual against a live record holds)
  assert.deepEqual(Object.keys(b.local), ['name', 'kind', 'models', 'healthy', 'latencyP50Ms', 'latencyP95Ms',
    'errorRate', 'inFlight', 'queueDepth', 'usdPerMtokIn', 'usdPerMtokOut', 'contextWindow', 'labels', 'capabilities']);
});

test('fake embeddings (f32 like the import) and classifier', () => {
  const host = new MockHost()
    .withEmbed((text) => ({ ok: [text.length, 0.1] }))
    .withScore((name) => (name === 'router' ? { ok: 0.9 } : { err: 'unknown' }));
  assert.deepEqual(host.embed('abc'), { ok: [3, Math.fround(0.1)] });
  assert.deepEqual(host.score('router', 'x'), { ok: 0.9 });
  assert.deepEqual(host.score('other', 'x'), { err: 'unknown' });
});

test('builders', () => {
  const host = new MockHost()
    .unhealthy('openai')
    .withoutBackend('gemini')
    .withBackend(backendStatus('x', 'cloud', 'm'))
    .withParam('a', '1')
    .withSpend(spendStatus('acme', { todayUsd: 1, monthUsd: 2 }))
    .withPii(() => [])
    .withTokens(() => 7)
    .at(5);
  assert.equal(host.backend('openai').healthy, false);
  assert.ok(host.backend('gemini') === undefined && host.backend('x') !== undefined);
  assert.equal(host.param('a'), '1');
  assert.equal(host.spend('acme').monthUsd, 2);
  assert.deepEqual(host.detectPii('a@b.io'), []);
  assert.deepEqual([host.countTokens(''), host.nowMs()], [7, 5]);
});

test('answers are copies: a policy cannot change the host', () => {
  const host = new MockHost();
  host.backends()[0].healthy = false;
  assert.equal(host.backend('local').healthy, true);
});

test('param helpers and logs (testing.rs param_helpers_and_logs)', () => {
  const host = new MockHost()
    .withParam('f', ' 0.5 ')
    .withParam('bad', 'x')
    .withParam('n', '12')
    .withParam('b', 'Yes')
    .withParam('list', ' a, ,b ,')
    .withParam('blank', ' ');
  assert.equal(host.paramF64('f', 1), 0.5);
  assert.equal(host.paramF64('missing', 1), 1);
  assert.equal(host.paramF64('blank', 1), 1);
  assert.equal(host.paramF64('missing', Infinity), Infinity);
  assert.equal(host.paramU32('n', 1), 12);
  assert.equal(host.paramBool('b', false), true);
  assert.deepEqual(host.paramList('list'), ['a', 'b']);
  assert.deepEqual(host.paramListOr('missing', ['z']), ['z']);
  assert.equal(host.paramOr('blank', 'd'), 'd');
  assert.deepEqual(host.logs(), []);
  assert.equal(host.paramU32('bad', 3), 3);
  const logs = host.logs();
  assert.equal(logs.length, 1);
  const inf = new MockHost().withParam('f', 'inf');
  assert.equal(inf.paramF64('f', 2), 2);
  assert.equal(inf.logs().length, 1);
  assert.equal(logs[0].level, 'warn');
  assert.equal(logs[0].fields.param, 'bad');
  assert.ok(host.logged('invalid policy parameter'));
});

test('numbers parse like Rust: no hex, no negative u32, u32 range', () => {
  const host = new MockHost().withParams({ hex: '0x10', neg: '-1', big: '4294967296', plus: '+7', exp: '1e3', dot: '.5' });
  assert.equal(host.paramF64('hex', 1), 1);
  assert.equal(host.paramU32('neg', 1), 1);
  assert.equal(host.paramU32('big', 1), 1);
  assert.equal(host.paramU32('plus', 1), 7);
  assert.equal(host.paramF64('exp', 1), 1000);
  assert.equal(host.paramF64('dot', 1), 0.5);
  assert.equal(host.logs().length, 3);
});

test('params are listed sorted by key, like the host', () => {
  const host = new MockHost().withParam('z', '1').withParam('a', '2');
  assert.deepEqual(host.params(), [{ key: 'a', value: '2' }, { key: 'z', value: '1' }]);
});

test('a log level outside the WIT enum is refused, fields accept objects and label lists', () => {
  const host = new MockHost();
  assert.throws(() => host.log('warning', 'x'), /log level must be one of/);
  host.log('info', 'a', [{ key: 'k', value: 'v' }]);
  host.log('info', 'b', new Map([['k', 'w']]));
  assert.deepEqual(host.logs().map((l) => l.fields.k), ['v', 'w']);
});
