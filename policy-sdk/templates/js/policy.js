// __TITLE__: the routing rules. Code requests go to the cheapest healthy cloud backend
// that fits; tenant `legal` never leaves local backends; everything else goes local first.
// Runs in node (tests, MockHost) and in the component (router.js) alike.
import {
  Decision, Rejection, definePolicy, honourRequest, lastUserText, names, neededContext, ofKind,
  requestLabel, sortByPrice, usable,
} from './sdk/index.js';

// What makes a request "code": a fence, a definition or a statement opening a line, or
// client label task=code. ASCII-only patterns: the component's regex engine has no
// Unicode property escapes (`\p{L}` fails the build), see the SDK README.
const CODE_PATTERNS = [
  /```/,
  /^\s*(def|class|function|fn|func|import|#include|package|public|private|const|let|var)\b/m,
  /\b(SELECT|INSERT|UPDATE|DELETE)\b[\s\S]*\b(FROM|INTO|SET|WHERE)\b/,
];
const CODE_KEYWORDS = ['refactor', 'debug', 'bug', 'stack trace', 'compile', 'python', 'javascript', 'typescript', 'rust', 'sql', 'regex'];

/** True when the request is about code: label task=code, a pattern, or a keyword (param `code_keywords`). */
export function isCode(request, host) {
  if (requestLabel(request, 'task') === 'code') return true;
  const text = lastUserText(request);
  if (CODE_PATTERNS.some((re) => re.test(text))) return true;
  const lower = text.toLowerCase();
  return host.paramListOr('code_keywords', CODE_KEYWORDS)
    .some((k) => new RegExp(`\\b${k.toLowerCase().replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\b`).test(lower));
}

export const policy = definePolicy({
  info: {
    name: '__NAME__',
    version: '0.1.0',
    description: '__TITLE__: code to the cheapest healthy cloud backend that fits, tenant legal local only, the rest local first',
  },

  route(request, host) {
    const tokens = neededContext(request);
    const all = host.backends();
    const local = usable(ofKind(all, 'local'), tokens);
    const cloud = sortByPrice(usable(ofKind(all, 'cloud'), tokens));
    const healthyCloud = cloud.filter((b) => b.healthy);
    const legalTenant = host.paramOr('legal_tenant', 'legal');

    let decision;
    if (request.tenant === legalTenant) {
      if (local.length === 0) return Rejection.unavailable(`no local backend can take the request of tenant ${legalTenant}`);
      decision = Decision.toAll(names(local)).reason('__NAME__:legal:local').label('route', 'local').label('rule', 'legal');
    } else if (isCode(request, host) && healthyCloud.length > 0) {
      // usable() put the unhealthy ones last; sortByPrice keeps that order only per price,
      // so list the healthy ones by price first, then the rest as fallbacks.
      const order = [...healthyCloud, ...local.filter((b) => b.healthy), ...cloud.filter((b) => !b.healthy), ...local.filter((b) => !b.healthy)];
      decision = Decision.toAll(names(order)).reason(`__NAME__:code:${healthyCloud[0].name}`).label('route', 'cloud').label('rule', 'code');
    } else {
      const order = [...local.filter((b) => b.healthy), ...healthyCloud, ...local.filter((b) => !b.healthy), ...cloud.filter((b) => !b.healthy)];
      if (order.length === 0) return Rejection.unavailable('no backend can take the request');
      const route = order[0].kind;
      decision = Decision.toAll(names(order)).reason(`__NAME__:general:${route}`).label('route', route).label('rule', 'general');
    }
    // An explicit model the rules allow, and only targets that can serve the request's needs.
    return honourRequest(host, request, decision);
  },
});
