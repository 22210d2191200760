// Keyword router: the routing logic on the @switchyard/policy SDK, free of WIT imports so
// that it runs under plain `node --test` with the SDK's MockHost. `policy.js` exports it.
//
// Params (all optional, strings as the host config gives them):
//   local_keywords, cloud_keywords   comma-separated words/phrases, matched
//                                    case-insensitively on word boundaries
//   local_patterns, cloud_patterns   regular expressions: a JSON array of strings,
//                                    or one per line (matched case-insensitively)
//   default          "local" | "cloud": route when nothing matches (default local)
//   tie              "local" | "cloud": route when both sides match equally (default local)
//   scope            "last-user" (default) | "user" | "all": which messages are scanned
//   local_backends, cloud_backends   comma-separated backend names for each route;
//                                    default: every backend of that kind, healthy first
//   fallback_other_kind  "true" (default) | "false": append the other route's
//                                    backends as fallback targets

import { Decision, Rejection, compileRegExp, definePolicy, named, ofKind, splitList } from '../../../policy-sdk/js/index.js';

export const POLICY_INFO = Object.freeze({
  name: 'keyword',
  version: '0.2.0',
  description: 'Routes to local or cloud backends by keyword and regex matches in the prompt (JavaScript).',
});

export const DEFAULT_LOCAL_KEYWORDS =
  'translate,summarize,summarise,classify,extract,spell check,grammar,rephrase,tl;dr';
export const DEFAULT_CLOUD_KEYWORDS =
  'prove,derive,architecture,refactor,implement,debug,step by step,analyze,analyse,essay';

const ROUTES = ['local', 'cloud'];

