// Native case runner (node only): runs a policy case file (the format of the host's
// host/gateway/src/policy/cases.rs) against MockHost, with the host's request building,
// decision checks and caps, and the same expectations as its `check`. `testCaseFile`
// registers one node:test test per case, named after it.
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { callRoute } from './router.js';
import { MockHost, backendStatus, defaultNeeds, spendStatus } from './testing.js';
import { utf8Length } from './types.js';

/** The fallback decision `switchyard policy test` uses when the guest fails. */
export const FALLBACK = Object.freeze({ targets: [{ backend: 'local' }], reason: 'fallback' });

/** The host's caps on one decision (host/gateway/src/policy/limits.rs). */
export const LIMITS = Object.freeze({
  maxTargets: 16, maxNameBytes: 256, maxMessageBytes: 1 << 20, maxMessages: 1024, maxReasonBytes: 256,
  maxLabels: 32, maxLabelKeyBytes: 64, maxLabelValueBytes: 256, maxRejectionBytes: 1024,
});

// ---- reading a case file (serde's rules: unknown keys refused where cases.rs does) ----

class CaseFileError extends Error {}

const bad = (at, what) => {
  throw new CaseFileError(`case file is not valid: ${at}: ${what}`);
};
const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const absent = (v) => v === undefined || v === null;

function keys(obj, at, allowed, required = []) {
  if (!isObj(obj)) bad(at, 'expected an object');
  for (const k of Object.keys(obj)) if (!allowed.includes(k)) bad(at, `unknown field ${JSON.stringify(k)}, expected one of ${allowed.join(', ')}`);
  for (const k of required) if (!(k in obj)) bad(at, `missing field ${JSON.stringify(k)}`);
}
function str(v, at) {
  if (typeof v !== 'string') bad(at, 'expected a string');
  return v;
}
function int(v, at, max) {
  if (!Number.isInteger(v) || v < 0 || v > max) bad(at, `expected an integer in 0..=${max}`);
  return v;
}
function num(v, at) {
  if (typeof v !== 'number') bad(at, 'expected a number');
  return v;
}
function bool(v, at) {
  if (typeof v !== 'boolean') bad(at, 'expected true or false');
  return v;
}
function list(v, at, item) {
  if (!Array.isArray(v)) bad(at, 'expected an array');
  return v.map((x, i) => item(x, `${at}[${i}]`));
}
function strMap(v, at) {
  if (absent(v)) return {};
  if (!isObj(v)) bad(at, 'expected an object of strings');
  for (const [k, x] of Object.entries(v)) str(x, `${at}.${k}`);
  return v;
}
const opt = (v, f) => (absent(v) ? undefined : f(v));
const oneOf = (v, at, allowed) => (allowed.includes(v) ? v : bad(at, `expected one of ${allowed.join(', ')}`));

/** A label list sorted by key, as the host builds it from its maps. */
const sortedLabels = (map) => Object.keys(map).sort().map((key) => ({ key, value: map[key] }));

