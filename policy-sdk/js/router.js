// The policy object a JS policy exports (`definePolicy`) and the one call path that both
// the component (`defineRouter` in component.js) and the native case runner use to run
// it: `callRoute` turns what `route` returns or throws into the contract's result.
import { Decision, Rejection, toLabels } from './types.js';

const U32_MAX = 4294967295;

/** Checks and freezes a policy: `{ info: {name, version, description}, route(request, host) }`. */
export function definePolicy(policy) {
  if (policy === null || typeof policy !== 'object') throw new TypeError('definePolicy: expected an object { info, route }');
  if (typeof policy.route !== 'function') throw new TypeError('definePolicy: `route(request, host)` must be a function');
  const info = policyInfo(policy);
  return Object.freeze({ ...policy, info });
}

/** The policy's `policy-info` record (from an object or a function). */
export function policyInfo(policy) {
  const info = typeof policy.info === 'function' ? policy.info() : policy.info;
  for (const key of ['name', 'version', 'description']) {
    if (typeof info?.[key] !== 'string') throw new TypeError(`policy info: \`${key}\` must be a string`);
  }
  return { name: info.name, version: info.version, description: info.description };
}

function fail(what) {
  throw new TypeError(`policy returned an invalid decision: ${what}`);
}

function optionalU32(value, what) {
  if (value === undefined || value === null) return undefined;
  if (!Number.isInteger(value) || value < 0 || value > U32_MAX) fail(`${what} must be an integer in 0..=${U32_MAX}, got ${value}`);
  return value;
}

function message(m, i) {
  if (!['system', 'user', 'assistant', 'tool'].includes(m?.role)) fail(`messages[${i}].role must be system, user, assistant or tool`);
  if (typeof m.content !== 'string') fail(`messages[${i}].content must be a string`);
  return { role: m.role, content: m.content };
}

/** A Decision builder or a plain `decision` record, checked, as the contract's record. */
export function toWitDecision(value) {
  const d = value instanceof Decision ? value.toWit() : value;
  if (d === null || typeof d !== 'object' || !Array.isArray(d.targets)) fail('`targets` must be an array');
  const targets = d.targets.map((t, i) => {
    if (typeof t?.backend !== 'string') fail(`targets[${i}].backend must be a string`);
    if (t.model !== undefined && t.model !== null && typeof t.model !== 'string') fail(`targets[${i}].model must be a string`);
    return { backend: t.backend, model: t.model ?? undefined };
  });
  if (d.reason !== undefined && typeof d.reason !== 'string') fail('`reason` must be a string');
  if (d.messages !== undefined && d.messages !== null && !Array.isArray(d.messages)) fail('`messages` must be an array');
  return {
    targets,
    reason: d.reason ?? '',
    messages: d.messages === undefined || d.messages === null ? undefined : d.messages.map(message),
    maxTokens: optionalU32(d.maxTokens, '`maxTokens`'),
    labels: toLabels(d.labels),
  };
}

/** A Rejection or a plain `{status, message}` as the contract's `rejection` record. */
export function toWitRejection(value) {
  const r = value instanceof Rejection ? value.toWit() : value;
  if (!Number.isInteger(r.status) || r.status < 0 || r.status > 65535) {
    throw new TypeError(`policy returned an invalid rejection: status must be an integer in 0..=65535, got ${r.status}`);
  }
  if (typeof r.message !== 'string') throw new TypeError('policy returned an invalid rejection: `message` must be a string');
  return { status: r.status, message: r.message };
}

function isRejection(value) {
  return value instanceof Rejection || (value !== null && typeof value === 'object' && !(value instanceof Error) && 'status' in value && !('targets' in value));
}

/**
 * Runs `policy.route(request, host)`: `{ ok: decision }` for a returned decision, `{ err:
 * rejection }` for a returned or thrown Rejection (or plain `{status, message}`). A thrown
 * Error, or an invalid decision, propagates: in a component it traps and the host uses its
 * fallback decision.
 */
export function callRoute(policy, request, host) {
  let out;
  try {
    out = policy.route(request, host);
  } catch (e) {
    if (isRejection(e)) return { err: toWitRejection(e) };
    throw e;
  }
  if (isRejection(out)) return { err: toWitRejection(out) };
  return { ok: toWitDecision(out) };
}
