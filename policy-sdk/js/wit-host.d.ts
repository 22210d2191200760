// Types of wit-host.js: the Host over an object of `switchyard:policy/*@0.2.0` import functions.
import type { BackendStatus, HostBase, Label, LogLevel, PiiKind, SpendStatus } from './index.js';

/** The raw import functions, in the bindings' representations. */
export interface WitImports {
  backends: { list(): BackendStatus[] };
  pii: { detect(text: string): Array<{ kind: PiiKind; start: number; end: number }> };
  tokens: { count(text: string): number };
  spend: { get(scope: string): SpendStatus };
  params: { get(key: string): string | undefined; all(): Label[] };
  clock: { nowMs(): bigint };
  logging: { log(level: LogLevel, message: string, fields: Label[]): void };
  /** An err result is thrown as a ComponentError carrying `payload`. */
  embeddings: { embed(text: string): Float32Array | number[]; score(classifier: string, text: string): number };
}

export declare class WitHost extends HostBase {
  constructor(imports: WitImports);
}
