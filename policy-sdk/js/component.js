// Component glue: `defineRouter(policy)` builds the `router` export over the real
// `switchyard:policy/*@0.2.0` imports. Import it by a relative path from your component
// entry (componentize-js bundles relative imports only); plain node cannot load it.
import { list } from 'switchyard:policy/backends@0.2.0';
import { detect } from 'switchyard:policy/pii@0.2.0';
import { count } from 'switchyard:policy/tokens@0.2.0';
import { get as spendGet } from 'switchyard:policy/spend@0.2.0';
import { get as paramGet, all as paramAll } from 'switchyard:policy/params@0.2.0';
import { nowMs } from 'switchyard:policy/clock@0.2.0';
import { log } from 'switchyard:policy/logging@0.2.0';
import { embed, score } from 'switchyard:policy/embeddings@0.2.0';
import { WitHost } from './wit-host.js';
import { callRoute, definePolicy } from './router.js';

const IMPORTS = Object.freeze({
  backends: { list },
  pii: { detect },
  tokens: { count },
  spend: { get: spendGet },
  params: { get: paramGet, all: paramAll },
  clock: { nowMs },
  logging: { log },
  embeddings: { embed, score },
});

/** The `router` export for `policy` ({ info, route(request, host) }); a fresh host per call. */
export function defineRouter(policy) {
  const checked = definePolicy(policy);
  return {
    info() {
      return { ...checked.info };
    },
    route(request) {
      const out = callRoute(checked, request, new WitHost(IMPORTS));
      // componentize-js maps a thrown non-Error value to the `err` case of result<>.
      if (out.err) throw out.err;
      return out.ok;
    },
  };
}
