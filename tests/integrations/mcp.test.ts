// instrumentMcpClient against a real MCP client and a real in-process MCP server (linked
// in-memory transports), spans exported over OTLP to a real collector.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { runDetectors } from '../../collector/src/detect/run-detectors.js';
import { onToolCall, traceTool, valueHash, withSession, wrapTools, type ToolCallRecord } from '../../instrumentation/src/api.js';
import { instrumentMcpClient } from '../../instrumentation/src/integrations/mcp.js';
import { enableLoopGuard } from '../../instrumentation/src/guard/enable.js';
import type { GuardFinding } from '../../instrumentation/src/guard/loop-guard.js';
import { startPipeline, type Pipeline } from './helpers.js';

let p: Pipeline;
let client: Client;
let server: McpServer;
let polls = 0;

beforeAll(async () => {
  p = await startPipeline('mcp-agent');
  server = new McpServer({ name: 'files-server', version: '1.0.0' });
  server.registerTool('read_file', { description: 'read a file', inputSchema: { path: z.string() } }, async ({ path }) => ({
    content: [{ type: 'text', text: `contents of ${path}` }],
  }));
  server.registerTool('deploy', { description: 'deploy', inputSchema: { env: z.string() } }, async ({ env }) => ({
    isError: true,
    content: [{ type: 'text', text: `permission denied for ${env}` }],
  }));
  server.registerTool('poll', { description: 'poll a job' }, async () => ({ content: [{ type: 'text', text: `status ${++polls}` }] }));
  // what the server got in the request's _meta: the trace context a server extracts to trace its side
  server.registerTool('meta', { description: 'echo the request _meta' }, async (extra) => ({ content: [{ type: 'text', text: JSON.stringify(extra._meta ?? {}) }] }));
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await server.connect(serverSide);
  client = instrumentMcpClient(new Client({ name: 'test-agent', version: '1.0.0' }));
  await client.connect(clientSide);
});
afterAll(async () => {
  await client?.close();
  await server?.close();
  await p?.close();
});

