// The corpus as OpenTelemetry spans, by default exactly as Loopwatch's instrumentation would
// emit them (GenAI semconv: an invoke_agent root, `chat {model}` spans with token usage,
// `execute_tool {tool}` spans with argument/result hashes), or in the OpenInference or Vercel AI
// SDK (legacy ai.*) conventions, sent with the official OTLP/protobuf exporter.
// Span ids and timestamps come from the corpus (deterministic), not from an SDK tracer.
import { SpanKind, SpanStatusCode, TraceFlags, type Attributes, type HrTime } from '@opentelemetry/api';
import { ExportResultCode } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { canonicalJson } from '../instrumentation/src/canonical.js';
import type { Session } from './generate.js';

function hr(ms: number): HrTime {
  const s = Math.floor(ms / 1000);
  return [s, Math.round((ms - s * 1000) * 1e6)];
}

const resources = new Map<string, Resource>();
function resourceOf(agent: string): Resource {
  let r = resources.get(agent);
  if (!r) {
    r = resourceFromAttributes({ 'service.name': `${agent}-agent`, 'service.version': '1.0.0', 'loopwatch.corpus': 'true' });
    resources.set(agent, r);
  }
  return r;
}

interface SpanInput {
  session: Session;
  name: string;
  spanId: string;
  parentSpanId?: string;
  startMs: number;
  endMs: number;
  attributes: Attributes;
  error?: { type: string; message: string };
}

function span(i: SpanInput): ReadableSpan {
  const ctx = { traceId: i.session.traceId, spanId: i.spanId, traceFlags: TraceFlags.SAMPLED };
  const events = i.error
    ? [{ name: 'exception', time: hr(i.endMs), attributes: { 'exception.type': i.error.type, 'exception.message': i.error.message } }]
    : [];
  return {
    name: i.name,
    kind: SpanKind.INTERNAL,
    spanContext: () => ctx,
    parentSpanContext: i.parentSpanId ? { traceId: i.session.traceId, spanId: i.parentSpanId, traceFlags: TraceFlags.SAMPLED } : undefined,
    startTime: hr(i.startMs),
    endTime: hr(i.endMs),
    duration: hr(i.endMs - i.startMs),
    status: i.error ? { code: SpanStatusCode.ERROR, message: i.error.message } : { code: SpanStatusCode.UNSET },
    attributes: i.attributes,
    links: [],
    events,
    ended: true,
    resource: resourceOf(i.session.agent),
    instrumentationScope: { name: 'loopwatch', version: '0.1.0' },
    droppedAttributesCount: 0,
    droppedEventsCount: 0,
    droppedLinksCount: 0,
  };
}

export type Convention = 'genai' | 'openinference' | 'ai_sdk';
export const CONVENTIONS: Convention[] = ['genai', 'openinference', 'ai_sdk'];

/**
 * All spans of a session: the agent root, its LLM spans and its tool spans, in one attribute
 * convention (docs/conventions.md). 'genai' is what Loopwatch's instrumentation
 * emits (with argument/result hashes); 'openinference' and 'ai_sdk' carry only the raw JSON,
 * so the collector's views hash it (the same canonical JSON and hash as the instrumentation).
 */
