// The Vercel AI SDK (v6) with its own OpenTelemetry integration, a real provider
// (@ai-sdk/openai) pointed at a loopback server standing in for the API; Loopwatch's SDK
// (with its AI SDK span processor) exports over OTLP to a real collector.
import { createOpenAI } from '@ai-sdk/openai';
import { trace } from '@opentelemetry/api';
import { generateText, rerank, stepCountIs, tool } from 'ai';
import { MockRerankingModelV3 } from 'ai/test';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { configureCapture, traceTool, valueHash, withSession, wrapTools } from '../../instrumentation/src/api.js';
import { costUsd } from '../../instrumentation/src/cost.js';
import { aiSdkTelemetry, stopWhenHalted } from '../../instrumentation/src/integrations/ai-sdk.js';
import { enableLoopGuard } from '../../instrumentation/src/guard/enable.js';
import { haltSignal } from '../../instrumentation/src/guard/halt-signal.js';
import { loopDetectedIn } from '../../instrumentation/src/guard/loop-guard.js';
import { fakeApi, readFileTwiceApi, startPipeline, type FakeApi, type Pipeline } from './helpers.js';

let p: Pipeline;
let api: FakeApi;
let provider: ReturnType<typeof createOpenAI>;

// One agent turn: the model asks for read_file twice (same arguments), then answers.
beforeAll(async () => {
  p = await startPipeline('ai-sdk-agent');
  api = await readFileTwiceApi();
  provider = createOpenAI({ apiKey: 'test-key', baseURL: `${api.url}/v1` });
});
afterAll(async () => {
  configureCapture({ captureContent: false, redact: undefined });
  await p?.close();
  await api?.close();
});

const readFile = (secret: string) =>
  tool({ description: 'read a file', inputSchema: z.object({ path: z.string() }), execute: async ({ path }) => `${secret} in ${path}` });

async function agentTurn(telemetry: Parameters<typeof generateText>[0]['experimental_telemetry'], tools: Record<string, ReturnType<typeof readFile>>) {
  const r = await generateText({ model: provider.chat('gpt-4o-mini'), prompt: 'fix the bug', tools, stopWhen: stepCountIs(5), experimental_telemetry: telemetry });
  expect(r.text).toBe('done');
  api.requests.length = 0;
}

interface ToolRow { tool: string; call_id: string; args_hash: string; result_hash: string; convention: string; agent: string; arguments: string; result: string }
const toolRows = (s: string) =>
  p.tc.rows<ToolRow>(`SELECT tool, call_id, toString(args_hash) AS args_hash, toString(result_hash) AS result_hash, convention, agent, arguments, result
                      FROM agent_tool_calls FINAL WHERE session_id = {s:String} ORDER BY ts`, { s });

