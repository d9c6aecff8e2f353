// instrumentOpenAI against the real `openai` SDK, both majors in use (6, and 7 installed as
// openai-v7), a loopback server standing in for the API, spans exported over OTLP to a real collector.
import OpenAI from 'openai';
import OpenAI7 from 'openai-v7';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withSession, wrapTools } from '../../instrumentation/src/api.js';
import { costUsd } from '../../instrumentation/src/cost.js';
import { instrumentOpenAI } from '../../instrumentation/src/integrations/openai.js';
import { fakeApi, startPipeline, type FakeApi, type Pipeline } from './helpers.js';

let p: Pipeline;
let api: FakeApi;
const clients: Record<string, OpenAI> = {};

const toolCallResponse = {
  id: 'chatcmpl-1', object: 'chat.completion', created: 1, model: 'gpt-4o-2024-08-06',
  choices: [{
    index: 0, finish_reason: 'tool_calls', logprobs: null,
    message: { role: 'assistant', content: null, refusal: null, tool_calls: [
      { id: 'call_a', type: 'function', function: { name: 'read_file', arguments: '{"path":"a.ts"}' } },
      { id: 'call_b', type: 'function', function: { name: 'run_tests', arguments: '{}' } },
    ] },
  }],
  usage: { prompt_tokens: 1200, completion_tokens: 40, total_tokens: 1240, prompt_tokens_details: { cached_tokens: 1000 } },
};

beforeAll(async () => {
  p = await startPipeline('openai-agent');
  api = await fakeApi((req) => {
    const body = req.body as { model: string; stream?: boolean };
    if (body.model === 'gpt-broken') return { status: 400, json: { error: { message: 'bad model', type: 'invalid_request_error' } } };
    if (body.model === 'gpt-4o-runner') {
      // runTools: read_file of the same file three times, then an answer
      const turns = (req.body as { messages: unknown[] }).messages.length;
      const message = turns < 7
        ? { role: 'assistant', content: null, refusal: null, tool_calls: [{ id: `call_${turns}`, type: 'function', function: { name: 'read_file', arguments: '{"path":"a.ts"}' } }] }
        : { role: 'assistant', content: 'done', refusal: null };
      return { json: {
        id: `chatcmpl-r${turns}`, object: 'chat.completion', created: 1, model: 'gpt-4o-runner',
        choices: [{ index: 0, finish_reason: turns < 7 ? 'tool_calls' : 'stop', logprobs: null, message }],
        usage: { prompt_tokens: 100, completion_tokens: 5, total_tokens: 105 },
      } };
    }
    if (body.model === 'gpt-4o-structured') {
      // structured output, as parse() asks for it: the answer is JSON text
      if (req.path.endsWith('/responses')) {
        return { json: {
          id: 'resp_s', object: 'response', created_at: 1, model: 'gpt-4o-structured', status: 'completed',
          output: [{ type: 'message', id: 'msg_s', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: '{"ok":true}', annotations: [] }] }],
          usage: { input_tokens: 300, output_tokens: 7, total_tokens: 307, input_tokens_details: { cached_tokens: 0 }, output_tokens_details: { reasoning_tokens: 0 } },
        } };
      }
      return { json: {
        id: 'chatcmpl-s', object: 'chat.completion', created: 1, model: 'gpt-4o-structured',
        choices: [{ index: 0, finish_reason: 'stop', logprobs: null, message: { role: 'assistant', content: '{"ok":true}', refusal: null } }],
        usage: { prompt_tokens: 200, completion_tokens: 6, total_tokens: 206 },
      } };
    }
    if (req.path.endsWith('/responses') && body.stream) {
      // a streamed response that fails after the request succeeded
      return { sse: [
        { event: 'response.created', data: { type: 'response.created', sequence_number: 0, response: { id: 'resp_f', object: 'response', created_at: 1, model: 'gpt-4.1-mini', status: 'in_progress', output: [] } } },
        { event: 'response.failed', data: { type: 'response.failed', sequence_number: 1, response: { id: 'resp_f', object: 'response', created_at: 1, model: 'gpt-4.1-mini', status: 'failed', error: { code: 'server_error', message: 'The model failed' }, output: [], usage: null } } },
      ] };
    }
    if (req.path.endsWith('/responses')) {
      return { json: {
        id: 'resp_1', object: 'response', created_at: 1, model: 'gpt-4.1-mini', status: 'completed',
        output: [{ type: 'function_call', id: 'fc_1', call_id: 'call_r', name: 'search', arguments: '{"q":"x"}', status: 'completed' }],
        usage: { input_tokens: 100, output_tokens: 10, total_tokens: 110, input_tokens_details: { cached_tokens: 0 }, output_tokens_details: { reasoning_tokens: 0 } },
      } };
    }
    if (body.stream && body.model === 'compat-index0') {
      // an OpenAI-compatible server that sends each parallel call at index 0, told apart by id
      return { sse: [
        { data: { id: 'c3', object: 'chat.completion.chunk', created: 1, model: 'compat-index0', choices: [{ index: 0, delta: { role: 'assistant', tool_calls: [{ index: 0, id: 'call_x', type: 'function', function: { name: 'read_file', arguments: '{"path":"a.ts"}' } }] }, finish_reason: null }] } },
        { data: { id: 'c3', object: 'chat.completion.chunk', created: 1, model: 'compat-index0', choices: [{ index: 0, delta: { tool_calls: [{ index: 0, id: 'call_y', type: 'function', function: { name: 'read_file', arguments: '{"path":"b.ts"}' } }] }, finish_reason: 'tool_calls' }] } },
        { data: '[DONE]' },
      ] };
    }
    if (body.stream) {
      return { sse: [
        { data: { id: 'c2', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { role: 'assistant', tool_calls: [{ index: 0, id: 'call_s', type: 'function', function: { name: 'write_file', arguments: '{"path":' } }] }, finish_reason: null }] } },
        { data: { id: 'c2', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '"b.ts"}' } }] }, finish_reason: 'tool_calls' }] } },
        { data: { id: 'c2', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [], usage: { prompt_tokens: 50, completion_tokens: 5, total_tokens: 55 } } },
        { data: '[DONE]' },
      ] };
    }
    return { json: toolCallResponse };
  });
  clients['openai 6'] = instrumentOpenAI(new OpenAI({ apiKey: 'test-key', baseURL: `${api.url}/v1`, maxRetries: 0 }));
  // the same calls through the other major: its types differ in details the test does not use
  clients['openai 7'] = instrumentOpenAI(new OpenAI7({ apiKey: 'test-key', baseURL: `${api.url}/v1`, maxRetries: 0 })) as unknown as OpenAI;
});
afterAll(async () => {
  await p?.close();
  await api?.close();
});

