// The instrumentation API: put work in a session, trace tool calls as GenAI-semconv
// `execute_tool` spans. Uses only @opentelemetry/api, so it works under any SDK setup
// (Loopwatch's own, or one the application configured).
import { context, createContextKey, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span, type Tracer, type TracerProvider } from '@opentelemetry/api';
import { ATTR } from './attributes.js';
import { canonicalJson, hash64Hex, valueHash } from './canonical.js';
import { contextWithSession, sessionFrom, type SessionInfo } from './context.js';
import { capturedText, captureOptions } from './options.js';

export { canonicalJson, hash64Hex, valueHash } from './canonical.js';
export { configureCapture, type CaptureOptions } from './options.js';
export { sessionFrom, type SessionInfo } from './context.js';

// The tracer, looked up again only when the global provider changes (trace.getTracer builds a
// cache key and searches the provider's map on every call). The global ProxyTracerProvider keeps
// its identity when an SDK registers, so the identity checked is its delegate's.
let tracerOf: TracerProvider | undefined;
let cachedTracer: Tracer | undefined;
function tracer(): Tracer {
  const global = trace.getTracerProvider();
  const provider = (global as { getDelegate?: () => TracerProvider }).getDelegate?.() ?? global;
  if (provider !== tracerOf || !cachedTracer) {
    cachedTracer = trace.getTracer('loopwatch', '0.1.0');
    tracerOf = provider;
  }
  return cachedTracer;
}

const TIME_ORIGIN = performance.timeOrigin; // constant for the process; the getter is not free

/**
 * Epoch milliseconds with sub-millisecond precision (monotonic within the process). The SDK's
 * default start time is Date.now(), whole milliseconds: calls made within one millisecond would
 * tie, and the order of a session's calls (what loop detection reads) would be lost.
 */