describe('instrumentMcpClient', () => {
  it('records callTool as execute_tool spans: hashes, isError as error status, results returned as they were', async () => {
    const session = `mcp-${Date.now()}`;
    const seen: ToolCallRecord[] = [];
    const off = onToolCall((c) => seen.push(c));
    await withSession({ sessionId: session, agent: 'mcp-agent' }, async () => {
      for (let i = 0; i < 3; i++) {
        const r = await client.callTool({ name: 'read_file', arguments: { path: 'src/a.ts' } });
        expect(r.content).toEqual([{ type: 'text', text: 'contents of src/a.ts' }]);
      }
      const failed = await client.callTool({ name: 'deploy', arguments: { env: 'prod' } });
      expect(failed.isError).toBe(true); // the caller still gets the tool's result
      await client.callTool({ name: 'poll' });
      await client.callTool({ name: 'poll' });
    });
    off();
    expect(seen.map((c) => `${c.tool}:${c.status}`)).toEqual(['read_file:ok', 'read_file:ok', 'read_file:ok', 'deploy:error', 'poll:ok', 'poll:ok']);
    expect(seen[0]!.argsHash).toBe(valueHash({ path: 'src/a.ts' }));
    await p.landed();

    const rows = await p.tc.rows<{ tool: string; args_hash: string; result_hash: string; status: string; error_type: string; error_message: string; agent: string; convention: string; arguments: string }>(
      `SELECT tool, toString(args_hash) AS args_hash, toString(result_hash) AS result_hash, status, error_type, error_message, agent, convention, arguments
       FROM agent_tool_calls FINAL WHERE session_id = {s:String} ORDER BY ts`, { s: session });
    expect(rows.map((r) => r.tool)).toEqual(['read_file', 'read_file', 'read_file', 'deploy', 'poll', 'poll']);
    expect(new Set(rows.slice(0, 3).map((r) => r.args_hash)).size).toBe(1);
    expect(new Set(rows.slice(0, 3).map((r) => r.result_hash)).size).toBe(1);
    expect(rows[4]!.result_hash).not.toBe(rows[5]!.result_hash); // a poll whose result changes
    expect(rows[3]).toMatchObject({ status: 'error', error_type: 'McpToolError', error_message: 'permission denied for prod' });
    expect(rows.every((r) => r.convention === 'genai' && r.agent === 'mcp-agent' && r.arguments === '')).toBe(true);

    const [attrs] = await p.tc.rows<{ server: string; method: string; type: string }>(
      `SELECT SpanAttributes['mcp.server.name'] AS server, SpanAttributes['mcp.method.name'] AS method, SpanAttributes['gen_ai.tool.type'] AS type
       FROM otel_traces WHERE SpanName = 'execute_tool read_file' AND SpanAttributes['gen_ai.conversation.id'] = {s:String} LIMIT 1`, { s: session });
    expect(attrs).toEqual({ server: 'files-server', method: 'tools/call', type: 'extension' });
  });

  it('counts a traced tool whose execute calls the MCP tool with the same arguments once, from the MCP span', async () => {
    // an agent's tool set traced with wrapTools, each tool forwarding to the instrumented MCP
    // client: two execute_tool spans per call, one inside the other
    const session = `mcp-wrapped-${Date.now()}`;
    const tools = wrapTools({
      read_file: { execute: async (args: { path: string }) => client.callTool({ name: 'read_file', arguments: args }) },
      // named as @langchain/mcp-adapters 2 names a server's tools
      'files-server_deploy': { execute: async (args: { env: string }) => client.callTool({ name: 'deploy', arguments: args }) },
    });
    // genuinely nested calls stay two calls: another tool (with the same arguments, or none), or
    // the same traced function calling itself (recursion, which the depth budget must see)
    const lookup = traceTool('lookup', (q: string) => `hits for ${q}`);
    const search = traceTool('search', (q: string) => lookup(q));
    const gitStatus = traceTool('git_status', () => 'clean');
    const runTests = traceTool('run_tests', () => gitStatus());
    const plan: (task: string, level: number) => string = traceTool('plan', (task: string, level: number) => (level > 0 ? plan(task, level - 1) : 'done'), {
      argsOf: (args) => args[0],
    });
    const seen: ToolCallRecord[] = [];
    const off = onToolCall((c) => seen.push(c));
    await withSession({ sessionId: session, agent: 'mcp-agent' }, async () => {
      for (let i = 0; i < 3; i++) await tools.read_file.execute({ path: 'src/b.ts' });
      await tools['files-server_deploy'].execute({ env: 'staging' });
      search('loops');
      runTests();
      plan('ship it', 1);
    });
    off();
    // the guard's stream: each call once, at the depth of the call it took the place of
    expect(seen.map((c) => `${c.tool}:${c.status}:${c.depth}`)).toEqual([
      'read_file:ok:1', 'read_file:ok:1', 'read_file:ok:1', 'deploy:error:1', 'lookup:ok:2', 'search:ok:1', 'git_status:ok:2', 'run_tests:ok:1',
      'plan:ok:2', 'plan:ok:1',
    ]);
    await p.landed();
    const rows = await p.tc.rows<{ tool: string; status: string; mcp: string }>(
      `SELECT tool, status, SpanAttributes['mcp.method.name'] AS mcp FROM agent_tool_calls FINAL
       JOIN otel_traces ON otel_traces.SpanId = agent_tool_calls.span_id
       WHERE session_id = {s:String} ORDER BY ts`, { s: session });
    expect(rows.map((r) => `${r.tool}:${r.status}`)).toEqual([
      'read_file:ok', 'read_file:ok', 'read_file:ok', 'deploy:error', 'search:ok', 'lookup:ok', 'run_tests:ok', 'git_status:ok', 'plan:ok', 'plan:ok',
    ]);
    expect(rows.slice(0, 4).every((r) => r.mcp === 'tools/call')).toBe(true); // the MCP span is the one counted
    const wrappers = await p.tc.rows<{ name: string; op: string; parent_of_mcp: number }>(
      `SELECT SpanName AS name, SpanAttributes['gen_ai.operation.name'] AS op,
              toUInt8(SpanId IN (SELECT ParentSpanId FROM otel_traces WHERE SpanAttributes['mcp.method.name'] = 'tools/call')) AS parent_of_mcp
       FROM otel_traces WHERE SpanAttributes['gen_ai.conversation.id'] = {s:String} AND SpanName LIKE 'execute_tool.wrapper%' ORDER BY Timestamp`, { s: session });
    expect(wrappers).toEqual([
      ...Array.from({ length: 3 }, () => ({ name: 'execute_tool.wrapper read_file', op: 'loopwatch.tool_wrapper', parent_of_mcp: 1 })),
      { name: 'execute_tool.wrapper files-server_deploy', op: 'loopwatch.tool_wrapper', parent_of_mcp: 1 },
    ]);
  });
});