export function sessionSpans(s: Session, convention: Convention = 'genai'): ReadableSpan[] {
  const session: Attributes =
    convention === 'genai' ? { 'gen_ai.conversation.id': s.sessionId, 'gen_ai.agent.name': s.agent }
    : convention === 'openinference' ? { 'session.id': s.sessionId, 'agent.name': s.agent }
    : { 'ai.telemetry.functionId': s.agent, 'ai.telemetry.metadata.sessionId': s.sessionId };
  const rootAttributes: Attributes =
    convention === 'genai' ? { ...session, 'gen_ai.operation.name': 'invoke_agent', 'gen_ai.request.model': s.model, 'gen_ai.provider.name': s.provider }
    : convention === 'openinference' ? { ...session, 'openinference.span.kind': 'AGENT' }
    : { ...session, 'ai.operationId': 'ai.generateText', 'operation.name': `ai.generateText ${s.agent}`, 'ai.model.id': s.model };
  const out: ReadableSpan[] = [
    span({ session: s, name: convention === 'genai' ? `invoke_agent ${s.agent}` : convention === 'openinference' ? s.agent : 'ai.generateText', spanId: s.rootSpanId, startMs: s.startMs, endMs: s.endMs, attributes: rootAttributes }),
  ];
  let n = 0;
  for (const c of s.calls) {
    if (c.type === 'llm') {
      const attributes: Attributes =
        convention === 'genai' ? {
          ...session, 'gen_ai.operation.name': 'chat', 'gen_ai.provider.name': c.provider, 'gen_ai.request.model': c.model,
          'gen_ai.response.model': c.model, 'gen_ai.usage.input_tokens': c.inputTokens, 'gen_ai.usage.output_tokens': c.outputTokens,
        }
        : convention === 'openinference' ? {
          ...session, 'openinference.span.kind': 'LLM', 'llm.model_name': c.model, 'llm.provider': c.provider,
          'llm.token_count.prompt': c.inputTokens, 'llm.token_count.completion': c.outputTokens, 'llm.token_count.total': c.inputTokens + c.outputTokens,
        }
        : {
          ...session, 'ai.operationId': 'ai.generateText.doGenerate', 'operation.name': `ai.generateText.doGenerate ${s.agent}`,
          'ai.model.id': c.model, 'ai.model.provider': `${c.provider}.chat`, 'ai.usage.promptTokens': c.inputTokens, 'ai.usage.completionTokens': c.outputTokens,
        };
      const name = convention === 'genai' ? `chat ${c.model}` : convention === 'openinference' ? 'ChatCompletion' : 'ai.generateText.doGenerate';
      out.push(span({ session: s, name, spanId: c.spanId, parentSpanId: c.parentSpanId, startMs: c.startMs, endMs: c.endMs, attributes }));
      continue;
    }
    const callId = `call_${s.traceId.slice(0, 8)}_${n++}`;
    const args = canonicalJson(c.args);
    const result = c.status === 'ok' ? canonicalJson(c.result) : undefined;
    let attributes: Attributes;
    let name: string;
    if (convention === 'genai') {
      name = `execute_tool ${c.tool}`;
      attributes = {
        ...session, 'gen_ai.operation.name': 'execute_tool', 'gen_ai.tool.name': c.tool, 'gen_ai.tool.type': 'function',
        'gen_ai.tool.call.id': callId, 'loopwatch.tool.args_hash': c.argsHash, 'gen_ai.tool.call.arguments': args,
      };
      if (result !== undefined) {
        attributes['loopwatch.tool.result_hash'] = c.resultHash;
        attributes['gen_ai.tool.call.result'] = result;
      }
    } else if (convention === 'openinference') {
      name = c.tool;
      attributes = { ...session, 'openinference.span.kind': 'TOOL', 'tool.name': c.tool, 'tool.id': callId, 'input.value': args };
      if (result !== undefined) attributes['output.value'] = result;
    } else {
      name = 'ai.toolCall';
      attributes = {
        ...session, 'ai.operationId': 'ai.toolCall', 'operation.name': `ai.toolCall ${s.agent}`, 'ai.toolCall.name': c.tool,
        'ai.toolCall.id': callId, 'ai.toolCall.args': args,
      };
      if (result !== undefined) attributes['ai.toolCall.result'] = result;
    }
    if (c.status === 'error') attributes['error.type'] = c.errorType ?? 'Error';
    out.push(span({
      session: s, name, spanId: c.spanId, parentSpanId: c.parentSpanId, startMs: c.startMs, endMs: c.endMs, attributes,
      error: c.status === 'error' ? { type: c.errorType ?? 'Error', message: c.errorMessage ?? '' } : undefined,
    }));
  }
  return out;
}

/** Sends sessions to a collector's OTLP/HTTP endpoint with the official protobuf exporter. */
export async function sendSessions(
  baseUrl: string,
  sessions: Session[],
  opts: { spansPerRequest?: number; convention?: (session: Session, index: number) => Convention } = {},
): Promise<number> {
  const spansPerRequest = opts.spansPerRequest ?? 2000;
  const exporter = new OTLPTraceExporter({ url: `${baseUrl}/v1/traces`, timeoutMillis: 60_000 });
  let batch: ReadableSpan[] = [];
  let sent = 0;
  const flush = async () => {
    if (!batch.length) return;
    const spans = batch;
    batch = [];
    await new Promise<void>((resolve, reject) =>
      exporter.export(spans, (r) => (r.code === ExportResultCode.SUCCESS ? resolve() : reject(r.error ?? new Error('export failed')))),
    );
    sent += spans.length;
  };
  for (const [i, s] of sessions.entries()) {
    batch.push(...sessionSpans(s, opts.convention?.(s, i) ?? 'genai'));
    if (batch.length >= spansPerRequest) await flush();
  }
  await flush();
  await exporter.shutdown();
  return sent;
}
