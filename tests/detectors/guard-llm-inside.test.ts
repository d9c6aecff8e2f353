// An LLM call made inside a traced tool call, outside withSession, by an instrumentation that
// names the conversation on the model-call span only (the GenAI conventions put
// gen_ai.conversation.id on inference spans, not on execute_tool spans): the collector gives the
// tool span the trace's conversation, so SQL charges the LLM call to the tool call, and the live
// guard does the same (a tool span that names no session is the LLM call's). Spans exported in one
// request, as the batch processor startLoopwatch installs sends them.
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runDetectors } from '../../collector/src/detect/run-detectors.js';
import { traceTool } from '../../instrumentation/src/api.js';
import { enableLoopGuard } from '../../instrumentation/src/guard/enable.js';
import { SessionSpanProcessor } from '../../instrumentation/src/sdk.js';
import { LlmCallTap, onLlmCall, type LlmCallRecord } from '../../instrumentation/src/llm-calls.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';

let tc: TestCollector;
let provider: NodeTracerProvider;
beforeAll(async () => {
  tc = await startTestCollector({ detect: { enabled: false } });
  provider = new NodeTracerProvider({
    spanProcessors: [new SessionSpanProcessor(() => undefined), new LlmCallTap(), new BatchSpanProcessor(new OTLPTraceExporter({ url: `${tc.url}/v1/traces` }))],
  });
  provider.register();
});
afterAll(async () => {
  await provider?.shutdown();
  await tc?.close();
});

it('the LLM spend of a tool call whose model-call span names the conversation: live and SQL agree', async () => {
  const tracer = provider.getTracer('other-genai-instrumentation');
  const seen: LlmCallRecord[] = [];
  const off = onLlmCall((c) => seen.push(c));
  const guard = enableLoopGuard({ policy: 'warn', log: () => undefined, params: { budgetMaxTokens: 10_000 } });
  const summarize = traceTool('summarize', async (doc: string) => {
    // the model call made by the tool, as a GenAI instrumentation records it
    const span = tracer.startSpan('chat gpt-4o', { attributes: { 'gen_ai.operation.name': 'chat', 'gen_ai.request.model': 'gpt-4o', 'gen_ai.conversation.id': 'conv-r1', 'gen_ai.usage.input_tokens': 20_000, 'gen_ai.usage.output_tokens': 0 } });
    span.end();
    return `summary of ${doc}`;
  });
  try {
    await summarize('report.pdf');
  } finally {
    guard.disable();
    off();
  }
  const liveRunaway = guard.guard.findings().filter((f) => f.kind === 'runaway').map((f) => ({ session: f.sessionId, wastedTokens: f.wastedTokens }));
  await provider.forceFlush();
  await tc.collector.flush();
  const r = await runDetectors(tc.collector.store.client, { params: { budgetMaxTokens: 10_000 } });
  expect(r.errors).toEqual({});
  const sqlCalls = await tc.rows<{ session_id: string; tokens: number }>(`SELECT session_id, tokens FROM loopwatch_call_features WHERE tool = 'summarize'`);
  const sqlRunaway = await tc.rows<{ session_id: string }>(`SELECT session_id FROM agent_findings FINAL WHERE detector = 'runaway'`);
  // SQL: the tool call (session conv-r1, taken from the trace) spent the 20,000 tokens: runaway
  expect(sqlCalls.map((c) => Number(c.tokens))).toEqual([20_000]);
  expect(sqlRunaway.length).toBe(1);
  // live: the same budget blown
  expect(liveRunaway.length).toBe(1);
});
