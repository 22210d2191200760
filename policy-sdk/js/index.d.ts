// Hand-written types of @switchyard/policy: the contract 0.2 shapes exactly as
// componentize-js hands them over, the host interface, builders and helpers.

// ---- contract shapes (switchyard:policy@0.2.0, camelCase, enums as WIT-name strings) ----

export type Role = 'system' | 'user' | 'assistant' | 'tool';
export type ResponseFormat = 'text' | 'json-object' | 'json-schema';
export type BackendKind = 'local' | 'cloud';
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';
export type PiiKind = 'email' | 'phone' | 'credit-card' | 'us-ssn' | 'iban' | 'ip-address' | 'api-key';

export interface Label {
  key: string;
  value: string;
}

export interface Message {
  role: Role;
  content: string;
}

export interface Needs {
  /** Names of the tools offered; empty: none. */
  tools: string[];
  responseFormat: ResponseFormat;
  logprobs: boolean;
  /** Image parts across all messages. */
  images: number;
  /** Choices asked for (`n`, 1 when absent). */
  n: number;
}

/** What the policy sees of a client request (an `option` is `undefined` when absent). */
export interface Request {
  id: string;
  /** The model the client asked for, e.g. "auto". */
  model: string;
  messages: Message[];
  maxTokens: number | undefined;
  /** Single precision, as the host sends it (0.7 arrives as 0.699999988079071). */
  temperature: number | undefined;
  streaming: boolean;
  tenant: string;
  /** Client metadata, sorted by key; well-known keys: data-class, user, task. */
  labels: Label[];
  promptTokens: number;
  needs: Needs;
  /** `model` names a model a configured backend serves (not an alias). */
  explicitModel: boolean;
}

export interface Target {
  backend: string;
  /** undefined: the backend's default model. */
  model?: string | undefined;
}

/** The contract's `decision` record. */
export interface WitDecision {
  targets: Target[];
  reason: string;
  messages: Message[] | undefined;
  maxTokens: number | undefined;
  labels: Label[];
}

/** The contract's `rejection` record: an HTTP status in 400..=599 and a message. */
export interface WitRejection {
  status: number;
  message: string;
}

export interface PolicyInfo {
  name: string;
  version: string;
  description: string;
}

export interface ModelCapabilities {
  model: string;
  tools: boolean;
  jsonObject: boolean;
  jsonSchema: boolean;
  vision: boolean;
  logprobs: boolean;
  multipleChoices: boolean;
  contextWindow: number;
  usdPerMtokIn: number;
  usdPerMtokOut: number;
}

export interface BackendStatus {
  name: string;
  kind: BackendKind;
  /** The first is the default model. */
  models: string[];
  healthy: boolean;
  latencyP50Ms: number;
  latencyP95Ms: number;
  /** 0.0..=1.0 */
  errorRate: number;
  inFlight: number;
  queueDepth: number;
  usdPerMtokIn: number;
  usdPerMtokOut: number;
  contextWindow: number;
  labels: Label[];
  /** One per model, in `models` order (may be empty). */
  capabilities: ModelCapabilities[];
}

export interface SpendStatus {
  scope: string;
  todayUsd: number;
  monthUsd: number;
  dailyBudgetUsd: number | undefined;
  monthlyBudgetUsd: number | undefined;
  hardCapUsd: number | undefined;
}

/** One PII finding: `text[start..end]` in UTF-8 bytes. */
export interface PiiMatch {
  kind: PiiKind;
  start: number;
  end: number;
}

export type Result<T> = { ok: T } | { err: string };

/** Log fields: an object, a Map, or a label list. */
export type Fields = Record<string, string> | Map<string, string> | Label[];

// ---- the host ---------------------------------------------------------------

/** What a policy may ask the gateway (WitHost in a component, MockHost in tests). */
export interface Host {
  backends(): BackendStatus[];
  backend(name: string): BackendStatus | undefined;
  detectPii(text: string): PiiMatch[];
  countTokens(text: string): number;
  spend(scope: string): SpendStatus;
  param(key: string): string | undefined;
  /** Every parameter, sorted by key. */
  params(): Label[];
  /** Milliseconds since the Unix epoch (the import's u64 as a number). */
  nowMs(): number;
  log(level: LogLevel, message: string, fields?: Fields): void;
  /** 384-dim L2-normalised embedding, or the host's error ("no embedding model loaded"). */
  embed(text: string): Result<number[]>;
  score(classifier: string, text: string): Result<number>;
  paramOr(key: string, fallback: string): string;
  paramF64(key: string, fallback: number): number;
  paramU32(key: string, fallback: number): number;
  paramBool(key: string, fallback: boolean): boolean;
  paramList(key: string): string[] | undefined;
  paramListOr(key: string, fallback: readonly string[]): string[];
}

/** Base class of the hosts: the param getters and `backend`, over the raw calls that
 * each host (WitHost, MockHost) implements. Its members are `Host`'s (declaration merging). */
export declare abstract class HostBase {}
export interface HostBase extends Host {}

