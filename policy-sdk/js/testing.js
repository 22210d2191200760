// MockHost (node only): an in-memory host at parity with the Rust SDK's testing.rs (the
// demo backends, per-scope spend, params, the shared PII patterns, bytes/4 tokens, a fixed
// clock, recorded logs), builders for test shapes, and mockImports: the raw WIT import
// functions over a MockHost, in the representations componentize-js's bindings use, and
// a module hook that lets node load a component entry (component.js) over them.
import { register } from 'node:module';
import { HostBase, LOG_LEVELS, NO_EMBEDDING_MODEL, estimateTokens } from './host.js';
import { detect } from './pii.js';
import { fullModel, textOnlyModel, toLabels } from './types.js';

/** 2026-01-01T00:00:00Z, the mock clock's default. */
export const MOCK_NOW_MS = 1_767_225_600_000;

/**
 * A healthy backend serving `model`, zero latency, price and load, an 8192-token window,
 * no labels or capabilities; `fields` (WIT shape, camelCase) override any of that.
 */
export function backendStatus(name, kind, model, fields = {}) {
  return {
    name, kind, models: [model], healthy: true, latencyP50Ms: 0, latencyP95Ms: 0, errorRate: 0,
    inFlight: 0, queueDepth: 0, usdPerMtokIn: 0, usdPerMtokOut: 0, contextWindow: 8192,
    labels: [], capabilities: [], ...fields,
  };
}

/**
 * The demo backends, the same set as the host's `StaticHost::default()`: local
 * (smollm2-135m-instruct, free, 8192 ctx), openai (gpt-4o, gpt-4o-mini; $2.50/$10, 128k,
 * every capability), anthropic (claude-sonnet-4-5; $3/$15, 200k), gemini
 * (gemini-2.0-flash; $0.10/$0.40, 1M); local text and JSON output (constrained decoding),
 * anthropic and gemini text only.
 */
export function demoBackends() {
  const text = (name, kind, model, price, ctx, p50, p95) => backendStatus(name, kind, model, {
    latencyP50Ms: p50, latencyP95Ms: p95, usdPerMtokIn: price[0], usdPerMtokOut: price[1], contextWindow: ctx,
    capabilities: [textOnlyModel(model, ctx, price[0], price[1])],
  });
  return [
    backendStatus('local', 'local', 'smollm2-135m-instruct', {
      latencyP50Ms: 400, latencyP95Ms: 1200, usdPerMtokIn: 0, usdPerMtokOut: 0, contextWindow: 8192,
      capabilities: [{ ...textOnlyModel('smollm2-135m-instruct', 8192, 0, 0), jsonObject: true, jsonSchema: true }],
    }),
    backendStatus('openai', 'cloud', 'gpt-4o', {
      models: ['gpt-4o', 'gpt-4o-mini'], latencyP50Ms: 700, latencyP95Ms: 1500, usdPerMtokIn: 2.5,
      usdPerMtokOut: 10, contextWindow: 128_000,
      capabilities: [fullModel('gpt-4o', 128_000, 2.5, 10), fullModel('gpt-4o-mini', 128_000, 0.15, 0.6)],
    }),
    text('anthropic', 'cloud', 'claude-sonnet-4-5', [3, 15], 200_000, 900, 1800),
    text('gemini', 'cloud', 'gemini-2.0-flash', [0.1, 0.4], 1_000_000, 500, 900),
  ];
}

/** No spend and no budgets for `scope`; `fields` (camelCase) set any of them. */
export function spendStatus(scope, fields = {}) {
  return {
    scope, todayUsd: 0, monthUsd: 0, dailyBudgetUsd: undefined, monthlyBudgetUsd: undefined,
    hardCapUsd: undefined, ...fields,
  };
}

/** The request's default needs: text, no tools, logprobs or images, one choice. */
export const defaultNeeds = () => ({ tools: [], responseFormat: 'text', logprobs: false, images: 0, n: 1 });

/**
 * A request as the bindings hand it over: `messages` ({role, content}), model `auto`,
 * tenant `default`, no labels, prompt tokens estimated as bytes/4; `fields` override.
 */
export function request(messages, fields = {}) {
  return {
    id: 'req-1', model: 'auto', messages, maxTokens: undefined, temperature: undefined,
    streaming: false, tenant: 'default', labels: [],
    promptTokens: messages.reduce((n, m) => Math.min(n + estimateTokens(m.content), 4294967295), 0),
    needs: defaultNeeds(), explicitModel: false, ...fields,
  };
}

/** A request holding one user message (see `request`). */
export const userRequest = (content, fields = {}) => request([{ role: 'user', content }], fields);

const clone = (v) => structuredClone(v);

/** An in-memory host for tests; builder methods change it and return it. */
export class MockHost extends HostBase {
  #backends = demoBackends();
  #spend = new Map();
  #params = new Map();
  #pii = detect;
  #tokens = estimateTokens;
  #embed;
  #score;
  #now = MOCK_NOW_MS;
  #logs = [];

