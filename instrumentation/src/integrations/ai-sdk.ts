// Vercel AI SDK: its own OpenTelemetry integration, in either of its two forms.
// - v4–v6 (experimental_telemetry), and v7's LegacyOpenTelemetry: the legacy ai.* spans:
//   ai.generateText / ai.streamText, ai.generateText.doGenerate (one per model call, with
//   ai.usage.* and some gen_ai.* attributes, but no gen_ai.operation.name) and ai.toolCall (one per
//   tool execution). The collector maps them as convention 'ai_sdk'; session = the telemetry
//   metadata's sessionId (or session_id, conversationId), or gen_ai.conversation.id stamped inside
//   withSession.
// - v7 with @ai-sdk/otel (registerTelemetry(new OpenTelemetry())): GenAI-semconv spans,
//   invoke_agent, chat {model}, execute_tool {tool}, which the collector maps as convention
//   'genai' like any GenAI instrumentation; session = gen_ai.conversation.id stamped inside
//   withSession, else the trace (one generateText = one trace).
//
// What this file adds, in process:
// - aiSdkTelemetry(): the experimental_telemetry settings with the current session in metadata.
// - AiSdkSpanProcessor (installed by startLoopwatch): on tool spans (ai.toolCall, and execute_tool
//   spans of other instrumentations than Loopwatch's own) it adds the argument and result hashes
//   (also those recorded only as the span ends) and, with capture off (the default), removes the
//   raw arguments, results, prompts, messages and responses that any other instrumentation
//   recorded, in attributes and gen_ai.* events (CONTENT_PREFIXES), so they never leave the process
//   (capture on: kept, truncated and redacted like any captured text); on model-call spans it adds
//   loopwatch.cost_usd from the price table. A tool span whose execute is also traced by
//   wrapTools()/traceTool (a Loopwatch execute_tool child span) is renamed a wrapper (operation
//   ids too) so the collector counts the call once, from the Loopwatch span.
// Types only from `ai` (an optional peer dependency).
import { trace, type Context, type Span as ApiSpan, type Tracer } from '@opentelemetry/api';
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { TelemetrySettings } from 'ai';
import { AI_SDK_MODEL_CALL_OPERATIONS, ATTR, GENAI_MODEL_CALL_OPERATIONS, TOOL_WRAPPER_OPERATION } from '../attributes.js';
import { canonicalJson, hash64Hex } from '../canonical.js';
import { sessionFrom } from '../context.js';
import { costUsd } from '../cost.js';
import { llmUsageOf } from '../llm-calls.js';
import { loopDetectedIn, type LoopKind } from '../guard/loop-guard.js';
import { captureOptions, capturedText } from '../options.js';

export interface AiSdkTelemetryOptions {
  /** ai.telemetry.functionId: becomes the agent name in Loopwatch. */
  functionId?: string;
  /**
   * Session id, for calls made outside withSession (default: the one of the enclosing
   * withSession). Inside withSession, withSession's session is every span's, this one's too.
   */
  sessionId?: string;
  metadata?: Record<string, string | number | boolean>;
  /**
   * The tracer the AI SDK is to use (an application's own provider's): it is wrapped as
   * aiSdkTracer() wraps the global one. Telemetry settings that spread aiSdkTelemetry() after a
   * tracer of their own replace it: pass it here instead.
   */
  tracer?: Tracer;
}

/** The AI SDK's TelemetrySettings fields this sets (declared here so `ai` stays optional for types too). */
export interface AiSdkTelemetrySettings {
  isEnabled: boolean;
  functionId?: string;
  metadata: Record<string, string | number | boolean>;
  /** aiSdkTracer(): the AI SDK's own tracer, with the cache counts doGenerate spans lack (AI SDK 5, and 6's generateObject). */
  tracer: Tracer;
}
// compile-time check that the settings fit the AI SDK's own type
const fits: (s: AiSdkTelemetrySettings) => TelemetrySettings = (s) => s;
void fits;

/**
 * A `stopWhen` condition for generateText/streamText: the run stops after a step in which the
 * loop guard stopped a tool call (halt) as one of `kinds` (default: runaway, a budget blown or no
 * progress), or the `stops`-th step of the run with a stopped call (default 2). The AI SDK hands a halted
 * call back to the model as a tool error: the model reads why and can re-plan, but one that asks
 * for a stopped call again would otherwise go on until the step limit, paying for every step.
 * Use it beside a step limit: `stopWhen: [stepCountIs(20), stopWhenHalted()]`. (A review measured
 * the earlier default, runaway only: a model asking for the same stopped call every step ran 18
 * paid steps before the session's no-progress run made it a runaway.)
 */