interface LlmRow { span_name: string; provider: string; request_model: string; response_model: string; input_tokens: string; output_tokens: string; cache_read_tokens: string; reported_cost_usd: number; status: string; error_type: string; convention: string; operation: string }

describe.each(['openai 6', 'openai 7'])('instrumentOpenAI (%s)', (version) => {
  it('records chat completions, streams, responses and failures as GenAI chat spans in agent_llm_calls', async () => {
    const client = clients[version]!;
    api.requests.length = 0;
    const session = `openai-${version.replace(' ', '')}-${Date.now()}`;
    await withSession({ sessionId: session, agent: 'oa' }, async () => {
      const r = await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'fix it' }] });
      expect(r.choices[0]!.message.tool_calls).toHaveLength(2); // the caller's result is untouched
      const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'go' }] });
      let chunks = 0;
      for await (const _c of stream) chunks++;
      expect(chunks).toBe(3);
      const resp = await client.responses.create({ model: 'gpt-4.1-mini', input: 'search' });
      expect(resp.id).toBe('resp_1');
      await expect(client.chat.completions.create({ model: 'gpt-broken', messages: [{ role: 'user', content: 'x' }] })).rejects.toThrow();
    });
    expect(api.requests).toHaveLength(4);
    await p.landed();

    const rows = await p.tc.rows<LlmRow>(
      `SELECT request_model, response_model, provider, toString(input_tokens) AS input_tokens, toString(output_tokens) AS output_tokens,
              toString(cache_read_tokens) AS cache_read_tokens, reported_cost_usd, status, error_type, convention, operation
       FROM agent_llm_calls FINAL WHERE session_id = {s:String} ORDER BY ts`, { s: session });
    expect(rows.map((r) => r.request_model)).toEqual(['gpt-4o', 'gpt-4o-mini', 'gpt-4.1-mini', 'gpt-broken']);
    const [chat, streamed, responses, failed] = rows as [LlmRow, LlmRow, LlmRow, LlmRow];
    expect(chat).toMatchObject({ provider: 'openai', response_model: 'gpt-4o-2024-08-06', input_tokens: '1200', output_tokens: '40', cache_read_tokens: '1000', status: 'ok', convention: 'genai', operation: 'chat' });
    expect(chat.reported_cost_usd).toBeCloseTo(costUsd('gpt-4o-2024-08-06', { inputTokens: 1200, outputTokens: 40, cacheReadTokens: 1000 })!, 9);
    expect(chat.reported_cost_usd).toBeGreaterThan(0);
    expect(streamed).toMatchObject({ response_model: 'gpt-4o-mini', input_tokens: '50', output_tokens: '5', status: 'ok' });
    expect(responses).toMatchObject({ response_model: 'gpt-4.1-mini', input_tokens: '100', output_tokens: '10', status: 'ok' });
    expect(failed).toMatchObject({ status: 'error', error_type: '400' });

    // the requested tool calls: finish reasons, ids and names, one event per call with the args hash
    const spans = await p.tc.rows<{ SpanName: string; fr: string; ids: string; names: string; ev: string[]; evattrs: Array<Record<string, string>> }>(
      `SELECT SpanName, SpanAttributes['gen_ai.response.finish_reasons'] AS fr, SpanAttributes['loopwatch.response.tool_call.ids'] AS ids,
              SpanAttributes['loopwatch.response.tool_call.names'] AS names, Events.Name AS ev, Events.Attributes AS evattrs
       FROM otel_traces WHERE SpanAttributes['gen_ai.conversation.id'] = {s:String} ORDER BY Timestamp`, { s: session });
    expect(spans[0]!.SpanName).toBe('chat gpt-4o');
    expect(JSON.parse(spans[0]!.fr)).toEqual(['tool_calls']);
    expect(JSON.parse(spans[0]!.ids)).toEqual(['call_a', 'call_b']);
    expect(JSON.parse(spans[0]!.names)).toEqual(['read_file', 'run_tests']);
    expect(spans[0]!.ev).toEqual(['loopwatch.tool_call.requested', 'loopwatch.tool_call.requested']);
    expect(spans[0]!.evattrs[0]!['gen_ai.tool.call.id']).toBe('call_a');
    expect(spans[0]!.evattrs[0]!['loopwatch.tool.args_hash']).toMatch(/^[0-9a-f]{16}$/);
    expect(spans[0]!.evattrs[0]!['gen_ai.tool.call.arguments']).toBeUndefined(); // capture is off by default
    expect(JSON.parse(spans[1]!.ids)).toEqual(['call_s']);
    expect(JSON.parse(spans[2]!.names)).toEqual(['search']);
  });

  it('asResponse() and withResponse(): the body is the caller\'s to read, and the call is one span', async () => {
    const client = clients[version]!;
    const session = `openai-raw-${version.replace(' ', '')}-${Date.now()}`;
    await withSession(session, async () => {
      const raw = await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] }).asResponse();
      expect(((await raw.json()) as { id: string }).id).toBe('chatcmpl-1');
      const { data, response } = await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] }).withResponse();
      expect(data.id).toBe('chatcmpl-1');
      expect(response.status).toBe(200);
    });
    await p.landed();
    const spans = await p.tc.rows<{ tools: string }>(
      `SELECT SpanAttributes['loopwatch.response.tool_call.names'] AS tools FROM otel_traces WHERE SpanAttributes['gen_ai.conversation.id'] = {s:String} ORDER BY Timestamp`, { s: session });
    // asResponse: ended when the response came, what it asked for unknown; withResponse: parsed as usual
    expect(spans.map((x) => x.tools)).toEqual(['', '["read_file","run_tests"]']);
  });

  it('a streamed response that ends failed is a failed call (the SDK does not throw)', async () => {
    const client = clients[version]!;
    const session = `openai-failed-${version.replace(' ', '')}-${Date.now()}`;
    await withSession(session, async () => {
      const stream = await client.responses.create({ model: 'gpt-4.1-mini', input: 'x', stream: true });
      for await (const _ of stream) { /* read to the end */ }
    });
    await p.landed();
    const rows = await p.tc.rows<{ status: string; error_type: string }>(`SELECT status, error_type FROM agent_llm_calls FINAL WHERE session_id = {s:String}`, { s: session });
    expect(rows).toEqual([{ status: 'error', error_type: 'server_error' }]);
  });

  it('a stream split by tee(), and a client made by withOptions(), are traced too', async () => {
    const client = clients[version]!;
    const session = `openai-tee-${version.replace(' ', '')}-${Date.now()}`;
    await withSession(session, async () => {
      const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'x' }] });
      const [left, right] = stream.tee();
      for await (const _ of left) { /* read both halves */ }
      for await (const _ of right) { /* as an app that logs one and answers from the other */ }
      await client.withOptions({ timeout: 5000 }).chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] });
    });
    await p.landed();
    const spans = await p.tc.rows<{ name: string; tools: string }>(
      `SELECT SpanName AS name, SpanAttributes['loopwatch.response.tool_call.names'] AS tools FROM otel_traces
       WHERE SpanAttributes['gen_ai.conversation.id'] = {s:String} ORDER BY Timestamp`, { s: session });
    expect(spans).toEqual([{ name: 'chat gpt-4o-mini', tools: '["write_file"]' }, { name: 'chat gpt-4o', tools: '["read_file","run_tests"]' }]);
  });

  it('the structured-output helpers (chat.completions.parse, responses.parse) are one call each, with their tokens', async () => {
    const client = clients[version]!;
    const session = `openai-parse-${version.replace(' ', '')}-${Date.now()}`;
    const schema = { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'], additionalProperties: false };
    await withSession(session, async () => {
      const chat = await client.chat.completions.parse({
        model: 'gpt-4o-structured', messages: [{ role: 'user', content: 'x' }],
        response_format: { type: 'json_schema', json_schema: { name: 'answer', schema, strict: true } },
      });
      expect(chat.choices[0]!.message.parsed).toEqual({ ok: true }); // the caller's parsed output is untouched
      const resp = await client.responses.parse({ model: 'gpt-4o-structured', input: 'x', text: { format: { type: 'json_schema', name: 'answer', schema, strict: true } } });
      expect(resp.output_parsed).toEqual({ ok: true });
    });
    await p.landed();
    const rows = await p.tc.rows<{ input_tokens: string; output_tokens: string; status: string }>(
      `SELECT toString(input_tokens) AS input_tokens, toString(output_tokens) AS output_tokens, status FROM agent_llm_calls FINAL WHERE session_id = {s:String} ORDER BY ts`, { s: session });
    expect(rows).toEqual([{ input_tokens: '200', output_tokens: '6', status: 'ok' }, { input_tokens: '300', output_tokens: '7', status: 'ok' }]);
  });

  it('wraps a client once', () => {
    const client = clients[version]!;
    const again = instrumentOpenAI(client);
    expect(again).toBe(client);
  });
});

