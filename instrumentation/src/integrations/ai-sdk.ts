// Vercel AI SDK (v4–v6): its own OpenTelemetry integration (experimental_telemetry) emits the
// legacy ai.* spans: ai.generateText / ai.streamText, ai.generateText.doGenerate (one per model
// call, with ai.usage.* and some gen_ai.* attributes, but no gen_ai.operation.name) and
// ai.toolCall (one per tool execution). The collector's views map those directly
// (queries/schema/002_agent_calls.sql, convention 'ai_sdk'); session = the telemetry metadata's
// sessionId (or session_id, conversationId), or gen_ai.conversation.id stamped inside withSession.
//
// What this file adds, in process:
// - aiSdkTelemetry(): the experimental_telemetry settings with the current session in metadata.
// - AiSdkSpanProcessor (installed by startLoopwatch): on ai.toolCall spans it adds the argument
//   and result hashes and, with capture off (the default), removes the raw arguments, results,
//   prompts and responses the AI SDK records, so they never leave the process (capture on: kept,
//   truncated and redacted like any captured text); on model-call spans it adds
//   loopwatch.cost_usd from the price table. An ai.toolCall whose execute is also traced by
//   wrapTools()/traceTool (an execute_tool child span) is renamed ai.toolCall.wrapper (operation
//   ids too) so the collector counts the call once, from the execute_tool span.
// Types only from `ai` (an optional peer dependency).
import type { Context } from '@opentelemetry/api';
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { TelemetrySettings } from 'ai';
import { ATTR } from '../attributes.js';
import { canonicalJson, hash64Hex } from '../canonical.js';
import { sessionFrom } from '../context.js';
import { costUsd } from '../cost.js';
import { captureOptions, capturedText } from '../options.js';

export interface AiSdkTelemetryOptions {
  /** ai.telemetry.functionId: becomes the agent name in Loopwatch. */
  functionId?: string;
  /** Session id (default: the one of the enclosing withSession). */
  sessionId?: string;
  metadata?: Record<string, string | number | boolean>;
}

/** The AI SDK's TelemetrySettings fields this sets (declared here so `ai` stays optional for types too). */
export interface AiSdkTelemetrySettings {
  isEnabled: boolean;
  functionId?: string;
  metadata: Record<string, string | number | boolean>;
}
// compile-time check that the settings fit the AI SDK's own type
const fits: (s: AiSdkTelemetrySettings) => TelemetrySettings = (s) => s;
void fits;

/** `experimental_telemetry` settings for generateText/streamText/…, with the session in metadata. */
export function aiSdkTelemetry(opts: AiSdkTelemetryOptions = {}): AiSdkTelemetrySettings {
  const s = sessionFrom();
  const sessionId = opts.sessionId ?? s?.sessionId;
  const metadata: Record<string, string | number | boolean> = { ...opts.metadata };
  if (sessionId) metadata.sessionId = sessionId;
  const functionId = opts.functionId ?? s?.agent;
  return functionId ? { isEnabled: true, functionId, metadata } : { isEnabled: true, metadata };
}

const MODEL_CALL_OPS = new Set(['ai.generateText.doGenerate', 'ai.streamText.doStream', 'ai.generateObject.doGenerate', 'ai.streamObject.doStream']);

/** AI SDK attributes that carry content: prompts, responses, tool arguments and results. */
const CONTENT_PREFIXES = ['ai.prompt', 'ai.response.text', 'ai.response.toolCalls', 'ai.response.object', 'ai.response.reasoning', 'ai.toolCall.args', 'ai.toolCall.result', 'ai.toolCall.output', 'ai.value', 'ai.values', 'ai.embedding', 'gen_ai.prompt', 'gen_ai.completion'];

type Attrs = Record<string, unknown>;
const attrsOf = (span: Span | ReadableSpan): Attrs => (span as { attributes?: Attrs }).attributes ?? {};