export declare const NO_EMBEDDING_MODEL: 'no embedding model loaded';
export declare const LOG_LEVELS: readonly LogLevel[];
export declare function splitList(value: string): string[];
export declare function estimateTokens(text: string): number;

// ---- decisions ----------------------------------------------------------------

export declare class Decision {
  constructor(targets?: Array<string | Target>);
  targets: Target[];
  reasonText: string;
  messages: Message[] | undefined;
  maxTokens: number | undefined;
  labels: Map<string, string>;
  static to(backend: string): Decision;
  static toAll(backends: Iterable<string>): Decision;
  then(backend: string): this;
  thenModel(backend: string, model: string): this;
  reason(reason: string): this;
  label(key: string, value: string): this;
  capTokens(maxTokens: number): this;
  rewrite(messages: Message[]): this;
  backends(): string[];
  toWit(): WitDecision;
}

export declare class Rejection {
  /** A status outside 400..=599 becomes 500. */
  constructor(status: number, message: string);
  status: number;
  message: string;
  static unavailable(message: string): Rejection;
  toWit(): WitRejection;
}

/** What `route` may return (or throw, for a rejection). */
export type RouteOutput =
  | Decision
  | Rejection
  | { targets: Target[]; reason?: string; messages?: Message[]; maxTokens?: number; labels?: Fields }
  | WitRejection;

export interface Policy {
  info: PolicyInfo | (() => PolicyInfo);
  route(request: Request, host: Host): RouteOutput;
}

export interface CheckedPolicy extends Policy {
  readonly info: PolicyInfo;
}

export declare function definePolicy<P extends Policy>(policy: P): CheckedPolicy & Omit<P, 'info'>;
export declare function policyInfo(policy: Policy): PolicyInfo;
export declare function callRoute(policy: Policy, request: Request, host: Host): { ok: WitDecision; err?: undefined } | { err: WitRejection; ok?: undefined };
export declare function toWitDecision(value: RouteOutput): WitDecision;
export declare function toWitRejection(value: Rejection | WitRejection): WitRejection;

// ---- helpers ----------------------------------------------------------------

export declare function utf8Length(text: string): number;
export declare function saturatingAdd(a: number, b: number): number;
export declare function labelValue(labels: Label[] | undefined, key: string): string | undefined;
export declare function toLabels(fields: Fields | Array<[string, string]> | undefined | null): Label[];
export declare function requestText(request: Request): string;
export declare function lastUserText(request: Request): string;
export declare function requestLabel(request: Request, key: string): string | undefined;
export declare function neededContext(request: Request): number;
export declare function textOnlyModel(model: string, contextWindow: number, usdPerMtokIn?: number, usdPerMtokOut?: number): ModelCapabilities;
export declare function fullModel(model: string, contextWindow: number, usdPerMtokIn?: number, usdPerMtokOut?: number): ModelCapabilities;
export declare function modelCapabilities(backend: BackendStatus, model: string): ModelCapabilities;
export type Need = 'tools' | 'json_object' | 'json_schema' | 'vision' | 'logprobs' | 'n' | 'context_window';
export declare function unmetNeed(caps: ModelCapabilities, needs: Needs, promptTokens: number): Need | undefined;
export declare function isLocal(b: BackendStatus): boolean;
export declare function isCloud(b: BackendStatus): boolean;
export declare function fits(b: BackendStatus, tokens: number): boolean;
export declare function defaultModel(b: BackendStatus): string | undefined;
export declare function serves(b: BackendStatus, model: string): boolean;
export declare function backendLabel(b: BackendStatus, key: string): string | undefined;
export declare function costUsd(b: BackendStatus, input: number, output: number): number;
export declare function blendedPrice(b: BackendStatus): number;
export declare function loadDepth(b: BackendStatus): number;
export declare function dailyFraction(s: SpendStatus): number | undefined;
export declare function monthlyFraction(s: SpendStatus): number | undefined;
export declare function budgetFraction(s: SpendStatus): number | undefined;
export declare function overHardCap(s: SpendStatus): boolean;
export declare function remainingUsd(s: SpendStatus): number | undefined;

// ---- selection ----------------------------------------------------------------

export declare function named(backends: BackendStatus[], names: readonly string[]): BackendStatus[];
export declare function ofKind(backends: BackendStatus[], kind: BackendKind): BackendStatus[];
export declare function usable(list: BackendStatus[], tokens: number): BackendStatus[];
export declare function sortByPrice(list: BackendStatus[]): BackendStatus[];
export declare function compareLatency(a: BackendStatus, b: BackendStatus): number;
export declare function names(list: BackendStatus[]): string[];
export declare function decide(order: BackendStatus[], reason: string): Decision | Rejection;
export declare function explicitModel(host: Host, request: Request, decided: Decision | Rejection): Decision | Rejection;
export declare function capableTargets(host: Host, request: Request, decided: Decision | Rejection): Decision | Rejection;
export declare function honourRequest(host: Host, request: Request, decided: Decision | Rejection): Decision | Rejection;

/** `new RegExp` as the component's engine compiles it: `\p{..}` with `u`, and the `v` flag, throw SyntaxError. */
export declare function compileRegExp(source: string, flags?: string): RegExp;
