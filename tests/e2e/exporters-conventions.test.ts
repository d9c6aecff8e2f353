// (b) The official OTLP exporters (protobuf and JSON over HTTP) send spans in each attribute
// convention Loopwatch understands; every one lands in the typed tables correctly normalized.
import { SpanStatusCode, type Attributes, type Tracer } from '@opentelemetry/api';
import { OTLPTraceExporter as OTLPHttpJsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OTLPProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, SimpleSpanProcessor, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { valueHash } from '../../instrumentation/src/canonical.js';
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
