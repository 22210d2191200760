// Parity with the real bindings: records a probe component (componentize-js 0.23.0)
// received from `switchyard policy route` (demo host, params x=1 b=2), printed with
// JSON.stringify; the case runner and MockHost must build the same values, key order too.
// (The local model's JSON capabilities were set to true by hand when the host's demo set
// gained them.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { caseSetup, parseCaseFile } from '../cases.js';
import { MockHost, mockImports } from '../testing.js';

const RECEIVED = {
  request: {
    id: 'request', model: 'auto',
    messages: [{ role: 'system', content: 'sys' }, { role: 'user', content: 'hi' }],
    maxTokens: undefined, temperature: 0.699999988079071, streaming: false, tenant: 'acme',
    labels: [{ key: 'a', value: '2' }, { key: 'z', value: '1' }], promptTokens: 2,
    needs: { tools: ['f'], responseFormat: 'json-object', logprobs: false, images: 0, n: 2 }, explicitModel: false,
  },
  backend0: {
    name: 'local', kind: 'local', models: ['smollm2-135m-instruct'], healthy: true, latencyP50Ms: 400,
    latencyP95Ms: 1200, errorRate: 0, inFlight: 0, queueDepth: 0, usdPerMtokIn: 0, usdPerMtokOut: 0,
    contextWindow: 8192, labels: [],
    capabilities: [{
      model: 'smollm2-135m-instruct', tools: false, jsonObject: true, jsonSchema: true, vision: false,
      logprobs: false, multipleChoices: false, contextWindow: 8192, usdPerMtokIn: 0, usdPerMtokOut: 0,
    }],
  },
  pii: [{ kind: 'email', start: 5, end: 11 }, { kind: 'us-ssn', start: 16, end: 27 }, { kind: 'credit-card', start: 32, end: 51 }],
  spend: { scope: 'acme', todayUsd: 0, monthUsd: 0, dailyBudgetUsd: undefined, monthlyBudgetUsd: undefined, hardCapUsd: undefined },
  params: [{ key: 'b', value: '2' }, { key: 'x', value: '1' }],
  tokens: 3,
};

const deepKeys = (v) => (Array.isArray(v) ? v.map(deepKeys) : v !== null && typeof v === 'object'
  ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, deepKeys(x)])) : typeof v);

test('the runner builds the request the component received, field for field and in order', () => {
  const file = parseCaseFile(JSON.stringify({ cases: [{
    name: 'request',
    request: {
      messages: [{ role: 'system', content: 'sys' }, { role: 'user', content: 'hi' }], tenant: 'acme',
      labels: { z: '1', a: '2' }, temperature: 0.7, needs: { tools: ['f'], response_format: 'json_object', n: 2 },
    },
  }] }));
  const { request } = caseSetup(file, file.cases[0]);
  assert.deepEqual(request, RECEIVED.request);
  assert.equal(JSON.stringify(deepKeys(request)), JSON.stringify(deepKeys(RECEIVED.request)));
});

test('MockHost and its raw imports answer as the host did', () => {
  const host = new MockHost().withParams({ x: '1', b: '2' });
  const raw = mockImports(host);
  assert.deepEqual(raw.backends.list()[0], RECEIVED.backend0);
  assert.equal(JSON.stringify(deepKeys(raw.backends.list()[0])), JSON.stringify(deepKeys(RECEIVED.backend0)));
  assert.deepEqual(raw.pii.detect('mail a@b.io and 123-45-6789 and 4111 1111 1111 1111'), RECEIVED.pii);
  assert.deepEqual(raw.spend.get('acme'), RECEIVED.spend);
  assert.deepEqual(Object.keys(raw.spend.get('acme')), Object.keys(RECEIVED.spend));
  assert.deepEqual(raw.params.all(), RECEIVED.params);
  assert.equal(raw.params.get('x'), '1');
  assert.equal(raw.params.get('nope'), undefined);
  assert.equal(raw.tokens.count('hello world!'), RECEIVED.tokens);
  assert.equal(typeof raw.clock.nowMs(), 'bigint');
});
