// The instrumentation API: put work in a session, trace tool calls as GenAI-semconv
// `execute_tool` spans. Uses only @opentelemetry/api, so it works under any SDK setup
// (Loopwatch's own, or one the application configured).
import { context, createContextKey, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span, type Tracer, type TracerProvider } from '@opentelemetry/api';
import { ATTR, TOOL_WRAPPER_OPERATION } from './attributes.js';
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import { canonicalJson, hash64Hex, valueHash } from './canonical.js';
import { contextCarries, runInSession, sessionFrom, type SessionInfo } from './context.js';
import { traceSession } from './llm-calls.js';
import { capturedText, captureOptions, sentErrorText } from './options.js';
import { errorText, errorTypeOf } from './thrown.js';
import { tellObserver, warnOnce } from './warn.js';

export { canonicalJson, hash64Hex, valueHash } from './canonical.js';
export { configureCapture, type CaptureOptions } from './options.js';
export { sessionFrom, type SessionInfo } from './context.js';

/**
 * The tracer provider registered with the API: the delegate of its global ProxyTracerProvider,
 * which keeps its own identity when an SDK registers.
 */
export function registeredProvider(): TracerProvider {
  const global = trace.getTracerProvider();
  return (global as { getDelegate?: () => TracerProvider }).getDelegate?.() ?? global;
}