export function preciseNow(): number {
  return TIME_ORIGIN + performance.now();
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

// How many traced tool calls the context is inside: a tool that calls tools (a planner delegating
// to itself, an agent as a tool) nests them, and the depth budget needs it when a call starts,
// since nested calls end (and are reported) before the call they are nested in.
const TOOL_DEPTH = createContextKey('loopwatch.tool_depth');

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
  /** Epoch milliseconds with sub-millisecond precision: the span's start and end times. */
  startedAt: number;
  endedAt: number;
  /**
   * Traced tool calls this one is nested in, plus one (1: not inside another traced tool call);
   * 0 when unknown (the call started before anything observed calls).
   */
  depth: number;
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

function isPromiseLike(v: unknown): v is PromiseLike<unknown> {
  return !!v && typeof (v as { then?: unknown }).then === 'function';
}

/** One traced call in flight. */
interface TracedCall {
  tool: string;
  opts: TraceToolOptions;
  /** The caller's context: the session comes from it, looked up only when an observer wants it. */
  parent: Context;
  span: Span;
  argsHash: string;
  startedAt: number;
  depth: number;
}

/**
 * A value's hash and, when content is captured, its canonical text: one serialization either way
 * (a value's getters and toJSON run once).
 */
function identify(value: unknown, capture: boolean): [hash: string, text: string | undefined] {
  if (!capture) return [valueHash(value), undefined];
  const text = canonicalJson(value);
  return [hash64Hex(text), text];
}

/** Ends the call's span as a success; `resultKnown` false (a stream read elsewhere, a generator stopped early) sets no result hash. */
function finishOk(c: TracedCall, result: unknown, resultKnown = true): void {
  let resultHash: string | undefined;
  if (resultKnown) {
    const [hash, resultText] = identify(c.opts.resultOf ? c.opts.resultOf(result) : result, captureOptions().captureContent);
    resultHash = hash;
    c.span.setAttribute(ATTR.resultHash, hash);
    if (resultText !== undefined) {
      const capturedResult = capturedText(resultText, 'result', c.tool);
      if (capturedResult !== undefined) c.span.setAttribute(ATTR.toolCallResult, capturedResult);
    }
  }
  const endedAt = preciseNow();
  if (observers.size > 0) notify(c, resultHash, 'ok', undefined, undefined, endedAt);
  c.span.end(endedAt);
}

function finishError(c: TracedCall, err: unknown): void {
  const e = err instanceof Error ? err : new Error(String(err));
  const errorType = e.name && e.name !== 'Error' ? e.name : (e.constructor?.name ?? 'Error');
  c.span.setAttribute(ATTR.errorType, errorType);
  c.span.recordException(e);
  c.span.setStatus({ code: SpanStatusCode.ERROR, message: e.message });
  const endedAt = preciseNow();
  if (observers.size > 0) notify(c, undefined, 'error', errorType, e.message, endedAt);
  c.span.end(endedAt);
}

function notify(c: TracedCall, resultHash: string | undefined, status: 'ok' | 'error', errorType: string | undefined, errorMessage: string | undefined, endedAt: number): void {
  const session = sessionFrom(c.parent);
  const record: ToolCallRecord = {
    sessionId: session?.sessionId, agent: session?.agent, tool: c.tool, argsHash: c.argsHash, resultHash, status, errorType, errorMessage,
    startedAt: c.startedAt, endedAt, depth: c.depth, span: c.span,
  };
  for (const o of observers) o(record);
}

/**
 * The traced call inside the span's context: runs fn, then sets the result hash (or the error)
 * and ends the span. A module-level function given the call's state rather than a closure per
 * call: this is the hot path of every tool call.
 */
function runInSpan(c: TracedCall, fn: (...args: unknown[]) => unknown, self: unknown, args: unknown[]): unknown {
  let out: unknown;
  try {
    if (beforeObservers.size > 0) {
      const session = sessionFrom(c.parent);
      for (const o of beforeObservers) o({ sessionId: session?.sessionId, agent: session?.agent, tool: c.tool, argsHash: c.argsHash, span: c.span });
    }
    out = fn.apply(self, args);
  } catch (err) {
    finishError(c, err);
    throw err;
  }
  if (isPromiseLike(out)) {
    return Promise.resolve(out).then(
      (v) => settle(c, v),
      (err: unknown) => {
        finishError(c, err);
        throw err;
      },
    );
  }
  return settle(c, out);
}

/**
 * Ends the call with what fn returned, or hands back a generator that ends it when read to the
 * end. Hashing the result (a throwing getter or toJSON) or an observer can fail: that is then
 * the call's error.
 */
function settle(c: TracedCall, value: unknown): unknown {
  try {
    const kind = streamKind(value);
    if (kind === undefined) finishOk(c, value);
    else if (kind === 'other') finishOk(c, value, false);
    else return observeGenerator(c, context.active(), value as Generator, kind === 'async-generator');
  } catch (err) {
    if (c.span.isRecording()) finishError(c, err);
    throw err;
  }
  return value;
}

/**
 * What a tool returns that is read after the call returns. A generator (the AI SDK's streaming
 * tool, whose last value is its result) is observed as it is read. Any other iterator or stream
 * (read or piped elsewhere, where the call cannot follow it) ends the call at once with its
 * result unknown: hashing it would give the same `{}` every time, a false "stuck". Plain data
 * costs the first lookups only.
 */
function streamKind(v: unknown): 'generator' | 'async-generator' | 'other' | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const o = v as Record<PropertyKey, unknown>;
  if (typeof o.next === 'function' && (typeof o[Symbol.iterator] === 'function' || typeof o[Symbol.asyncIterator] === 'function')) {
    const tag = Object.prototype.toString.call(v);
    return tag === '[object Generator]' ? 'generator' : tag === '[object AsyncGenerator]' ? 'async-generator' : 'other';
  }
  if (typeof o[Symbol.asyncIterator] === 'function' || typeof o.getReader === 'function' || typeof o.pipe === 'function') return 'other';
  return undefined;
}

