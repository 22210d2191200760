// Keyword router component entry: binds the `switchyard:policy` imports to the
// routing logic in logic.js and exports the `router` interface.
import { list as listBackends } from 'switchyard:policy/backends@0.1.0';
import { get as getParam } from 'switchyard:policy/params@0.1.0';
import { log } from 'switchyard:policy/logging@0.1.0';
import { POLICY_INFO, decide } from './logic.js';

const host = {
  backends: () => listBackends(),
  param: (key) => getParam(key) ?? undefined,
  log: (level, message, fields) => log(level, message, fields),
};

export const router = {
  info() {
    return { ...POLICY_INFO };
  },
  route(request) {
    const out = decide(request, host);
    // componentize-js maps a thrown non-Error value to the `err` case of result<>.
    if (out.err) throw out.err;
    return out.ok;
  },
};
