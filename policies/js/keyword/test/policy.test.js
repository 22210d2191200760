// Tests of policy.js, the component entry, in node: the `switchyard:policy/*@0.2.0`
// imports resolve (through the SDK's module hook) to a MockHost in the bindings' shapes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MockHost, backendStatus, registerMockImports, useMockHost, userRequest } from '../../../../policy-sdk/js/testing.js';

registerMockImports();
const { router } = await import('../policy.js');

const req = (content) => userRequest(content, { tenant: 'acme' });

test('info comes from the policy', () => {
  assert.deepEqual(router.info(), {
    name: 'keyword',
    version: '0.2.0',
    description: 'Routes to local or cloud backends by keyword and regex matches in the prompt (JavaScript).',
  });
});

test('route reads backends and params through the imports', () => {
  useMockHost(new MockHost()
    .withBackends([backendStatus('sky', 'cloud', 'm'), backendStatus('box', 'local', 'm')])
    .withParams({ cloud_keywords: 'galaxy', local_keywords: '' }));
  const d = router.route(req('a galaxy far away'));
  assert.deepEqual(d.targets, [{ backend: 'sky', model: undefined }, { backend: 'box', model: undefined }]);
  assert.equal(d.reason, 'keyword:cloud:galaxy');
  assert.deepEqual(d.labels, [
    { key: 'route', value: 'cloud' },
    { key: 'keyword-rule', value: 'match' },
    { key: 'keyword', value: 'galaxy' },
  ]);
});

test('rejection is thrown as a plain value (the err case), not an Error', () => {
  useMockHost(new MockHost().withBackends([]));
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
  const host = useMockHost(new MockHost().withParams({ local_patterns: '(' }));
  router.route(req('hi'));
  assert.equal(host.logs().length, 1);
  assert.equal(host.logs()[0].level, 'warn');
  assert.equal(host.logs()[0].message, 'invalid pattern skipped: (');
});
