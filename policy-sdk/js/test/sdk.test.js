// The SDK's pure helpers (ports of the Rust SDK's types.rs, backend.rs and select.rs
// tests) and callRoute's conversions of what `route` returns or throws.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Decision, Rejection, budgetFraction, callRoute, capableTargets, compareLatency, costUsd, decide,
  definePolicy, explicitModel, fullModel, lastUserText, loadDepth, named, names, neededContext, ofKind,
  overHardCap, remainingUsd, requestLabel, requestText, sortByPrice, toWitDecision, usable, dailyFraction,
  monthlyFraction, backendLabel, fits, serves, defaultModel, compileRegExp,
} from '../index.js';
import { MockHost, backendStatus, demoBackends, request, spendStatus, userRequest } from '../testing.js';

test('request helpers', () => {
  const r = request([
    { role: 'system', content: 'be brief' }, { role: 'user', content: 'first' },
    { role: 'assistant', content: 'ok' }, { role: 'user', content: 'second' },
  ], { labels: [{ key: 'task', value: 'qa' }], maxTokens: 10 });
  assert.equal(requestText(r), 'be brief\nfirst\nok\nsecond');
  assert.equal(lastUserText(r), 'second');
  assert.equal(requestLabel(r, 'task'), 'qa');
  assert.equal(requestLabel(r, 'nope'), undefined);
  assert.equal(neededContext(r), r.promptTokens + 10);
  assert.equal(lastUserText(request([])), '');
  assert.equal(userRequest('12345').promptTokens, 2);
});

test('decision builder', () => {
  const d = Decision.to('local').then('openai').thenModel('openai', 'gpt-4o-mini').reason('pii:email')
    .label('k', 'v').capTokens(100).capTokens(200).rewrite([{ role: 'user', content: 'x' }]);
  assert.deepEqual(d.backends(), ['local', 'openai', 'openai']);
  assert.equal(d.targets[2].model, 'gpt-4o-mini');
  assert.equal(d.maxTokens, 100);
  assert.deepEqual(d.toWit(), {
    targets: [{ backend: 'local', model: undefined }, { backend: 'openai', model: undefined }, { backend: 'openai', model: 'gpt-4o-mini' }],
    reason: 'pii:email', messages: [{ role: 'user', content: 'x' }], maxTokens: 100, labels: [{ key: 'k', value: 'v' }],
  });
  assert.deepEqual(Decision.toAll(['a', 'b']).backends(), ['a', 'b']);
});

test('rejection status is clamped', () => {
  assert.equal(new Rejection(429, 'x').status, 429);
  assert.equal(new Rejection(200, 'x').status, 500);
  assert.equal(Rejection.unavailable('x').status, 503);
});

test('backend helpers', () => {
  const b = backendStatus('openai', 'cloud', 'gpt-4o', {
    models: ['gpt-4o', 'gpt-4o-mini'], usdPerMtokIn: 2.5, usdPerMtokOut: 10, contextWindow: 128000,
    errorRate: 0.1, inFlight: 2, queueDepth: 3, labels: [{ key: 'region', value: 'eu' }],
  });
  assert.ok(fits(b, 128000) && !fits(b, 128001));
  assert.equal(defaultModel(b), 'gpt-4o');
  assert.ok(serves(b, 'gpt-4o-mini'));
  assert.equal(backendLabel(b, 'region'), 'eu');
  assert.ok(Math.abs(costUsd(b, 1_000_000, 100_000) - 3.5) < 1e-9);
  assert.equal(loadDepth(b), 5);
});

test('spend fractions', () => {
  const s = spendStatus('acme', { todayUsd: 8, monthUsd: 50, dailyBudgetUsd: 10, monthlyBudgetUsd: 200, hardCapUsd: 300 });
  assert.equal(dailyFraction(s), 0.8);
  assert.equal(monthlyFraction(s), 0.25);
  assert.equal(budgetFraction(s), 0.8);
  assert.equal(remainingUsd(s), 2);
  assert.ok(!overHardCap(s));
  assert.ok(overHardCap(spendStatus('x', { monthUsd: 300, hardCapUsd: 300 })));
  assert.equal(budgetFraction(spendStatus('x')), undefined);
  assert.equal(dailyFraction(spendStatus('x', { dailyBudgetUsd: 0 })), undefined);
  assert.equal(remainingUsd(spendStatus('x')), undefined);
});

test('named skips unknown names and repeats', () => {
  assert.deepEqual(names(named(demoBackends(), ['gemini', 'nope', 'local', 'gemini'])), ['gemini', 'local']);
});

test('usable drops small windows and puts unhealthy last', () => {
  const all = demoBackends();
  all[1].healthy = false;
  assert.deepEqual(names(usable(all, 10)), ['local', 'anthropic', 'gemini', 'openai']);
  assert.deepEqual(names(usable(all, 150_000)), ['anthropic', 'gemini']);
});

test('price and latency order', () => {
  const all = demoBackends();
  assert.deepEqual(names(sortByPrice(ofKind(all, 'cloud'))), ['gemini', 'openai', 'anthropic']);
  assert.deepEqual(names([...all].sort(compareLatency)), ['gemini', 'local', 'openai', 'anthropic']);
});