describe('runTools with wrapTools', () => {
  it('a tool called by the runner is identified by its input, not by the runner passed after it', async () => {
    const client = clients['openai 6']!;
    const session = `openai-runtools-${Date.now()}`;
    const tools = wrapTools({ read_file: async ({ path }: { path: string }) => `contents of ${path}` });
    await withSession(session, async () => {
      const runner = client.chat.completions.runTools({
        model: 'gpt-4o-runner', messages: [{ role: 'user', content: 'read a.ts' }],
        tools: [{ type: 'function', function: { name: 'read_file', function: tools.read_file, parse: JSON.parse, parameters: { type: 'object', properties: { path: { type: 'string' } } } } }],
      });
      expect(await runner.finalContent()).toBe('done');
    });
    await p.landed();
    const rows = await p.tc.rows<{ args_hash: string; result_hash: string }>(
      `SELECT toString(args_hash) AS args_hash, toString(result_hash) AS result_hash
       FROM agent_tool_calls FINAL WHERE session_id = {s:String} ORDER BY ts`, { s: session });
    expect(rows).toHaveLength(3);
    // the runner (the conversation so far) grows with each call: hashed with it, every call was new
    expect(new Set(rows.map((r) => r.args_hash)).size).toBe(1);
    expect(new Set(rows.map((r) => r.result_hash)).size).toBe(1);
  });
});

describe('streamed tool calls of OpenAI-compatible servers', () => {
  it('two calls sent at the same index with different ids are two requested calls, not one with both arguments', async () => {
    const session = `openai-index0-${Date.now()}`;
    await withSession(session, async () => {
      const stream = await clients['openai 6']!.chat.completions.create({ model: 'compat-index0', stream: true, messages: [{ role: 'user', content: 'go' }] });
      for await (const _c of stream) void _c;
    });
    await p.landed();
    const [row] = await p.tc.rows<{ ids: string[]; names: string[]; events: number }>(
      `SELECT SpanAttributes['loopwatch.response.tool_call.ids'] AS ids_text, JSONExtract(ids_text, 'Array(String)') AS ids,
              JSONExtract(SpanAttributes['loopwatch.response.tool_call.names'], 'Array(String)') AS names,
              countEqual(\`Events.Name\`, 'loopwatch.tool_call.requested') AS events
       FROM otel_traces WHERE SpanAttributes['gen_ai.conversation.id'] = {s:String} AND SpanName = 'chat compat-index0'`, { s: session });
    expect(row).toMatchObject({ ids: ['call_x', 'call_y'], names: ['read_file', 'read_file'], events: 2 });
  });
});