function readBackend(b, at) {
  if (!isObj(b)) bad(at, 'expected an object');
  for (const k of ['name', 'kind', 'models', 'healthy', 'context_window']) if (!(k in b)) bad(at, `missing field ${JSON.stringify(k)}`);
  const n = (k) => (absent(b[k]) ? 0 : num(b[k], `${at}.${k}`));
  const u = (k) => (absent(b[k]) ? 0 : int(b[k], `${at}.${k}`, 4294967295));
  return backendStatus(str(b.name, `${at}.name`), oneOf(b.kind, `${at}.kind`, ['local', 'cloud']), undefined, {
    models: list(b.models, `${at}.models`, str),
    healthy: bool(b.healthy, `${at}.healthy`),
    latencyP50Ms: n('latency_p50_ms'), latencyP95Ms: n('latency_p95_ms'), errorRate: n('error_rate'),
    inFlight: u('in_flight'), queueDepth: u('queue_depth'),
    usdPerMtokIn: n('usd_per_mtok_in'), usdPerMtokOut: n('usd_per_mtok_out'),
    contextWindow: int(b.context_window, `${at}.context_window`, 4294967295),
    labels: sortedLabels(strMap(b.labels, `${at}.labels`)),
    capabilities: absent(b.capabilities) ? [] : list(b.capabilities, `${at}.capabilities`, (c, cat) => {
      if (!isObj(c)) bad(cat, 'expected an object');
      const flag = (k) => (absent(c[k]) ? false : bool(c[k], `${cat}.${k}`));
      return {
        model: str(c.model, `${cat}.model`), tools: flag('tools'), jsonObject: flag('json_object'),
        jsonSchema: flag('json_schema'), vision: flag('vision'), logprobs: flag('logprobs'),
        multipleChoices: flag('multiple_choices'), contextWindow: int(c.context_window, `${cat}.context_window`, 4294967295),
        usdPerMtokIn: absent(c.usd_per_mtok_in) ? 0 : num(c.usd_per_mtok_in, `${cat}.usd_per_mtok_in`),
        usdPerMtokOut: absent(c.usd_per_mtok_out) ? 0 : num(c.usd_per_mtok_out, `${cat}.usd_per_mtok_out`),
      };
    }),
  });
}

function readSpend(map, at) {
  if (absent(map)) return {};
  if (!isObj(map)) bad(at, 'expected an object of spend records');
  const out = {};
  for (const [scope, s] of Object.entries(map)) {
    const sat = `${at}.${scope}`;
    if (!isObj(s)) bad(sat, 'expected an object');
    const o = (k) => opt(s[k], (v) => num(v, `${sat}.${k}`));
    out[scope] = spendStatus(str(s.scope, `${sat}.scope`), {
      todayUsd: o('today_usd') ?? 0, monthUsd: o('month_usd') ?? 0, dailyBudgetUsd: o('daily_budget_usd'),
      monthlyBudgetUsd: o('monthly_budget_usd'), hardCapUsd: o('hard_cap_usd'),
    });
  }
  return out;
}

function readNeeds(v, at) {
  if (absent(v)) return { ...defaultNeeds(), explicitModel: false };
  if (!isObj(v)) bad(at, 'expected an object');
  return {
    tools: absent(v.tools) ? [] : list(v.tools, `${at}.tools`, str),
    responseFormat: absent(v.response_format) ? 'text'
      : oneOf(v.response_format, `${at}.response_format`, ['text', 'json_object', 'json_schema']).replace('_', '-'),
    logprobs: absent(v.logprobs) ? false : bool(v.logprobs, `${at}.logprobs`),
    images: absent(v.images) ? 0 : int(v.images, `${at}.images`, 4294967295),
    n: absent(v.n) ? 1 : int(v.n, `${at}.n`, 4294967295),
    explicitModel: absent(v.explicit_model) ? false : bool(v.explicit_model, `${at}.explicit_model`),
  };
}

const REQUEST_KEYS = ['messages', 'id', 'model', 'tenant', 'labels', 'max_tokens', 'temperature', 'streaming', 'prompt_tokens', 'needs'];
const EXPECT_KEYS = ['targets', 'first', 'excludes', 'kinds', 'reject', 'reason_contains', 'labels', 'max_tokens', 'rewritten', 'text_excludes', 'fallback'];