test('an explicit model keeps only the targets serving it', () => {
  const host = new MockHost();
  const decided = () => decide(host.backends(), 'why');
  const r = userRequest('hi');
  assert.deepEqual(explicitModel(host, r, decided()), decided());
  assert.deepEqual(explicitModel(host, { ...r, model: 'scoped-alias' }, decided()), decided());
  const d = explicitModel(host, { ...r, model: 'claude-sonnet-4-5' }, decided());
  assert.deepEqual(d.targets, [{ backend: 'anthropic', model: 'claude-sonnet-4-5' }]);
  assert.equal(d.reasonText, 'why+explicit-model');
  const refused = explicitModel(host, { ...r, model: 'claude-sonnet-4-5' }, decide([host.backend('local')], 'privacy:pii:email'));
  assert.ok(refused instanceof Rejection && refused.status === 403);
  assert.match(refused.message, /claude-sonnet-4-5.*privacy:pii:email/);
  assert.equal(decide([], 'x').status, 503);
});

test('targets that cannot serve the needs are skipped', () => {
  const host = new MockHost();
  const decided = () => decide(host.backends(), 'why');
  assert.deepEqual(capableTargets(host, userRequest('hi'), decided()), decided());
  const tools = userRequest('weather?', { needs: { tools: ['get_weather'], responseFormat: 'text', logprobs: false, images: 0, n: 1 } });
  const d = capableTargets(host, tools, decided());
  assert.deepEqual(d.backends(), ['openai']);
  assert.equal(d.labels.get('skipped'), 'local:tools,anthropic:tools,gemini:tools');
  const base = { tools: [], responseFormat: 'text', logprobs: false, images: 0, n: 1 };
  for (const responseFormat of ['json-object', 'json-schema']) {
    assert.deepEqual(capableTargets(host, userRequest('x', { needs: { ...base, responseFormat } }), decided()).backends(), ['local', 'openai'], responseFormat);
  }
  for (const needs of [{ images: 1 }, { logprobs: true }, { n: 2 }]) {
    assert.deepEqual(capableTargets(host, userRequest('x', { needs: { ...base, ...needs } }), decided()).backends(), ['openai'], JSON.stringify(needs));
  }
  host.updateBackend('gemini', (b) => {
    b.models.push('gemini-vision');
    b.capabilities.push(fullModel('gemini-vision', 1_000_000));
  });
  const images = userRequest('x', { needs: { ...base, images: 2 } });
  const kept = capableTargets(host, images, Decision.to('local').thenModel('gemini', 'gemini-vision').then('gemini'));
  assert.deepEqual(kept.targets, [{ backend: 'gemini', model: 'gemini-vision' }]);
});

const policyOf = (route) => definePolicy({ info: { name: 'p', version: '1', description: 'd' }, route });
const host = new MockHost();
const req = userRequest('hi');

test('callRoute: a Decision, a plain record and a returned or thrown rejection', () => {
  assert.deepEqual(callRoute(policyOf(() => Decision.to('local').reason('r')), req, host), {
    ok: { targets: [{ backend: 'local', model: undefined }], reason: 'r', messages: undefined, maxTokens: undefined, labels: [] },
  });
  assert.deepEqual(callRoute(policyOf(() => ({ targets: [{ backend: 'gemini' }], labels: { a: 'b' } })), req, host).ok, {
    targets: [{ backend: 'gemini', model: undefined }], reason: '', messages: undefined, maxTokens: undefined, labels: [{ key: 'a', value: 'b' }],
  });
  assert.deepEqual(callRoute(policyOf(() => new Rejection(429, 'slow down')), req, host), { err: { status: 429, message: 'slow down' } });
  assert.deepEqual(callRoute(policyOf(() => { throw Rejection.unavailable('none'); }), req, host), { err: { status: 503, message: 'none' } });
  assert.deepEqual(callRoute(policyOf(() => { throw { status: 451, message: 'legal' }; }), req, host), { err: { status: 451, message: 'legal' } });
});

test('callRoute: an Error propagates (the component traps, the host falls back)', () => {
  assert.throws(() => callRoute(policyOf(() => { throw new Error('bug'); }), req, host), /bug/);
});

test('an invalid decision is a clear TypeError, not a silent conversion', () => {
  assert.throws(() => toWitDecision({ targets: 'local' }), /invalid decision: `targets` must be an array/);
  assert.throws(() => toWitDecision({ targets: [{ name: 'local' }] }), /targets\[0\]\.backend must be a string/);
  assert.throws(() => toWitDecision({ targets: [], maxTokens: -1 }), /maxTokens/);
  assert.throws(() => toWitDecision({ targets: [], messages: [{ role: 'User', content: 'x' }] }), /messages\[0\]\.role/);
  assert.throws(() => toWitDecision(undefined), /invalid decision/);
});

test('definePolicy checks its input', () => {
  assert.throws(() => definePolicy({ info: { name: 'a' }, route() {} }), /`version` must be a string/);
  assert.throws(() => definePolicy({ info: { name: 'a', version: '1', description: 'd' } }), /route/);
  assert.deepEqual(definePolicy({ info: () => ({ name: 'a', version: '1', description: 'd' }), route() {} }).info, { name: 'a', version: '1', description: 'd' });
});

test('compileRegExp refuses what the component engine refuses, and only that', () => {
  assert.throws(() => compileRegExp('\\p{L}+', 'u'), { name: 'SyntaxError', message: /invalid property name in regular expression/ });
  assert.throws(() => compileRegExp('x\\P{Lu}', 'iu'), SyntaxError);
  assert.throws(() => compileRegExp('[a--b]', 'v'), SyntaxError);
  assert.ok(compileRegExp('\\\\p\\{L\\}', 'u').test('\\p{L}'), 'an escaped backslash before p is no property escape');
  assert.ok(compileRegExp('\\p{L}').test('p{L}'), 'without u, \\p is a plain p (both engines)');
  assert.ok(compileRegExp('(?<=a)b', 'iu').test('AB'));
  assert.throws(() => compileRegExp('(', 'u'), SyntaxError);
});
