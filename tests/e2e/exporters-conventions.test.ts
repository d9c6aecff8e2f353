// (b) The official OTLP exporters (protobuf and JSON over HTTP) send spans in each attribute
// convention Loopwatch understands; every one lands in the typed tables correctly normalized.
import { ROOT_CONTEXT, SpanStatusCode, trace, type Attributes, type Tracer } from '@opentelemetry/api';
import { OTLPTraceExporter as OTLPHttpJsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OTLPProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor, SimpleSpanProcessor, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { valueHash } from '../../instrumentation/src/canonical.js';
import { llmUsageOf } from '../../instrumentation/src/llm-calls.js';
import { runDetectors } from '../../collector/src/detect/run-detectors.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';

let tc: TestCollector;
beforeAll(async () => {
  tc = await startTestCollector();
});
afterAll(async () => {
  await tc.close();
});

interface Call {
  name: string;
  attributes: Attributes;
  error?: string;
}

/** One agent turn in a convention: an LLM call that asks for a tool, then the tool call (twice, once failing). */
const conventions: Record<string, (session: string) => Call[]> = {
  genai: (session) => [
    {
      name: 'chat gpt-4o',
      attributes: {
        'gen_ai.operation.name': 'chat', 'gen_ai.provider.name': 'openai', 'gen_ai.request.model': 'gpt-4o',
        'gen_ai.response.model': 'gpt-4o-2024-08-06', 'gen_ai.usage.input_tokens': 1200, 'gen_ai.usage.output_tokens': 80,
        'gen_ai.conversation.id': session, 'gen_ai.agent.name': 'coder',
      },
    },
    {
      name: 'execute_tool write_file',
      attributes: {
        'gen_ai.operation.name': 'execute_tool', 'gen_ai.tool.name': 'write_file', 'gen_ai.tool.call.id': 'call_1',
        'gen_ai.tool.call.arguments': '{"path":"src/a.ts","content":"x"}', 'gen_ai.tool.call.result': '{"ok":true}',
        'gen_ai.conversation.id': session, 'gen_ai.agent.name': 'coder',
      },
    },
    {
      name: 'execute_tool write_file',
      attributes: {
        'gen_ai.operation.name': 'execute_tool', 'gen_ai.tool.name': 'write_file', 'gen_ai.tool.call.id': 'call_2',
        'gen_ai.tool.call.arguments': '{"content":"x","path":"src/a.ts"}', 'error.type': 'EACCES',
        'gen_ai.conversation.id': session, 'gen_ai.agent.name': 'coder',
      },
      error: 'permission denied',
    },
  ],
  openinference: (session) => [
    {
      name: 'ChatCompletion',
      attributes: {
        'openinference.span.kind': 'LLM', 'llm.model_name': 'claude-sonnet-4-5', 'llm.provider': 'anthropic',
        'llm.token_count.prompt': 1200, 'llm.token_count.completion': 80, 'llm.token_count.total': 1280, 'llm.cost.total': 0.0048,
        'session.id': session, 'agent.name': 'coder',
      },
    },
    {
      name: 'write_file',
      attributes: {
        'openinference.span.kind': 'TOOL', 'tool.name': 'write_file', 'tool.id': 'call_1',
        'tool.parameters': '{"type":"object"}', 'input.value': '{"path":"src/a.ts","content":"x"}', 'output.value': '{"ok":true}',
        'session.id': session, 'agent.name': 'coder',
      },
    },
    {
      name: 'write_file',
      attributes: {
        'openinference.span.kind': 'TOOL', 'tool.name': 'write_file', 'tool.id': 'call_2',
        'input.value': '{"content":"x","path":"src/a.ts"}', 'session.id': session, 'agent.name': 'coder',
      },
      error: 'permission denied',
    },
  ],
  ai_sdk: (session) => [
    {
      name: 'ai.generateText.doGenerate',
      attributes: {
        'operation.name': 'ai.generateText.doGenerate coder', 'ai.operationId': 'ai.generateText.doGenerate',
        'ai.model.id': 'gpt-4o-mini', 'ai.model.provider': 'openai.chat', 'ai.usage.promptTokens': 1200, 'ai.usage.completionTokens': 80,
        'ai.telemetry.functionId': 'coder', 'ai.telemetry.metadata.sessionId': session,
      },
    },
    {
      name: 'ai.toolCall',
      attributes: {
        'operation.name': 'ai.toolCall coder', 'ai.operationId': 'ai.toolCall', 'ai.toolCall.name': 'write_file', 'ai.toolCall.id': 'call_1',
        'ai.toolCall.args': '{"path":"src/a.ts","content":"x"}', 'ai.toolCall.result': '{"ok":true}',
        'ai.telemetry.functionId': 'coder', 'ai.telemetry.metadata.sessionId': session,
      },
    },
    {
      name: 'ai.toolCall',
      attributes: {
        'operation.name': 'ai.toolCall coder', 'ai.operationId': 'ai.toolCall', 'ai.toolCall.name': 'write_file', 'ai.toolCall.id': 'call_2',
        'ai.toolCall.args': '{"content":"x","path":"src/a.ts"}', 'ai.telemetry.functionId': 'coder', 'ai.telemetry.metadata.sessionId': session,
      },
      error: 'permission denied',
    },
  ],
};

async function emit(exporter: SpanExporter, calls: Call[]): Promise<void> {
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'conventions-test' }),
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  const tracer: Tracer = provider.getTracer('conventions-test');
  for (const call of calls) {
    const span = tracer.startSpan(call.name, { attributes: call.attributes });
    if (call.error) {
      span.recordException(new Error(call.error));
      span.setStatus({ code: SpanStatusCode.ERROR, message: call.error });
    }
    span.end();
  }
  await provider.forceFlush();
  await provider.shutdown();
}

