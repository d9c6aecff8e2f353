// One GenAI-semconv `chat {model}` span per LLM call, shared by the provider SDK wrappers
// (openai.ts, anthropic.ts): request/response model, token usage (input includes cache reads and
// writes, as the conventions say), loopwatch.cost_usd from the price table, finish reasons, and
// the tool calls the model requested (ids and names as attributes, one event per call with the
// arguments' hash). Message content is never recorded; requested tool arguments only when
// capture is on (configureCapture), truncated and redacted like tool arguments.
import { context, SpanKind, SpanStatusCode, trace, type Context, type Span } from '@opentelemetry/api';
import { preciseNow } from '../api.js';
import { canonicalJson, hash64Hex } from '../canonical.js';
import { costUsd, type TokenUsage } from '../cost.js';
import { capturedText, sentErrorText } from '../options.js';
import { errorTypeOf } from '../thrown.js';
import { warnOnce } from '../warn.js';

export const LLM_ATTR = {
  operationName: 'gen_ai.operation.name',
  providerName: 'gen_ai.provider.name',
  requestModel: 'gen_ai.request.model',
  requestMaxTokens: 'gen_ai.request.max_tokens',
  requestTemperature: 'gen_ai.request.temperature',
  responseModel: 'gen_ai.response.model',
  responseId: 'gen_ai.response.id',
  finishReasons: 'gen_ai.response.finish_reasons',
  inputTokens: 'gen_ai.usage.input_tokens',
  outputTokens: 'gen_ai.usage.output_tokens',
  cacheReadTokens: 'gen_ai.usage.cache_read.input_tokens',
  cacheCreationTokens: 'gen_ai.usage.cache_creation.input_tokens',
  // of the cache writes, those to Anthropic's 1-hour cache (priced apart; no convention names them)
  cacheCreation1hTokens: 'loopwatch.usage.cache_creation_1h.input_tokens',
  costUsd: 'loopwatch.cost_usd',
  toolCallIds: 'loopwatch.response.tool_call.ids',
  toolCallNames: 'loopwatch.response.tool_call.names',
  toolCallRequested: 'loopwatch.tool_call.requested',
} as const;

/** A tool call the model asked for in its response. */
export interface RequestedToolCall {
  id: string;
  name: string;
  /** Arguments as the model sent them (a JSON string or a value). */
  arguments?: unknown;
}

export interface ChatOutcome {
  responseModel?: string;
  responseId?: string;
  finishReasons?: string[];
  usage?: TokenUsage;
  toolCalls?: RequestedToolCall[];
  /** The call failed though the request succeeded (a streamed response that ends `failed`). */
  error?: { type: string; message: string };
}

export interface ChatSpan {
  span: Span;
  /** The context to run the provider call in (the chat span active). */
  ctx: Context;
  end(outcome: ChatOutcome): void;
  fail(err: unknown): void;
}

const tracer = () => trace.getTracer('loopwatch', '0.1.0');

