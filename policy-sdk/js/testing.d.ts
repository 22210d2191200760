// Types of testing.js: MockHost, test-shape builders and the mocked WIT imports (node only).
import type { BackendKind, BackendStatus, HostBase, LogLevel, Message, Needs, PiiMatch, Request, Result, SpendStatus } from './index.js';
import type { WitImports } from './wit-host.js';

export declare const MOCK_NOW_MS: 1767225600000;
export declare function backendStatus(name: string, kind: BackendKind, model: string, fields?: Partial<BackendStatus>): BackendStatus;
export declare function demoBackends(): BackendStatus[];
export declare function spendStatus(scope: string, fields?: Partial<SpendStatus>): SpendStatus;
export declare function defaultNeeds(): Needs;
export declare function request(messages: Message[], fields?: Partial<Request>): Request;
export declare function userRequest(content: string, fields?: Partial<Request>): Request;

export interface LogLine {
  level: LogLevel;
  message: string;
  fields: Record<string, string>;
}

export declare class MockHost extends HostBase {
  withBackends(backends: BackendStatus[]): this;
  withBackend(backend: BackendStatus): this;
  updateBackend(name: string, change: (backend: BackendStatus) => void): this;
  unhealthy(name: string): this;
  withoutBackend(name: string): this;
  withParam(key: string, value: string | number | boolean): this;
  withParams(params: Record<string, string | number | boolean>): this;
  withSpend(status: Partial<SpendStatus> & { scope: string }): this;
  withPii(detect: (text: string) => PiiMatch[]): this;
  withTokens(count: (text: string) => number): this;
  withEmbed(embed: (text: string) => Result<number[]>): this;
  withScore(score: (classifier: string, text: string) => Result<number>): this;
  at(nowMs: number): this;
  logs(): LogLine[];
  logged(text: string): boolean;
}

export declare class ComponentError {
  constructor(payload: unknown);
  payload: unknown;
  message: string;
}

export declare function mockImports(host: MockHost): WitImports;
export declare function registerMockImports(): void;
export declare function useMockHost<H extends MockHost>(host: H): H;
