// Tests of policy.js, the component entry, with the `switchyard:policy/*` imports
// resolved (through a module loader hook) to mocks driven by globalThis.__switchyard.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { register } from 'node:module';

const MOCKS = {
  backends: 'export const list = () => globalThis.__switchyard.backends();',
  params:
    'export const get = (k) => globalThis.__switchyard.params[k];\n' +
    'export const all = () => Object.entries(globalThis.__switchyard.params).map(([key, value]) => ({ key, value }));',
  logging: 'export const log = (level, message, fields) => globalThis.__switchyard.logs.push({ level, message, fields });',
};
const hooks = `
const MOCKS = ${JSON.stringify(MOCKS)};
export async function resolve(specifier, context, next) {
  const m = /^switchyard:policy\\/([a-z-]+)@0\\.1\\.0$/.exec(specifier);
  if (m && MOCKS[m[1]]) {
    return { url: 'data:text/javascript,' + encodeURIComponent(MOCKS[m[1]]), shortCircuit: true };
  }
  return next(specifier, context);
}`;
register('data:text/javascript,' + encodeURIComponent(hooks));

const state = { backends: () => [], params: {}, logs: [] };
globalThis.__switchyard = state;
const { router } = await import('../policy.js');

const be = (name, kind, healthy = true) => ({ name, kind, models: ['m'], healthy, contextWindow: 8192, labels: [] });
const req = (content) => ({
  id: 'r1', model: 'auto', messages: [{ role: 'user', content }], streaming: false,
  tenant: 'acme', labels: [], promptTokens: 5,
});

test('info comes from the policy', () => {
  assert.deepEqual(Object.keys(router.info()).sort(), ['description', 'name', 'version']);
  assert.equal(router.info().name, 'keyword');
});

test('route reads backends and params through the imports', () => {
  state.backends = () => [be('sky', 'cloud'), be('box', 'local')];
  state.params = { cloud_keywords: 'galaxy', local_keywords: '' };
  const d = router.route(req('a galaxy far away'));
  assert.deepEqual(d.targets.map((t) => t.backend), ['sky', 'box']);
  assert.equal(d.reason, 'keyword:cloud:galaxy');
});

test('rejection is thrown as a plain value (the err case), not an Error', () => {
  state.backends = () => [];
  state.params = {};
  let thrown;
  try {
    router.route(req('hi'));
  } catch (e) {
    thrown = e;
  }
  assert.ok(!(thrown instanceof Error));
  assert.deepEqual(thrown, { status: 503, message: 'keyword: no backend available for route local' });
});

test('bad pattern warning goes to the logging import', () => {
  state.backends = () => [be('box', 'local')];
  state.params = { local_patterns: '(' };
  state.logs = [];
  router.route(req('hi'));
  assert.equal(state.logs.length, 1);
  assert.equal(state.logs[0].level, 'warn');
});
