// The Vercel AI SDK 7 with its GenAI-semconv integration (@ai-sdk/otel: registerTelemetry(new
// OpenTelemetry())), a real provider (@ai-sdk/openai 4) pointed at a loopback server standing in
// for the API; Loopwatch's SDK (with its AI SDK span processor) exports over OTLP to a real
// collector. The legacy ai.* spans (v4-v6) are in ai-sdk.test.ts. Installed under aliases
// (ai-v7, ai-sdk-openai-v4) beside the v6 packages.
import { LegacyOpenTelemetry, OpenTelemetry } from '@ai-sdk/otel';
import { createOpenAI } from 'ai-sdk-openai-v4';
import { generateText, registerTelemetry, stepCountIs, tool } from 'ai-v7';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { configureCapture, valueHash, withSession, wrapTools } from '../../instrumentation/src/api.js';
import { enableLoopGuard } from '../../instrumentation/src/guard/enable.js';
import { readFileTwiceApi, startPipeline, type FakeApi, type Pipeline } from './helpers.js';

let p: Pipeline;
let api: FakeApi;
let provider: ReturnType<typeof createOpenAI>;

// One agent turn: the model asks for read_file twice (same arguments), then answers.
beforeAll(async () => {
  p = await startPipeline('ai-sdk-v7-agent');
  registerTelemetry(new OpenTelemetry());
  api = await readFileTwiceApi();
  provider = createOpenAI({ apiKey: 'test-key', baseURL: `${api.url}/v1` });
});
afterAll(async () => {
  configureCapture({ captureContent: false, redact: undefined, maxContentLength: 4096 });
  await p?.close();
  await api?.close();
});

const readFile = (secret: string) =>
  tool({ description: 'read a file', inputSchema: z.object({ path: z.string() }), execute: async ({ path }: { path: string }) => `${secret} in ${path}` });

async function agentTurn(session: string, tools: Record<string, ReturnType<typeof readFile>>, telemetry?: Parameters<typeof generateText>[0]['telemetry']) {
  const r = await withSession({ sessionId: session, agent: 'coder-v7' }, () =>
    generateText({ model: provider.chat('gpt-4o-mini'), prompt: 'fix the bug', tools, stopWhen: stepCountIs(5), telemetry }));
  expect(r.text).toBe('done');
  await p.landed();
}

interface ToolRow { tool: string; call_id: string; args_hash: string; result_hash: string; has_result: number; convention: string; agent: string; arguments: string; result: string }
const toolRows = (s: string) =>
  p.tc.rows<ToolRow>(`SELECT tool, call_id, toString(args_hash) AS args_hash, toString(result_hash) AS result_hash, has_result, convention, agent, arguments, result
                      FROM agent_tool_calls FINAL WHERE session_id = {s:String} ORDER BY ts`, { s });
/** The collector's UInt64 of a 16-hex-digit hash. */
const stored = (hex: string) => BigInt.asUintN(64, Buffer.from(hex, 'hex').readBigUInt64LE()).toString();