export function stopWhenHalted(opts: { kinds?: readonly LoopKind[]; stops?: number } = {}): (options: { steps: ReadonlyArray<{ content: ReadonlyArray<unknown> }> }) => boolean {
  const kinds = new Set<LoopKind>(opts.kinds ?? ['runaway']);
  const stops = opts.stops ?? 2;
  if (!Number.isInteger(stops) || stops < 1) throw new TypeError(`stopWhenHalted: stops must be a whole number from 1, not ${String(opts.stops)}`);
  const haltsIn = (step: { content: ReadonlyArray<unknown> }) =>
    step.content.flatMap((part) => {
      const p = part as { type?: unknown; error?: unknown };
      const halt = p.type === 'tool-error' ? loopDetectedIn(p.error) : undefined;
      return halt ? [halt] : [];
    });
  return ({ steps }) => {
    const last = steps[steps.length - 1];
    const now = last ? haltsIn(last) : [];
    if (!now.length) return false;
    if (now.some((h) => kinds.has(h.finding.kind))) return true;
    // steps with a stop, not stopped calls: the parallel calls of one step are one answer the model reads
    let seen = 0;
    for (const step of steps) if (haltsIn(step).length > 0) seen++;
    return seen >= stops;
  };
}

/** `experimental_telemetry` settings for generateText/streamText/…, with the session in metadata. */
export function aiSdkTelemetry(opts: AiSdkTelemetryOptions = {}): AiSdkTelemetrySettings {
  const s = sessionFrom();
  const sessionId = opts.sessionId ?? s?.sessionId;
  const metadata: Record<string, string | number | boolean> = { ...opts.metadata };
  if (sessionId) metadata.sessionId = sessionId;
  const functionId = opts.functionId ?? s?.agent;
  const tracer = aiSdkTracer(opts.tracer);
  return functionId ? { isEnabled: true, functionId, metadata, tracer } : { isEnabled: true, metadata, tracer };
}

/** The spans of one model call that the AI SDK ends without their cache counts (5: all; 6: generateObject's). */
const GENERATE_SPANS = new Set(['ai.generateText.doGenerate', 'ai.generateObject.doGenerate']);

/**
 * The tracer the AI SDK uses when given none (`trace.getTracer('ai')`, the same spans), or the one
 * given, which adds to doGenerate spans the cache counts the SDK leaves out: ai@5 records a
 * non-streaming model call's usage as ai.usage.promptTokens / completionTokens only (its doStream
 * spans carry ai.usage.cachedInputTokens), so an OpenAI call's cached input would be priced as
 * input (its provider metadata has no count of them either); the AI SDK 6 records them
 * (ai.usage.inputTokenDetails.*) on generateText's spans but not on generateObject's. The counts
 * are the model's answer's, set before the span ends, so that the cost stamped and the collector
 * read them as for a stream: an AI SDK 5 answer's usage.cachedInputTokens as
 * ai.usage.cachedInputTokens; an AI SDK 6 answer's usage.inputTokens.{noCache, cacheRead,
 * cacheWrite} as ai.usage.inputTokenDetails.*. A span that has them is left as it is.
 * aiSdkTelemetry() sets it; settings of an application's own can take it as
 * `tracer: aiSdkTracer()` (or `aiSdkTracer(theirs)`).
 */
export function aiSdkTracer(base?: Tracer): Tracer {
  const ai = () => base ?? trace.getTracer('ai');
  return {
    startSpan: (...args: Parameters<Tracer['startSpan']>) => ai().startSpan(...args),
    startActiveSpan: (name: string, ...rest: unknown[]) => {
      const fn = rest[rest.length - 1];
      if (GENERATE_SPANS.has(name) && typeof fn === 'function') rest[rest.length - 1] = withCacheReads(fn as (span: ApiSpan) => unknown);
      return (ai().startActiveSpan as (name: string, ...rest: unknown[]) => unknown)(name, ...rest);
    },
  } as Tracer;
}

