// Keyword router component entry: exports the `router` interface of contract 0.2 over
// the real host imports (the SDK's component glue) for the policy in logic.js.
import { defineRouter } from '../../../policy-sdk/js/component.js';
import { policy } from './logic.js';

export const router = defineRouter(policy);
