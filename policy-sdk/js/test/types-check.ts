// Compile-only check of the hand-written .d.ts files (tsc --noEmit, run by typecheck.test.js):
// typical policy code must type-check, and misuse marked @ts-expect-error must not.
import { Decision, Rejection, definePolicy, honourRequest, lastUserText, ofKind, usable, sortByPrice, decide } from '../index.js';
import type { Host, Request, BackendStatus, PiiMatch } from '../index.js';
import { defineRouter } from '../component.js';
import { MockHost, userRequest, backendStatus } from '../testing.js';
import { runCases, loadCaseFile } from '../cases.js';
import { detect } from '../pii.js';

export const policy = definePolicy({
  info: { name: 'typed', version: '1.0.0', description: 'type check' },
  route(request: Request, host: Host) {
    if (request.tenant === 'legal') return Decision.to('local').reason('legal').label('route', 'local');
    const budget = host.paramF64('max_usd', 1);
    const cloud = sortByPrice(usable(ofKind(host.backends(), 'cloud'), request.promptTokens));
    const text: string = lastUserText(request);
    const role: 'system' | 'user' | 'assistant' | 'tool' = request.messages[0].role;
    const fmt: 'text' | 'json-object' | 'json-schema' = request.needs.responseFormat;
    const found: PiiMatch[] = host.detectPii(text);
    const now: number = host.nowMs();
    const e = host.embed(text);
    if ('err' in e) host.log('warn', e.err, { role, fmt });
    if (found.length > 0 || budget < 0 || now < 0) return new Rejection(403, 'no');
    return honourRequest(host, request, decide(cloud, 'cheapest'));
  },
});

export const router = defineRouter(policy);
const host = new MockHost().withParam('max_usd', '2').unhealthy('openai').withBackend(backendStatus('x', 'local', 'm'));
const first: BackendStatus | undefined = host.backend('x');
export const results = runCases(policy, loadCaseFile('cases.json'));
export const kinds = detect('a@b.io').map((m) => m.kind);
export const routed = router.route(userRequest('hi')).targets[0].backend;
export { first };

// @ts-expect-error: a backend kind is 'local' or 'cloud'
ofKind([], 'edge');
// @ts-expect-error: log levels are the WIT enum's names
host.log('warning', 'x');
// @ts-expect-error: clock is a number, not a bigint
export const big: bigint = host.nowMs();
// @ts-expect-error: route must be a function
definePolicy({ info: { name: 'a', version: '1', description: 'd' }, route: 1 });
// @ts-expect-error: roles are lowercase strings
export const bad: Request['messages'][number]['role'] = 'User';