const exporters: Record<string, (url: string) => SpanExporter> = {
  'exporter-trace-otlp-proto': (url) => new OTLPProtoExporter({ url: `${url}/v1/traces` }),
  'exporter-trace-otlp-http (JSON)': (url) => new OTLPHttpJsonExporter({ url: `${url}/v1/traces` }),
};

describe('official exporters x conventions', () => {
  for (const [exporterName, makeExporter] of Object.entries(exporters)) {
    for (const [convention, calls] of Object.entries(conventions)) {
      it(`${exporterName}: ${convention} spans normalize into agent_tool_calls and agent_llm_calls`, async () => {
        const session = `${convention}-${exporterName.length}-${Date.now()}`;
        await emit(makeExporter(tc.url), calls(session));
        await tc.collector.flush();

        const tools = await tc.rows<{
          tool: string; call_id: string; status: string; error_message: string; agent: string; convention: string;
          args_hash: string; result_hash: string; has_result: number;
        }>(
          `SELECT tool, call_id, status, error_message, agent, convention, toString(args_hash) AS args_hash,
                  toString(result_hash) AS result_hash, has_result
           FROM agent_tool_calls FINAL WHERE session_id = {s:String} ORDER BY call_id`,
          { s: session },
        );
        expect(tools).toHaveLength(2);
        expect(tools.map((t) => [t.tool, t.call_id, t.status, t.agent, t.convention])).toEqual([
          ['write_file', 'call_1', 'ok', 'coder', convention],
          ['write_file', 'call_2', 'error', 'coder', convention],
        ]);
        expect(tools[1]!.error_message).toBe('permission denied');
        // the same arguments in another key order are the same call
        expect(tools[0]!.args_hash).toBe(tools[1]!.args_hash);
        // and the hash is the one the instrumentation computes in-process
        const expected = BigInt.asUintN(64, BigInt(`0x${Buffer.from(valueHash({ path: 'src/a.ts', content: 'x' }), 'hex').reverse().toString('hex')}`));
        expect(tools[0]!.args_hash).toBe(expected.toString());
        expect(tools[0]!.has_result).toBe(1);

        const llm = await tc.rows<{ model: string; input_tokens: string; output_tokens: string; agent: string; provider: string }>(
          `SELECT model, toString(input_tokens) AS input_tokens, toString(output_tokens) AS output_tokens, agent, provider
           FROM agent_llm_calls FINAL WHERE session_id = {s:String}`,
          { s: session },
        );
        expect(llm).toHaveLength(1);
        expect(llm[0]!.input_tokens).toBe('1200');
        expect(llm[0]!.output_tokens).toBe('80');
        expect(llm[0]!.agent).toBe('coder');
        expect(llm[0]!.model).not.toBe('');
        expect(llm[0]!.provider).not.toBe('');
      });
    }
  }

  for (const [exporterName, makeExporter] of Object.entries(exporters)) {
    it(`${exporterName}: a value equal to its type's default (0, false, 0.0, '') is kept, not blanked`, async () => {
      const name = `defaults-${exporterName.length}-${Date.now()}`;
      await emit(makeExporter(tc.url), [{
        name,
        attributes: { 'gen_ai.usage.output_tokens': 0, 'cache.hit': false, 'llm.temperature': 0.0, 'retry.count': 0, 'note': '', 'n': 7 },
      }]);
      await tc.collector.flush();
      const [row] = await tc.rows<{ a: Record<string, string> }>(
        'SELECT SpanAttributes AS a FROM otel_traces WHERE SpanName = {n:String}', { n: name });
      expect(row!.a).toMatchObject({ 'gen_ai.usage.output_tokens': '0', 'cache.hit': 'false', 'llm.temperature': '0', 'retry.count': '0', note: '', n: '7' });
    });
  }

  it('keeps the exporter layout in otel_traces: hex ids, kinds and status names, events', async () => {
    const rows = await tc.rows<{ TraceId: string; SpanId: string; SpanKind: string; StatusCode: string; ev: string[]; ServiceName: string }>(
      `SELECT TraceId, SpanId, SpanKind, StatusCode, Events.Name AS ev, ServiceName FROM otel_traces
       WHERE ServiceName = 'conventions-test' AND StatusCode = 'Error' LIMIT 1`,
    );
    expect(rows[0]!.TraceId).toMatch(/^[0-9a-f]{32}$/);
    expect(rows[0]!.SpanId).toMatch(/^[0-9a-f]{16}$/);
    expect(rows[0]!.SpanKind).toBe('Internal');
    expect(rows[0]!.ev).toEqual(['exception']);
  });
});

