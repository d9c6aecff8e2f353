// LLM calls as they end, for what runs in the process (the loop guard's token and cost budgets).
// Every LLM span passes the span processors, whichever library made it: Loopwatch's OpenAI and
// Anthropic wrappers, the Vercel AI SDK's own spans, any GenAI-semconv instrumentation. So the
// calls are read from ended spans, with the mapping the collector's agent_llm_calls view applies
// (queries/schema/002_agent_calls.sql): which spans are LLM calls, their tokens, their cost.
import { SpanKind, trace, type Context, type SpanContext } from '@opentelemetry/api';
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { AI_SDK_MODEL_CALL_OPERATIONS, ATTR, GENAI_MODEL_CALL_OPERATIONS } from './attributes.js';
import { callCost } from './cost.js';
import { tellObserver } from './warn.js';

/** An LLM call that ended. */
export interface LlmCallRecord {
  /** gen_ai.conversation.id (stamped from withSession by SessionSpanProcessor), else the trace id. */
  sessionId: string;
  traceId: string;
  spanId: string;
  model: string;
  /** llm.token_count.total when given, else input + output: agent_llm_calls.total_tokens. */
  tokens: number;
  /** The reported cost (llm.cost.total, loopwatch.cost_usd) when > 0, else the tokens at the model's list price (0 without one). */
  costUsd: number;
  /** Epoch milliseconds. */
  startedAt: number;
  endedAt: number;
  /**
   * The span id of the tool call it was made in (its parent span is an execute_tool span): that
   * tool call spent it; it did not request the tool calls that follow (as
   * queries/features/detector-calls.sql). Set by LlmCallTap.
   */
  insideTool?: string;
}

type Observer = (call: LlmCallRecord) => void;
const observers = new Set<Observer>();

/** Subscribes to LLM calls as their spans end (through LlmCallTap); returns the unsubscribe function. */
export function onLlmCall(observer: Observer): () => void {
  observers.add(observer);
  return () => observers.delete(observer);
}

/** A tool call another library traced (the AI SDK's, a tool runner's) with no Loopwatch-traced call in or around it. */
export interface UntracedToolCall {
  tool: string;
  /** Who traced it: 'AI SDK', or the tracer's name. */
  tracer: string;
}
type UntracedObserver = (call: UntracedToolCall) => void;
const untracedObservers = new Set<UntracedObserver>();

/**
 * Tool calls the loop guard cannot see: spans of other libraries' tool calls (`ai.toolCall`, an
 * `execute_tool` span of another tracer, OpenInference's and Traceloop's tool spans) with no
 * Loopwatch-traced call inside them or around them. Reported by LlmCallTap while something
 * observes LLM calls (the guard does).
 */
export function onUntracedToolCall(observer: UntracedObserver): () => void {
  untracedObservers.add(observer);
  return () => untracedObservers.delete(observer);
}

const OWN_TRACER = 'loopwatch';
const scopeOf = (span: unknown): string | undefined => {
  const s = span as { instrumentationScope?: { name?: string }; instrumentationLibrary?: { name?: string } };
  return (s.instrumentationScope ?? s.instrumentationLibrary)?.name;
};
/** A tool call's span of another library (not an MCP server's side of a call: kind SERVER). */
function foreignToolSpan(span: unknown): boolean {
  const a = (span as { attributes?: Record<string, unknown> }).attributes;
  if (!a || (span as { kind?: SpanKind }).kind === SpanKind.SERVER) return false;
  return (a['ai.operationId'] === 'ai.toolCall' || a[ATTR.operationName] === 'execute_tool' || a['openinference.span.kind'] === 'TOOL' || a['traceloop.span.kind'] === 'tool')
    && scopeOf(span) !== OWN_TRACER;
}
const ownToolSpan = (span: unknown): boolean =>
  scopeOf(span) === OWN_TRACER && (span as { attributes?: Record<string, unknown> }).attributes?.[ATTR.operationName] === 'execute_tool';


// also the attributes of a span still ending (the AI SDK processor reads them in onEnding)
type Attributes = Readonly<Record<string, unknown>>;

/** The first of the attributes that is set (not empty), as in the view's multiIf chains. */
function first(a: Attributes, keys: readonly string[]): unknown {
  for (const k of keys) {
    const v = a[k];
    if (v !== undefined && v !== '') return v;
  }
  return undefined;
}

/** toUInt64OrZero / toFloat64OrZero of an attribute value. */
function count(v: unknown): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v) : NaN;
  return Number.isFinite(n) && n > 0 ? n : 0;
}