function readRequest(r, at) {
  keys(r, at, REQUEST_KEYS, ['messages']);
  return {
    messages: list(r.messages, `${at}.messages`, (m, mat) => {
      if (!isObj(m)) bad(mat, 'expected an object');
      return { role: oneOf(m.role, `${mat}.role`, ['system', 'user', 'assistant', 'tool']), content: str(m.content, `${mat}.content`) };
    }),
    id: opt(r.id, (v) => str(v, `${at}.id`)),
    model: opt(r.model, (v) => str(v, `${at}.model`)),
    tenant: opt(r.tenant, (v) => str(v, `${at}.tenant`)),
    labels: strMap(r.labels, `${at}.labels`),
    maxTokens: opt(r.max_tokens, (v) => int(v, `${at}.max_tokens`, 4294967295)),
    temperature: opt(r.temperature, (v) => num(v, `${at}.temperature`)),
    streaming: absent(r.streaming) ? false : bool(r.streaming, `${at}.streaming`),
    promptTokens: opt(r.prompt_tokens, (v) => int(v, `${at}.prompt_tokens`, 4294967295)),
    needs: readNeeds(r.needs, `${at}.needs`),
  };
}

function readExpect(e, at) {
  if (absent(e)) return {};
  keys(e, at, EXPECT_KEYS);
  const strs = (k) => opt(e[k], (v) => list(v, `${at}.${k}`, str));
  return {
    targets: strs('targets'), first: opt(e.first, (v) => str(v, `${at}.first`)), excludes: strs('excludes'),
    kinds: opt(e.kinds, (v) => list(v, `${at}.kinds`, (k, kat) => oneOf(k, kat, ['local', 'cloud']))),
    reject: opt(e.reject, (v) => int(v, `${at}.reject`, 65535)),
    reasonContains: opt(e.reason_contains, (v) => str(v, `${at}.reason_contains`)),
    labels: opt(e.labels, (v) => strMap(v, `${at}.labels`)),
    maxTokens: opt(e.max_tokens, (v) => int(v, `${at}.max_tokens`, 4294967295)),
    rewritten: opt(e.rewritten, (v) => bool(v, `${at}.rewritten`)),
    textExcludes: strs('text_excludes'),
    fallback: opt(e.fallback, (v) => bool(v, `${at}.fallback`)),
  };
}

/** Parses and checks a case file's JSON text; throws a clear error naming the bad field. */
export function parseCaseFile(text) {
  let raw;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new CaseFileError(`case file is not valid: ${e.message}`);
  }
  keys(raw, '(file)', ['backends', 'params', 'spend', 'cases'], ['cases']);
  return {
    backends: opt(raw.backends, (v) => list(v, 'backends', readBackend)),
    params: strMap(raw.params, 'params'),
    spend: readSpend(raw.spend, 'spend'),
    cases: list(raw.cases, 'cases', (c, at) => {
      keys(c, at, ['name', 'request', 'backends', 'params', 'spend', 'expect'], ['name', 'request']);
      return {
        name: str(c.name, `${at}.name`),
        request: readRequest(c.request, `${at}.request`),
        backends: opt(c.backends, (v) => list(v, `${at}.backends`, readBackend)),
        params: strMap(c.params, `${at}.params`),
        spend: readSpend(c.spend, `${at}.spend`),
        expect: readExpect(c.expect, `${at}.expect`),
      };
    }),
  };
}

/** Reads and parses a case file from a path or file URL. */
export function loadCaseFile(path) {
  return parseCaseFile(readFileSync(path, 'utf8'));
}

// ---- running -------------------------------------------------------------

/** The MockHost and request the sandbox would give `testCase` of `file` (clock: now). */
export function caseSetup(file, testCase) {
  const host = new MockHost()
    .withBackends(testCase.backends ?? file.backends ?? new MockHost().backends())
    .withParams({ ...file.params, ...testCase.params })
    .at(Date.now());
  for (const s of Object.values({ ...file.spend, ...testCase.spend })) host.withSpend(s);
  const r = testCase.request;
  const model = r.model ?? 'auto';
  const { explicitModel, ...needs } = r.needs;
  const request = {
    id: r.id ?? testCase.name,
    model,
    messages: r.messages,
    maxTokens: r.maxTokens,
    temperature: r.temperature === undefined ? undefined : Math.fround(r.temperature),
    streaming: r.streaming,
    tenant: r.tenant ?? 'default',
    labels: sortedLabels(r.labels),
    promptTokens: r.promptTokens ?? r.messages.reduce((n, m) => Math.min(n + host.countTokens(m.content), 4294967295), 0),
    needs,
    explicitModel: explicitModel || host.backends().some((b) => b.models.includes(model)),
  };
  return { host, request };
}

