// Unit tests of policy.js on the SDK's MockHost (the host's demo backends by default).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { callRoute } from '../sdk/index.js';
import { MockHost, backendStatus, userRequest } from '../sdk/testing.js';
import { isCode, policy } from '../policy.js';

const route = (request, host = new MockHost()) => callRoute(policy, request, host);
const targets = (out) => out.ok.targets.map((t) => t.backend);

test('info names the policy', () => {
  assert.equal(policy.info.name, '__NAME__');
});

test('code goes to the cheapest healthy cloud backend first', () => {
  assert.deepEqual(targets(route(userRequest('fix this bug in my python script'))), ['gemini', 'openai', 'anthropic', 'local']);
  const host = new MockHost().unhealthy('gemini');
  assert.deepEqual(targets(route(userRequest('refactor it'), host)), ['openai', 'anthropic', 'local', 'gemini']);
});

test('code with no healthy cloud backend stays local first', () => {
  const host = new MockHost().unhealthy('gemini').unhealthy('openai').unhealthy('anthropic');
  const out = route(userRequest('refactor it'), host);
  assert.equal(targets(out)[0], 'local');
  assert.equal(out.ok.reason, '__NAME__:general:local');
});

test('tenant legal stays local, or is refused without a local backend', () => {
  const legal = userRequest('refactor this', { tenant: 'legal' });
  assert.deepEqual(targets(route(legal)), ['local']);
  const noLocal = new MockHost().withoutBackend('local');
  assert.deepEqual(route(legal, noLocal), { err: { status: 503, message: 'no local backend can take the request of tenant legal' } });
});

test('everything else goes local first; too big for local goes to the cloud', () => {
  assert.deepEqual(targets(route(userRequest('summarize this'))), ['local', 'gemini', 'openai', 'anthropic']);
  assert.deepEqual(targets(route(userRequest('summarize this', { promptTokens: 9000 }))), ['gemini', 'openai', 'anthropic']);
});

test('an explicit model is honoured when the rules allow its backend', () => {
  const out = route(userRequest('summarize this', { model: 'claude-sonnet-4-5', explicitModel: true }));
  assert.deepEqual(out.ok.targets, [{ backend: 'anthropic', model: 'claude-sonnet-4-5' }]);
  const legal = route(userRequest('hi', { model: 'gpt-4o', explicitModel: true, tenant: 'legal' }));
  assert.equal(legal.err.status, 403);
});

test('what counts as code', () => {
  const host = new MockHost().withParam('code_keywords', 'kotlin');
  assert.ok(isCode(userRequest('```\nx\n```'), host));
  assert.ok(isCode(userRequest('def main():\n  pass'), host));
  assert.ok(isCode(userRequest('any Kotlin tips?'), host));
  assert.ok(!isCode(userRequest('refactor'), host), 'the param replaces the default keywords');
  assert.ok(isCode(userRequest('hi', { labels: [{ key: 'task', value: 'code' }] }), host));
  assert.ok(!isCode(userRequest('a nice poem about the sea'), new MockHost()));
});

test('backends come from the host, never hard-coded', () => {
  const host = new MockHost().withBackends([backendStatus('edge', 'local', 'm'), backendStatus('sky', 'cloud', 'm', { usdPerMtokIn: 1 })]);
  assert.deepEqual(targets(route(userRequest('debug it'), host)), ['sky', 'edge']);
  assert.deepEqual(targets(route(userRequest('hello'), host)), ['edge', 'sky']);
});
