// HostBase: the typed parameter getters and look-ups shared by the real host (WitHost)
// and MockHost, which supply the raw calls (backends, param, log, ...).
import { utf8Length } from './types.js';

/** What a host without an embedding model answers `embed` and `score` with. */
export const NO_EMBEDDING_MODEL = 'no embedding model loaded';

/** The log levels of the `logging` interface. */
export const LOG_LEVELS = Object.freeze(['trace', 'debug', 'info', 'warn', 'error']);

/** Splits a comma-separated list: items trimmed, blanks dropped. */
export function splitList(value) {
  return String(value)
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** The mock host's token estimate: UTF-8 bytes / 4, rounded up. */
export function estimateTokens(text) {
  return Math.min(Math.ceil(utf8Length(text) / 4), 4294967295);
}

const FLOAT = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const U32 = /^\+?\d+$/;

/** Base class of every host: subclasses implement the raw calls. */
export class HostBase {
  /** The backend named `name`. */
  backend(name) {
    return this.backends().find((b) => b.name === name);
  }

  /** Parameter `key`, trimmed, or `fallback` when unset or blank. */
  paramOr(key, fallback) {
    const v = this.param(key);
    return v !== undefined && v.trim() !== '' ? v.trim() : fallback;
  }

  /** Parameter `key` as a finite number; `fallback` when unset, a warning log too when invalid. */
  paramF64(key, fallback) {
    const raw = this.#set(key);
    if (raw === undefined) return fallback;
    const v = FLOAT.test(raw) ? Number(raw) : NaN;
    if (Number.isFinite(v)) return v;
    this.#warnInvalid(key);
    return fallback;
  }

  /** Parameter `key` as a u32 (see `paramF64`). */
  paramU32(key, fallback) {
    const raw = this.#set(key);
    if (raw === undefined) return fallback;
    const v = U32.test(raw) ? Number(raw) : NaN;
    if (Number.isSafeInteger(v) && v <= 4294967295) return v;
    this.#warnInvalid(key);
    return fallback;
  }

  /** Parameter `key` as a flag: true/yes/on/1 or false/no/off/0 (see `paramF64`). */
  paramBool(key, fallback) {
    const raw = this.param(key);
    if (raw === undefined) return fallback;
    const v = raw.trim().toLowerCase();
    if (v === '') return fallback;
    if (['true', 'yes', 'on', '1'].includes(v)) return true;
    if (['false', 'no', 'off', '0'].includes(v)) return false;
    this.#warnInvalid(key);
    return fallback;
  }

  /** Parameter `key` as a comma-separated list; undefined when unset. */
  paramList(key) {
    const v = this.param(key);
    return v === undefined ? undefined : splitList(v);
  }

  /** `paramList`, or `fallback` when unset. */
  paramListOr(key, fallback) {
    return this.paramList(key) ?? [...fallback];
  }

  #set(key) {
    const v = this.param(key);
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  }

  #warnInvalid(key) {
    this.log('warn', 'invalid policy parameter, using its default', { param: key, value: this.param(key) ?? '' });
  }
}