describe('more conventions (schema 010)', () => {
  const proto = exporters['exporter-trace-otlp-proto']!;
  const toolRows = (session: string) =>
    tc.rows<{ tool: string; convention: string; args_hash: string; result_hash: string; has_args: number; has_result: number }>(
      `SELECT tool, convention, toString(args_hash) AS args_hash, toString(result_hash) AS result_hash, has_args, has_result
       FROM agent_tool_calls FINAL WHERE session_id = {s:String} ORDER BY ts`, { s: session });
  const llmRows = (where: string, params: Record<string, string>) =>
    tc.rows<{ convention: string; operation: string; model: string; input_tokens: string; output_tokens: string; status: string; error_type: string }>(
      `SELECT convention, operation, model, toString(input_tokens) AS input_tokens, toString(output_tokens) AS output_tokens, status, error_type
       FROM agent_llm_calls FINAL WHERE ${where} ORDER BY ts`, params);
  const stored = (hex: string) => BigInt.asUintN(64, Buffer.from(hex, 'hex').readBigUInt64LE()).toString();

  it('OpenLLMetry / Traceloop: its LLM and tool spans make calls, in the session of its association properties; a loop in them is found', async () => {
    const session = `traceloop-${Date.now()}`;
    const props = { 'traceloop.association.properties.session_id': session };
    const calls: Call[] = [{
      name: 'openai.chat',
      attributes: {
        'llm.request.type': 'chat', 'gen_ai.system': 'openai', 'gen_ai.request.model': 'gpt-4o', 'gen_ai.response.model': 'gpt-4o-2024-08-06',
        'gen_ai.usage.prompt_tokens': 1200, 'gen_ai.usage.completion_tokens': 80, 'llm.usage.total_tokens': 1280, ...props,
      },
    }];
    // the same read five times (the kwargs in another order each other time: the same call)
    for (let i = 0; i < 5; i++) {
      calls.push({
        name: 'read_file.tool',
        attributes: {
          'traceloop.span.kind': 'tool', 'traceloop.entity.name': 'read_file', ...props,
          'traceloop.entity.input': i % 2 ? '{"kwargs":{"path":"a.ts","encoding":"utf8"},"args":[]}' : '{"args":[],"kwargs":{"encoding":"utf8","path":"a.ts"}}',
          'traceloop.entity.output': '"contents of a.ts"',
        },
      });
    }
    await emit(proto(tc.url), calls);
    await tc.collector.flush();
    const tools = await toolRows(session);
    expect(tools).toHaveLength(5);
    expect(tools.every((t) => t.tool === 'read_file' && t.convention === 'traceloop' && t.has_args === 1 && t.has_result === 1)).toBe(true);
    expect(new Set(tools.map((t) => t.args_hash)).size).toBe(1);
    expect(await llmRows('session_id = {s:String}', { s: session })).toEqual([
      { convention: 'traceloop', operation: 'chat', model: 'gpt-4o-2024-08-06', input_tokens: '1200', output_tokens: '80', status: 'ok', error_type: '' },
    ]);
    const r = await runDetectors(tc.collector.store.client);
    expect(r.errors).toEqual({});
    const found = await tc.rows<{ detector: string }>(`SELECT detector FROM agent_findings FINAL WHERE session_id = {s:String} ORDER BY detector`, { s: session });
    expect(found.map((f) => f.detector)).toEqual(expect.arrayContaining(['repeat', 'stuck']));
  });

  it('GenAI LLM spans from before gen_ai.operation.name are LLM calls (an embedding is not); LangSmith tool runs carry their input and output', async () => {
    const session = `pre-operation-${Date.now()}`;
    await emit(proto(tc.url), [
      { name: 'openai.chat', attributes: { 'gen_ai.system': 'openai', 'gen_ai.request.model': 'gpt-4o-mini', 'gen_ai.usage.prompt_tokens': 300, 'gen_ai.usage.completion_tokens': 20, 'gen_ai.conversation.id': session } },
      { name: 'embeddings text-embedding-3-small', attributes: { 'gen_ai.system': 'openai', 'gen_ai.request.model': 'text-embedding-3-small', 'gen_ai.usage.prompt_tokens': 50_000, 'gen_ai.conversation.id': session } },
      {
        name: 'read_file',
        attributes: {
          'gen_ai.operation.name': 'execute_tool', 'gen_ai.tool.name': 'read_file', 'langsmith.span.kind': 'tool',
          'gen_ai.prompt': '{"path":"a.ts"}', 'gen_ai.completion': 'contents of a.ts', 'gen_ai.conversation.id': session,
        },
      },
    ]);
    await tc.collector.flush();
    expect(await llmRows('session_id = {s:String}', { s: session })).toEqual([
      { convention: 'genai', operation: 'chat', model: 'gpt-4o-mini', input_tokens: '300', output_tokens: '20', status: 'ok', error_type: '' },
    ]);
    const [tool] = await toolRows(session);
    expect(tool).toMatchObject({ tool: 'read_file', convention: 'genai', has_args: 1, has_result: 1, args_hash: stored(valueHash({ path: 'a.ts' })) });
  });

  // other languages' instrumentations, as their source emits them (schema 015)
  it('pydantic-ai tool spans that name no operation (execute_tool {tool}; running tool with tool_arguments, version 2) are tool calls; its operation.cost is the cost', async () => {
    const session = `pydantic-ai-${Date.now()}`;
    const conv = { 'gen_ai.conversation.id': session };
    const calls: Call[] = [{
      name: 'chat gpt-4o',
      attributes: { 'gen_ai.operation.name': 'chat', 'gen_ai.system': 'openai', 'gen_ai.request.model': 'gpt-4o', 'gen_ai.usage.input_tokens': 500, 'gen_ai.usage.output_tokens': 30, 'operation.cost': 0.0042, ...conv },
    }];
    for (let i = 0; i < 3; i++) {
      calls.push({ name: 'execute_tool get_weather', attributes: { 'gen_ai.tool.name': 'get_weather', 'gen_ai.tool.call.id': `call_${i}`, 'gen_ai.tool.call.arguments': '{"city":"Paris"}', 'gen_ai.tool.call.result': 'Sunny', 'logfire.msg': 'running tool: get_weather', ...conv } });
      calls.push({ name: 'running tool', attributes: { 'gen_ai.tool.name': 'get_weather', 'tool_arguments': '{"city":"Paris"}', 'tool_response': 'Sunny', 'logfire.msg': 'running tool: get_weather', ...conv } });
    }
    await emit(proto(tc.url), calls);
    await tc.collector.flush();
    const tools = await toolRows(session);
    expect(tools).toHaveLength(6);
    expect(tools.every((t) => t.tool === 'get_weather' && t.convention === 'genai' && t.has_args === 1 && t.has_result === 1)).toBe(true);
    expect(new Set(tools.map((t) => t.args_hash))).toEqual(new Set([stored(valueHash({ city: 'Paris' }))]));
    const [cost] = await tc.rows<{ c: number }>('SELECT reported_cost_usd AS c FROM agent_llm_calls FINAL WHERE session_id = {s:String}', { s: session });
    expect(cost!.c).toBeCloseTo(0.0042, 9);
  });

  it('Google ADK: tool arguments and results on gcp.vertex.agent.*, its LLM calls (no operation name) in the session of gcp.vertex.agent.session_id; a loop is found', async () => {
    const session = `adk-session-${Date.now()}`;
    const exporter = proto(tc.url);
    const provider = new BasicTracerProvider({ resource: resourceFromAttributes({ 'service.name': 'adk-agent' }), spanProcessors: [new BatchSpanProcessor(exporter)] });
    const tracer = provider.getTracer('gcp.vertex.agent');
    const agentSpan = tracer.startSpan('invoke_agent weather_agent', { attributes: { 'gen_ai.operation.name': 'invoke_agent', 'gen_ai.agent.name': 'weather_agent', 'gen_ai.conversation.id': session } });
    const inAgent = trace.setSpan(ROOT_CONTEXT, agentSpan);
    let t = Date.now() - 60_000;
    for (let i = 0; i < 5; i++) {
      const llm = tracer.startSpan('call_llm', { startTime: t, attributes: {
        'gen_ai.system': 'gcp.vertex.agent', 'gen_ai.request.model': 'gemini-2.5-flash', 'gcp.vertex.agent.session_id': session, 'gcp.vertex.agent.invocation_id': 'e-1',
        'gen_ai.usage.input_tokens': 400, 'gen_ai.usage.output_tokens': 20, 'gen_ai.response.finish_reasons': ['stop'],
      } }, inAgent);
      llm.end(t + 400);
      const tool = tracer.startSpan('execute_tool get_weather', { startTime: t + 500, attributes: {
        'gen_ai.operation.name': 'execute_tool', 'gen_ai.tool.name': 'get_weather', 'gen_ai.tool.type': 'FunctionTool', 'gen_ai.tool.call.id': `adk-${i}`,
        'gcp.vertex.agent.llm_request': '{}', 'gcp.vertex.agent.llm_response': '{}',
        'gcp.vertex.agent.tool_call_args': '{"city": "Paris"}', 'gcp.vertex.agent.tool_response': '{"result": "Sunny"}',
      } }, inAgent);
      tool.end(t + 600);
      t += 1000;
    }
    agentSpan.end(t);
    await provider.forceFlush();
    await provider.shutdown();
    await tc.collector.flush();
    const tools = await toolRows(session);
    expect(tools).toHaveLength(5);
    expect(tools.every((t) => t.has_args === 1 && t.has_result === 1)).toBe(true);
    expect(new Set(tools.map((t) => t.args_hash))).toEqual(new Set([stored(valueHash({ city: 'Paris' }))]));
    const llm = await llmRows('session_id = {s:String}', { s: session });
    expect(llm).toHaveLength(5);
    expect(llm[0]).toMatchObject({ convention: 'genai', operation: 'chat', model: 'gemini-2.5-flash', input_tokens: '400' });
    expect((await runDetectors(tc.collector.store.client)).errors).toEqual({});
    const found = await tc.rows<{ detector: string; wasted_tokens: string }>(
      `SELECT detector, toString(wasted_tokens) AS wasted_tokens FROM agent_findings FINAL WHERE session_id = {s:String} AND detector IN ('repeat', 'stuck') ORDER BY detector`, { s: session });
    expect(found.map((f) => f.detector)).toEqual(['repeat', 'stuck']);
    expect(Number(found[0]!.wasted_tokens)).toBeGreaterThan(0); // the LLM calls are the same session's: the loop is charged their tokens
  });

  it('cache tokens by their other names (OpenLLMetry, AI SDK 6, cache writes): cache reads and writes priced at their prices', async () => {
    const session = `cache-names-${Date.now()}`;
    const base = { 'gen_ai.operation.name': 'chat', 'gen_ai.system': 'openai', 'gen_ai.request.model': 'gpt-4o', 'gen_ai.usage.input_tokens': 1_000_000, 'gen_ai.usage.output_tokens': 0, 'gen_ai.conversation.id': session };
    await emit(proto(tc.url), [
      { name: 'chat a', attributes: { ...base, 'gen_ai.usage.cache_read_input_tokens': 800_000, 'gen_ai.usage.cache_creation_input_tokens': 100_000 } },
      { name: 'chat b', attributes: { ...base, 'ai.usage.inputTokenDetails.cacheReadTokens': 800_000, 'ai.usage.inputTokenDetails.cacheWriteTokens': 100_000 } },
      { name: 'chat c', attributes: { ...base, 'gen_ai.usage.cache_read.input_tokens': 800_000, 'gen_ai.usage.cache_write.input_tokens': 100_000 } },
      { name: 'chat d', attributes: { ...base, 'gen_ai.system': 'anthropic', 'gen_ai.request.model': 'claude-sonnet-4-5', 'gen_ai.usage.cache_read_input_tokens': 800_000, 'gen_ai.usage.cache_creation_input_tokens': 100_000 } },
    ]);
    await tc.collector.flush();
    const rows = await tc.rows<{ r: string; w: string; cost: number }>(
      `SELECT l.model AS model, toString(l.cache_read_tokens) AS r, toString(l.cache_creation_tokens) AS w,
              loopwatch_llm_cost(l.reported_cost_usd, l.input_tokens, l.cache_read_tokens, l.cache_creation_tokens, l.output_tokens, pr.price) AS cost
       FROM agent_llm_calls AS l FINAL LEFT JOIN loopwatch_model_key_prices AS pr ON loopwatch_model_key(l.model) = pr.model_key
       WHERE l.session_id = {s:String} ORDER BY l.model = 'claude-sonnet-4-5', l.ts`, { s: session });
    expect(rows.map((r) => [r.r, r.w])).toEqual([['800000', '100000'], ['800000', '100000'], ['800000', '100000'], ['800000', '100000']]);
    // gpt-4o: 200k input (cache writes included: no write price) at 2.50, 800k cache reads at 1.25 (per million)
    for (const r of rows.slice(0, 3)) expect(r.cost).toBeCloseTo(0.2 * 2.5 + 0.8 * 1.25, 9);
    // claude-sonnet-4-5: 100k input at 3, 800k cache reads at 0.30, 100k cache writes at 3.75
    expect(rows[3]!.cost).toBeCloseTo(0.1 * 3 + 0.8 * 0.3 + 0.1 * 3.75, 9);
  });

  it('input counts that leave the cache out (Strands Agents on Bedrock, the AI SDK 5\'s Anthropic spans, a count below its cache), those that do not (Strands over LiteLLM, the AI SDK 6\'s object spans) and Google ADK\'s thoughts: tokens and cost as billed', async () => {
    const run = `cache-apart-${Date.now()}`;
    const anthropicUsage = JSON.stringify({ anthropic: { usage: { input_tokens: 50, output_tokens: 400, cache_creation_input_tokens: 3000, cache_read_input_tokens: 20000 }, cacheCreationInputTokens: 3000, stopSequence: null } });
    const sdk = (extra: Attributes): Attributes => ({ 'ai.model.provider': 'anthropic.messages', 'gen_ai.system': 'anthropic.messages', 'ai.model.id': 'claude-sonnet-4-5', 'ai.response.model': 'claude-sonnet-4-5-20250929', ...extra });
    // name -> span attributes, and the bill: whole input (cache among it), reads, writes, output
    const cases: Record<string, [string, Attributes, [number, number, number, number], number]> = {
      // Strands Agents (tracer.py end_model_invoke_span): Bedrock Converse's inputTokens leaves the cache out
      strands: ['chat', {
        'gen_ai.operation.name': 'chat', 'gen_ai.system': 'strands-agents', 'gen_ai.request.model': 'us.anthropic.claude-sonnet-4-5-20250929-v1:0',
        'gen_ai.usage.input_tokens': 50, 'gen_ai.usage.prompt_tokens': 50, 'gen_ai.usage.output_tokens': 400, 'gen_ai.usage.completion_tokens': 400,
        'gen_ai.usage.total_tokens': 23450, 'gen_ai.usage.cache_read_input_tokens': 20000, 'gen_ai.usage.cache_write_input_tokens': 3000,
      }, [23050, 20000, 3000, 400], 0.0234],
      // Strands over LiteLLM (models/litellm.py): its input count is LiteLLM's prompt_tokens, the
      // cache among it (OpenAI's by definition, Anthropic's as LiteLLM maps it): not added again
      'strands-litellm-openai': ['chat', {
        'gen_ai.operation.name': 'chat', 'gen_ai.system': 'strands-agents', 'gen_ai.request.model': 'gpt-4o',
        'gen_ai.usage.input_tokens': 10000, 'gen_ai.usage.output_tokens': 500, 'gen_ai.usage.cache_read_input_tokens': 8000,
      }, [10000, 8000, 0, 500], 0.02],
      'strands-litellm-anthropic': ['chat', {
        'gen_ai.operation.name': 'chat', 'gen_ai.system': 'strands-agents', 'gen_ai.request.model': 'anthropic/claude-sonnet-4-5',
        'gen_ai.usage.input_tokens': 23050, 'gen_ai.usage.output_tokens': 400, 'gen_ai.usage.cache_read_input_tokens': 20000, 'gen_ai.usage.cache_write_input_tokens': 3000,
      }, [23050, 20000, 3000, 400], 0.0234],
      // any source: reads and writes above the input count cannot be among it
      'over-input': ['chat', {
        'gen_ai.operation.name': 'chat', 'gen_ai.provider.name': 'anthropic', 'gen_ai.request.model': 'claude-sonnet-4-5',
        'gen_ai.usage.input_tokens': 50, 'gen_ai.usage.output_tokens': 400, 'gen_ai.usage.cache_read.input_tokens': 20000, 'gen_ai.usage.cache_creation.input_tokens': 3000,
      }, [23050, 20000, 3000, 400], 0.0234],
      // the AI SDK 5 (ai@5.0.277, @ai-sdk/anthropic 2.0.112): a doGenerate span as it ends, no cache count but Anthropic's usage in the metadata
      'aisdk5-generate': ['ai.generateText.doGenerate', sdk({
        'ai.operationId': 'ai.generateText.doGenerate', 'ai.usage.promptTokens': 50, 'ai.usage.completionTokens': 400,
        'gen_ai.usage.input_tokens': 50, 'gen_ai.usage.output_tokens': 400, 'ai.response.providerMetadata': anthropicUsage,
      }), [23050, 20000, 3000, 400], 0.0234],
      // a doStream span of an @ai-sdk/anthropic 2 that gives only cacheCreationInputTokens: the reads are ai.usage.cachedInputTokens
      'aisdk5-stream': ['ai.streamText.doStream', sdk({
        'ai.operationId': 'ai.streamText.doStream', 'ai.usage.inputTokens': 50, 'ai.usage.outputTokens': 400, 'ai.usage.totalTokens': 450, 'ai.usage.cachedInputTokens': 20000,
        'gen_ai.usage.input_tokens': 50, 'gen_ai.usage.output_tokens': 400, 'ai.response.providerMetadata': JSON.stringify({ anthropic: { cacheCreationInputTokens: 3000 } }),
      }), [23050, 20000, 3000, 400], 0.0234],
      // the AI SDK 5 and OpenAI: the input count includes the cache reads
      'aisdk5-openai-stream': ['ai.streamText.doStream', {
        'ai.operationId': 'ai.streamText.doStream', 'ai.model.provider': 'openai.chat', 'gen_ai.system': 'openai.chat', 'ai.model.id': 'gpt-4o', 'ai.response.model': 'gpt-4o-2024-08-06',
        'ai.usage.inputTokens': 10000, 'ai.usage.outputTokens': 500, 'ai.usage.cachedInputTokens': 8000, 'gen_ai.usage.input_tokens': 10000, 'gen_ai.usage.output_tokens': 500,
        'ai.response.providerMetadata': '{"openai":{}}',
      }, [10000, 8000, 0, 500], 0.02],
      // the AI SDK 6's streamObject without recorded outputs: no inputTokenDetails and no metadata, its count the whole input (its writes on no attribute)
      'aisdk6-stream-object': ['ai.streamObject.doStream', sdk({
        'ai.operationId': 'ai.streamObject.doStream', 'ai.usage.inputTokens': 23050, 'ai.usage.outputTokens': 400, 'ai.usage.totalTokens': 23450, 'ai.usage.cachedInputTokens': 20000,
        'gen_ai.usage.input_tokens': 23050, 'gen_ai.usage.output_tokens': 400,
      }), [23050, 20000, 0, 400], (3050 * 3 + 20000 * 0.3 + 400 * 15) / 1e6],
      // the AI SDK 6's generateObject: no inputTokenDetails, its count the whole input; Anthropic's usage says the same
      'aisdk6-object': ['ai.generateObject.doGenerate', sdk({
        'ai.operationId': 'ai.generateObject.doGenerate', 'ai.usage.promptTokens': 23050, 'ai.usage.completionTokens': 400,
        'gen_ai.usage.input_tokens': 23050, 'gen_ai.usage.output_tokens': 400, 'ai.response.providerMetadata': anthropicUsage,
      }), [23050, 20000, 3000, 400], 0.0234],
      // Google ADK (trace_call_llm): output is candidates_token_count without the thoughts, billed as output
      adk: ['call_llm', {
        'gen_ai.system': 'gcp.vertex.agent', 'gen_ai.request.model': 'gemini-2.5-pro', 'gen_ai.usage.input_tokens': 10000, 'gen_ai.usage.output_tokens': 200,
        'gcp.vertex.agent.llm_response': JSON.stringify({ content: { role: 'model', parts: [{ text: 'hi' }] }, usage_metadata: { prompt_token_count: 10000, cached_content_token_count: 8000, candidates_token_count: 200, thoughts_token_count: 3000, total_token_count: 13200 } }),
      }, [10000, 8000, 0, 3200], 0.0355],
    };
    await emit(proto(tc.url), Object.entries(cases).map(([name, [span, attributes]]) => ({ name: span, attributes: { ...attributes, 'gen_ai.conversation.id': `${run}-${name}` } })));
    await tc.collector.flush();
    const rows = await tc.rows<{ s: string; i: string; r: string; w: string; o: string; t: string; cost: number }>(
      `SELECT l.session_id AS s, toString(l.input_tokens) AS i, toString(l.cache_read_tokens) AS r, toString(l.cache_creation_tokens) AS w,
              toString(l.output_tokens) AS o, toString(l.total_tokens) AS t,
              loopwatch_llm_cost(l.reported_cost_usd, l.input_tokens, l.cache_read_tokens, l.cache_creation_tokens, l.output_tokens, pr.price) AS cost
       FROM agent_llm_calls AS l FINAL LEFT JOIN loopwatch_model_key_prices AS pr ON loopwatch_model_key(l.model) = pr.model_key
       WHERE startsWith(l.session_id, {run:String})`, { run: `${run}-` });
    // all cases in one comparison (a failure shows each): tokens, and the cost to the nano-dollar
    const round = (usd: number) => Math.round(usd * 1e9) / 1e9;
    const got = Object.fromEntries(rows.map((r) => [r.s.slice(run.length + 1), { i: r.i, r: r.r, w: r.w, o: r.o, t: r.t, cost: round(r.cost) }]));
    const want = Object.fromEntries(Object.entries(cases).map(([name, [, , [input, read, write, output], bill]]) =>
      [name, { i: String(input), r: String(read), w: String(write), o: String(output), t: String(input + output), cost: round(bill) }]));
    expect(got).toEqual(want);
    // the same tokens in process (the loop guard's count, the cost the AI SDK processor stamps)
    const inProcess = Object.fromEntries(Object.entries(cases).map(([name, [, attributes]]) => {
      const u = llmUsageOf(attributes);
      return [name, [u.input, u.cacheRead, u.cacheWrite, u.output]];
    }));
    expect(inProcess).toEqual(Object.fromEntries(Object.entries(cases).map(([name, [, , tokens]]) => [name, tokens])));
  });

  it('Semantic Kernel (.NET): LLM spans of operation chat.completions and text.completions are LLM calls', async () => {
    const session = `sk-${Date.now()}`;
    await emit(proto(tc.url), ['chat.completions', 'text.completions'].map((op) => ({
      name: `${op} gpt-4o`,
      attributes: { 'gen_ai.operation.name': op, 'gen_ai.system': 'openai', 'gen_ai.request.model': 'gpt-4o', 'gen_ai.usage.input_tokens': 500, 'gen_ai.usage.output_tokens': 30, 'gen_ai.conversation.id': session },
    })));
    await tc.collector.flush();
    expect((await llmRows('session_id = {s:String}', { s: session })).map((r) => [r.operation, r.model, r.input_tokens]).sort()).toEqual([
      ['chat', 'gpt-4o', '500'], ['text_completion', 'gpt-4o', '500'],
    ]);
  });

  it('a failed LLM call\'s error type comes from its exception event when it has no error.type', async () => {
    const session = `llm-error-${Date.now()}`;
    const provider = new BasicTracerProvider({ resource: resourceFromAttributes({ 'service.name': 'conventions-test' }), spanProcessors: [new SimpleSpanProcessor(proto(tc.url))] });
    const span = provider.getTracer('t').startSpan('chat gpt-4o', { attributes: { 'gen_ai.operation.name': 'chat', 'gen_ai.request.model': 'gpt-4o', 'gen_ai.conversation.id': session } });
    const err = new Error('Rate limit reached');
    err.name = 'RateLimitError';
    span.recordException(err);
    span.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
    span.end();
    await provider.forceFlush();
    await provider.shutdown();
    await tc.collector.flush();
    const [row] = await llmRows('session_id = {s:String}', { s: session });
    expect(row).toMatchObject({ status: 'error', error_type: 'RateLimitError' });
  });
});