describe('trace context to the server', () => {
  it("sends the call's trace context in params._meta (OpenTelemetry MCP conventions), keeping the caller's own _meta and params as they were", async () => {
    const session = `mcp-meta-${Date.now()}`;
    const params = { name: 'meta', arguments: {}, _meta: { progressToken: 7 } };
    const r = await withSession({ sessionId: session, agent: 'mcp-agent' }, () => client.callTool(params));
    const got = JSON.parse((r.content as Array<{ text: string }>)[0]!.text) as Record<string, unknown>;
    expect(params._meta).toEqual({ progressToken: 7 }); // the caller's object is not changed
    expect(got.progressToken).toBe(7);
    await p.landed();
    const [call] = await p.tc.rows<{ trace_id: string; span_id: string }>(`SELECT trace_id, span_id FROM agent_tool_calls FINAL WHERE session_id = {s:String}`, { s: session });
    // W3C traceparent: version, the trace, the parent span (the agent's call), sampled
    expect(got.traceparent).toBe(`00-${call!.trace_id}-${call!.span_id}-01`);
  });
});

// An MCP server traced to the OpenTelemetry MCP conventions: each tools/call it serves is a span
// of kind SERVER, `tools/call {tool}`, gen_ai.operation.name execute_tool, mcp.method.name
// tools/call (as the conventions have it: no npm instrumentation emitted it when this was written,
// 2026-12-06, so the server makes it by hand, with the real SDK and tracer).
describe('an MCP server traced too', () => {
  const serverSpan = <T extends { isError?: boolean; content: Array<{ type: 'text'; text: string }> }>(tool: string, fn: () => T) =>
    trace.getTracer('mcp-server-semconv').startActiveSpan(`tools/call ${tool}`, {
      kind: SpanKind.SERVER,
      attributes: { 'mcp.method.name': 'tools/call', 'gen_ai.tool.name': tool, 'gen_ai.operation.name': 'execute_tool', 'network.transport': 'pipe' },
    }, (span) => {
      const r = fn();
      if (r.isError) {
        span.setStatus({ code: SpanStatusCode.ERROR, message: r.content[0]!.text });
        span.setAttribute('error.type', 'tool_error');
      }
      span.end();
      return r;
    });

  it("counts each call once, from the agent's span: in the agent's process no doubled calls and no false loop, from another process no session per trace", async () => {
    const traced = new McpServer({ name: 'traced-server', version: '1.0.0' });
    traced.registerTool('deploy', { inputSchema: { env: z.string() } }, async ({ env }) => serverSpan('deploy', () => ({ isError: true, content: [{ type: 'text' as const, text: `permission denied for ${env}` }] })));
    traced.registerTool('search', { inputSchema: { q: z.string() } }, async ({ q }) => serverSpan('search', () => ({ content: [{ type: 'text' as const, text: `hits for ${q}` }] })));
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    await traced.connect(serverSide);
    const agentClient = instrumentMcpClient(new Client({ name: 'coder', version: '1.0.0' }));
    await agentClient.connect(clientSide);
    const session = `mcp-both-${Date.now()}`;
    try {
      await withSession({ sessionId: session, agent: 'coder' }, async () => {
        for (let i = 0; i < 3; i++) await agentClient.callTool({ name: 'deploy', arguments: { env: 'prod' } }); // below the retry storm's 5
        await agentClient.callTool({ name: 'search', arguments: { q: 'why' } });
      });
    } finally {
      await agentClient.close();
      await traced.close();
    }
    await p.landed();
    const spans = await p.tc.rows<{ SpanName: string; SpanKind: string; parent_is_call: number }>(
      `SELECT SpanName, SpanKind, ParentSpanId IN (SELECT SpanId FROM otel_traces WHERE SpanName LIKE 'execute_tool %') AS parent_is_call
       FROM otel_traces WHERE TraceId IN (SELECT trace_id FROM agent_tool_calls WHERE session_id = {s:String}) AND SpanKind = 'Server'`, { s: session });
    expect(spans).toHaveLength(4); // the server's spans are stored, children of the agent's calls
    expect(spans.every((r) => r.SpanKind === 'Server' && Number(r.parent_is_call) === 1)).toBe(true);
    const calls = await p.tc.rows<{ tool: string; status: string }>(`SELECT tool, status FROM agent_tool_calls FINAL WHERE session_id = {s:String} ORDER BY ts`, { s: session });
    expect(calls).toEqual([...Array.from({ length: 3 }, () => ({ tool: 'deploy', status: 'error' })), { tool: 'search', status: 'ok' }]);

    // the server in a process of its own: its spans arrive in an export of their own, under the
    // agent's call (the propagated context), knowing no session
    const [first] = await p.tc.rows<{ trace_id: string; span_id: string }>(`SELECT trace_id, span_id FROM agent_tool_calls FINAL WHERE session_id = {s:String} ORDER BY ts LIMIT 1`, { s: session });
    const serverProcess = new BasicTracerProvider({
      resource: resourceFromAttributes({ 'service.name': 'files-mcp-server' }),
      spanProcessors: [new SimpleSpanProcessor(new OTLPTraceExporter({ url: `${p.tc.url}/v1/traces` }))],
    });
    const parent = trace.setSpanContext(context.active(), { traceId: first!.trace_id, spanId: first!.span_id, traceFlags: 1, isRemote: true });
    serverProcess.getTracer('mcp-server-semconv').startSpan('tools/call deploy', {
      kind: SpanKind.SERVER,
      attributes: { 'mcp.method.name': 'tools/call', 'gen_ai.tool.name': 'deploy', 'gen_ai.operation.name': 'execute_tool', 'error.type': 'tool_error' },
    }, parent).end();
    await serverProcess.forceFlush();
    await serverProcess.shutdown();
    await p.tc.collector.flush();
    const inTrace = await p.tc.rows<{ n: string; sessions: string[] }>(`SELECT toString(count()) AS n, groupUniqArray(session_id) AS sessions FROM agent_tool_calls FINAL WHERE trace_id = {t:String}`, { t: first!.trace_id });
    expect(inTrace).toEqual([{ n: '1', sessions: [session] }]); // the agent's call only (each call is a trace of its own here)
    expect(Number((await p.tc.rows<{ n: string }>(`SELECT toString(count()) AS n FROM otel_traces WHERE TraceId = {t:String} AND ServiceName = 'files-mcp-server'`, { t: first!.trace_id }))[0]!.n)).toBe(1);

    // a store another pipeline wrote (an older ClickHouse exporter spells kinds SPAN_KIND_SERVER): the same rule
    await p.tc.collector.store.client.command({
      query: `INSERT INTO otel_traces (Timestamp, TraceId, SpanId, ParentSpanId, SpanName, SpanKind, ServiceName, SpanAttributes, Duration, StatusCode)
              VALUES (now64(9), {t:String}, 'ee00000000000001', {p:String}, 'tools/call deploy', 'SPAN_KIND_SERVER', 'files-mcp-server',
                      map('mcp.method.name', 'tools/call', 'gen_ai.tool.name', 'deploy', 'gen_ai.operation.name', 'execute_tool'), 1000, 'STATUS_CODE_ERROR')`,
      query_params: { t: first!.trace_id, p: first!.span_id },
    });
    expect(await p.tc.rows(`SELECT span_id FROM agent_tool_calls WHERE span_id = 'ee00000000000001'`)).toEqual([]);

    // and no loop: three failures of one call are not a retry storm of six
    expect((await runDetectors(p.tc.collector.store.client)).errors).toEqual({});
    expect(await p.tc.rows(`SELECT detector FROM agent_findings FINAL WHERE session_id = {s:String} OR trace_id = {t:String}`, { s: session, t: first!.trace_id })).toEqual([]);
  });

  it("an LLM call the server's tool makes is charged to the agent's call it served, not to the agent's next call (SQL and the live guard)", async () => {
    const tracer = trace.getTracer('llm-semconv');
    const chat = (tokens: number) =>
      tracer.startSpan('chat gpt-4o', { attributes: { 'gen_ai.operation.name': 'chat', 'gen_ai.provider.name': 'openai', 'gen_ai.request.model': 'gpt-4o', 'gen_ai.usage.input_tokens': tokens, 'gen_ai.usage.output_tokens': 0 } }).end();
    const served = new McpServer({ name: 'summarizer', version: '1.0.0' });
    served.registerTool('summarize', { inputSchema: { doc: z.string() } }, async ({ doc }) =>
      serverSpan('summarize', () => {
        chat(500_000); // the tool's own model call, under the server's span
        return { content: [{ type: 'text' as const, text: `summary of ${doc}` }] };
      }));
    served.registerTool('search', { inputSchema: { q: z.string() } }, async ({ q }) => serverSpan('search', () => ({ content: [{ type: 'text' as const, text: `hits for ${q}` }] })));
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    await served.connect(serverSide);
    const agentClient = instrumentMcpClient(new Client({ name: 'coder', version: '1.0.0' }));
    await agentClient.connect(clientSide);
    const session = `mcp-served-llm-${Date.now()}`;
    // the live guard counts the server's model call in the session's tokens too
    const live: GuardFinding[] = [];
    const guard = enableLoopGuard({ policy: 'warn', params: { budgetMaxTokens: 400_000 }, log: () => undefined, onLoop: (f) => live.push(f) });
    try {
      await withSession({ sessionId: session, agent: 'coder' }, async () => {
        chat(1000); // the agent's turn that asks for summarize
        await agentClient.callTool({ name: 'summarize', arguments: { doc: 'design.md' } });
        chat(2000); // the agent's turn that asks for search
        await agentClient.callTool({ name: 'search', arguments: { q: 'loops' } });
      });
    } finally {
      guard.disable();
      await agentClient.close();
      await served.close();
    }
    expect(live.map((f) => [f.kind, f.sessionId])).toEqual([['runaway', session]]);
    expect(live[0]!.message).toMatch(/used 501000 tokens of 400000/); // raised as summarize ended: its turn and its server's model call
    await p.landed();
    expect((await runDetectors(p.tc.collector.store.client)).errors).toEqual({});
    const features = await p.tc.rows<{ tool: string; tokens: number }>(
      `SELECT c.tool AS tool, f.tokens AS tokens FROM loopwatch_call_features AS f INNER JOIN agent_tool_calls AS c ON c.span_id = f.span_id
       WHERE f.session_id = {s:String} ORDER BY f.ts`, { s: session });
    expect(features).toEqual([{ tool: 'summarize', tokens: 501_000 }, { tool: 'search', tokens: 2000 }]);
  });
});
