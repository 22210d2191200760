// Backend selection helpers (the Rust SDK's select.rs): resolve names from params, filter
// by kind, order by price or latency, keep healthy backends that fit ahead of the rest,
// and honour an explicit model and the request's needs.
import { Decision, Rejection, blendedPrice, fits, loadDepth, modelCapabilities, unmetNeed, serves } from './types.js';

/** Rust's `f64::total_cmp` for the values a host reports (NaN sorts last). */
function totalCmp(a, b) {
  if (Number.isNaN(a) || Number.isNaN(b)) return Number(Number.isNaN(a)) - Number(Number.isNaN(b));
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The backends named in `names`, in that order; unknown names and repeats skipped. */
export function named(backends, names) {
  const out = [];
  for (const name of names) {
    const b = backends.find((x) => x.name === name);
    if (b && !out.some((o) => o.name === b.name)) out.push(b);
  }
  return out;
}

/** The backends of `kind` (`'local'` or `'cloud'`), in config order. */
export function ofKind(backends, kind) {
  return backends.filter((b) => b.kind === kind);
}

/** Drops backends whose window cannot hold `tokens`; unhealthy ones go behind healthy ones. */
export function usable(list, tokens) {
  const fitting = list.filter((b) => fits(b, tokens));
  return [...fitting.filter((b) => b.healthy), ...fitting.filter((b) => !b.healthy)];
}

/** Sorts by blended price, cheapest first (stable, in place); returns `list`. */
export function sortByPrice(list) {
  return list.sort((a, b) => totalCmp(blendedPrice(a), blendedPrice(b)));
}

/** Orders by p95 latency, then error rate, then in-flight plus queue depth. */
export function compareLatency(a, b) {
  return totalCmp(a.latencyP95Ms, b.latencyP95Ms) || totalCmp(a.errorRate, b.errorRate) || loadDepth(a) - loadDepth(b);
}

/** The names of `list`, in order. */
export function names(list) {
  return list.map((b) => b.name);
}

/** A Decision over `order` with `reason`, or a 503 Rejection when `order` is empty. */
export function decide(order, reason) {
  if (order.length === 0) return Rejection.unavailable(`no backend can take the request (${reason})`);
  return Decision.toAll(names(order)).reason(reason);
}

/**
 * Honours an explicit model: when the client asked for a model some backend serves (not
 * an alias such as `auto`), keeps only the targets whose backend serves it, each asked for
 * that model; none left: a 403 naming the model and the reason. A Rejection passes unchanged.
 */
export function explicitModel(host, request, decided) {
  if (decided instanceof Rejection || request.model === 'auto') return decided;
  const backends = host.backends();
  if (!backends.some((b) => serves(b, request.model))) return decided;
  const targets = decided.targets
    .filter((t) => backends.some((b) => b.name === t.backend && serves(b, request.model)))
    .map((t) => ({ backend: t.backend, model: request.model }));
  if (targets.length === 0) {
    return new Rejection(
      403,
      `model ${JSON.stringify(request.model)} cannot serve this request (${decided.reasonText}); ask for model "auto" to let the policy choose`,
    );
  }
  decided.targets = targets;
  return decided.reason(`${decided.reasonText}+explicit-model`);
}

/**
 * Skips targets whose model cannot serve the request (tools, JSON, images, logprobs, `n`,
 * context window), naming them in label `skipped` (`local:tools,anthropic:tools`); when
 * none could, the decision is left as it was. A Rejection passes unchanged.
 */
export function capableTargets(host, request, decided) {
  if (decided instanceof Rejection) return decided;
  const backends = host.backends();
  const skipped = [];
  const kept = decided.targets.filter((t) => {
    const b = backends.find((x) => x.name === t.backend);
    const model = t.model ?? b?.models[0];
    if (!b || model === undefined) return true;
    const need = unmetNeed(modelCapabilities(b, model), request.needs, request.promptTokens);
    if (need === undefined) return true;
    skipped.push(`${t.backend}:${need}`);
    return false;
  });
  if (skipped.length === 0 || kept.length === 0) return decided;
  decided.targets = kept;
  return decided.label('skipped', skipped.join(','));
}

/** What every shipped policy does with its rules' decision: explicitModel, then capableTargets. */
export function honourRequest(host, request, decided) {
  return capableTargets(host, request, explicitModel(host, request, decided));
}