/** Parse a pattern list: a JSON array of strings, or one pattern per line. */
export function splitPatterns(value) {
  if (value === undefined || value === null) return [];
  const text = String(value).trim();
  if (text.startsWith('[')) {
    try {
      const parsed = JSON.parse(text);
      if (Array.isArray(parsed)) return parsed.map(String).filter((s) => s.length > 0);
    } catch {
      // fall through: treat it as one pattern per line
    }
  }
  return text
    .split('\n')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

function escapeRegExp(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** A case-insensitive matcher for a keyword or phrase, on word boundaries. */
export function keywordMatcher(keyword) {
  // \b only works next to word characters; for keywords that start or end with
  // punctuation (e.g. "tl;dr") use a lookaround on whitespace/start/end instead.
  const first = /\w/.test(keyword[0]) ? '\\b' : '(?<=^|[\\s(\\["\'])';
  const last = /\w/.test(keyword[keyword.length - 1]) ? '\\b' : '(?=$|[\\s.,;:!?)\\]"\'])';
  return new RegExp(first + escapeRegExp(keyword).replace(/\s+/g, '\\s+') + last, 'iu');
}

function compileSide(keywords, patterns, warn) {
  const matchers = [];
  for (const kw of keywords) matchers.push({ label: kw, re: keywordMatcher(kw) });
  for (const p of patterns) {
    try {
      // As the component's engine compiles it: `\p{..}` is refused there, so here too.
      matchers.push({ label: `/${p}/`, re: compileRegExp(p, 'iu') });
    } catch (e) {
      warn(`invalid pattern skipped: ${p}`, e && e.message ? e.message : String(e));
    }
  }
  return matchers;
}

/** Read the params into a config object; unknown values fall back to defaults. */
export function readConfig(host) {
  const get = (k) => host.param(k);
  const pick = (k, allowed, dflt) => {
    const v = (get(k) ?? '').trim().toLowerCase();
    return allowed.includes(v) ? v : dflt;
  };
  const warn = (message, detail) => host.log('warn', message, { detail });
  const localKw = get('local_keywords');
  const cloudKw = get('cloud_keywords');
  return {
    local: compileSide(
      splitList(localKw ?? DEFAULT_LOCAL_KEYWORDS),
      splitPatterns(get('local_patterns')),
      warn,
    ),
    cloud: compileSide(
      splitList(cloudKw ?? DEFAULT_CLOUD_KEYWORDS),
      splitPatterns(get('cloud_patterns')),
      warn,
    ),
    defaultRoute: pick('default', ROUTES, 'local'),
    tie: pick('tie', ROUTES, 'local'),
    scope: pick('scope', ['last-user', 'user', 'all'], 'last-user'),
    names: { local: splitList(get('local_backends') ?? ''), cloud: splitList(get('cloud_backends') ?? '') },
    fallbackOtherKind: pick('fallback_other_kind', ['true', 'false'], 'true') === 'true',
  };
}

/** Every param `readConfig` reads. */
const CONFIG_KEYS = [
  'local_keywords', 'cloud_keywords', 'local_patterns', 'cloud_patterns', 'default', 'tie',
  'scope', 'local_backends', 'cloud_backends', 'fallback_other_kind',
];

let configCache = null;

/**
 * `readConfig`, compiled once per distinct set of param values: a warm instance serves
 * many decisions, and compiling ~20 case-insensitive regexes dominated each one. An
 * invalid pattern is therefore reported once per instance, not on every decision.
 */
export function configFor(host) {
  const raw = CONFIG_KEYS.map((k) => host.param(k) ?? null);
  const key = JSON.stringify(raw);
  if (configCache === null || configCache.key !== key) {
    const values = new Map(CONFIG_KEYS.map((k, i) => [k, raw[i] ?? undefined]));
    const fixed = { param: (k) => values.get(k), log: (...args) => host.log(...args) };
    configCache = { key, config: readConfig(fixed) };
  }
  return configCache.config;
}

/** The text the router scans, per the `scope` setting. */
export function scannedText(messages, scope) {
  if (scope === 'all') return messages.map((m) => m.content).join('\n');
  const user = messages.filter((m) => m.role === 'user');
  if (scope === 'user') return user.map((m) => m.content).join('\n');
  return user.length > 0 ? user[user.length - 1].content : '';
}

/** Labels of every matcher on one side that matches `text`. */
export function matches(matchers, text) {
  return matchers.filter((m) => m.re.test(text)).map((m) => m.label);
}

/**
 * Backends for one route: the named ones (in the given order) if names are set,
 * else every backend of that kind in config order; unknown names dropped.
 */
export function backendsFor(route, names, backends) {
  return names.length > 0 ? named(backends, names) : ofKind(backends, route);
}

/** Decide a route on an SDK host (MockHost in tests, the real imports in the component). */
export function decide(request, host) {
  const cfg = configFor(host);
  const text = scannedText(request.messages, cfg.scope);
  const hits = { local: matches(cfg.local, text), cloud: matches(cfg.cloud, text) };

  let route;
  let why;
  if (hits.local.length === 0 && hits.cloud.length === 0) {
    route = cfg.defaultRoute;
    why = 'default';
  } else if (hits.local.length === hits.cloud.length) {
    route = cfg.tie;
    why = 'tie';
  } else {
    route = hits.local.length > hits.cloud.length ? 'local' : 'cloud';
    why = 'match';
  }
  const other = route === 'local' ? 'cloud' : 'local';

  const backends = host.backends();
  const primary = backendsFor(route, cfg.names[route], backends);
  const secondary = cfg.fallbackOtherKind ? backendsFor(other, cfg.names[other], backends) : [];
  // Healthy targets first (route's own, then the other route's), unhealthy ones
  // last so the host can still try them if everything else fails.
  const ordered = [
    ...primary.filter((b) => b.healthy),
    ...secondary.filter((b) => b.healthy),
    ...primary.filter((b) => !b.healthy),
    ...secondary.filter((b) => !b.healthy),
  ];
  const targets = [...new Set(ordered.map((b) => b.name))];
  if (targets.length === 0) return Rejection.unavailable(`keyword: no backend available for route ${route}`);

  const matched = hits[route];
  const reason = why === 'match' ? `keyword:${route}:${matched[0]}` : `keyword:${why}:${route}`;
  const decision = Decision.toAll(targets).reason(reason).label('route', route).label('keyword-rule', why);
  if (matched.length > 0) decision.label('keyword', matched[0]);
  if (!primary.some((b) => b.healthy)) decision.label('keyword-degraded', 'true');
  return decision;
}

/** The policy: its info and `route(request, host)`. */
export const policy = definePolicy({ info: POLICY_INFO, route: decide });
