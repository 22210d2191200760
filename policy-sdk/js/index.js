// @switchyard/policy: what a JavaScript policy imports in node and in a component alike
// (no WIT imports, no node APIs): shape helpers, Decision/Rejection builders, selection
// helpers, the host base class and definePolicy. The component glue is component.js.
export * from './types.js';
export * from './select.js';
export { HostBase, NO_EMBEDDING_MODEL, LOG_LEVELS, splitList, estimateTokens } from './host.js';
export { definePolicy, policyInfo, callRoute, toWitDecision, toWitRejection } from './router.js';