/**
 * A generator in place of the one the tool returned: each step runs in the call's context (tools
 * it calls nest under it), and the call ends when the generator is done (the result is its last
 * value, or its return value when it gives one: what the AI SDK hands the model), when it throws
 * (the call failed), or when the caller stops reading early (return(): the result is unknown).
 */
function observeGenerator(c: TracedCall, ctx: Context, gen: Generator | AsyncGenerator, isAsync: boolean): unknown {
  let last: unknown;
  let ended = false;
  const end = (finish: () => void): void => {
    if (ended) return;
    ended = true;
    try {
      finish();
    } catch (err) {
      if (c.span.isRecording()) finishError(c, err);
      throw err;
    }
  };
  const failed = (err: unknown): never => {
    end(() => finishError(c, err));
    throw err;
  };
  const observed = (method: 'next' | 'return' | 'throw') => (step: IteratorResult<unknown>): IteratorResult<unknown> => {
    if (method === 'return') end(() => finishOk(c, undefined, false));
    else if (step.done) end(() => finishOk(c, step.value !== undefined ? step.value : last));
    else last = step.value;
    return step;
  };
  const step = (method: 'next' | 'return' | 'throw', arg: unknown): unknown => {
    let r: unknown;
    try {
      r = context.with(ctx, gen[method] as (a: unknown) => unknown, gen, arg);
    } catch (err) {
      return failed(err);
    }
    return isAsync ? (r as Promise<IteratorResult<unknown>>).then(observed(method), failed) : observed(method)(r as IteratorResult<unknown>);
  };
  return {
    next: (v?: unknown) => step('next', v),
    return: (v?: unknown) => step('return', v),
    throw: (e?: unknown) => step('throw', e),
    [isAsync ? Symbol.asyncIterator : Symbol.iterator]() {
      return this;
    },
  };
}

/** Wraps a tool function so each call is an `execute_tool {name}` span with argument/result hashes. */
export function traceTool<A extends unknown[], R>(name: string, fn: (...args: A) => R, opts: TraceToolOptions = {}): (...args: A) => R {
  const spanName = `execute_tool ${name}`;
  const call = fn as unknown as (...args: unknown[]) => unknown;
  const traced = function (this: unknown, ...args: A): R {
    const parent = context.active();
    const [argsHash, argsText] = identify(opts.argsOf ? opts.argsOf(args) : args.length === 1 ? args[0] : args, captureOptions().captureContent);
    const callIdOpt = opts.callId;
    const callId = typeof callIdOpt === 'function' ? callIdOpt(args) : callIdOpt;
    const toolType = opts.type ?? 'function';
    const attributes: Attributes = opts.attributes
      ? { ...opts.attributes, 'gen_ai.operation.name': 'execute_tool', 'gen_ai.tool.name': name, 'gen_ai.tool.type': toolType, 'loopwatch.tool.args_hash': argsHash }
      : { 'gen_ai.operation.name': 'execute_tool', 'gen_ai.tool.name': name, 'gen_ai.tool.type': toolType, 'loopwatch.tool.args_hash': argsHash };
    if (callId) attributes[ATTR.toolCallId] = callId;
    if (argsText !== undefined) {
      const capturedArgs = capturedText(argsText, 'arguments', name);
      if (capturedArgs !== undefined) attributes[ATTR.toolCallArguments] = capturedArgs;
    }
    const startedAt = preciseNow();
    const span = tracer().startSpan(spanName, { kind: SpanKind.INTERNAL, attributes, startTime: startedAt }, parent);
    // the depth is kept only while something observes calls (the loop guard): a context value per call costs
    const depth = observers.size > 0 ? ((parent.getValue(TOOL_DEPTH) as number | undefined) ?? 0) + 1 : 0;
    const c: TracedCall = { tool: name, opts, parent, span, argsHash, startedAt, depth };
    const inner = depth > 0 ? trace.setSpan(parent, span).setValue(TOOL_DEPTH, depth) : trace.setSpan(parent, span);
    // what startActiveSpan does, with the call's state passed in rather than captured by a closure
    return context.with(inner, runInSpan, undefined, c, call, this, args as unknown[]) as R;
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