export function startChatSpan(req: { provider: string; model: string | undefined; maxTokens?: number; temperature?: number; operation?: string }): ChatSpan {
  const operation = req.operation ?? 'chat';
  const attributes: Record<string, string | number> = {
    [LLM_ATTR.operationName]: operation,
    [LLM_ATTR.providerName]: req.provider,
  };
  if (req.model) attributes[LLM_ATTR.requestModel] = req.model;
  if (typeof req.maxTokens === 'number') attributes[LLM_ATTR.requestMaxTokens] = req.maxTokens;
  if (typeof req.temperature === 'number') attributes[LLM_ATTR.requestTemperature] = req.temperature;
  const parent = context.active();
  const span = tracer().startSpan(req.model ? `${operation} ${req.model}` : operation, { kind: SpanKind.CLIENT, attributes, startTime: preciseNow() }, parent);
  let done = false;
  return {
    span,
    ctx: trace.setSpan(parent, span),
    end(o) {
      if (done) return;
      done = true;
      recording(() => {
        if (o.responseModel) span.setAttribute(LLM_ATTR.responseModel, o.responseModel);
        if (o.responseId) span.setAttribute(LLM_ATTR.responseId, o.responseId);
        if (o.finishReasons?.length) span.setAttribute(LLM_ATTR.finishReasons, o.finishReasons);
        const u = o.usage;
        if (u) {
          if (u.inputTokens !== undefined) span.setAttribute(LLM_ATTR.inputTokens, u.inputTokens);
          if (u.outputTokens !== undefined) span.setAttribute(LLM_ATTR.outputTokens, u.outputTokens);
          if (u.cacheReadTokens) span.setAttribute(LLM_ATTR.cacheReadTokens, u.cacheReadTokens);
          if (u.cacheCreationTokens) span.setAttribute(LLM_ATTR.cacheCreationTokens, u.cacheCreationTokens);
          if (u.cacheCreation1hTokens) span.setAttribute(LLM_ATTR.cacheCreation1hTokens, u.cacheCreation1hTokens);
          const cost = costUsd(o.responseModel ?? req.model, u);
          if (cost !== undefined) span.setAttribute(LLM_ATTR.costUsd, cost);
        }
        const calls = o.toolCalls ?? [];
        if (calls.length) {
          span.setAttribute(LLM_ATTR.toolCallIds, calls.map((c) => c.id));
          span.setAttribute(LLM_ATTR.toolCallNames, calls.map((c) => c.name));
          for (const c of calls) {
            const argsText = canonicalJson(c.arguments);
            const event: Record<string, string> = { 'gen_ai.tool.call.id': c.id, 'gen_ai.tool.name': c.name, 'loopwatch.tool.args_hash': hash64Hex(argsText) };
            const captured = capturedText(argsText, 'arguments', c.name);
            if (captured !== undefined) event['gen_ai.tool.call.arguments'] = captured;
            span.addEvent(LLM_ATTR.toolCallRequested, event);
          }
        }
        if (o.error) {
          span.setAttribute('error.type', o.error.type);
          span.setStatus({ code: SpanStatusCode.ERROR, message: sentErrorText(o.error.message, '') });
        }
      });
      span.end(preciseNow());
    },
    fail(err) {
      if (done) return;
      done = true;
      recording(() => {
        const e = err instanceof Error ? err : new Error(String(err));
        const status = (err as { status?: unknown })?.status;
        const errorClass = errorTypeOf(e);
        span.setAttribute('error.type', typeof status === 'number' ? String(status) : errorClass);
        // a provider's error can quote the prompt: the message and stack leave redacted and cut
        const message = sentErrorText(String(e.message ?? ''), '');
        span.recordException(typeof e.stack === 'string' ? { name: errorClass, message, stack: sentErrorText(e.stack, '') } : { name: errorClass, message });
        span.setStatus({ code: SpanStatusCode.ERROR, message });
      });
      span.end(preciseNow());
    },
  };
}

/**
 * Runs the recording of an LLM call's outcome: a failure there (a response of a shape not
 * foreseen) is said once and the span still ends, never thrown into the agent's call.
 */
function recording(fn: () => void): boolean {
  try {
    fn();
    return true;
  } catch (err) {
    warnOnce('llm-span', `an LLM call's outcome could not be recorded (${errorTypeOf(err)}): its span ends without it`);
    return false;
  }
}

function isPromiseLike(v: unknown): v is PromiseLike<unknown> {
  return !!v && typeof (v as { then?: unknown }).then === 'function';
}

type AsyncIterableObject = { [Symbol.asyncIterator](): AsyncIterator<unknown> };

/**
 * Calls the provider method inside the chat span and returns its own promise object untouched
 * (the SDKs' promises carry extra methods such as withResponse()). A non-streaming response ends
 * the span with `outcome(value)`; a stream is observed chunk by chunk as the caller reads it, and
 * the span ends when the stream is finished (or abandoned).
 */
