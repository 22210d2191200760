// Types of cases.js (and the case-file.js it re-exports): the native case runner (node only).
import type { BackendKind, BackendStatus, Message, Policy, Request, SpendStatus, Target, WitRejection } from './index.js';
import type { MockHost } from './testing.js';

export interface CaseExpect {
  targets?: string[];
  first?: string;
  excludes?: string[];
  kinds?: BackendKind[];
  reject?: number;
  reasonContains?: string;
  labels?: Record<string, string>;
  maxTokens?: number;
  rewritten?: boolean;
  textExcludes?: string[];
  fallback?: boolean;
}

export interface ParsedCase {
  name: string;
  request: Record<string, unknown> & { messages: Message[] };
  backends: BackendStatus[] | undefined;
  params: Record<string, string>;
  spend: Record<string, SpendStatus>;
  expect: CaseExpect;
}

export interface ParsedCaseFile {
  backends: BackendStatus[] | undefined;
  params: Record<string, string>;
  spend: Record<string, SpendStatus>;
  cases: ParsedCase[];
}

export interface RoutedDecision {
  targets: Target[];
  reason: string;
  messages: Message[] | undefined;
  maxTokens: number | undefined;
  labels: Record<string, string>;
}

export type Verdict = { route: RoutedDecision; reject?: undefined } | { reject: WitRejection; route?: undefined };

export interface CaseResult {
  name: string;
  problems: string[];
  verdict: Verdict;
  failure: string | undefined;
  host: MockHost;
}

export declare const FALLBACK: Readonly<{ targets: Target[]; reason: string }>;
export declare const LIMITS: Readonly<Record<string, number>>;
export declare function parseCaseFile(text: string): ParsedCaseFile;
export declare function loadCaseFile(path: string | URL): ParsedCaseFile;
export declare function caseSetup(file: ParsedCaseFile, testCase: ParsedCase): { host: MockHost; request: Request };
export declare function evaluate(policy: Policy, request: Request, host: MockHost): { verdict: Verdict; failure: string | undefined };
export declare function check(expect: CaseExpect, verdict: Verdict, backends: BackendStatus[]): string[];
export declare function runCases(policy: Policy, file: ParsedCaseFile): CaseResult[];
export declare function testCaseFile(policy: Policy, path: string | URL): CaseResult[];