describe('GenAI spans as the conventions place the session and the agent', () => {
  it('AI SDK and OpenLLMetry spans in a trace that names a conversation: their LLM and tool calls stay in one session (the LLM spans carry gen_ai.system, the tool spans do not; OpenLLMetry\'s Responses API spans nothing else)', async () => {
    const conversation = `conv-mixed-${Date.now()}`;
    const exporter = exporters['exporter-trace-otlp-proto']!(tc.url);
    const provider = new BasicTracerProvider({ resource: resourceFromAttributes({ 'service.name': 'mixed-svc' }), spanProcessors: [new BatchSpanProcessor(exporter)] });
    const tracer = provider.getTracer('mixed');
    const traces: string[] = [];
    for (const kind of ['ai_sdk', 'traceloop'] as const) {
      const root = tracer.startSpan('invoke_agent helper', { attributes: { 'gen_ai.operation.name': 'invoke_agent', 'gen_ai.agent.name': 'helper', 'gen_ai.conversation.id': conversation } });
      traces.push(root.spanContext().traceId);
      const inRoot = trace.setSpan(ROOT_CONTEXT, root);
      const llm = kind === 'ai_sdk'
        ? { 'ai.operationId': 'ai.generateText.doGenerate', 'operation.name': 'ai.generateText.doGenerate', 'gen_ai.system': 'openai.chat', 'ai.model.id': 'gpt-4o', 'ai.usage.promptTokens': 100, 'ai.usage.completionTokens': 10 }
        : { 'llm.request.type': 'chat', 'gen_ai.system': 'openai', 'gen_ai.request.model': 'gpt-4o', 'gen_ai.usage.prompt_tokens': 100, 'gen_ai.usage.completion_tokens': 10 };
      const tool = kind === 'ai_sdk'
        ? { 'ai.operationId': 'ai.toolCall', 'operation.name': 'ai.toolCall', 'ai.toolCall.name': 'read_file', 'ai.toolCall.args': '{"path":"a"}' }
        : { 'traceloop.span.kind': 'tool', 'traceloop.entity.name': 'read_file', 'traceloop.entity.input': '{"path":"a"}' };
      tracer.startSpan(kind === 'ai_sdk' ? 'ai.generateText.doGenerate' : 'openai.chat', { attributes: llm }, inRoot).end();
      tracer.startSpan(kind === 'ai_sdk' ? 'ai.toolCall' : 'read_file.tool', { attributes: tool }, inRoot).end();
      // OpenLLMetry's Responses API spans carry gen_ai.system, the model and usage only
      if (kind === 'traceloop') tracer.startSpan('openai.response', { attributes: { 'gen_ai.system': 'openai', 'gen_ai.request.model': 'gpt-4o', 'gen_ai.usage.input_tokens': 100, 'gen_ai.usage.output_tokens': 10 } }, inRoot).end();
      root.end();
    }
    await provider.forceFlush();
    await provider.shutdown();
    await tc.collector.flush();
    for (const t of traces) {
      const sessions = await tc.rows<{ s: string }>(
        `SELECT session_id AS s FROM agent_tool_calls FINAL WHERE trace_id = {t:String} UNION ALL SELECT session_id AS s FROM agent_llm_calls FINAL WHERE trace_id = {t:String}`, { t });
      expect(sessions.length).toBeGreaterThanOrEqual(2);
      expect(new Set(sessions.map((r) => r.s)).size).toBe(1);
    }
  });


  it('tool spans without gen_ai.conversation.id take their trace\'s conversation and agent (sent in one batch), so a loop in them is charged its tokens', async () => {
    const session = `conv-on-chat-${Date.now()}`;
    const exporter = exporters['exporter-trace-otlp-proto']!(tc.url);
    const provider = new BasicTracerProvider({ resource: resourceFromAttributes({ 'service.name': 'spec-agent' }), spanProcessors: [new BatchSpanProcessor(exporter)] });
    const tracer = provider.getTracer('spec');
    // invoke_agent names the conversation and the agent; chat spans the conversation; execute_tool spans neither
    const agentSpan = tracer.startSpan('invoke_agent coder', { attributes: { 'gen_ai.operation.name': 'invoke_agent', 'gen_ai.agent.name': 'coder', 'gen_ai.conversation.id': session } });
    const inAgent = trace.setSpan(ROOT_CONTEXT, agentSpan);
    let t = Date.now() - 60_000;
    for (let i = 0; i < 5; i++) {
      const chat = tracer.startSpan('chat gpt-4o', { startTime: t, attributes: { 'gen_ai.operation.name': 'chat', 'gen_ai.request.model': 'gpt-4o', 'gen_ai.usage.input_tokens': 1000, 'gen_ai.usage.output_tokens': 100, 'gen_ai.conversation.id': session } }, inAgent);
      chat.end(t + 500);
      const tool = tracer.startSpan('execute_tool read_file', { startTime: t + 600, attributes: { 'gen_ai.operation.name': 'execute_tool', 'gen_ai.tool.name': 'read_file', 'gen_ai.tool.call.arguments': '{"path":"a.ts"}', 'gen_ai.tool.call.result': 'same' } }, inAgent);
      tool.end(t + 700);
      t += 1000;
    }
    agentSpan.end(t);
    await provider.forceFlush();
    await provider.shutdown();
    await tc.collector.flush();
    const tools = await tc.rows<{ agent: string }>(`SELECT agent FROM agent_tool_calls FINAL WHERE session_id = {s:String}`, { s: session });
    expect(tools).toEqual(Array.from({ length: 5 }, () => ({ agent: 'coder' })));
    const marked = await tc.rows<{ n: string }>(
      `SELECT toString(count()) AS n FROM otel_traces WHERE SpanAttributes['loopwatch.conversation_from'] = 'trace' AND SpanAttributes['gen_ai.conversation.id'] = {s:String}`, { s: session });
    expect(marked[0]!.n).toBe('5'); // what was filled in says so
    expect((await runDetectors(tc.collector.store.client)).errors).toEqual({});
    const [repeat] = await tc.rows<{ wasted_tokens: string; agent: string }>(
      `SELECT toString(wasted_tokens) AS wasted_tokens, agent FROM agent_findings FINAL WHERE session_id = {s:String} AND detector = 'repeat'`, { s: session });
    expect(repeat).toEqual({ wasted_tokens: '4400', agent: 'coder' });
  });
});
