// Types of component.js: the `router` export built over the real imports.
import type { Policy, PolicyInfo, Request, WitDecision } from './index.js';

/** The contract's `router` interface: `route` returns a decision or throws a rejection record. */
export interface Router {
  info(): PolicyInfo;
  route(request: Request): WitDecision;
}

export declare function defineRouter(policy: Policy): Router;