export function observeCall<R>(
  chat: ChatSpan,
  call: () => R,
  handlers: { outcome: (value: unknown) => ChatOutcome; streaming: boolean; chunk: (acc: ChatOutcome, chunk: unknown) => void },
): R {
  let out: R;
  try {
    out = context.with(chat.ctx, call);
  } catch (err) {
    chat.fail(err);
    throw err;
  }
  // a response not understood ends the span without its outcome: the call itself succeeded
  const outcomeOf = (value: unknown): ChatOutcome => {
    let o: ChatOutcome = {};
    recording(() => {
      o = handlers.outcome(value);
    });
    return o;
  };
  if (!isPromiseLike(out)) {
    chat.end(outcomeOf(out));
    return out;
  }
  const onValue = (value: unknown): void => {
    if (handlers.streaming && value && typeof (value as Partial<AsyncIterableObject>)[Symbol.asyncIterator] === 'function') {
      if (!recording(() => observeStream(chat, value as AsyncIterableObject, handlers.chunk))) chat.end({});
    } else {
      chat.end(outcomeOf(value));
    }
  };
  const onError = (err: unknown): void => chat.fail(err);
  if (isApiPromise(out)) {
    // The SDKs' APIPromise reads the response body in parse(), which then/catch/finally and
    // withResponse() go through, while asResponse() hands the caller the body unread. Observed
    // at its first use rather than with a then() of ours at once, which read the body and left
    // the caller's asResponse() a used one ("Body is unusable"). After asResponse() the span
    // ends when the response arrives, its usage unknown (the caller reads the body).
    // _thenUnwrap() makes another APIPromise on the same response, what the SDKs' parse()
    // helpers (structured output: chat.completions.parse, responses.parse) return: observed too,
    // as the same call (its value is the completion, with the parsed output added).
    let observed = false;
    const watch = (api: ApiPromise): void => {
      const { parse, asResponse, _thenUnwrap: thenUnwrap } = api;
      api.parse = function (this: unknown) {
        const r = parse.call(this);
        if (!observed) {
          observed = true;
          r.then(onValue, onError);
        }
        return r;
      };
      api.asResponse = function (this: unknown) {
        const r = asResponse.call(this);
        if (!observed) {
          observed = true;
          r.then(() => chat.end({}), onError);
        }
        return r;
      };
      if (typeof thenUnwrap === 'function') {
        api._thenUnwrap = function (this: unknown, ...args: unknown[]) {
          const next = thenUnwrap.apply(this, args);
          if (isApiPromise(next)) watch(next);
          return next;
        };
      }
    };
    watch(out);
    return out;
  }
  out.then(onValue, onError);
  return out;
}

/** The SDKs' (OpenAI's, Anthropic's) APIPromise, as far as observeCall uses it. */
interface ApiPromise {
  parse: () => Promise<unknown>;
  asResponse: () => Promise<unknown>;
  _thenUnwrap?: (...args: unknown[]) => unknown;
}

function isApiPromise(v: unknown): v is ApiPromise {
  const p = v as Partial<ApiPromise> | null;
  return !!p && typeof p.parse === 'function' && typeof p.asResponse === 'function';
}

function observeStream(chat: ChatSpan, stream: AsyncIterableObject, chunk: (acc: ChatOutcome, c: unknown) => void): void {
  // The SDKs' Stream keeps its source in an own `iterator` function, which [Symbol.asyncIterator]()
  // and tee() (OpenAI's reads it directly) both call: observed there, a stream split by tee() is
  // observed too. Other streams: at [Symbol.asyncIterator].
  const own = Object.getOwnPropertyDescriptor(stream, 'iterator');
  const key: PropertyKey = own && typeof own.value === 'function' ? 'iterator' : Symbol.asyncIterator;
  const source = key === 'iterator' ? (own!.value as () => AsyncIterator<unknown>) : stream[Symbol.asyncIterator];
  const original = source.bind(stream);
  const acc: ChatOutcome = {};
  Object.defineProperty(stream, key, {
    configurable: true,
    value() {
      const it = original();
      return {
        async next(...args: [] | [unknown]) {
          let r: IteratorResult<unknown>;
          try {
            r = await it.next(...args);
          } catch (err) {
            chat.fail(err);
            throw err;
          }
          if (r.done) chat.end(acc);
          else recording(() => chunk(acc, r.value)); // a chunk not understood is not the caller's error
          return r;
        },
        async return(value?: unknown) {
          chat.end(acc);
          return it.return ? it.return(value) : { done: true as const, value };
        },
        async throw(err?: unknown) {
          chat.fail(err);
          if (it.throw) return it.throw(err);
          throw err;
        },
        [Symbol.asyncIterator]() {
          return this;
        },
      };
    },
  });
}

/**
 * The SDKs' withOptions() makes a new client with the same settings: it is given the same
 * instrumentation, or its calls would go untraced.
 */
export function instrumentCopies<T extends object>(client: T, instrument: (copy: T) => T): void {
  const c = client as { withOptions?: (...args: unknown[]) => unknown };
  const original = c.withOptions;
  if (typeof original !== 'function') return;
  Object.defineProperty(client, 'withOptions', {
    configurable: true,
    writable: true,
    value(this: unknown, ...args: unknown[]) {
      const copy = original.apply(this ?? client, args);
      return copy !== null && typeof copy === 'object' ? instrument(copy as T) : copy;
    },
  });
}

/** Marks an object as instrumented once (wrapping twice would double every span). */
export function markOnce(target: object, key: symbol): boolean {
  const t = target as Record<symbol, unknown>;
  if (t[key]) return false;
  Object.defineProperty(target, key, { value: true, enumerable: false });
  return true;
}