  /** Replaces the backend list. */
  withBackends(backends) { this.#backends = clone(backends); return this; }
  /** Appends a backend. */
  withBackend(backend) { this.#backends.push(clone(backend)); return this; }
  /** Changes the backend named `name` in place with `change(backend)` (no-op when absent). */
  updateBackend(name, change) {
    const b = this.#backends.find((x) => x.name === name);
    if (b) change(b);
    return this;
  }
  /** Marks the backend named `name` unhealthy. */
  unhealthy(name) { return this.updateBackend(name, (b) => { b.healthy = false; }); }
  /** Removes the backend named `name`. */
  withoutBackend(name) { this.#backends = this.#backends.filter((b) => b.name !== name); return this; }
  /** Sets a policy parameter (a string, as the host config gives it). */
  withParam(key, value) { this.#params.set(String(key), String(value)); return this; }
  /** Sets every parameter of a plain object. */
  withParams(params) { for (const [k, v] of Object.entries(params)) this.withParam(k, v); return this; }
  /** Sets the spend for `status.scope` (missing fields as in `spendStatus`). */
  withSpend(status) { this.#spend.set(status.scope, spendStatus(status.scope, status)); return this; }
  /** Replaces the PII detector (`text => [{kind, start, end}]`). */
  withPii(detectFn) { this.#pii = detectFn; return this; }
  /** Replaces the token counter. */
  withTokens(countFn) { this.#tokens = countFn; return this; }
  /** Answers `embed` with `embedFn(text) -> {ok: number[]} | {err: string}`. */
  withEmbed(embedFn) { this.#embed = embedFn; return this; }
  /** Answers `score` with `scoreFn(classifier, text) -> {ok: number} | {err: string}`. */
  withScore(scoreFn) { this.#score = scoreFn; return this; }
  /** Fixes the clock at `nowMs` (milliseconds since the Unix epoch). */
  at(nowMs) { this.#now = nowMs; return this; }

  /** Every log line so far: {level, message, fields: {key: value}}. */
  logs() { return clone(this.#logs); }
  /** True when some log line's message contains `text`. */
  logged(text) { return this.#logs.some((l) => l.message.includes(text)); }

  backends() { return clone(this.#backends); }
  detectPii(text) { return clone(this.#pii(text)); }
  countTokens(text) { return this.#tokens(text); }
  spend(scope) { return { ...(this.#spend.get(scope) ?? spendStatus(scope)), scope }; }
  param(key) { return this.#params.get(key); }
  /** Every parameter as a label list sorted by key (the host's order). */
  params() { return toLabels([...this.#params.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))); }
  nowMs() { return this.#now; }

  log(level, message, fields) {
    if (!LOG_LEVELS.includes(level)) throw new TypeError(`log level must be one of ${LOG_LEVELS.join(', ')}, got ${level}`);
    const map = {};
    for (const l of toLabels(fields)) map[l.key] = l.value;
    this.#logs.push({ level, message: String(message), fields: map });
  }

  embed(text) {
    if (!this.#embed) return { err: NO_EMBEDDING_MODEL };
    const out = this.#embed(text);
    // The import hands over list<f32>: values rounded to single precision.
    return 'ok' in out ? { ok: Array.from(Float32Array.from(out.ok)) } : { err: String(out.err) };
  }

  score(classifier, text) {
    if (!this.#score) return { err: NO_EMBEDDING_MODEL };
    const out = this.#score(classifier, text);
    return 'ok' in out ? { ok: out.ok } : { err: String(out.err) };
  }
}

/** What componentize-js throws for an imported function's `result` err case. */
export class ComponentError {
  constructor(payload) {
    this.payload = payload;
    this.message = String(payload);
  }
}

const orThrow = (out) => {
  if ('err' in out) throw new ComponentError(out.err);
  return out.ok;
};

/**
 * The raw `switchyard:policy/*@0.2.0` import functions answered by `host`, as the
 * component sees them: `clock.nowMs()` a BigInt, an embeddings error thrown as a
 * ComponentError, a log level checked like an enum. `new WitHost(mockImports(host))`
 * runs the real-host code in node.
 */
export function mockImports(host) {
  return {
    backends: { list: () => host.backends() },
    pii: { detect: (text) => host.detectPii(text) },
    tokens: { count: (text) => host.countTokens(text) },
    spend: { get: (scope) => host.spend(scope) },
    params: { get: (key) => host.param(key), all: () => host.params() },
    clock: { nowMs: () => BigInt(host.nowMs()) },
    logging: { log: (level, message, fields) => host.log(level, message, fields) },
    embeddings: {
      embed: (text) => Float32Array.from(orThrow(host.embed(text))),
      score: (classifier, text) => orThrow(host.score(classifier, text)),
    },
  };
}

/** Each interface's import functions, as the component world names them. */
const IMPORT_NAMES = {
  backends: ['list'], pii: ['detect'], tokens: ['count'], spend: ['get'], params: ['get', 'all'],
  clock: ['nowMs'], logging: ['log'], embeddings: ['embed', 'score'],
};
const GLOBAL = '__switchyardMockImports';

/**
 * Lets node import `switchyard:policy/<interface>@0.2.0` (so a component entry such as
 * `policy.js` with `defineRouter` loads under `node --test`): each import calls the host
 * last given to `useMockHost`. Call once, before importing the entry dynamically.
 */
export function registerMockImports() {
  const sources = {};
  for (const [iface, fns] of Object.entries(IMPORT_NAMES)) {
    sources[iface] = fns.map((f) => `export const ${f} = (...a) => globalThis.${GLOBAL}.${iface}.${f}(...a);`).join('\n');
  }
  const hooks = `const SOURCES = ${JSON.stringify(sources)};
export async function resolve(specifier, context, next) {
  const m = /^switchyard:policy\\/([a-z]+)@0\\.2\\.0$/.exec(specifier);
  if (m && SOURCES[m[1]]) return { url: 'data:text/javascript,' + encodeURIComponent(SOURCES[m[1]]), shortCircuit: true };
  return next(specifier, context);
}`;
  register(`data:text/javascript,${encodeURIComponent(hooks)}`);
}

/** Answers the imports `registerMockImports` installed with `host` (a MockHost). */
export function useMockHost(host) {
  globalThis[GLOBAL] = mockImports(host);
  return host;
}
