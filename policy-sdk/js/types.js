// Helpers over the contract 0.2 shapes exactly as componentize-js hands them over
// (camelCase fields, enums as WIT-name strings, option<T> as undefined, lists of
// {key, value} labels), and the Decision / Rejection builders a policy returns.

/** UTF-8 length of `text` in bytes (what the host measures). */
export function utf8Length(text) {
  let n = 0;
  for (const ch of String(text)) {
    const c = ch.codePointAt(0);
    n += c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
  }
  return n;
}

const U32_MAX = 4294967295;

/** `a + b` capped at u32::MAX, like Rust's `saturating_add`. */
export function saturatingAdd(a, b) {
  return Math.min(a + b, U32_MAX);
}

/** The value of `key` in a label list (the last one wins, as in the host's map). */
export function labelValue(labels, key) {
  let found;
  for (const l of labels ?? []) if (l.key === key) found = l.value;
  return found;
}

/** Labels from a list, a Map or a plain object, as a WIT label list. */
export function toLabels(fields) {
  if (fields === undefined || fields === null) return [];
  if (Array.isArray(fields)) {
    return fields.map((l) => (Array.isArray(l) ? { key: String(l[0]), value: String(l[1]) } : { key: String(l.key), value: String(l.value) }));
  }
  const entries = fields instanceof Map ? [...fields.entries()] : Object.entries(fields);
  return entries.map(([key, value]) => ({ key: String(key), value: String(value) }));
}

// ---- requests ------------------------------------------------------------

/** Every message's content, joined with `\n`. */
export function requestText(request) {
  return request.messages.map((m) => m.content).join('\n');
}

/** The content of the last user message, or `''`. */
export function lastUserText(request) {
  for (let i = request.messages.length - 1; i >= 0; i -= 1) {
    if (request.messages[i].role === 'user') return request.messages[i].content;
  }
  return '';
}

/** The value of client label `key` (e.g. `data-class`, `user`, `task`). */
export function requestLabel(request, key) {
  return labelValue(request.labels, key);
}

/** Context the request needs: prompt tokens plus the client's completion limit. */
export function neededContext(request) {
  return saturatingAdd(request.promptTokens, request.maxTokens ?? 0);
}

// ---- backends ------------------------------------------------------------

/** A text-only model: no tools, JSON, images, logprobs or several choices. */
export function textOnlyModel(model, contextWindow, usdPerMtokIn = 0, usdPerMtokOut = 0) {
  return {
    model, tools: false, jsonObject: false, jsonSchema: false, vision: false, logprobs: false,
    multipleChoices: false, contextWindow, usdPerMtokIn, usdPerMtokOut,
  };
}

/** A model that can do everything the contract names. */
export function fullModel(model, contextWindow, usdPerMtokIn = 0, usdPerMtokOut = 0) {
  return {
    ...textOnlyModel(model, contextWindow, usdPerMtokIn, usdPerMtokOut),
    tools: true, jsonObject: true, jsonSchema: true, vision: true, logprobs: true, multipleChoices: true,
  };
}

/** What `model` of `backend` can do (text only within its window when unreported). */
export function modelCapabilities(backend, model) {
  return backend.capabilities.find((c) => c.model === model) ?? textOnlyModel(model, backend.contextWindow);
}

/**
 * The first need of `needs` (with `promptTokens`) `caps` cannot meet: `tools`,
 * `json_object`, `json_schema`, `vision`, `logprobs`, `n` or `context_window`; else undefined.
 */
export function unmetNeed(caps, needs, promptTokens) {
  const checks = [
    [needs.tools.length > 0 && !caps.tools, 'tools'],
    [needs.responseFormat === 'json-object' && !caps.jsonObject, 'json_object'],
    [needs.responseFormat === 'json-schema' && !caps.jsonSchema, 'json_schema'],
    [needs.images > 0 && !caps.vision, 'vision'],
    [needs.logprobs && !caps.logprobs, 'logprobs'],
    [needs.n > 1 && !caps.multipleChoices, 'n'],
    [promptTokens > caps.contextWindow, 'context_window'],
  ];
  return checks.find(([unmet]) => unmet)?.[1];
}

export const isLocal = (b) => b.kind === 'local';
export const isCloud = (b) => b.kind === 'cloud';
/** True when `tokens` fit the backend's (default model's) context window. */
export const fits = (b, tokens) => tokens <= b.contextWindow;
export const defaultModel = (b) => b.models[0];
export const serves = (b, model) => b.models.includes(model);
export const backendLabel = (b, key) => labelValue(b.labels, key);
/** Estimated USD for `input` prompt and `output` completion tokens. */
export const costUsd = (b, input, output) => (input * b.usdPerMtokIn + output * b.usdPerMtokOut) / 1_000_000;
/** Price of a typical request (input and output weighted 3:1), USD per Mtok. */
export const blendedPrice = (b) => (3 * b.usdPerMtokIn + b.usdPerMtokOut) / 4;
/** Requests ahead of a new one: in flight plus queued. */
export const loadDepth = (b) => saturatingAdd(b.inFlight, b.queueDepth);

