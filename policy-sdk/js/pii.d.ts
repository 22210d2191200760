// Types of pii.js: the mock PII detector over the shared patterns (node only).
import type { PiiKind, PiiMatch } from './index.js';

export declare const CHECKS: Readonly<Record<string, (span: string) => boolean>>;
export declare function loadPatterns(url?: URL | string): Array<{ kind: PiiKind; regex: RegExp; check: (span: string) => boolean }>;
/** Findings sorted by start, non-overlapping, UTF-8 byte offsets. */
export declare function detect(text: string): PiiMatch[];
