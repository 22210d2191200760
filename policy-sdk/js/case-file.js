// Reading a policy case file (host/gateway/src/policy/cases.rs) with serde's rules:
// unknown keys refused where cases.rs refuses them, defaults where it has them, each
// error naming the field. Records come out in the bindings' shapes (camelCase, sorted labels).
import { readFileSync } from 'node:fs';
import { backendStatus, defaultNeeds, spendStatus } from './testing.js';

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
export const sortedLabels = (map) => Object.keys(map).sort().map((key) => ({ key, value: map[key] }));

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