describe('Vercel AI SDK 7 (GenAI semconv through @ai-sdk/otel)', () => {
  it('tool calls and model calls land in the session of withSession; capture off: hashes only, no prompt, message or result text leaves the process', async () => {
    const session = `aisdk7-${Date.now()}`;
    await agentTurn(session, { read_file: readFile('secret-token-123') });

    const tools = await toolRows(session);
    expect(tools.map((t) => `${t.tool}:${t.call_id}:${t.convention}:${t.agent}`)).toEqual(['read_file:call_0:genai:coder-v7', 'read_file:call_1:genai:coder-v7']);
    // the same identity traceTool gives the same arguments; a result hash for each call
    expect(tools[0]!.args_hash).toBe(stored(valueHash({ path: 'src/app.ts' })));
    expect(tools[0]!.args_hash).toBe(tools[1]!.args_hash);
    expect(tools.every((t) => t.has_result === 1 && t.result_hash === tools[0]!.result_hash)).toBe(true);
    expect(tools.every((t) => t.arguments === '' && t.result === '')).toBe(true);

    const llm = await p.tc.rows<{ convention: string; model: string; input_tokens: string; reported_cost_usd: number }>(
      `SELECT convention, model, toString(input_tokens) AS input_tokens, reported_cost_usd FROM agent_llm_calls FINAL WHERE session_id = {s:String} ORDER BY ts`, { s: session });
    expect(llm).toHaveLength(3);
    expect(llm[0]).toMatchObject({ convention: 'genai', model: 'gpt-4o-mini-2024-07-18', input_tokens: '1000' });
    expect(llm[0]!.reported_cost_usd).toBeGreaterThan(0); // loopwatch.cost_usd from the price table

    const [leaks] = await p.tc.rows<{ n: string }>(
      `SELECT count() AS n FROM otel_traces WHERE TraceId IN (SELECT trace_id FROM agent_tool_calls WHERE session_id = {s:String})
         AND arrayExists(v -> position(v, 'secret-token-123') > 0 OR position(v, 'fix the bug') > 0 OR position(v, 'read a file') > 0, mapValues(SpanAttributes))`,
      { s: session });
    expect(Number(leaks!.n)).toBe(0);
  });

  it('wrapTools inside: each call is counted once, from the Loopwatch span', async () => {
    const session = `aisdk7-wrap-${Date.now()}`;
    await agentTurn(session, wrapTools({ read_file: readFile('x') }));
    const tools = await toolRows(session);
    expect(tools.map((t) => `${t.tool}:${t.call_id}:${t.convention}`)).toEqual(['read_file:call_0:genai', 'read_file:call_1:genai']);
    const [wrappers] = await p.tc.rows<{ n: string }>(
      `SELECT count() AS n FROM otel_traces WHERE SpanName = 'execute_tool.wrapper read_file' AND SpanAttributes['gen_ai.conversation.id'] = {s:String}`, { s: session });
    expect(Number(wrappers!.n)).toBe(2);
  });

  it('LegacyOpenTelemetry (the ai.* spans, per call): the same calls, as convention ai_sdk, without their text', async () => {
    const session = `aisdk7-legacy-${Date.now()}`;
    await agentTurn(session, { read_file: readFile('secret-token-456') }, { integrations: [new LegacyOpenTelemetry()] });
    const tools = await toolRows(session);
    expect(tools.map((t) => `${t.tool}:${t.call_id}:${t.convention}`)).toEqual(['read_file:call_0:ai_sdk', 'read_file:call_1:ai_sdk']);
    expect(tools[0]!.args_hash).toBe(stored(valueHash({ path: 'src/app.ts' })));
    const [leaks] = await p.tc.rows<{ n: string }>(
      `SELECT count() AS n FROM otel_traces WHERE TraceId IN (SELECT trace_id FROM agent_tool_calls WHERE session_id = {s:String})
         AND arrayExists(v -> position(v, 'secret-token-456') > 0 OR position(v, 'fix the bug') > 0, mapValues(SpanAttributes))`,
      { s: session });
    expect(Number(leaks!.n)).toBe(0);
  });

  it('the loop guard counts its model calls: past a token budget, the next traced tool call is stopped', async () => {
    const guard = enableLoopGuard({ policy: 'halt', params: { budgetMaxTokens: 1000 }, log: () => undefined });
    const session = `aisdk7-budget-${Date.now()}`;
    try {
      // each model call reports 1050 tokens: the first tool call is charged with them, the second is stopped
      await agentTurn(session, wrapTools({ read_file: readFile('x') }));
    } finally {
      guard.disable();
    }
    const runaway = guard.guard.findings(session).find((f) => f.kind === 'runaway');
    expect(runaway?.message).toMatch(/tokens/);
    const rows = await p.tc.rows<{ error_type: string }>(`SELECT error_type FROM agent_tool_calls FINAL WHERE session_id = {s:String} ORDER BY ts`, { s: session });
    expect(rows.map((r) => r.error_type)).toEqual(['', 'LoopDetectedError']);
  });

  it('capture on: arguments and results are kept, truncated and redacted', async () => {
    configureCapture({ captureContent: true, maxContentLength: 24, redact: (t) => t.replaceAll(/secret-[a-z0-9-]+/g, '[redacted]') });
    const session = `aisdk7-capture-${Date.now()}`;
    try {
      await agentTurn(session, { read_file: readFile('secret-token-123 and a long tail of text') });
    } finally {
      configureCapture({ captureContent: false, redact: undefined, maxContentLength: 4096 });
    }
    const tools = await toolRows(session);
    expect(tools).toHaveLength(2);
    expect(tools[0]!.arguments).toBe('{"path":"src/app.ts"}');
    expect(tools[0]!.result).toBe('"[redacted] and a long t…[truncated]');
  });
});
