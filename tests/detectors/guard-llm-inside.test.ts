// An LLM call made inside a traced tool call, outside withSession, by an instrumentation that
// names the conversation on the model-call span only (the GenAI conventions put
// gen_ai.conversation.id on inference spans, not on execute_tool spans): the collector gives the
// tool span the trace's conversation, so SQL charges the LLM call to the tool call, and the live
// guard does the same (a span that names no session takes the conversation its trace names, when
// it names one only, else the trace's session). Spans exported in one request, as the batch processor startLoopwatch
// installs sends them.
import { context, trace } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runDetectors } from '../../collector/src/detect/run-detectors.js';
import { traceAgent, traceTool, withSession } from '../../instrumentation/src/api.js';
import { enableLoopGuard } from '../../instrumentation/src/guard/enable.js';
import { PreciseStartProcessor, SessionSpanProcessor } from '../../instrumentation/src/sdk.js';
import { LlmCallTap, onLlmCall, type LlmCallRecord } from '../../instrumentation/src/llm-calls.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';

let tc: TestCollector;
let provider: NodeTracerProvider;
beforeAll(async () => {
  tc = await startTestCollector({ detect: { enabled: false } });
  provider = new NodeTracerProvider({
    // as startLoopwatch installs them: spans the SDK starts get the clock of traceTool's
    spanProcessors: [new PreciseStartProcessor(), new SessionSpanProcessor(() => undefined), new LlmCallTap(), new BatchSpanProcessor(new OTLPTraceExporter({ url: `${tc.url}/v1/traces` }))],
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

/** The runaway sessions live and in SQL (the sessions given only), after a pass with the test's budget. */
async function runaways(guard: ReturnType<typeof enableLoopGuard>, sessions: string[]) {
  const live = guard.guard.findings().filter((f) => f.kind === 'runaway' && sessions.includes(f.sessionId)).map((f) => f.sessionId);
  await provider.forceFlush();
  await tc.collector.flush();
  const r = await runDetectors(tc.collector.store.client, { params: { budgetMaxTokens: 10_000 } });
  expect(r.errors).toEqual({});
  const sql = await tc.rows<{ session_id: string }>(`SELECT session_id FROM agent_findings FINAL WHERE detector = 'runaway' AND session_id IN {s:Array(String)}`, { s: sessions });
  return { live: live.sort(), sql: sql.map((x) => x.session_id).sort() };
}

it('a trace naming two conversations (an agent and the sub-agent its tool call runs), the tool span naming none: the sub-agent keeps its LLM spend, live as in SQL', async () => {
  const tracer = provider.getTracer('other-genai-instrumentation');
  const model = (conversation: string, tokens: number) =>
    tracer.startSpan('chat gpt-4o', { attributes: { 'gen_ai.operation.name': 'chat', 'gen_ai.request.model': 'gpt-4o', 'gen_ai.conversation.id': conversation, 'gen_ai.usage.input_tokens': tokens, 'gen_ai.usage.output_tokens': 0 } }).end();
  const guard = enableLoopGuard({ policy: 'warn', log: () => undefined, params: { budgetMaxTokens: 10_000 } });
  const delegate = traceTool('delegate', async (task: string) => {
    model('sub-r2', 20_000); // the sub-agent's model call, in its own conversation
    return `done: ${task}`;
  });
  let traceId = '';
  try {
    await tracer.startActiveSpan('invoke_agent main', async (root) => {
      traceId = root.spanContext().traceId;
      model('main-r2', 100);
      await delegate('research');
      root.end();
    });
  } finally {
    guard.disable();
  }
  const { live, sql } = await runaways(guard, [traceId, 'main-r2', 'sub-r2']);
  // SQL: the tool span is in the trace's session (two conversations: none is filled in), the
  // sub-agent's 20,000 tokens stay in sub-r2, whose turns hold no tool call: no runaway anywhere
  expect(sql).toEqual([]);
  expect(live).toEqual(sql);
});

it('a sub-agent in a trace of its own, run by a tool call outside withSession: its tool call is not nested in the delegate, and is charged its turn, live as in SQL', async () => {
  const tracer = provider.getTracer('agent');
  const guard = enableLoopGuard({ policy: 'warn', log: () => undefined, params: { budgetMaxTokens: 10_000 } });
  const search = traceTool('search', async (q: string) => `hits for ${q}`);
  let subTrace = '';
  const delegate = traceTool('delegate', async (task: string) => {
    const root = tracer.startSpan('invoke_agent sub', { root: true }); // the sub-agent: a trace, a session, of its own
    subTrace = root.spanContext().traceId;
    await context.with(trace.setSpan(context.active(), root), async () => {
      tracer.startSpan('chat gpt-4o', { attributes: { 'gen_ai.operation.name': 'chat', 'gen_ai.request.model': 'gpt-4o', 'gen_ai.usage.input_tokens': 20_000, 'gen_ai.usage.output_tokens': 0 } }).end();
      await search(task); // requested by the sub-agent's model
    });
    root.end();
    return 'done';
  });
  try {
    await delegate('research');
  } finally {
    guard.disable();
  }
  const { live, sql } = await runaways(guard, [subTrace]);
  expect(sql).toEqual([subTrace]); // search took the 20,000-token turn: over the budget
  expect(live).toEqual(sql);
});

it('a sub-agent of the same session behind an invoke_agent span in a tool call: its tool call was requested by its model and takes the turn, live as in SQL', async () => {
  const tracer = provider.getTracer('agent');
  const guard = enableLoopGuard({ policy: 'warn', log: () => undefined, params: { budgetMaxTokens: 10_000 } });
  const search = traceTool('search', async (q: string) => `hits for ${q}`);
  const delegate = traceTool('delegate', async (task: string) =>
    tracer.startActiveSpan('invoke_agent researcher', async (agent) => {
      tracer.startSpan('chat gpt-4o', { attributes: { 'gen_ai.operation.name': 'chat', 'gen_ai.request.model': 'gpt-4o', 'gen_ai.usage.input_tokens': 20_000, 'gen_ai.usage.output_tokens': 0 } }).end();
      await search(task); // the sub-agent's model asked for it: not a call the delegate made
      agent.end();
      return 'done';
    }));
  try {
    await withSession({ sessionId: 'same-session-r4' }, () => delegate('research'));
  } finally {
    guard.disable();
  }
  const { live, sql } = await runaways(guard, ['same-session-r4']);
  const [row] = await tc.rows<{ tokens: number }>(`SELECT tokens FROM loopwatch_call_features WHERE session_id = 'same-session-r4' AND tool = 'search'`);
  expect(Number(row!.tokens)).toBe(20_000);
  expect(sql).toEqual(['same-session-r4']);
  expect(live).toEqual(sql);
});

it('traceAgent: a same-session sub-agent run in a tool call gets its invoke_agent span and its name, and its tool calls take their turns, live as in SQL; without it they take none', async () => {
  const tracer = provider.getTracer('agent');
  const guard = enableLoopGuard({ policy: 'warn', log: () => undefined, params: { budgetMaxTokens: 10_000 } });
  const search = traceTool('search', async (q: string) => `hits for ${q}`);
  const researcher = async (task: string) => {
    tracer.startSpan('chat gpt-4o', { attributes: { 'gen_ai.operation.name': 'chat', 'gen_ai.request.model': 'gpt-4o', 'gen_ai.usage.input_tokens': 20_000, 'gen_ai.usage.output_tokens': 0 } }).end();
    await search(task);
    return 'done';
  };
  const delegate = traceTool('delegate', (task: string) => traceAgent('researcher', () => researcher(task)));
  const delegatePlain = traceTool('delegate', (task: string) => researcher(task));
  try {
    await withSession({ sessionId: 'same-session-r6', agent: 'planner' }, () => delegate('research'));
    await withSession({ sessionId: 'same-session-r6-plain', agent: 'planner' }, () => delegatePlain('research'));
  } finally {
    guard.disable();
  }
  const { live, sql } = await runaways(guard, ['same-session-r6', 'same-session-r6-plain']);
  const rows = await tc.rows<{ session_id: string; tool: string; agent: string; tokens: number }>(
    `SELECT session_id, tool, agent, tokens FROM loopwatch_call_features WHERE session_id LIKE 'same-session-r6%' ORDER BY session_id, ts`);
  expect(rows.map((r) => [r.session_id, r.tool, r.agent, Number(r.tokens)])).toEqual([
    ['same-session-r6', 'delegate', 'planner', 0],
    ['same-session-r6', 'search', 'researcher', 20_000], // requested by the sub-agent's model
    ['same-session-r6-plain', 'delegate', 'planner', 20_000], // the sub-agent's spend charged to the delegate
    ['same-session-r6-plain', 'search', 'planner', 0], // made by the delegate: no share
  ]);
  const [agentSpan] = await tc.rows<{ name: string; op: string }>(
    `SELECT SpanName AS name, SpanAttributes['gen_ai.operation.name'] AS op FROM otel_traces WHERE SpanAttributes['gen_ai.conversation.id'] = 'same-session-r6' AND SpanName LIKE 'invoke_agent%'`);
  expect(agentSpan).toEqual({ name: 'invoke_agent researcher', op: 'invoke_agent' });
  expect(sql).toEqual(['same-session-r6', 'same-session-r6-plain']);
  expect(live).toEqual(sql);
});

/** A model call span of another instrumentation, naming the conversation or not. */
const chat = (tokens: number, conversation?: string) =>
  provider.getTracer('other-genai-instrumentation').startSpan('chat gpt-4o', {
    attributes: { 'gen_ai.operation.name': 'chat', 'gen_ai.request.model': 'gpt-4o', ...(conversation ? { 'gen_ai.conversation.id': conversation } : {}), 'gen_ai.usage.input_tokens': tokens, 'gen_ai.usage.output_tokens': 0 },
  }).end();

it('spans that name no conversation, in a trace whose other spans name one, or two: in that conversation, or in the trace, live as the collector fills them in', async () => {
  const tracer = provider.getTracer('agent');
  const guard = enableLoopGuard({ policy: 'warn', log: () => undefined, params: { budgetMaxTokens: 10_000 } });
  // the tool's own model call names no conversation
  const work = traceTool('work_r5', async (task: string) => {
    await new Promise((r) => setTimeout(r, 3));
    chat(20_000);
    return `done: ${task}`;
  });
  const traces: string[] = [];
  try {
    for (const names of [['conv-r5'], ['conv-r5a', 'conv-r5b']]) {
      await tracer.startActiveSpan('invoke_agent main', async (root) => {
        traces.push(root.spanContext().traceId);
        for (const n of names) chat(10, n); // earlier model calls of the trace name the conversation(s)
        await work('x');
        root.end();
      });
    }
  } finally {
    guard.disable();
  }
  const { live, sql } = await runaways(guard, ['conv-r5', 'conv-r5a', 'conv-r5b', ...traces]);
  // one conversation: everything in it; two: the unnamed spans in the trace's session
  expect(sql).toEqual(['conv-r5', traces[1]!].sort());
  expect(live).toEqual(sql);
});
