// Keyword router component entry: binds the `switchyard:policy` imports to the
// routing logic in logic.js and exports the `router` interface.
import { list as listBackends } from 'switchyard:policy/backends@0.1.0';
import { all as allParams } from 'switchyard:policy/params@0.1.0';
import { log } from 'switchyard:policy/logging@0.1.0';
import { POLICY_INFO, decide } from './logic.js';

/** The host for one decision: every param fetched in one import call. */
function hostFor() {
  const params = new Map(allParams().map((l) => [l.key, l.value]));
  return {
    backends: () => listBackends(),
    param: (key) => params.get(key),
    log: (level, message, fields) => log(level, message, fields),
  };
}

export const router = {
  info() {
    return { ...POLICY_INFO };
  },
  route(request) {
    const out = decide(request, hostFor());
    // componentize-js maps a thrown non-Error value to the `err` case of result<>.
    if (out.err) throw out.err;
    return out.ok;
  },
};