function overLimit(d) {
  const over = (what, n, cap) => `${what} ${n} over the cap of ${cap}`;
  if (d.targets.length > LIMITS.maxTargets) return over('targets', d.targets.length, LIMITS.maxTargets);
  const name = Math.max(0, ...d.targets.map((t) => Math.max(utf8Length(t.backend), utf8Length(t.model ?? ''))));
  if (name > LIMITS.maxNameBytes) return over('target name bytes', name, LIMITS.maxNameBytes);
  if (d.messages) {
    if (d.messages.length > LIMITS.maxMessages) return over('replacement messages', d.messages.length, LIMITS.maxMessages);
    const bytes = d.messages.reduce((n, m) => n + utf8Length(m.content), 0);
    if (bytes > LIMITS.maxMessageBytes) return over('replacement message bytes', bytes, LIMITS.maxMessageBytes);
  }
  if (utf8Length(d.reason) > LIMITS.maxReasonBytes) return over('reason bytes', utf8Length(d.reason), LIMITS.maxReasonBytes);
  const labels = Object.entries(d.labels);
  if (labels.length > LIMITS.maxLabels) return over('labels', labels.length, LIMITS.maxLabels);
  for (const [k, v] of labels) {
    if (utf8Length(k) > LIMITS.maxLabelKeyBytes) return over('label key bytes', utf8Length(k), LIMITS.maxLabelKeyBytes);
    if (utf8Length(v) > LIMITS.maxLabelValueBytes) return over('label value bytes', utf8Length(v), LIMITS.maxLabelValueBytes);
  }
  return undefined;
}

/**
 * Decides `request` with `policy` on `host` as the sandbox would: `{verdict, failure}`,
 * where a failure (thrown Error, invalid or over-cap decision, unknown backend, bad
 * status) yields the fallback decision. `verdict` is `{route: decision}` or `{reject}`,
 * with decision labels as an object (the host's map).
 */
export function evaluate(policy, request, host) {
  const failed = (kind, message) => ({ verdict: { route: structuredClone(FALLBACK) }, failure: `${kind}: ${message}` });
  let out;
  try {
    out = callRoute(policy, request, host);
  } catch (e) {
    return failed('trap', e instanceof Error ? `${e.name}: ${e.message}` : String(e));
  }
  if (out.err) {
    const r = out.err;
    if (utf8Length(r.message) > LIMITS.maxRejectionBytes) return failed('over_limit', `rejection is over a limit: rejection message bytes ${utf8Length(r.message)} over the cap of ${LIMITS.maxRejectionBytes}`);
    if (r.status < 400 || r.status > 599) return failed('bad_status', `rejection status ${r.status} is outside 400..=599`);
    return { verdict: { reject: r }, failure: undefined };
  }
  const labels = {};
  for (const l of out.ok.labels) labels[l.key] = l.value;
  const decision = { ...out.ok, labels };
  const over = overLimit(decision);
  if (over) return failed('over_limit', `decision is over a limit: ${over}`);
  if (decision.targets.length === 0) return failed('empty_targets', 'decision has no targets');
  const names = new Set(host.backends().map((b) => b.name));
  const unknown = decision.targets.find((t) => !names.has(t.backend));
  if (unknown) return failed('unknown_backend', `decision names unknown backend ${JSON.stringify(unknown.backend)}`);
  return { verdict: { route: decision }, failure: undefined };
}

const q = (s) => JSON.stringify(s);
const debugList = (xs) => `[${xs.map(q).join(', ')}]`;
const debugOpt = (v) => (v === undefined ? 'None' : `Some(${typeof v === 'string' ? q(v) : v})`);
const kindName = (k) => (k === undefined ? 'None' : `Some(${k[0].toUpperCase()}${k.slice(1)})`);