describe('Vercel AI SDK telemetry', () => {
  it('maps ai.* spans (model calls and tool calls) to the session named in telemetry metadata', async () => {
    const session = `aisdk-meta-${Date.now()}`;
    // no withSession: the session comes only from the AI SDK's metadata
    await agentTurn({ isEnabled: true, functionId: 'coder', metadata: { sessionId: session } }, { read_file: readFile('secret-token-123') });
    await p.landed();

    const llm = await p.tc.rows<{ convention: string; operation: string; model: string; provider: string; input_tokens: string; output_tokens: string; cache_read_tokens: string; reported_cost_usd: number; agent: string }>(
      `SELECT convention, operation, model, provider, toString(input_tokens) AS input_tokens, toString(output_tokens) AS output_tokens,
              toString(cache_read_tokens) AS cache_read_tokens, reported_cost_usd, agent
       FROM agent_llm_calls FINAL WHERE session_id = {s:String} ORDER BY ts`, { s: session });
    expect(llm).toHaveLength(3);
    expect(llm[0]).toMatchObject({ convention: 'ai_sdk', operation: 'ai.generateText.doGenerate', model: 'gpt-4o-mini-2024-07-18', input_tokens: '1000', output_tokens: '50', cache_read_tokens: '200', agent: 'coder' });
    // loopwatch.cost_usd from the price table, with the tokens the view reads (cache reads at the cached price)
    expect(llm[0]!.reported_cost_usd).toBeGreaterThan(0);
    expect(llm[0]!.reported_cost_usd).toBeCloseTo(costUsd('gpt-4o-mini-2024-07-18', { inputTokens: 1000, outputTokens: 50, cacheReadTokens: 200 })!, 12);

    const tools = await toolRows(session);
    expect(tools.map((t) => `${t.tool}:${t.call_id}:${t.convention}`)).toEqual(['read_file:call_0:ai_sdk', 'read_file:call_1:ai_sdk']);
    expect(tools[0]!.args_hash).toBe(tools[1]!.args_hash);
    expect(tools[0]!.result_hash).toBe(tools[1]!.result_hash);
    // capture is off: the AI SDK's recorded arguments, results and prompts never left the process
    expect(tools.every((t) => t.arguments === '' && t.result === '')).toBe(true);
    const [leaks] = await p.tc.rows<{ n: string }>(
      `SELECT count() AS n FROM otel_traces WHERE TraceId IN (SELECT trace_id FROM agent_tool_calls WHERE session_id = {s:String})
         AND (arrayExists(v -> position(v, 'secret-token-123') > 0, mapValues(SpanAttributes)) OR arrayExists(v -> position(v, 'fix the bug') > 0, mapValues(SpanAttributes)))`,
      { s: session });
    expect(Number(leaks!.n)).toBe(0);
    // the hash is the one the collector computes from raw arguments
    const [h] = await p.tc.rows<{ h: string }>(`SELECT toString(loopwatch_hash64(loopwatch_canonical_json('{"path":"src/app.ts"}'))) AS h`);
    expect(tools[0]!.args_hash).toBe(h!.h);
  });

  it('session and agent from withSession via aiSdkTelemetry(); wrapTools inside counts each call once', async () => {
    const session = `aisdk-wrap-${Date.now()}`;
    await withSession({ sessionId: session, agent: 'wrapped-coder' }, () =>
      agentTurn(aiSdkTelemetry(), wrapTools({ read_file: readFile('x') })),
    );
    await p.landed();
    const tools = await toolRows(session);
    expect(tools.map((t) => `${t.tool}:${t.call_id}:${t.convention}`)).toEqual(['read_file:call_0:genai', 'read_file:call_1:genai']);
    expect(tools[0]!.agent).toBe('wrapped-coder');
    expect(tools[0]!.args_hash).toBe(BigInt.asUintN(64, Buffer.from(valueHash({ path: 'src/app.ts' }), 'hex').readBigUInt64LE()).toString());
    const [wrappers] = await p.tc.rows<{ n: string }>(
      `SELECT count() AS n FROM otel_traces WHERE SpanName = 'ai.toolCall.wrapper' AND SpanAttributes['gen_ai.conversation.id'] = {s:String}`, { s: session });
    expect(Number(wrappers!.n)).toBe(2);
  });

  it('a functionId inside withSession names the agent of the call\'s spans (a sub-agent), wrapped tools included; withSession\'s agent stays on the rest', async () => {
    const session = `aisdk-subagent-${Date.now()}`;
    await withSession({ sessionId: session, agent: 'planner' }, async () => {
      await agentTurn(aiSdkTelemetry({ functionId: 'researcher' }), { read_file: readFile('x') });
      await agentTurn(aiSdkTelemetry({ functionId: 'researcher' }), wrapTools({ read_file: readFile('x') }));
      await agentTurn(aiSdkTelemetry(), { read_file: readFile('x') });
    });
    await p.landed();
    const tools = await toolRows(session);
    expect(tools.map((t) => t.agent)).toEqual(['researcher', 'researcher', 'researcher', 'researcher', 'planner', 'planner']);
    const llm = await p.tc.rows<{ agent: string }>(`SELECT agent FROM agent_llm_calls FINAL WHERE session_id = {s:String} ORDER BY ts`, { s: session });
    expect(llm.map((r) => r.agent)).toEqual(['researcher', 'researcher', 'researcher', 'researcher', 'researcher', 'researcher', 'planner', 'planner', 'planner']);
  });

  it('session only in telemetry metadata: traced calls inside the tools (an MCP-like client, wrapTools) join it, with the model\'s call ids', async () => {
    const session = `aisdk-meta-nested-${Date.now()}`;
    // what instrumentMcpClient makes of a client's callTool: a traced function of its own
    const callTool = traceTool('read_file', async (args: { path: string }) => `contents of ${args.path}`, { type: 'extension' });
    const forwarding = tool({ description: 'read a file', inputSchema: z.object({ path: z.string() }), execute: async (args) => callTool(args) });
    await agentTurn({ isEnabled: true, functionId: 'meta-coder', metadata: { sessionId: session } }, { read_file: forwarding });
    await agentTurn({ isEnabled: true, functionId: 'meta-coder', metadata: { sessionId: session } }, wrapTools({ read_file: forwarding }));
    await p.landed();
    const tools = await toolRows(session);
    // each call once (the ai.toolCall span and the wrapTools span are wrappers), in the metadata's session and agent
    expect(tools.map((t) => `${t.tool}:${t.call_id}:${t.agent}`)).toEqual(Array.from({ length: 2 }, () => ['read_file:call_0:meta-coder', 'read_file:call_1:meta-coder']).flat());
    const [elsewhere] = await p.tc.rows<{ n: string }>(
      `SELECT count() AS n FROM agent_tool_calls FINAL WHERE trace_id IN (SELECT trace_id FROM agent_llm_calls WHERE session_id = {s:String}) AND session_id != {s:String}`, { s: session });
    expect(Number(elsewhere!.n)).toBe(0);
  });

  it('spans start to the microsecond, so each tool call follows the model call that requested it', async () => {
    // the AI SDK starts its spans at Date.now(), a whole millisecond: a fast tool call and the
    // next model call tied, and the next model call's tokens were charged to the tool call
    const session = `aisdk-order-${Date.now()}`;
    await withSession(session, async () => {
      for (let i = 0; i < 10; i++) await agentTurn({ isEnabled: true }, { read_file: readFile('x') });
    });
    await p.landed();
    const [starts] = await p.tc.rows<{ n: string; whole: string }>(
      `SELECT toString(count()) AS n, toString(countIf(toUnixTimestamp64Nano(Timestamp) % 1000000 = 0)) AS whole
       FROM otel_traces WHERE SpanName LIKE 'ai.%' AND SpanAttributes['gen_ai.conversation.id'] = {s:String}`, { s: session });
    expect(Number(starts!.n)).toBe(10 * 6);
    // times to the microsecond land on a whole millisecond one time in a thousand (a run of 60
    // spans had one now and then): not every time, as the AI SDK's own start times did
    expect(Number(starts!.whole)).toBeLessThan(6);
    // the latest model call started before each tool call (what waste attribution charges) ended before it
    const calls = await p.tc.rows<{ requester_ended_before: number }>(
      `SELECT toUInt8(l.end_ts <= t.ts) AS requester_ended_before
       FROM (SELECT session_id, ts FROM agent_tool_calls FINAL WHERE session_id = {s:String}) AS t
       ASOF LEFT JOIN (SELECT session_id, ts, end_ts FROM agent_llm_calls FINAL WHERE session_id = {s:String}) AS l
         ON l.session_id = t.session_id AND t.ts >= l.ts`, { s: session });
    expect(calls).toHaveLength(20);
    expect(calls.every((c) => Number(c.requester_ended_before) === 1)).toBe(true);
  });

  // a model that asks for the same search on every step (`parallel` times at once), 1,000 tokens a step
  const stubbornApi = (parallel = 1) => {
    let n = 0;
    return fakeApi(() => ({ json: {
      id: `c${n}`, object: 'chat.completion', created: 1, model: 'gpt-4o-mini-2024-07-18',
      choices: [{ index: 0, finish_reason: 'tool_calls', message: { role: 'assistant', content: null, tool_calls: Array.from({ length: parallel }, () =>
        ({ id: `call_${n++}`, type: 'function', function: { name: 'search_docs', arguments: '{"q":"exit vim"}' } })) } }],
      usage: { prompt_tokens: 900, completion_tokens: 100, total_tokens: 1000 },
    } }));
  };
  const searchTools = () => wrapTools({ search_docs: tool({ description: 'search', inputSchema: z.object({ q: z.string() }), execute: async ({ q }) => `no results for ${q}` }) });
  const haltKinds = (steps: ReadonlyArray<{ content: ReadonlyArray<unknown> }>) =>
    steps.flatMap((step) => step.content).filter((c) => (c as { type: string }).type === 'tool-error').map((c) => loopDetectedIn((c as { error: unknown }).error)?.finding.kind);

  it('halt: stopWhenHalted() ends the run when the model asks for a stopped call again (the second stop), not at the step limit', async () => {
    const stubborn = await stubbornApi();
    const guard = enableLoopGuard({ policy: 'halt', log: () => undefined });
    try {
      const model = createOpenAI({ apiKey: 'k', baseURL: `${stubborn.url}/v1` }).chat('gpt-4o-mini');
      const r = await withSession(`aisdk-second-stop-${Date.now()}`, () =>
        generateText({ model, prompt: 'q', tools: searchTools(), stopWhen: [stepCountIs(20), stopWhenHalted()], experimental_telemetry: aiSdkTelemetry() }));
      // 3 searches ran (stuck); the 4th was stopped and the model read why; the 5th stopped too: the end
      expect(haltKinds(r.steps)).toEqual(['stuck', 'stuck']);
      expect(stubborn.requests.length).toBe(5); // 20 before: the default waited for a runaway
    } finally {
      guard.disable();
      await stubborn.close();
    }
  });

  it('halt: parallel tool calls stopped in one step are one stop: stopWhenHalted() and haltSignal() end the run a step later, after the model read it', async () => {
    const stubborn = await stubbornApi(2);
    const guard = enableLoopGuard({ policy: 'halt', log: () => undefined });
    try {
      const model = createOpenAI({ apiKey: 'k', baseURL: `${stubborn.url}/v1` }).chat('gpt-4o-mini');
      // steps 1 and 2 run their two searches (stuck after the third); step 3's two are stopped, then step 4's: the end
      const r = await withSession(`aisdk-parallel-${Date.now()}`, () =>
        generateText({ model, prompt: 'q', tools: searchTools(), stopWhen: [stepCountIs(20), stopWhenHalted()], experimental_telemetry: aiSdkTelemetry() }));
      expect(r.steps.map((step) => haltKinds([step]).length)).toEqual([0, 0, 2, 2]);
      expect(stubborn.requests.length).toBe(4);
      stubborn.requests.length = 0;
      let signal: AbortSignal | undefined;
      const err = await withSession(`aisdk-parallel-signal-${Date.now()}`, () => {
        signal = haltSignal();
        return generateText({ model, prompt: 'q', tools: searchTools(), stopWhen: stepCountIs(20), abortSignal: signal, experimental_telemetry: aiSdkTelemetry() });
      }).then(() => undefined, (e: unknown) => e);
      expect(err).toBeDefined();
      expect(loopDetectedIn(signal!.reason)?.finding.kind).toBe('stuck');
      expect(stubborn.requests.length).toBe(4); // the fifth request is not sent
    } finally {
      guard.disable();
      await stubborn.close();
    }
  });

  it('halt: haltSignal() as the abortSignal ends the run at the second stop, its reason the LoopDetectedError', async () => {
    const stubborn = await stubbornApi();
    const guard = enableLoopGuard({ policy: 'halt', log: () => undefined });
    try {
      const model = createOpenAI({ apiKey: 'k', baseURL: `${stubborn.url}/v1` }).chat('gpt-4o-mini');
      let signal: AbortSignal | undefined;
      const err = await withSession(`aisdk-signal-${Date.now()}`, () => {
        signal = haltSignal();
        return generateText({ model, prompt: 'q', tools: searchTools(), stopWhen: stepCountIs(20), abortSignal: signal, experimental_telemetry: aiSdkTelemetry() });
      }).then(() => undefined, (e: unknown) => e);
      expect(err).toBeDefined();
      expect((loopDetectedIn(err) ?? loopDetectedIn(signal!.reason))?.finding.kind).toBe('stuck');
      expect(stubborn.requests.length).toBe(5);
    } finally {
      guard.disable();
      await stubborn.close();
    }
  });

  it('the guard says once that it does not see tool calls only the AI SDK traced (tools not wrapped), and nothing when they are', async () => {
    const stubborn = await stubbornApi();
    const warned = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const untraced = () => warned.mock.calls.map((c) => String(c[0])).filter((m) => m.includes('does not see tool calls'));
    try {
      const model = createOpenAI({ apiKey: 'k', baseURL: `${stubborn.url}/v1` }).chat('gpt-4o-mini');
      const plain = { search_docs: tool({ description: 'search', inputSchema: z.object({ q: z.string() }), execute: async ({ q }: { q: string }) => `no results for ${q}` }) };
      let guard = enableLoopGuard({ policy: 'halt', log: () => undefined });
      await withSession(`aisdk-unwrapped-${Date.now()}`, () => generateText({ model, prompt: 'q', tools: plain, stopWhen: stepCountIs(6), experimental_telemetry: aiSdkTelemetry() }));
      guard.disable();
      expect(untraced()).toEqual(['[loopwatch] the loop guard (halt) does not see tool calls that only the AI SDK traced (search_docs): wrap the tools with wrapTools() or traceTool() for it to judge and stop them']);
      warned.mockClear();
      guard = enableLoopGuard({ policy: 'warn', log: () => undefined });
      await withSession(`aisdk-wrapped-${Date.now()}`, () => generateText({ model, prompt: 'q', tools: searchTools(), stopWhen: stepCountIs(3), experimental_telemetry: aiSdkTelemetry() }));
      // a traced call a level further down: the tool opens a span of the application's, and calls a traced function in it
      const search = traceTool('search_docs', async (q: string) => `no results for ${q}`);
      const nested = { search_docs: tool({ description: 'search', inputSchema: z.object({ q: z.string() }),
        execute: ({ q }: { q: string }) => trace.getTracer('my-app').startActiveSpan('lookup', async (span) => { try { return await search(q); } finally { span.end(); } }) }) };
      await withSession(`aisdk-nested-${Date.now()}`, () => generateText({ model, prompt: 'q', tools: nested, stopWhen: stepCountIs(3), experimental_telemetry: aiSdkTelemetry() }));
      guard.disable();
      expect(untraced()).toEqual([]);
    } finally {
      warned.mockRestore();
      await stubborn.close();
    }
  });

  it('halt: a model that keeps asking for a halted call runs away on its token budget, and stopWhenHalted() ends the run', async () => {
    const stubborn = await stubbornApi();
    const guard = enableLoopGuard({ policy: 'halt', params: { budgetMaxTokens: 5000 }, log: () => undefined });
    try {
      const model = createOpenAI({ apiKey: 'k', baseURL: `${stubborn.url}/v1` }).chat('gpt-4o-mini');
      const tools = searchTools();
      // stops: 10, so that only the runaway ends the run
      const r = await withSession('aisdk-stubborn', () =>
        generateText({ model, prompt: 'q', tools, stopWhen: [stepCountIs(30), stopWhenHalted({ stops: 10 })], experimental_telemetry: aiSdkTelemetry() }));
      const errors = r.steps.flatMap((step) => step.content).filter((c) => c.type === 'tool-error').map((c) => loopDetectedIn((c as { error: unknown }).error)?.finding.kind);
      // 3 searches ran (stuck), then halts; the halted calls' steps still spent: over 5,000 tokens the session ran away
      expect(errors.slice(0, 3)).toEqual(['stuck', 'stuck', 'stuck']);
      expect(errors.at(-1)).toBe('runaway');
      expect(stubborn.requests.length).toBe(7); // not 30
      expect(guard.guard.findings('aisdk-stubborn').find((f) => f.kind === 'runaway')!.message).toMatch(/tokens of 5000/);
    } finally {
      guard.disable();
      await stubborn.close();
    }
  });

  it('capture off: request headers (a proxy\'s credentials) and rerank documents never leave the process', async () => {
    const session = `aisdk-private-${Date.now()}`;
    await withSession(session, async () => {
      await generateText({ model: provider.chat('gpt-4o-mini'), prompt: 'x', headers: { 'x-proxy-auth': 'Bearer SECRET-HEADER-TOKEN' }, experimental_telemetry: { isEnabled: true } });
      // the AI SDK's own stand-in for a reranking provider
      const model = new MockRerankingModelV3({ doRerank: async ({ documents }) => ({ ranking: (documents.values as unknown[]).map((_, i) => ({ index: i, relevanceScore: 1 - i / 10 })) }) });
      await rerank({ model, query: 'q', documents: ['SECRET-DOC medical history', 'SECRET-DOC salary table'], experimental_telemetry: { isEnabled: true } });
    });
    api.requests.length = 0;
    await p.landed();
    const spans = await p.tc.rows<{ name: string; leaked: string[] }>(
      `SELECT SpanName AS name, arrayFilter(k -> position(SpanAttributes[k], 'SECRET') > 0 OR startsWith(k, 'ai.request.headers.'), mapKeys(SpanAttributes)) AS leaked
       FROM otel_traces WHERE SpanAttributes['gen_ai.conversation.id'] = {s:String} ORDER BY Timestamp`, { s: session });
    expect(spans.map((x) => x.name)).toEqual(expect.arrayContaining(['ai.generateText', 'ai.rerank']));
    expect(spans.filter((x) => x.leaked.length > 0)).toEqual([]);
  });

  it('capture on: arguments and results are sent truncated and redacted', async () => {
    configureCapture({ captureContent: true, maxContentLength: 24, redact: (t) => t.replaceAll(/secret-[a-z0-9-]+/g, '[redacted]') });
    const session = `aisdk-capture-${Date.now()}`;
    await agentTurn({ isEnabled: true, metadata: { session_id: session } }, { read_file: readFile('secret-token-123 and a long tail of text') });
    configureCapture({ captureContent: false, redact: undefined });
    await p.landed();
    const tools = await toolRows(session);
    expect(tools).toHaveLength(2);
    expect(tools[0]!.arguments).toBe('{"path":"src/app.ts"}');
    expect(tools[0]!.result).toBe('"[redacted] and a long t…[truncated]');
  });
});
