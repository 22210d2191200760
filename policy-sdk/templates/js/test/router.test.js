// router.js, the component entry, in node: its WIT imports answered by a MockHost.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MockHost, registerMockImports, useMockHost, userRequest } from '../sdk/testing.js';

registerMockImports();
const { router } = await import('../router.js');

test('the router export returns the contract records and throws rejections', () => {
  useMockHost(new MockHost());
  assert.equal(router.info().name, '__NAME__');
  const d = router.route(userRequest('hello'));
  assert.equal(d.targets[0].backend, 'local');
  assert.deepEqual(d.labels, [{ key: 'route', value: 'local' }, { key: 'rule', value: 'general' }]);
  useMockHost(new MockHost().withoutBackend('local'));
  assert.throws(() => router.route(userRequest('hi', { tenant: 'legal' })), (e) => e.status === 503 && !(e instanceof Error));
});
