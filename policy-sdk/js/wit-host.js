// WitHost: the Host over the `switchyard:policy/*@0.2.0` imports, given as one object of
// import functions (component.js passes the real ones; tests pass testing.js mockImports).
// It answers in the SDK's shapes: the clock as a number, embeddings as {ok}|{err}.
import { HostBase, LOG_LEVELS } from './host.js';
import { toLabels } from './types.js';

/** componentize-js throws an imported `result`'s err case as a ComponentError with `payload`. */
function errPayload(e) {
  if (e !== null && typeof e === 'object' && 'payload' in e) return String(e.payload);
  throw e;
}

/** One decision's view of the host. Backends and params are read once per instance. */
export class WitHost extends HostBase {
  #imports;
  #backends;
  #params;

  constructor(imports) {
    super();
    this.#imports = imports;
  }

  backends() {
    this.#backends ??= this.#imports.backends.list();
    return this.#backends;
  }

  detectPii(text) {
    return this.#imports.pii.detect(text);
  }

  countTokens(text) {
    return this.#imports.tokens.count(text);
  }

  spend(scope) {
    return this.#imports.spend.get(scope);
  }

  param(key) {
    return this.#paramMap().get(key);
  }

  params() {
    return this.#imports.params.all();
  }

  nowMs() {
    return Number(this.#imports.clock.nowMs());
  }

  log(level, message, fields) {
    if (!LOG_LEVELS.includes(level)) throw new TypeError(`log level must be one of ${LOG_LEVELS.join(', ')}, got ${level}`);
    this.#imports.logging.log(level, String(message), toLabels(fields));
  }

  embed(text) {
    try {
      return { ok: Array.from(this.#imports.embeddings.embed(text)) };
    } catch (e) {
      return { err: errPayload(e) };
    }
  }

  score(classifier, text) {
    try {
      return { ok: this.#imports.embeddings.score(classifier, text) };
    } catch (e) {
      return { err: errPayload(e) };
    }
  }

  #paramMap() {
    this.#params ??= new Map(this.#imports.params.all().map((l) => [l.key, l.value]));
    return this.#params;
  }
}