// The tracer, looked up again only when the registered provider changes (trace.getTracer builds
// a cache key and searches the provider's map on every call).
let tracerOf: TracerProvider | undefined;
let cachedTracer: Tracer | undefined;
function tracer(): Tracer {
  const provider = registeredProvider();
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

/**
 * Runs fn with every span inside it attributed to the session (and agent). A number as the id is
 * taken as its text; an id that is empty (or not text) is said once on stderr, and fn runs
 * without a session rather than not at all.
 */
export function withSession<T>(session: string | SessionInfo, fn: () => T): T {
  const info = typeof session === 'object' && session !== null ? session : { sessionId: session as string };
  let id: unknown = info.sessionId;
  if (typeof id === 'number' || typeof id === 'bigint') id = String(id);
  if (typeof id !== 'string' || id.trim() === '') {
    warnOnce('session', `withSession got no usable session id (${typeof id === 'string' ? 'an empty string' : typeof id}): these calls get no session`);
    return fn();
  }
  return runInSession(id === info.sessionId ? info : { ...info, sessionId: id }, fn);
}

/**
 * A hash no other value has, for one that cannot be read for its hash (a getter or toJSON that
 * throws, nesting too deep, a revoked proxy): the call never equals another, so it is never taken
 * for a loop, and the tool runs as it would without Loopwatch.
 */
function unreadable(err: unknown, what: string): string {
  warnOnce(`hash:${what}`, `a tool's ${what} could not be read for its hash (${errorText(err)}): such calls are traced without one, and never counted as repeats`);
  return randomBytes(8).toString('hex');
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
// Without an OpenTelemetry SDK (the loop guard alone) the API's context is a no-op and every call
// starts in the root context: the depth is carried here instead (as context.ts carries the
// session), or no depth budget ever fired there and a recursion ran until the stack overflowed.
// Only there: with an SDK a call started in the root context on purpose (work handed to a trace
// of its own) starts at depth 1, as the SQL pass sees it.
const depthStore = new AsyncLocalStorage<EnclosingCall>();

// The traced call a span belongs to, on the span object itself (no attribute, no context value):
// a call starting inside it finds it through the active span.
const CALL = Symbol('loopwatch.traced_call');
type SpanOfCall = Span & { [CALL]?: TracedCall };

/**
 * Whether a traced call starting inside `outer` (the active span) is the same call seen by two
 * layers: a tool of the agent's that forwards to an instrumented MCP client, a LangChain adapter
 * tool. Same tool (or the outer named `{prefix}_{tool}`), same arguments, another traced function
 * (the same function calling itself is recursion, which the depth budget must see). The outer
 * span then becomes a wrapper (renamed, operation TOOL_WRAPPER_OPERATION, not reported to
 * observers), so the call counts once, from the innermost span, as the AI SDK's own tool spans
 * do (integrations/ai-sdk.ts). Costs one context lookup when calls are not nested.
 */
function wrapsCall(outer: SpanOfCall | undefined, tool: string, argsHash: string, fn: unknown): TracedCall | undefined {
  const o = outer?.[CALL];
  if (o === undefined || o.argsHash !== argsHash || o.fn === fn || !o.span.isRecording()) return undefined;
  // the same tool, or the same under a prefix (@langchain/mcp-adapters 2 names a server's tools `{server}_{tool}`)
  if (o.tool !== tool && !(o.tool.endsWith(tool) && o.tool.charCodeAt(o.tool.length - tool.length - 1) === 0x5f)) return undefined;
  if (!o.wrapper) {
    o.wrapper = true;
    o.span.setAttribute(ATTR.operationName, TOOL_WRAPPER_OPERATION);
    o.span.updateName(`execute_tool.wrapper ${o.tool}`);
  }
  return o;
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
  /** Epoch milliseconds with sub-millisecond precision: the span's start and end times. */
  startedAt: number;
  endedAt: number;
  /**
   * Traced tool calls this one is nested in, plus one (1: not inside another traced tool call);
   * 0 when unknown (the call started before anything observed calls).
   */
  depth: number;
  /**
   * Another traced tool call of the same session made it (it runs inside that call): the model
   * did not request it, so it takes no share of the turn. A sub-agent with a session of its own
   * (outside withSession: a trace of its own) run by a tool call is not nested in this sense.
   */
  nested: boolean;
  span: Span;
}

type Observer = (call: ToolCallRecord) => void;
type BeforeObserver = (call: { sessionId: string | undefined; agent: string | undefined; tool: string; argsHash: string; span: Span; depth: number }) => void;

// Shared by every copy of this module in the process: an application and a dependency that
// traces its own tools may each install the package, and the loop guard the first copy enabled,
// and the process's end, must reach the calls either traces (a second copy's calls ran unguarded
// under LOOPWATCH_GUARD=halt). The key names the shape of what observers receive.
interface ToolCallHooks {
  observers: Set<Observer>;
  beforeObservers: Set<BeforeObserver>;
  /** Set when the process is ending: see stopToolCalls. */
  ending: string | null;
}
const hooks: ToolCallHooks = ((globalThis as { [k: symbol]: ToolCallHooks })[Symbol.for('loopwatch.tool_call_hooks.v1')] ??= {
  observers: new Set(), beforeObservers: new Set(), ending: null,
});
const observers = hooks.observers;
const beforeObservers = hooks.beforeObservers;

/** Subscribes to completed tool calls; returns the unsubscribe function. */
export function onToolCall(observer: Observer): () => void {
  observers.add(observer);
  return () => observers.delete(observer);
}

/**
 * From now on traced tool calls do not run: they throw (an async tool: reject) an Error saying
 * why. Called when the process is ending (exit.ts: Ctrl-C or an uncaught error, nothing of the
 * application's deciding otherwise) while the last spans are sent: without Loopwatch the process
 * would already be gone, so no traced tool call starts (its timers may still run meanwhile).
 */
export function stopToolCalls(why: string): void {
  hooks.ending = why;
}

function endingError(): Error {
  const err = new Error(`tool call not started: the process is ending (${hooks.ending}); Loopwatch is sending its last spans`);
  err.name = 'ProcessEndingError';
  return err;
}

/** Subscribes to tool calls about to run; may throw to stop the call (the loop guard's halt). */
export function beforeToolCall(observer: BeforeObserver): () => void {
  beforeObservers.add(observer);
  return () => beforeObservers.delete(observer);
}

function isPromiseLike(v: unknown): v is PromiseLike<unknown> {
  return !!v && typeof (v as { then?: unknown }).then === 'function';
}

/** A traced call as the calls made inside it see it. */
interface EnclosingCall {
  depth: number;
  /** The session the call is judged in (judgedSession), as the loop guard and the collector take it. */
  session: string;
  /** Its span: a call nested in it has it for parent (through an agent span, a sub-agent's call was requested by its model). */
  spanId: string;
}

/**
 * The session a call is judged in (as the loop guard's sessionOf): the context's, else the one
 * conversation its trace names, else the trace's (a sub-agent in a trace of its own is another session).
 */
function judgedSession(parent: Context, span: Span): string {
  return sessionFrom(parent)?.sessionId ?? traceSession(span.spanContext().traceId);
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
  /** The traced call it runs inside (its wrapper's, for a call that takes a wrapper's place), while something observes calls. */
  outer: EnclosingCall | undefined;
  /** The traced function (a call inside its own function is recursion, never a wrapper). */
  fn: unknown;
  /** Set when a call of the same tool with the same arguments runs inside (wrapsCall). */
  wrapper: boolean;
  /** The model's id of the call, when known. */
  callId: string | undefined;
}

/**
 * A value's hash and, when content is captured, its canonical text: one serialization either way
 * (a value's getters and toJSON run once).
 */
function identify(pick: ((input: never) => unknown) | undefined, input: unknown, capture: boolean, what: 'arguments' | 'result'): [hash: string, text: string | undefined] {
  try {
    // what to identify the call by (argsOf, resultOf), picked here: an option that throws is a value that cannot be read
    const value = pick ? pick(input as never) : input;
    if (!capture) return [valueHash(value), undefined];
    const text = canonicalJson(value);
    return [hash64Hex(text), text];
  } catch (err) {
    return [unreadable(err, what), undefined];
  }
}

/** Ends the call's span as a success; `resultKnown` false (a stream read elsewhere, a generator stopped early) sets no result hash. */
function finishOk(c: TracedCall, result: unknown, resultKnown = true): void {
  let resultHash: string | undefined;
  if (resultKnown) {
    const [hash, resultText] = identify(c.opts.resultOf, result, captureOptions().captureContent, 'result');
    resultHash = hash;
    c.span.setAttribute(ATTR.resultHash, hash);
    if (resultText !== undefined) {
      const capturedResult = capturedText(resultText, 'result', c.tool);
      if (capturedResult !== undefined) c.span.setAttribute(ATTR.toolCallResult, capturedResult);
    }
  }
  const endedAt = preciseNow();
  if (observers.size > 0) notify(c, resultHash, 'ok', undefined, undefined, endedAt);
  endCall(c, endedAt);
}

/**
 * Ends the call's span as failed. Reads the thrown value only through errorTypeOf and errorText,
 * which cannot throw. Its message and stack leave the process redacted and cut (sentErrorText),
 * and the loop guard is given the message as sent: the error the detectors see.
 */
function finishError(c: TracedCall, err: unknown): void {
  const errorType = errorTypeOf(err);
  const message = sentErrorText(errorText(err), c.tool);
  c.span.setAttribute(ATTR.errorType, errorType);
  let stack: string | undefined;
  try {
    stack = err instanceof Error && typeof err.stack === 'string' ? sentErrorText(err.stack, c.tool) : undefined;
  } catch {
    // a stack getter that throws
  }
  c.span.recordException(stack === undefined ? { name: errorType, message } : { name: errorType, message, stack });
  c.span.setStatus({ code: SpanStatusCode.ERROR, message });
  const endedAt = preciseNow();
  if (observers.size > 0) notify(c, undefined, 'error', errorType, message, endedAt);
  endCall(c, endedAt);
}

/** Ends the span, and lets go of the call: the span waits in the export queue, the call's state (its context, options) need not. */
function endCall(c: TracedCall, endedAt: number): void {
  (c.span as SpanOfCall)[CALL] = undefined;
  c.span.end(endedAt);
}

function notify(c: TracedCall, resultHash: string | undefined, status: 'ok' | 'error', errorType: string | undefined, errorMessage: string | undefined, endedAt: number): void {
  if (c.wrapper) return; // the call inside it is reported
  const session = sessionFrom(c.parent);
  const record: ToolCallRecord = {
    sessionId: session?.sessionId, agent: session?.agent, tool: c.tool, argsHash: c.argsHash, resultHash, status, errorType, errorMessage,
    startedAt: c.startedAt, endedAt, depth: c.depth, span: c.span,
    // as the detector pass: its parent span is a tool call of its session (a wrapper is not one)
    nested: c.outer !== undefined && c.outer.spanId === trace.getSpan(c.parent)?.spanContext().spanId && c.outer.session === judgedSession(c.parent, c.span),
  };
  for (const o of observers) tellObserver(o, record, 'observer', (error) => `an onToolCall observer failed (${error}): the tool call goes on`);
}

/**
 * The traced call inside the span's context: runs fn, then sets the result hash (or the error)
 * and ends the span. A module-level function given the call's state rather than a closure per
 * call: this is the hot path of every tool call.
 */
function runInSpan(c: TracedCall, fn: (...args: unknown[]) => unknown, self: unknown, args: unknown[]): unknown {
  let out: unknown;
  if (beforeObservers.size > 0) {
    // the loop guard's halt: the call does not run. An async tool fails as it would, with a rejected promise
    try {
      const session = sessionFrom(c.parent);
      for (const o of beforeObservers) o({ sessionId: session?.sessionId, agent: session?.agent, tool: c.tool, argsHash: c.argsHash, span: c.span, depth: c.depth });
    } catch (err) {
      finishError(c, err);
      return failAsTheToolWould(fn, err);
    }
  }
  try {
    out = fn.apply(self, args);
  } catch (err) {
    finishError(c, err);
    throw err;
  }
  const kind = returnKind(out);
  if (kind === 'promise') {
    // the tool's own promise goes back (a subclass keeps its methods, e.g. the OpenAI SDK's
    // withResponse()); the call ends in handlers that never reject, so a promise the agent does
    // not wait for rejects as unhandled only if it would have without Loopwatch
    (out as Promise<unknown>).then(
      (v: unknown) => settleQuietly(c, v, safeStreamKind(v) === undefined),
      (err: unknown) => finishError(c, err),
    );
    return out;
  }
  if (kind === 'thenable') {
    // another thenable is followed through one then() only (one that runs a query on each then,
    // like a query builder, must not run twice): the caller gets the promise of that
    return Promise.resolve(out as PromiseLike<unknown>).then(
      (v) => settle(c, v),
      (err: unknown) => {
        finishError(c, err);
        throw err;
      },
    );
  }
  return settle(c, out);
}

/** What a tool returned, without letting a value that throws when looked at (a revoked proxy) fail the call. */
function returnKind(out: unknown): 'promise' | 'thenable' | 'value' {
  try {
    return out instanceof Promise ? 'promise' : isPromiseLike(out) ? 'thenable' : 'value';
  } catch {
    return 'value';
  }
}

const AsyncFunction = (async () => {}).constructor;
const AsyncGeneratorFunction = async function* () {}.constructor;
const GeneratorFunction = function* () {}.constructor;

/**
 * A call that does not run (a halt, the process ending) fails the way the tool fails: an async
 * function with a rejected promise, a generator function with a generator that throws when read,
 * anything else by throwing.
 */
function failAsTheToolWould(fn: unknown, err: unknown): never {
  if (fn instanceof AsyncFunction) return Promise.reject(err) as never;
  if (fn instanceof AsyncGeneratorFunction) {
    return (async function* () {
      throw err;
    })() as never;
  }
  if (fn instanceof GeneratorFunction) {
    return (function* () {
      throw err;
    })() as never;
  }
  throw err;
}

/** Ends the call as a success (resultKnown false: a stream or generator not followed); never throws. */
function settleQuietly(c: TracedCall, value: unknown, resultKnown: boolean): void {
  try {
    finishOk(c, value, resultKnown);
  } catch (err) {
    warnOnce('settle', `a tool call's span could not be ended (${errorText(err)})`);
  }
}

/**
 * Ends the call with what fn returned, or follows a generator to its end. The value goes back
 * unchanged: what cannot be hashed is traced without a hash (identify), and a failure inside
 * the instrumentation is said on stderr, never thrown into the agent.
 */
function settle(c: TracedCall, value: unknown): unknown {
  const kind = safeStreamKind(value);
  if (kind === 'generator' || kind === 'async-generator') return observeGenerator(c, context.active(), value as Generator, kind === 'async-generator');
  settleQuietly(c, value, kind === undefined);
  return value;
}

function safeStreamKind(v: unknown): ReturnType<typeof streamKind> {
  try {
    return streamKind(v);
  } catch {
    return 'other'; // a proxy that throws on a property read: not followed
  }
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
  // the generator's own prototype (instanceof, its toString tag, [Symbol.iterator]) and properties, with the three methods observed
  const observedGen = Object.create(Object.getPrototypeOf(gen) as object) as Record<string, unknown>;
  Object.assign(observedGen, gen);
  Object.defineProperties(observedGen, {
    next: { value: (v?: unknown) => step('next', v), configurable: true, writable: true },
    return: { value: (v?: unknown) => step('return', v), configurable: true, writable: true },
    throw: { value: (e?: unknown) => step('throw', e), configurable: true, writable: true },
  });
  return observedGen;
}

/**
 * Runs fn as an agent: an `invoke_agent {name}` span (GenAI semconv) whose spans carry the agent's
 * name, in the current session. For a sub-agent run inside a tool call of the same session (a
 * `delegate` tool that runs another agent loop): its tool calls were requested by its own model
 * and take their turns' tokens, cost and time, in the detectors and the loop guard alike. Without
 * the span, the sub-agent's LLM calls are charged to the delegating tool call and its tool calls
 * to none (a call made by another tool call was not requested by the model). Returns what fn
 * returns (a promise: the span ends when it settles).
 */
export function traceAgent<T>(name: string, fn: () => T): T {
  const parent = context.active();
  const session = sessionFrom(parent);
  const attributes: Attributes = { 'gen_ai.operation.name': 'invoke_agent', 'gen_ai.agent.name': name };
  const span = tracer().startSpan(`invoke_agent ${name}`, { kind: SpanKind.INTERNAL, attributes, startTime: preciseNow() }, parent);
  const failed = (err: unknown) => {
    span.setAttribute(ATTR.errorType, errorTypeOf(err));
    span.setStatus({ code: SpanStatusCode.ERROR, message: sentErrorText(errorText(err), '') });
    span.end(preciseNow());
  };
  const inSpan = trace.setSpan(parent, span);
  let out: T;
  try {
    out = context.with(inSpan, () => (session ? runInSession({ ...session, agent: name }, fn) : fn()));
  } catch (err) {
    failed(err);
    throw err;
  }
  if (isPromiseLike(out)) {
    out.then(() => span.end(preciseNow()), failed);
  } else {
    span.end(preciseNow());
  }
  return out;
}

/** Wraps a tool function so each call is an `execute_tool {name}` span with argument/result hashes. */
export function traceTool<A extends unknown[], R>(name: string, fn: (...args: A) => R, opts: TraceToolOptions = {}): (...args: A) => R {
  const spanName = `execute_tool ${name}`;
  const call = fn as unknown as (...args: unknown[]) => unknown;
  const argsOf = opts.argsOf;
  const traced = function (this: unknown, ...args: A): R {
    if (hooks.ending !== null) return failAsTheToolWould(fn, endingError());
    const parent = context.active();
    const [argsHash, argsText] = identify(argsOf, argsOf || args.length !== 1 ? args : args[0], captureOptions().captureContent, 'arguments');
    const callIdOpt = opts.callId;
    let callId: string | undefined;
    try {
      callId = typeof callIdOpt === 'function' ? callIdOpt(args) : callIdOpt;
    } catch (err) {
      warnOnce('callId', `a callId option failed (${errorText(err)}): calls are traced without an id`);
    }
    const toolType = opts.type ?? 'function';
    const attributes: Attributes = opts.attributes
      ? { ...opts.attributes, 'gen_ai.operation.name': 'execute_tool', 'gen_ai.tool.name': name, 'gen_ai.tool.type': toolType, 'loopwatch.tool.args_hash': argsHash }
      : { 'gen_ai.operation.name': 'execute_tool', 'gen_ai.tool.name': name, 'gen_ai.tool.type': toolType, 'loopwatch.tool.args_hash': argsHash };
    // a call that takes the place of its wrapper (wrapsCall) keeps the model's call id the wrapper had
    const wrapped = wrapsCall(trace.getSpan(parent), name, argsHash, fn);
    if (!callId && wrapped) callId = wrapped.callId;
    if (callId) attributes[ATTR.toolCallId] = callId;
    if (argsText !== undefined) {
      const capturedArgs = capturedText(argsText, 'arguments', name);
      if (capturedArgs !== undefined) attributes[ATTR.toolCallArguments] = capturedArgs;
    }
    const startedAt = preciseNow();
    const span = tracer().startSpan(spanName, { kind: SpanKind.INTERNAL, attributes, startTime: startedAt }, parent);
    // the depth is kept only while something observes calls (the loop guard): a context value per
    // call costs. A call inside a wrapper takes the wrapper's place: the same depth.
    // The context holds the call's depth and session (a nested call of the same session was not
    // requested by the model): values, not the call, which a context kept by something the call
    // made (a timer, a client) would keep alive with every call around it.
    const atRoot = parent === ROOT_CONTEXT && observers.size > 0 && !contextCarries();
    const around = observers.size > 0 ? ((parent.getValue(TOOL_DEPTH) as EnclosingCall | undefined) ?? (atRoot ? depthStore.getStore() : undefined)) : undefined;
    const depth = observers.size > 0 ? (around?.depth ?? 0) + (wrapped === undefined ? 1 : 0) : 0;
    const outer = wrapped !== undefined ? wrapped.outer : around;
    const self = depth > 0 ? { depth, session: judgedSession(parent, span), spanId: span.spanContext().spanId } : undefined;
    const c: TracedCall = { tool: name, opts, parent, span, argsHash, startedAt, depth, outer, fn, wrapper: false, callId };
    (span as SpanOfCall)[CALL] = c;
    const inner = self !== undefined ? trace.setSpan(parent, span).setValue(TOOL_DEPTH, self) : trace.setSpan(parent, span);
    // what startActiveSpan does, with the call's state passed in rather than captured by a closure
    if (atRoot && self !== undefined) return depthStore.run(self, () => context.with(inner, runInSpan, undefined, c, call, this, args as unknown[])) as R;
    return context.with(inner, runInSpan, undefined, c, call, this, args as unknown[]) as R;
  };
  // what the tool function carries (a description or schema a framework reads, its arity)
  for (const key of Reflect.ownKeys(fn)) {
    if (key === 'prototype' || key === 'arguments' || key === 'caller') continue;
    const d = Object.getOwnPropertyDescriptor(fn, key);
    if (d && (key === 'length' || key === 'name' || !(key in traced))) Object.defineProperty(traced, key, d);
  }
  if (!fn.name) Object.defineProperty(traced, 'name', { value: name, configurable: true });
  return traced;
}

type ToolLike = ((...args: never[]) => unknown) | { execute?: (...args: never[]) => unknown };

/**
 * Traces every tool of a tool set: a record of functions, or of tool objects with an
 * `execute` method (Vercel AI SDK, and most agent frameworks). Returns the same shape: an object
 * with the same prototype and the same properties (symbol-keyed and non-enumerable ones too),
 * where each function, and each tool object's execute (its other properties and its prototype's
 * methods kept, `this` still the tool), is traced. An AI SDK execute's second argument carries
 * the model's toolCallId, which becomes the call id. Inherited members are left as they are.
 */
export function wrapTools<T extends Record<string, ToolLike>>(tools: T): T {
  const out = Object.create(Object.getPrototypeOf(tools) as object) as Record<PropertyKey, unknown>;
  for (const key of Reflect.ownKeys(tools)) {
    const d = Object.getOwnPropertyDescriptor(tools, key)!;
    if ('value' in d) d.value = wrapTool(typeof key === 'symbol' ? (key.description ?? 'tool') : key, d.value);
    Object.defineProperty(out, key, d);
  }
  return out as T;
}

// A tool set's tool is identified by the arguments it declares: what a framework passes after
// them is context (the OpenAI SDK's runTools runner, LangChain's run manager and config, the AI
// SDK's options), not the call. Hashed, it made every call new (a runner holds the whole
// conversation) and, with capture on, recorded the conversation as the tool's arguments.
const toolInput = (args: unknown[]): unknown => args[0];
function declaredArgs(fn: (...args: unknown[]) => unknown): (args: unknown[]) => unknown {
  const n = fn.length; // parameters before the first default or rest one
  return n <= 1 ? toolInput : (args) => args.slice(0, n);
}

function wrapTool(name: string, tool: unknown): unknown {
  if (typeof tool === 'function') {
    const fn = tool as (...args: unknown[]) => unknown;
    return traceTool(name, fn, { argsOf: declaredArgs(fn) });
  }
  const execute = tool !== null && typeof tool === 'object' ? (tool as { execute?: unknown }).execute : undefined;
  if (typeof execute !== 'function') return tool;
  const traced = traceTool(name, execute as (...args: unknown[]) => unknown, {
    callId: (args) => (args[1] as { toolCallId?: string } | undefined)?.toolCallId,
    argsOf: toolInput,
  });
  // a new object: a frozen tool's properties are copied as they are, with execute replaced
  const props = Object.getOwnPropertyDescriptors(tool) as PropertyDescriptorMap;
  // every argument passes, and `this` is the tool (the original's own execute would see it so)
  props.execute = { value: (...args: unknown[]) => traced.apply(tool, args), configurable: true, enumerable: true, writable: true };
  return Object.create(Object.getPrototypeOf(tool) as object, props) as unknown;
}