function opOf(a: Attrs): string {
  return typeof a['ai.operationId'] === 'string' ? (a['ai.operationId'] as string) : '';
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/** Applies the capture options to the span's content attributes: removed, or truncated and redacted. */
function scrubContent(span: Span, tool: string): void {
  const a = attrsOf(span);
  const capture = captureOptions().captureContent;
  for (const key of Object.keys(a)) {
    if (!CONTENT_PREFIXES.some((p) => key.startsWith(p))) continue;
    const v = a[key];
    if (capture && typeof v === 'string') {
      const kind = key.startsWith('ai.prompt') || key.includes('args') || key.startsWith('gen_ai.prompt') ? 'arguments' : 'result';
      span.setAttribute(key, capturedText(v, kind, tool) ?? '');
    } else if (!capture) {
      delete a[key];
    }
  }
}

export class AiSdkSpanProcessor implements SpanProcessor {
  /** ai.toolCall spans in flight, by span id: whether a traced execute_tool ran inside. */
  private readonly toolSpans = new Map<string, { traced: boolean }>();

  onStart(span: Span, _parentContext: Context): void {
    const a = attrsOf(span);
    const op = opOf(a);
    if (op === 'ai.toolCall') {
      const args = a['ai.toolCall.args'];
      if (typeof args === 'string') span.setAttribute(ATTR.argsHash, hash64Hex(canonicalJson(args)));
      this.toolSpans.set(span.spanContext().spanId, { traced: false });
      if (this.toolSpans.size > 10_000) this.toolSpans.clear(); // spans never ended: do not grow without bound
      return;
    }
    if (a[ATTR.operationName] === 'execute_tool') {
      const parent = (span as { parentSpanContext?: { spanId?: string } }).parentSpanContext?.spanId;
      const t = parent ? this.toolSpans.get(parent) : undefined;
      if (t) t.traced = true;
    }
  }

  onEnding(span: Span): void {
    const a = attrsOf(span);
    const op = opOf(a);
    if (op === 'ai.toolCall') {
      const id = span.spanContext().spanId;
      const t = this.toolSpans.get(id);
      this.toolSpans.delete(id);
      const result = a['ai.toolCall.result'] ?? a['ai.toolCall.output'];
      if (typeof result === 'string') span.setAttribute(ATTR.resultHash, hash64Hex(canonicalJson(result)));
      scrubContent(span, String(a['ai.toolCall.name'] ?? ''));
      if (t?.traced) {
        span.updateName('ai.toolCall.wrapper');
        span.setAttribute('ai.operationId', 'ai.toolCall.wrapper');
        // the collector's view also matches operation.name starting with ai.toolCall
        span.setAttribute('operation.name', `loopwatch.wrapper ${String(a['operation.name'] ?? 'ai.toolCall')}`);
      }
      return;
    }
    if (!op.startsWith('ai.')) return;
    if (MODEL_CALL_OPS.has(op) && a['loopwatch.cost_usd'] === undefined) {
      const model = (a['gen_ai.response.model'] ?? a['ai.response.model'] ?? a['ai.model.id']) as string | undefined;
      const cost = costUsd(model, {
        inputTokens: num(a['ai.usage.inputTokens']) ?? num(a['gen_ai.usage.input_tokens']) ?? num(a['ai.usage.promptTokens']),
        outputTokens: num(a['ai.usage.outputTokens']) ?? num(a['gen_ai.usage.output_tokens']) ?? num(a['ai.usage.completionTokens']),
        cacheReadTokens: num(a['ai.usage.cachedInputTokens']) ?? num(a['ai.usage.inputTokenDetails.cacheReadTokens']),
      });
      if (cost !== undefined) span.setAttribute('loopwatch.cost_usd', cost);
    }
    scrubContent(span, '');
  }

  onEnd(_span: ReadableSpan): void {}
  forceFlush(): Promise<void> {
    return Promise.resolve();
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}
