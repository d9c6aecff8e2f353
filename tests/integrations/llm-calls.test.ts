// LLM calls read from ended spans (what the loop guard's budgets count), with the collector's
// mapping: the three conventions, the token and cost fallbacks, the session. Spans from the real
// OpenTelemetry SDK through LlmCallTap.
import { context, trace } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { costUsd } from '../../instrumentation/src/cost.js';
import { LlmCallTap, onLlmCall, traceSession, type LlmCallRecord } from '../../instrumentation/src/llm-calls.js';
import { SessionSpanProcessor } from '../../instrumentation/src/sdk.js';
import { contextWithSession } from '../../instrumentation/src/context.js';

const provider = new BasicTracerProvider({ spanProcessors: [new SessionSpanProcessor(), new LlmCallTap()] });
const tracer = provider.getTracer('test');
afterAll(() => provider.shutdown());

function ended(name: string, attributes: Record<string, string | number>, session?: string): LlmCallRecord[] {
  const seen: LlmCallRecord[] = [];
  const off = onLlmCall((c) => seen.push(c));
  try {
    const parent = session ? contextWithSession({ sessionId: session }) : context.active();
    tracer.startSpan(name, { attributes }, parent).end();
  } finally {
    off();
  }
  return seen;
}

describe('LLM calls from spans', () => {
  it('GenAI semconv: input + output tokens, the reported cost, the session from withSession', () => {
    const [c] = ended('chat gpt-4o', { 'gen_ai.operation.name': 'chat', 'gen_ai.request.model': 'gpt-4o', 'gen_ai.response.model': 'gpt-4o-2024-08-06',
      'gen_ai.usage.input_tokens': 1200, 'gen_ai.usage.output_tokens': 300, 'loopwatch.cost_usd': 0.0123 }, 's-genai');
    expect(c).toMatchObject({ sessionId: 's-genai', model: 'gpt-4o-2024-08-06', tokens: 1500, costUsd: 0.0123 });
  });

  it('Vercel AI SDK legacy spans: ai.usage.* tokens, priced from the table when no cost is reported; the trace is the session without one', () => {
    const [c] = ended('ai.generateText.doGenerate', { 'ai.operationId': 'ai.generateText.doGenerate', 'ai.model.id': 'gpt-4o-mini', 'ai.usage.promptTokens': 2000, 'ai.usage.completionTokens': 100 });
    expect(c!.tokens).toBe(2100);
    expect(c!.costUsd).toBe(costUsd('gpt-4o-mini', { inputTokens: 2000, outputTokens: 100 }));
    expect(c!.costUsd).toBeGreaterThan(0);
    expect(c!.sessionId).toBe(c!.traceId);
  });

  it('cache reads by OpenLLMetry\'s name are priced at the cached price, as the collector prices them', () => {
    const [c] = ended('chat gpt-4o', { 'gen_ai.operation.name': 'chat', 'gen_ai.request.model': 'gpt-4o', 'gen_ai.usage.input_tokens': 1_000_000, 'gen_ai.usage.output_tokens': 0,
      'gen_ai.usage.cache_read_input_tokens': 800_000 });
    expect(c!.costUsd).toBeCloseTo(0.2 * 2.5 + 0.8 * 1.25, 9);
  });

  it('cache writes, by each name the collector reads, are priced at the cache-write price (Anthropic: 1.25x input), as the collector prices them', () => {
    for (const name of ['gen_ai.usage.cache_creation.input_tokens', 'gen_ai.usage.cache_creation_input_tokens', 'gen_ai.usage.cache_write.input_tokens', 'llm.token_count.prompt_details.cache_write', 'ai.usage.inputTokenDetails.cacheWriteTokens']) {
      const [c] = ended('chat claude-sonnet-4-5', { 'gen_ai.operation.name': 'chat', 'gen_ai.request.model': 'claude-sonnet-4-5', 'gen_ai.usage.input_tokens': 1_000_000, 'gen_ai.usage.output_tokens': 0, [name]: 400_000 });
      // 600k input at $3, 400k cache writes at $3.75 per million
      expect(c!.costUsd, name).toBeCloseTo(0.6 * 3 + 0.4 * 3.75, 9);
    }
  });

  it('OpenInference: llm.token_count.total and llm.cost.total win; other spans are not LLM calls', () => {
    const [c] = ended('llm', { 'openinference.span.kind': 'LLM', 'llm.model_name': 'claude-sonnet-4', 'llm.token_count.prompt': 10, 'llm.token_count.completion': 5, 'llm.token_count.total': 20, 'llm.cost.total': 0.5 });
    expect(c).toMatchObject({ model: 'claude-sonnet-4', tokens: 20, costUsd: 0.5 });
    expect(ended('execute_tool read_file', { 'gen_ai.operation.name': 'execute_tool', 'gen_ai.tool.name': 'read_file' })).toEqual([]);
    expect(ended('ai.toolCall', { 'ai.operationId': 'ai.toolCall' })).toEqual([]);
  });
});

describe("a trace's conversation", () => {
  it('is forgotten least recently named first: a trace still at work keeps it past 4,096 newer traces', () => {
    const off = onLlmCall(() => undefined);
    try {
      const root = tracer.startSpan('invoke_agent', { attributes: { 'gen_ai.conversation.id': 'conv-busy' } });
      const busy = root.spanContext().traceId;
      const other = (n: number) => {
        for (let i = 0; i < n; i++) tracer.startSpan('chat', { root: true, attributes: { 'gen_ai.conversation.id': `conv-${i}` } }).end();
      };
      other(4000);
      // the busy trace's next model call names its conversation again
      tracer.startSpan('chat', { attributes: { 'gen_ai.conversation.id': 'conv-busy' } }, trace.setSpan(context.active(), root)).end();
      other(200);
      expect(traceSession(busy)).toBe('conv-busy');
      root.end();
    } finally {
      off();
    }
  });

  it('an observer that throws fails neither the span nor the processors after the tap (its export) nor the other observers; said once', async () => {
    const exported = new InMemorySpanExporter();
    const p = new BasicTracerProvider({ spanProcessors: [new SessionSpanProcessor(), new LlmCallTap(), new SimpleSpanProcessor(exported)] });
    const warned = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const seen: string[] = [];
    const offBad = onLlmCall(() => {
      throw new Error('meter down');
    });
    // an async usage meter: its rejection was unhandled (it ended the process), now said as a throw is
    const offAsync = onLlmCall(async () => {
      throw new Error('async meter down');
    });
    const offGood = onLlmCall((c) => seen.push(c.model));
    try {
      for (const model of ['gpt-4o', 'gpt-4o-mini']) {
        const span = p.getTracer('test').startSpan(`chat ${model}`, { attributes: { 'gen_ai.operation.name': 'chat', 'gen_ai.request.model': model, 'gen_ai.usage.input_tokens': 10 } }, contextWithSession({ sessionId: 's-observers' }));
        expect(() => span.end()).not.toThrow();
      }
      await new Promise((resolve) => setImmediate(resolve)); // the async observer's rejections settle
      expect(exported.getFinishedSpans().map((x) => x.name)).toEqual(['chat gpt-4o', 'chat gpt-4o-mini']);
      expect(seen).toEqual(['gpt-4o', 'gpt-4o-mini']);
      expect(warned.mock.calls.map((c) => String(c[0]))).toEqual(['[loopwatch] an LLM call observer failed (meter down): the call and its span go on']);
    } finally {
      offBad();
      offAsync();
      offGood();
      warned.mockRestore();
      await p.shutdown();
    }
  });
});