// ---- spend ---------------------------------------------------------------

function fraction(spent, budget) {
  if (budget === undefined || !Number.isFinite(budget) || budget <= 0) return undefined;
  return Number.isFinite(spent) ? spent / budget : 0;
}

export const dailyFraction = (s) => fraction(s.todayUsd, s.dailyBudgetUsd);
export const monthlyFraction = (s) => fraction(s.monthUsd, s.monthlyBudgetUsd);
/** The larger of the daily and monthly fractions (undefined without any budget). */
export function budgetFraction(s) {
  const d = dailyFraction(s);
  const m = monthlyFraction(s);
  if (d !== undefined && m !== undefined) return Math.max(d, m);
  return d ?? m;
}
/** True when this month's spend reached the hard cap. */
export const overHardCap = (s) => s.hardCapUsd !== undefined && s.monthUsd >= s.hardCapUsd;
/** USD left before the nearest budget or cap (undefined without any). */
export function remainingUsd(s) {
  const left = [
    s.dailyBudgetUsd === undefined ? undefined : s.dailyBudgetUsd - s.todayUsd,
    s.monthlyBudgetUsd === undefined ? undefined : s.monthlyBudgetUsd - s.monthUsd,
    s.hardCapUsd === undefined ? undefined : s.hardCapUsd - s.monthUsd,
  ].filter((v) => v !== undefined);
  return left.length === 0 ? undefined : Math.min(...left);
}

// ---- decisions -----------------------------------------------------------

/** Where to send a request: the first target is primary, the rest fallbacks in order. */
export class Decision {
  /** A decision over these targets (`{backend, model?}` objects or backend names). */
  constructor(targets = []) {
    this.targets = targets.map((t) => (typeof t === 'string' ? { backend: t, model: undefined } : { backend: t.backend, model: t.model }));
    this.reasonText = '';
    this.messages = undefined;
    this.maxTokens = undefined;
    this.labels = new Map();
  }

  /** A decision with `backend` (default model) as the primary target. */
  static to(backend) {
    return new Decision([backend]);
  }

  /** A decision over these backend names (default models), in order. */
  static toAll(backends) {
    return new Decision([...backends]);
  }

  /** Appends `backend` (default model) as the next fallback. */
  then(backend) {
    this.targets.push({ backend, model: undefined });
    return this;
  }

  /** Appends `backend` with a model override as the next fallback. */
  thenModel(backend, model) {
    this.targets.push({ backend, model });
    return this;
  }

  /** Sets the reason (short, machine-friendly, e.g. `pii:email`). */
  reason(reason) {
    this.reasonText = reason;
    return this;
  }

  /** Adds a metrics label (a later one with the same key replaces it). */
  label(key, value) {
    this.labels.set(key, value);
    return this;
  }

  /** Caps completion tokens (keeps the smaller cap if one is already set). */
  capTokens(maxTokens) {
    this.maxTokens = this.maxTokens === undefined ? maxTokens : Math.min(this.maxTokens, maxTokens);
    return this;
  }

  /** Sends `messages` instead of the client's. */
  rewrite(messages) {
    this.messages = messages;
    return this;
  }

  /** The backend names, in order. */
  backends() {
    return this.targets.map((t) => t.backend);
  }

  /** The contract's `decision` record. */
  toWit() {
    return {
      targets: this.targets.map((t) => ({ backend: t.backend, model: t.model })),
      reason: this.reasonText,
      messages: this.messages,
      maxTokens: this.maxTokens,
      labels: toLabels(this.labels),
    };
  }
}

/** Refuse a request: the client gets HTTP `status` with `message`. */
export class Rejection {
  /** A status outside 400..=599 becomes 500. */
  constructor(status, message) {
    this.status = Number.isInteger(status) && status >= 400 && status <= 599 ? status : 500;
    this.message = String(message);
  }

  /** 503 Service Unavailable: no backend can take the request. */
  static unavailable(message) {
    return new Rejection(503, message);
  }

  /** The contract's `rejection` record. */
  toWit() {
    return { status: this.status, message: this.message };
  }
}

// ---- regular expressions -----------------------------------------------------

const PROPERTY_ESCAPE = /(^|[^\\])(\\\\)*\\[pP]\{/;

/**
 * `new RegExp(source, flags)` as the component's engine (StarlingMonkey's SpiderMonkey,
 * built without ICU) compiles it: Unicode property escapes (`\p{L}` with the `u` flag) and
 * the `v` flag are a SyntaxError there, so they are one here too, and node tests see what
 * the sandbox does. Use it for patterns from params.
 */
export function compileRegExp(source, flags = '') {
  if (flags.includes('v')) throw new SyntaxError('invalid regular expression flag v (the policy engine has no `v` flag)');
  if (flags.includes('u') && PROPERTY_ESCAPE.test(source)) {
    throw new SyntaxError('invalid property name in regular expression (the policy engine has no Unicode property escapes)');
  }
  return new RegExp(source, flags);
}
