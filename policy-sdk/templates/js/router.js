// Component entry: the `router` export of the policy in policy.js over the real host
// imports. Only build.mjs uses this file; tests import policy.js directly.
import { defineRouter } from './sdk/component.js';
import { policy } from './policy.js';

export const router = defineRouter(policy);