/** Sets on a doGenerate span the cache counts of the model's answer that the SDK left out. */
function setCacheCounts(span: ApiSpan, result: unknown): void {
  const usage = (result as { usage?: { cachedInputTokens?: unknown; inputTokens?: unknown } } | undefined)?.usage;
  if (!usage || !span.isRecording()) return;
  const a = attrsOf(span as unknown as Span);
  if (Object.keys(a).some((k) => k.startsWith('ai.usage.inputTokenDetails.')) || a['ai.usage.cachedInputTokens'] !== undefined) return;
  // the AI SDK 6's (LanguageModelV3): the input's parts
  const input = usage.inputTokens;
  if (input !== null && typeof input === 'object') {
    const parts = input as { noCache?: unknown; cacheRead?: unknown; cacheWrite?: unknown };
    // A provider of the 6's own gives noCache among them, and its input count is the whole
    // input: the parts as the 6 records them on its other spans. A provider of the 5's, through
    // the 6's compatibility layer, gives its own count as the total and the reads alone (an
    // Anthropic one's count leaves the cache out): set as the 5's reads, so that the span is read
    // as the 5's (with Anthropic's usage in the metadata, when recorded; a regression review: the
    // parts made it read as the 6's, and lost the writes)
    if (typeof parts.noCache === 'number') {
      const named = { noCacheTokens: parts.noCache, cacheReadTokens: parts.cacheRead, cacheWriteTokens: parts.cacheWrite };
      for (const [k, v] of Object.entries(named)) if (typeof v === 'number') span.setAttribute(`ai.usage.inputTokenDetails.${k}`, v);
    } else if (typeof parts.cacheRead === 'number') {
      span.setAttribute('ai.usage.cachedInputTokens', parts.cacheRead);
    }
    return;
  }
  if (typeof usage.cachedInputTokens === 'number') span.setAttribute('ai.usage.cachedInputTokens', usage.cachedInputTokens);
}

/**
 * The AI SDK's span function with the span's end held until the function's result is known: the
 * SDK ends the span and then returns the model's answer (recordSpan); the reads are set from the
 * answer, then the span ends, a few microtasks later than it would have.
 */
