// Native case runner (node only): runs a policy case file (the format of the host's
// host/gateway/src/policy/cases.rs) against MockHost, with the host's request building,
// decision checks and caps, and the same expectations as its `check`. `testCaseFile`
// registers one node:test test per case, named after it.
import { test } from 'node:test';
import { loadCaseFile, sortedLabels } from './case-file.js';
import { callRoute } from './router.js';
import { MockHost } from './testing.js';
import { utf8Length } from './types.js';

export { loadCaseFile, parseCaseFile } from './case-file.js';

/** The fallback decision `switchyard policy test` uses when the guest fails. */
export const FALLBACK = Object.freeze({ targets: [{ backend: 'local' }], reason: 'fallback' });

/** The host's caps on one decision (host/gateway/src/policy/limits.rs). */
export const LIMITS = Object.freeze({
  maxTargets: 16, maxNameBytes: 256, maxMessageBytes: 1 << 20, maxMessages: 1024, maxReasonBytes: 256,
  maxLabels: 32, maxLabelKeyBytes: 64, maxLabelValueBytes: 256, maxRejectionBytes: 1024,
});

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
