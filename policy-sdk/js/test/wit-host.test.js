// WitHost (the real host) over mocked imports in the bindings' representations: the
// conversions (u64 clock, result errors, list<f32>, labels) and parity with MockHost.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WitHost } from '../wit-host.js';
import { ComponentError, MockHost, mockImports, spendStatus } from '../testing.js';

const mock = () => new MockHost()
  .withParams({ b: '2', a: ' yes ' })
  .withSpend(spendStatus('acme', { todayUsd: 3, dailyBudgetUsd: 10 }))
  .withEmbed((t) => ({ ok: [t.length, 0.1] }))
  .withScore((c) => (c === 'router' ? { ok: 0.25 } : { err: `no classifier ${c}` }));

test('every host call answers as MockHost does', () => {
  const host = mock();
  const wit = new WitHost(mockImports(host));
  const text = 'mail a@b.io or call 555-123-4567 — 🙂';
  assert.deepEqual(wit.backends(), host.backends());
  assert.deepEqual(wit.detectPii(text), host.detectPii(text));
  assert.equal(wit.countTokens(text), host.countTokens(text));
  assert.deepEqual(wit.spend('acme'), host.spend('acme'));
  assert.deepEqual(wit.spend('other'), host.spend('other'));
  assert.deepEqual(wit.params(), host.params());
  assert.equal(wit.param('b'), host.param('b'));
  assert.equal(wit.param('missing'), undefined);
  assert.equal(wit.paramBool('a', false), true);
  assert.equal(wit.nowMs(), host.nowMs());
  assert.deepEqual(wit.embed('abc'), host.embed('abc'));
  assert.deepEqual(wit.score('router', 'x'), host.score('router', 'x'));
  assert.deepEqual(wit.score('other', 'x'), host.score('other', 'x'));
  assert.deepEqual(wit.backend('gemini'), host.backend('gemini'));
});

test('the clock import is a BigInt; the host gives a number', () => {
  const imports = mockImports(new MockHost().at(1_767_225_600_123));
  assert.equal(typeof imports.clock.nowMs(), 'bigint');
  assert.equal(new WitHost(imports).nowMs(), 1_767_225_600_123);
});

test('an imported result error (ComponentError with payload) becomes {err}', () => {
  const imports = mockImports(new MockHost());
  assert.throws(() => imports.embeddings.embed('x'), (e) => e instanceof ComponentError && e.payload === 'no embedding model loaded');
  assert.deepEqual(new WitHost(imports).embed('x'), { err: 'no embedding model loaded' });
});

test('list<f32> arrives as a Float32Array; the host gives a plain array', () => {
  const imports = mockImports(mock());
  assert.ok(imports.embeddings.embed('ab') instanceof Float32Array);
  const out = new WitHost(imports).embed('ab');
  assert.ok(Array.isArray(out.ok));
  assert.deepEqual(out.ok, [2, Math.fround(0.1)]);
});

test('a non-result exception from an import is not swallowed', () => {
  const imports = mockImports(new MockHost());
  imports.embeddings.embed = () => {
    throw new RangeError('boom');
  };
  assert.throws(() => new WitHost(imports).embed('x'), RangeError);
});

test('log fields become a label list; levels are checked', () => {
  const host = new MockHost();
  const calls = [];
  const imports = { ...mockImports(host), logging: { log: (...args) => calls.push(args) } };
  const wit = new WitHost(imports);
  wit.log('warn', 'hello', { a: '1', b: 2 });
  wit.log('info', 'bare');
  assert.deepEqual(calls, [['warn', 'hello', [{ key: 'a', value: '1' }, { key: 'b', value: '2' }]], ['info', 'bare', []]]);
  assert.throws(() => wit.log('fatal', 'x'), /log level must be one of trace, debug, info, warn, error/);
});

test('backends and params are read once per decision', () => {
  let lists = 0;
  let alls = 0;
  const base = mockImports(mock());
  const imports = {
    ...base,
    backends: { list: () => { lists += 1; return base.backends.list(); } },
    params: { ...base.params, all: () => { alls += 1; return base.params.all(); } },
  };
  const wit = new WitHost(imports);
  wit.backends();
  wit.backend('local');
  wit.param('a');
  wit.paramF64('b', 0);
  assert.deepEqual([lists, alls], [1, 1]);
});