function withCacheReads(fn: (span: ApiSpan) => unknown): (span: ApiSpan) => unknown {
  return (span) => {
    let endArgs: Parameters<ApiSpan['end']> | undefined;
    let settled = false;
    const held = new Proxy(span, {
      get(target, key) {
        if (key === 'end') {
          return (...args: Parameters<ApiSpan['end']>) => {
            if (settled) target.end(...args);
            else endArgs = args;
          };
        }
        const v: unknown = Reflect.get(target, key, target);
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const finish = () => {
      settled = true;
      if (endArgs) span.end(...endArgs);
    };
    let out: unknown;
    try {
      out = fn(held);
    } catch (err) {
      finish();
      throw err;
    }
    if (!(out instanceof Promise)) {
      finish();
      return out;
    }
    return out.then(
      (result: unknown) => {
        try {
          setCacheCounts(span, result);
        } finally {
          finish();
        }
        return result;
      },
      (err: unknown) => {
        finish();
        throw err;
      },
    );
  };
}


/**
 * Attributes that carry content: prompts, messages, responses, tool definitions, arguments and
 * results: the AI SDK's ai.*, GenAI semconv (and its older indexed gen_ai.prompt.N.* form, as
 * OpenLLMetry writes it), the Anthropic SDK's own spans, OpenInference's and Traceloop's.
 */
const CONTENT_PREFIXES = [
  'ai.prompt', 'ai.response.text', 'ai.response.toolCalls', 'ai.response.object', 'ai.response.reasoning', 'ai.toolCall.args', 'ai.toolCall.result',
  'ai.toolCall.output', 'ai.value', 'ai.values', 'ai.embedding', 'ai.documents', 'gen_ai.prompt', 'gen_ai.completion', 'gen_ai.input.messages', 'gen_ai.output.messages',
  'gen_ai.system_instructions', 'gen_ai.tool.definitions', 'gen_ai.tool.call.arguments', 'gen_ai.tool.call.result',
  'anthropic.tool_result.content',
  'input.value', 'output.value', 'llm.input_messages', 'llm.output_messages', 'llm.prompts', 'llm.prompt_template', 'llm.completions', 'llm.tools',
  'tool.parameters', 'retrieval.documents', 'reranker.input_documents', 'reranker.output_documents', 'reranker.query', 'embedding.embeddings', 'message.content',
  'traceloop.entity.input', 'traceloop.entity.output',
];
/** Attributes of a `gen_ai.*` span event (the older GenAI conventions' message events) that carry content. */
const EVENT_CONTENT = new Set(['content', 'message', 'tool_calls', 'body']);
const REQUEST_HEADERS = 'ai.request.headers.';
/** Of those, what goes into the model (redact hooks see it as kind 'arguments'). */
const INPUT_CONTENT = /^(ai\.prompt|gen_ai\.prompt|gen_ai\.input\.|gen_ai\.system_instructions|gen_ai\.tool\.definitions|input\.|llm\.input_messages|llm\.prompt|llm\.tools|tool\.parameters|traceloop\.entity\.input)|args|arguments/;
/** The first segments of those names: a span none of whose attributes starts with one (HTTP, a database) is passed over at once. */
const CONTENT_ROOTS = new Set(CONTENT_PREFIXES.map((p) => p.slice(0, p.indexOf('.'))));
/**
 * Whether an attribute carries content. On AI SDK and GenAI spans by prefix (`ai.prompt.messages`,
 * `ai.response.reasoningDetails`); on other spans by whole segments only (`input.value`,
 * `llm.input_messages.0.message.content`), so that an HTTP span's `message.content_length` or
 * a count like `gen_ai.prompt_tokens` stays.
 */
function isContent(key: string, byPrefix: boolean): boolean {
  const dot = key.indexOf('.');
  if (dot < 0 || !CONTENT_ROOTS.has(key.slice(0, dot))) return false;
  for (const p of CONTENT_PREFIXES) {
    if (key.startsWith(p) && (byPrefix || key.length === p.length || key.charCodeAt(p.length) === 46 /* . */)) return true;
  }
  return false;
}
/** The tracer of Loopwatch's own spans (api.ts, llm-span.ts): they follow the capture options already. */
const LOOPWATCH_SCOPE = 'loopwatch';
const scopeOf = (span: Span | ReadableSpan): string => (span as { instrumentationScope?: { name?: string } }).instrumentationScope?.name ?? '';

type Attrs = Record<string, unknown>;
const attrsOf = (span: Span | ReadableSpan): Attrs => (span as { attributes?: Attrs }).attributes ?? {};

function opOf(a: Attrs): string {
  return typeof a['ai.operationId'] === 'string' ? (a['ai.operationId'] as string) : '';
}

/**
 * Applies the capture options to the span's content, in its attributes and in its `gen_ai.*`
 * events: removed, or truncated and redacted. `byPrefix`: an AI SDK or GenAI span (isContent).
 */
function scrubContent(span: Span, tool: string, byPrefix: boolean): void {
  const a = attrsOf(span);
  const capture = captureOptions().captureContent;
  for (const key of Object.keys(a)) {
    // request headers the application passed (a proxy's Authorization among them): never sent, capture or not
    if (key.startsWith(REQUEST_HEADERS)) {
      delete a[key];
      continue;
    }
    if (!isContent(key, byPrefix)) continue;
    scrubValue(a, key, capture, INPUT_CONTENT.test(key) ? 'arguments' : 'result', tool);
  }
  const events = (span as { events?: { name: string; attributes?: Attrs }[] }).events;
  if (!events?.length) return;
  for (const event of events) {
    if (!event.name.startsWith('gen_ai.') || !event.attributes) continue;
    const kind = /prompt|user|system|input/.test(event.name) ? 'arguments' : 'result';
    for (const key of Object.keys(event.attributes)) {
      if (EVENT_CONTENT.has(key) || isContent(key, true)) scrubValue(event.attributes, key, capture, kind, tool);
    }
  }
}

/**
 * Capture off: the value removed. On: text (or each text of an array of texts) redacted and cut;
 * removed if the redact hook failed on any of it. Other values (numbers, flags) stay.
 */
function scrubValue(attrs: Attrs, key: string, capture: boolean, kind: 'arguments' | 'result', tool: string): void {
  const v = attrs[key];
  if (!capture) {
    delete attrs[key];
    return;
  }
  if (typeof v === 'string') {
    const kept = capturedText(v, kind, tool);
    if (kept === undefined) delete attrs[key];
    else attrs[key] = kept;
  } else if (Array.isArray(v) && v.some((x) => typeof x === 'string')) {
    const kept = v.map((x) => (typeof x === 'string' ? capturedText(x, kind, tool) : x));
    if (kept.includes(undefined)) delete attrs[key];
    else attrs[key] = kept;
  }
}

export class AiSdkSpanProcessor implements SpanProcessor {
  /** Tool spans of the AI SDK (or another instrumentation) in flight, by span id: whether a Loopwatch execute_tool ran inside, and the model's call id. */
  private readonly toolSpans = new Map<string, { traced: boolean; callId: string | undefined; agent: string | undefined }>();

  onStart(span: Span, _parentContext: Context): void {
    const a = attrsOf(span);
    const op = opOf(a);
    const genAiTool = a[ATTR.operationName] === 'execute_tool';
    if (genAiTool && scopeOf(span) === LOOPWATCH_SCOPE) {
      // traceTool inside another library's tool span: that one becomes the wrapper
      const parent = (span as { parentSpanContext?: { spanId?: string } }).parentSpanContext?.spanId;
      const t = parent ? this.toolSpans.get(parent) : undefined;
      if (t) {
        t.traced = true;
        // the counted call keeps the model's id for it (an MCP call inside the tool has none of its own)
        if (t.callId !== undefined && a[ATTR.toolCallId] === undefined) span.setAttribute(ATTR.toolCallId, t.callId);
        // and its agent: the AI SDK call's functionId, which the wrapper span names
        if (t.agent !== undefined) span.setAttribute(ATTR.agentName, t.agent);
      }
      return;
    }
    if (op !== 'ai.toolCall' && !genAiTool) return;
    // the arguments' identity now: their text may be removed before the span leaves the process
    const args = op === 'ai.toolCall' ? a['ai.toolCall.args'] : a['gen_ai.tool.call.arguments'];
    if (typeof args === 'string' && a[ATTR.argsHash] === undefined) span.setAttribute(ATTR.argsHash, hash64Hex(canonicalJson(args)));
    const callId = op === 'ai.toolCall' ? a['ai.toolCall.id'] : a[ATTR.toolCallId];
    const fn = a['ai.telemetry.functionId'];
    this.toolSpans.set(span.spanContext().spanId, { traced: false, callId: typeof callId === 'string' && callId !== '' ? callId : undefined, agent: typeof fn === 'string' && fn !== '' ? fn : undefined });
    if (this.toolSpans.size > 10_000) this.toolSpans.clear(); // spans never ended: do not grow without bound
  }

  onEnding(span: Span): void {
    if (scopeOf(span) === LOOPWATCH_SCOPE) return;
    const a = attrsOf(span);
    const op = opOf(a);
    const genAiOp = typeof a[ATTR.operationName] === 'string' ? (a[ATTR.operationName] as string) : '';
    if (op === 'ai.toolCall' || genAiOp === 'execute_tool') {
      const id = span.spanContext().spanId;
      const t = this.toolSpans.get(id);
      this.toolSpans.delete(id);
      const legacy = op === 'ai.toolCall';
      // arguments recorded only as the span ends (the Anthropic SDK's tool runner) are hashed here, before they are removed
      const args = legacy ? a['ai.toolCall.args'] : a['gen_ai.tool.call.arguments'];
      if (typeof args === 'string' && a[ATTR.argsHash] === undefined) span.setAttribute(ATTR.argsHash, hash64Hex(canonicalJson(args)));
      const result = legacy ? (a['ai.toolCall.result'] ?? a['ai.toolCall.output']) : (a['gen_ai.tool.call.result'] ?? a['anthropic.tool_result.content']);
      if (typeof result === 'string' && a[ATTR.resultHash] === undefined) span.setAttribute(ATTR.resultHash, hash64Hex(canonicalJson(result)));
      const tool = String((legacy ? a['ai.toolCall.name'] : a[ATTR.toolName]) ?? '');
      scrubContent(span, tool, true);
      if (t?.traced) {
        if (legacy) {
          span.updateName('ai.toolCall.wrapper');
          span.setAttribute('ai.operationId', 'ai.toolCall.wrapper');
          // the collector's view also matches operation.name starting with ai.toolCall
          span.setAttribute('operation.name', `loopwatch.wrapper ${String(a['operation.name'] ?? 'ai.toolCall')}`);
        } else {
          span.updateName(`execute_tool.wrapper ${tool}`);
          span.setAttribute(ATTR.operationName, TOOL_WRAPPER_OPERATION); // not execute_tool: not a second call
        }
      }
      return;
    }
    if ((AI_SDK_MODEL_CALL_OPERATIONS.has(op) || GENAI_MODEL_CALL_OPERATIONS.has(genAiOp)) && a['loopwatch.cost_usd'] === undefined) {
      const { model, input, output, cacheRead, cacheWrite } = llmUsageOf(a);
      const cost = costUsd(model, { inputTokens: input, outputTokens: output, cacheReadTokens: cacheRead, cacheCreationTokens: cacheWrite });
      if (cost !== undefined) span.setAttribute('loopwatch.cost_usd', cost);
    }
    scrubContent(span, '', op.startsWith('ai.') || genAiOp !== '');
  }

  onEnd(_span: ReadableSpan): void {}
  forceFlush(): Promise<void> {
    return Promise.resolve();
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}