export function isLlmSpan(a: Attributes): boolean {
  return GENAI_MODEL_CALL_OPERATIONS.has(a[ATTR.operationName] as string) || a['openinference.span.kind'] === 'LLM' || AI_SDK_MODEL_CALL_OPERATIONS.has(a['ai.operationId'] as string);
}

/** A JSON attribute (the AI SDK's provider metadata, ADK's response) as an object, or undefined. */
function json(v: unknown): Record<string, unknown> | undefined {
  if (typeof v !== 'string' || v === '') return undefined;
  try {
    const o = JSON.parse(v) as unknown;
    return o !== null && typeof o === 'object' ? (o as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
/** An object's member, when it is one (JSONExtractRaw's path). */
const member = (o: unknown, key: string): Record<string, unknown> | undefined => {
  const v = o !== null && typeof o === 'object' ? (o as Record<string, unknown>)[key] : undefined;
  return v !== null && typeof v === 'object' ? (v as Record<string, unknown>) : undefined;
};
const has = (o: Record<string, unknown> | undefined, key: string): boolean => o !== undefined && o[key] !== undefined;

/**
 * The model and token counts of an LLM span, in the order of the agent_llm_calls view's multiIf
 * chains (queries/schema/019_cache_tokens_by_source.sql, where each source's meaning is written
 * out; docs/conventions.md). `input` is the call's whole input, the cache reads and writes among
 * it (the GenAI conventions' meaning, as costUsd takes it): a source whose count leaves the cache
 * out has it added (Anthropic's own usage, the AI SDK 4's and 5's Anthropic providers with their
 * metadata, a count smaller than its cache). One mapping for the LLM call tap and for the cost the
 * AI SDK processor stamps.
 */
export function llmUsageOf(a: Attributes): { model: string; input: number; output: number; cacheRead: number; cacheWrite: number; cacheWrite1h: number; total: number } {
  const model = String(first(a, ['gen_ai.response.model', 'ai.response.model']) ?? first(a, ['gen_ai.request.model', 'llm.model_name', 'ai.model.id']) ?? '');
  const op = a['ai.operationId'];
  // the AI SDK's spans before 6 (no inputTokenDetails): their provider metadata, and Anthropic's own usage in it
  const sdkLegacy = AI_SDK_MODEL_CALL_OPERATIONS.has(op as string) && !GENAI_MODEL_CALL_OPERATIONS.has(a[ATTR.operationName] as string) && a['openinference.span.kind'] !== 'LLM'
    && first(a, ['ai.usage.inputTokenDetails.noCacheTokens', 'ai.usage.inputTokenDetails.cacheReadTokens', 'ai.usage.inputTokenDetails.cacheWriteTokens']) === undefined;
  const pm = sdkLegacy ? json(a['ai.response.providerMetadata']) : undefined;
  const anthropic = member(pm, 'anthropic');
  const openai = member(pm, 'openai');
  const usage = member(anthropic, 'usage');
  const pmUsage = has(usage, 'input_tokens');
  // Google ADK's response usage (GenAI spans only, as the view)
  const adk = isGenAi(a) ? member(json(a['gcp.vertex.agent.llm_response']), 'usage_metadata') : undefined;
  const reportedIn = count(first(a, ['gen_ai.usage.input_tokens', 'gen_ai.usage.prompt_tokens', 'llm.token_count.prompt', 'ai.usage.inputTokens', 'ai.usage.promptTokens']));
  const reportedOut = count(first(a, ['gen_ai.usage.output_tokens', 'gen_ai.usage.completion_tokens', 'llm.token_count.completion', 'ai.usage.outputTokens', 'ai.usage.completionTokens']));
  const readAttr = first(a, ['gen_ai.usage.cache_read.input_tokens', 'gen_ai.usage.cache_read_input_tokens', 'llm.token_count.prompt_details.cache_read', 'ai.usage.cachedInputTokens', 'ai.usage.inputTokenDetails.cacheReadTokens']);
  const cacheRead = pmUsage ? count(usage!.cache_read_input_tokens)
    : readAttr !== undefined ? count(readAttr)
    : has(anthropic, 'cacheReadInputTokens') ? count(anthropic!.cacheReadInputTokens)
    : has(openai, 'cachedPromptTokens') ? count(openai!.cachedPromptTokens)
    : count(adk?.cached_content_token_count);
  const writeAttr = first(a, ['gen_ai.usage.cache_creation.input_tokens', 'gen_ai.usage.cache_creation_input_tokens', 'gen_ai.usage.cache_write.input_tokens', 'gen_ai.usage.cache_write_input_tokens', 'llm.token_count.prompt_details.cache_write', 'ai.usage.inputTokenDetails.cacheWriteTokens']);
  const cacheWrite = pmUsage ? count(usage!.cache_creation_input_tokens) : writeAttr !== undefined ? count(writeAttr) : count(anthropic?.cacheCreationInputTokens);
  const own = pmUsage ? count(usage!.input_tokens) : reportedIn > 0 ? reportedIn : count(adk?.prompt_token_count);
  const provider = a['ai.model.provider'];
  const cacheApart = pmUsage || (sdkLegacy && typeof provider === 'string' && provider.toLowerCase().includes('anthropic') && anthropic !== undefined)
    || cacheRead + cacheWrite > own;
  // ADK: Gemini's thoughts are output (its output count is candidates_token_count without them)
  const candidates = adk?.candidates_token_count;
  const output = candidates !== undefined && (reportedOut === 0 || reportedOut === count(candidates)) ? count(candidates) + count(adk!.thoughts_token_count) : reportedOut;
  // of the writes, those to Anthropic's 1-hour cache (instrumentAnthropic's; the store does not read them)
  const cacheWrite1h = count(a['loopwatch.usage.cache_creation_1h.input_tokens']);
  return { model, input: cacheApart ? own + cacheRead + cacheWrite : own, output, cacheRead, cacheWrite, cacheWrite1h, total: count(a['llm.token_count.total']) };
}

/** The view's convention 'genai' (its first and fourth multiIf branches): ADK's LLM spans name no operation. */
function isGenAi(a: Attributes): boolean {
  if (GENAI_MODEL_CALL_OPERATIONS.has(a[ATTR.operationName] as string)) return true;
  return !a[ATTR.operationName] && !a['ai.operationId'] && !a['openinference.span.kind'] && !a['traceloop.span.kind'] && !a['llm.request.type']
    && Boolean(a['gen_ai.system'] || a['gen_ai.provider.name']);
}

/** The LLM call a span records, or undefined when it is not one. */
export function llmCallOf(span: ReadableSpan): LlmCallRecord | undefined {
  const a = span.attributes;
  if (!isLlmSpan(a)) return undefined;
  const { model, input, output, cacheRead, cacheWrite, cacheWrite1h, total } = llmUsageOf(a);
  const reported = count(first(a, ['llm.cost.total', 'loopwatch.cost_usd']));
  const ctx = span.spanContext();
  const [s, ns] = span.endTime;
  const [s0, ns0] = span.startTime;
  return {
    sessionId: String(a[ATTR.conversationId] || ctx.traceId),
    traceId: ctx.traceId,
    spanId: ctx.spanId,
    model,
    tokens: total > 0 ? total : input + output,
    costUsd: callCost(reported, model, { inputTokens: input, outputTokens: output, cacheReadTokens: cacheRead, cacheCreationTokens: cacheWrite, cacheCreation1hTokens: cacheWrite1h }),
    startedAt: s0 * 1000 + ns0 / 1e6,
    endedAt: s * 1000 + ns / 1e6,
  };
}

// A trace whose spans name more than one conversation (not a conversation id: it holds a NUL).
const MANY = '\u0000many';
// Traces whose conversation the tap remembers: the latest, enough for the calls in flight.
const MAX_TRACES = 4096;
const conversations = new Map<string, string>();

/**
 * The session of a trace's spans that name none: the conversation the spans of the trace seen so
 * far name, when they name one only, else the trace, as the collector gives it to them (from the
 * other spans of the trace in the same export). Conversations are known while LlmCallTap watches
 * spans for an observer (the loop guard).
 */
export function traceSession(traceId: string): string {
  const c = conversations.get(traceId);
  return c === undefined || c === MANY ? traceId : c;
}

function noteConversation(traceId: string, named: unknown): void {
  if (!named) return;
  const conversation = String(named);
  const known = conversations.get(traceId);
  // the least recently named trace is forgotten first: a trace still at work is named again and
  // moves to the end (a Map keeps insertion order)
  if (known !== undefined) conversations.delete(traceId);
  else if (conversations.size >= MAX_TRACES) conversations.delete(conversations.keys().next().value!);
  conversations.set(traceId, known === undefined || known === conversation ? conversation : MANY);
}

/**
 * The span processor that reports ended LLM spans to onLlmCall's observers. startLoopwatch()
 * installs it after the session stamper and the AI SDK processor (whose attributes it reads); an
 * application with its own tracer provider adds it the same way. Costs one Set size check per span
 * while nothing observes.
 */
export class LlmCallTap implements SpanProcessor {
  /** Spans started with a tool call's span as their parent: its span id and the session it names, if any (only while something observes). */
  private readonly insideTool = new WeakMap<object, { spanId: string; sessionId: string | undefined }>();
  /**
   * Spans open while the untraced-call check runs, by span id: their parent's id, what kind of
   * tool span they are, and for another library's, whether a Loopwatch-traced call ran inside or
   * around it (the guard saw the call). A Loopwatch call is often a grandchild of the framework's
   * tool span (an application span between them), so the check walks up through these. Ids and
   * flags only: spans that never end would otherwise be kept whole.
   */
  private readonly open = new Map<string, { parent: string | undefined; foreign: boolean; own: boolean; guarded: boolean }>();
  onStart(span: Span, parentContext: Context): void {
    if (observers.size === 0) return;
    noteConversation(span.spanContext().traceId, (span as unknown as { attributes?: Attributes }).attributes?.[ATTR.conversationId]);
    const parent = trace.getSpan(parentContext);
    if (untracedObservers.size > 0) this.noteToolNesting(span, parent?.spanContext().spanId);
    const attributes = (parent as unknown as { attributes?: Record<string, unknown> } | undefined)?.attributes;
    if (parent && attributes?.[ATTR.operationName] === 'execute_tool') {
      // an MCP server's span of the call (kind SERVER, traced in this process): not a call (schema
      // 017), its own work is the agent's call's, its parent's (as queries/features/detector-calls.sql)
      const served = (parent as { kind?: SpanKind }).kind === SpanKind.SERVER ? (parent as { parentSpanContext?: SpanContext }).parentSpanContext?.spanId : undefined;
      const named = attributes[ATTR.conversationId];
      this.insideTool.set(span, { spanId: served ?? parent.spanContext().spanId, sessionId: named ? String(named) : undefined });
    }
  }
  /** Marks another library's tool span guarded when a Loopwatch-traced call runs inside it or it inside one. */
  private noteToolNesting(span: Span, parentId: string | undefined): void {
    const own = ownToolSpan(span);
    const foreign = !own && foreignToolSpan(span);
    if (this.open.size >= 100_000) this.open.clear(); // spans never ended: the check is a courtesy, not worth the memory
    const entry = { parent: parentId, foreign, own, guarded: false };
    this.open.set(span.spanContext().spanId, entry);
    if (!own && !foreign) return;
    // up the open ancestors (at most 64): a foreign tool span above an own call, or an own call above a foreign span
    let id = parentId;
    for (let i = 0; i < 64 && id !== undefined; i++) {
      const up = this.open.get(id);
      if (!up) return;
      if (own && up.foreign) return void (up.guarded = true);
      if (foreign && up.own) return void (entry.guarded = true);
      id = up.parent;
    }
  }

  // An observer's failure stays here: thrown out of onEnd it skipped the processors after this one
  // (the span's export among them) and came out of the span's end() in the agent's call.
  onEnd(span: ReadableSpan): void {
    const spanId = span.spanContext().spanId;
    const open = this.open.get(spanId);
    if (open) this.open.delete(spanId);
    if (observers.size === 0) return;
    const traceId = span.spanContext().traceId;
    const named = span.attributes[ATTR.conversationId];
    noteConversation(traceId, named);
    if (untracedObservers.size > 0 && open?.foreign && !open.guarded) {
      const a = span.attributes;
      const tool = String(a['ai.toolCall.name'] ?? a[ATTR.toolName] ?? a['tool.name'] ?? a['traceloop.entity.name'] ?? span.name);
      const untraced = { tool, tracer: a['ai.operationId'] === 'ai.toolCall' ? 'AI SDK' : (scopeOf(span) ?? 'another library') };
      for (const o of untracedObservers) tellObserver(o, untraced, 'llm-observer', llmObserverFailed);
    }
    const call = llmCallOf(span);
    if (!call) return;
    // a span that names no session is in its trace's conversation when the trace names one only
    // (the GenAI conventions put the conversation on model calls), else in the trace's session:
    // the LLM call as the tool span around it, as the collector fills them in
    const unnamed = traceSession(traceId);
    if (!named) call.sessionId = unnamed;
    // made inside a tool call of its own session: a sub-agent with a session of its own, run by
    // another session's tool call, keeps its LLM calls for its own turns (as the detector pass)
    const inside = this.insideTool.get(span);
    const toolSession = inside === undefined ? undefined : (inside.sessionId ?? unnamed);
    call.insideTool = inside !== undefined && toolSession === call.sessionId ? inside.spanId : undefined;
    for (const o of observers) tellObserver(o, call, 'llm-observer', llmObserverFailed);
  }
  forceFlush(): Promise<void> {
    return Promise.resolve();
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

const llmObserverFailed = (error: string) => `an LLM call observer failed (${error}): the call and its span go on`;