/** The problems with `verdict` against `expect` (the host's `check`, same wording). */
export function check(expect, verdict, backends) {
  const problems = [];
  if (verdict.reject) {
    const r = verdict.reject;
    if (expect.reject === undefined) problems.push(`unexpected rejection ${r.status}: ${r.message}`);
    else if (expect.reject !== r.status) problems.push(`rejected with ${r.status}, expected ${expect.reject}`);
    if (expect.reasonContains !== undefined && !r.message.includes(expect.reasonContains)) {
      problems.push(`rejection message ${q(r.message)} lacks ${q(expect.reasonContains)}`);
    }
    return problems;
  }
  const d = verdict.route;
  if (expect.reject !== undefined) problems.push(`expected rejection ${expect.reject}, got a route`);
  const names = d.targets.map((t) => t.backend);
  if (expect.targets && (names.length !== expect.targets.length || names.some((n, i) => n !== expect.targets[i]))) {
    problems.push(`targets ${debugList(names)}, expected ${debugList(expect.targets)}`);
  }
  if (expect.first !== undefined && names[0] !== expect.first) problems.push(`first target ${debugOpt(names[0])}, expected ${q(expect.first)}`);
  for (const e of expect.excludes ?? []) if (names.includes(e)) problems.push(`targets ${debugList(names)} include excluded ${q(e)}`);
  if (expect.kinds) {
    for (const name of names) {
      const kind = backends.find((b) => b.name === name)?.kind;
      if (!expect.kinds.includes(kind)) problems.push(`target ${q(name)} has kind ${kindName(kind)}, expected one of [${expect.kinds.map((k) => kindName(k).slice(5, -1)).join(', ')}]`);
    }
  }
  if (expect.reasonContains !== undefined && !d.reason.includes(expect.reasonContains)) problems.push(`reason ${q(d.reason)} lacks ${q(expect.reasonContains)}`);
  for (const [k, v] of Object.entries(expect.labels ?? {})) {
    if (d.labels[k] !== v) problems.push(`label ${k}=${debugOpt(d.labels[k])}, expected ${q(v)}`);
  }
  if (expect.maxTokens !== undefined && d.maxTokens !== expect.maxTokens) problems.push(`max_tokens ${debugOpt(d.maxTokens)}, expected ${expect.maxTokens}`);
  if (expect.rewritten !== undefined && (d.messages !== undefined) !== expect.rewritten) {
    problems.push(`rewritten is ${d.messages !== undefined}, expected ${expect.rewritten}`);
  }
  for (const m of d.messages ?? []) {
    for (const e of expect.textExcludes ?? []) if (m.content.includes(e)) problems.push(`rewritten messages still contain ${q(e)}`);
  }
  return problems;
}

/** Runs every case of `file` (parsed) against `policy`: [{name, problems, verdict, failure, host}]. */
export function runCases(policy, file) {
  return file.cases.map((c) => {
    const { host, request } = caseSetup(file, c);
    const { verdict, failure } = evaluate(policy, request, host);
    const problems = check(c.expect, verdict, host.backends());
    if (c.expect.fallback === true && failure === undefined) problems.push('expected the guest to fail (fallback)');
    if (c.expect.fallback !== true && failure !== undefined) problems.push(`guest failed: ${failure}`);
    return { name: c.name, problems, verdict, failure, host };
  });
}

/** Registers one node:test test per case of the case file at `path`, named `case: NAME`. */
export function testCaseFile(policy, path) {
  const file = loadCaseFile(path);
  const results = runCases(policy, file);
  for (const r of results) {
    test(`case: ${r.name}`, () => {
      if (r.problems.length > 0) throw new Error(`case ${q(r.name)} failed: ${r.problems.join('; ')}`);
    });
  }
  return results;
}
