// The instrumentation API: put work in a session, trace tool calls as GenAI-semconv
// `execute_tool` spans. Uses only @opentelemetry/api, so it works under any SDK setup
// (Loopwatch's own, or one the application configured).
import { context, SpanKind, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import { ATTR } from './attributes.js';
import { canonicalJson, hash64Hex } from './canonical.js';
import { contextWithSession, sessionFrom, type SessionInfo } from './context.js';
import { capturedText } from './options.js';

export { canonicalJson, hash64Hex, valueHash } from './canonical.js';
export { configureCapture, type CaptureOptions } from './options.js';
export { sessionFrom, type SessionInfo } from './context.js';

const tracer = () => trace.getTracer('loopwatch', '0.1.0');

/**
 * Epoch milliseconds with sub-millisecond precision (monotonic within the process). The SDK's
 * default start time is Date.now(), whole milliseconds: calls made within one millisecond would
 * tie, and the order of a session's calls (what loop detection reads) would be lost.
 */
export function preciseNow(): number {
  return performance.timeOrigin + performance.now();
}

/** Runs fn with every span inside it attributed to the session (and agent). */
export function withSession<T>(session: string | SessionInfo, fn: () => T): T {
  const info = typeof session === 'string' ? { sessionId: session } : session;
  return context.with(contextWithSession(info), fn);
}

export interface TraceToolOptions {
  /** Tool call id from the model, when known; or a function of the call's arguments. */
  callId?: string | ((args: unknown[]) => string | undefined);
  /** Tool type (GenAI semconv gen_ai.tool.type): function, extension, datastore. */
  type?: string;
  /** What identifies the call among the arguments (default: the one argument, or all of them). */
  argsOf?: (args: unknown[]) => unknown;
  /** What of the returned value is the result (default: all of it), e.g. a message's content. */
  resultOf?: (result: unknown) => unknown;
  /** Extra span attributes (e.g. mcp.method.name); they cannot override the gen_ai.* ones. */
  attributes?: Record<string, string>;
}

/** What a traced call reports to observers (the loop guard among them). */
export interface ToolCallRecord {
  sessionId: string | undefined;
  agent: string | undefined;
  tool: string;
  argsHash: string;
  resultHash: string | undefined;
  status: 'ok' | 'error';
  errorType: string | undefined;
  errorMessage: string | undefined;
  startedAt: number;
  endedAt: number;
  span: Span;
}

type Observer = (call: ToolCallRecord) => void;
const observers = new Set<Observer>();

/** Subscribes to completed tool calls; returns the unsubscribe function. */
export function onToolCall(observer: Observer): () => void {
  observers.add(observer);
  return () => observers.delete(observer);
}

/** Subscribes to tool calls about to run; may throw to stop the call (the loop guard's halt). */
type BeforeObserver = (call: { sessionId: string | undefined; agent: string | undefined; tool: string; argsHash: string; span: Span }) => void;
const beforeObservers = new Set<BeforeObserver>();
export function beforeToolCall(observer: BeforeObserver): () => void {
  beforeObservers.add(observer);
  return () => beforeObservers.delete(observer);
}

function argsValue(args: unknown[]): unknown {
  return args.length === 1 ? args[0] : args;
}

function isPromiseLike(v: unknown): v is PromiseLike<unknown> {
  return !!v && typeof (v as { then?: unknown }).then === 'function';
}

/** Wraps a tool function so each call is an `execute_tool {name}` span with argument/result hashes. */
export function traceTool<A extends unknown[], R>(name: string, fn: (...args: A) => R, opts: TraceToolOptions = {}): (...args: A) => R {
  const traced = function (this: unknown, ...args: A): R {
    const session = sessionFrom();
    const argsText = canonicalJson(opts.argsOf ? opts.argsOf(args) : argsValue(args));
    const argsHash = hash64Hex(argsText);
    const callId = typeof opts.callId === 'function' ? opts.callId(args) : opts.callId;
    const attributes: Record<string, string> = {
      ...opts.attributes,
      [ATTR.operationName]: 'execute_tool',
      [ATTR.toolName]: name,
      [ATTR.toolType]: opts.type ?? 'function',
      [ATTR.argsHash]: argsHash,
    };
    if (callId) attributes[ATTR.toolCallId] = callId;
    const capturedArgs = capturedText(argsText, 'arguments', name);
    if (capturedArgs !== undefined) attributes[ATTR.toolCallArguments] = capturedArgs;
    return tracer().startActiveSpan(`execute_tool ${name}`, { kind: SpanKind.INTERNAL, attributes, startTime: preciseNow() }, (span) => {
      const startedAt = Date.now();
      const finish = (status: 'ok' | 'error', result: unknown, err?: unknown): void => {
        let resultHash: string | undefined;
        let errorType: string | undefined;
        let errorMessage: string | undefined;
        if (status === 'ok') {
          const resultText = canonicalJson(opts.resultOf ? opts.resultOf(result) : result);
          resultHash = hash64Hex(resultText);
          span.setAttribute(ATTR.resultHash, resultHash);
          const capturedResult = capturedText(resultText, 'result', name);
          if (capturedResult !== undefined) span.setAttribute(ATTR.toolCallResult, capturedResult);
        } else {
          const e = err instanceof Error ? err : new Error(String(err));
          errorType = e.name && e.name !== 'Error' ? e.name : (e.constructor?.name ?? 'Error');
          errorMessage = e.message;
          span.setAttribute(ATTR.errorType, errorType);
          span.recordException(e);
          span.setStatus({ code: SpanStatusCode.ERROR, message: e.message });
        }
        if (observers.size > 0) {
          const record: ToolCallRecord = {
            sessionId: session?.sessionId, agent: session?.agent, tool: name, argsHash, resultHash,
            status, errorType, errorMessage, startedAt, endedAt: Date.now(), span,
          };
          for (const o of observers) o(record);
        }
        span.end(preciseNow());
      };
      try {
        if (beforeObservers.size > 0) for (const o of beforeObservers) o({ sessionId: session?.sessionId, agent: session?.agent, tool: name, argsHash, span });
        const out = fn.apply(this, args);
        if (isPromiseLike(out)) {
          return Promise.resolve(out).then(
            (v) => {
              finish('ok', v);
              return v;
            },
            (err: unknown) => {
              finish('error', undefined, err);
              throw err;
            },
          ) as R;
        }
        finish('ok', out);
        return out;
      } catch (err) {
        finish('error', undefined, err);
        throw err;
      }
    });
  };
  Object.defineProperty(traced, 'name', { value: fn.name || name });
  return traced;
}

type ToolLike = ((...args: never[]) => unknown) | { execute?: (...args: never[]) => unknown };

/**
 * Traces every tool of a tool set: a record of functions, or of tool objects with an
 * `execute` method (Vercel AI SDK, and most agent frameworks). Returns the same shape; an
 * AI SDK execute's second argument carries the model's toolCallId, which becomes the call id.
 */
export function wrapTools<T extends Record<string, ToolLike>>(tools: T): T {
  const out: Record<string, unknown> = {};
  for (const [name, tool] of Object.entries(tools)) {
    if (typeof tool === 'function') {
      out[name] = traceTool(name, tool as (...args: unknown[]) => unknown);
    } else if (tool && typeof tool.execute === 'function') {
      const execute = tool.execute as (...args: unknown[]) => unknown;
      out[name] = {
        ...tool,
        execute: traceTool(name, (input: unknown, options?: unknown) => execute.call(tool, input, options), {
          callId: (args) => (args[1] as { toolCallId?: string } | undefined)?.toolCallId,
          argsOf: (args) => args[0],
        }),
      };
    } else {
      out[name] = tool;
    }
  }
  return out as T;
}
