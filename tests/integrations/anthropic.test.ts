// instrumentAnthropic against the real `@anthropic-ai/sdk`, a loopback server standing in for
// the Messages API, spans exported over OTLP to a real collector.
import Anthropic from '@anthropic-ai/sdk';
import { betaTool } from '@anthropic-ai/sdk/helpers/beta/json-schema';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { valueHash, withSession, wrapTools } from '../../instrumentation/src/api.js';
import { enableLoopGuard } from '../../instrumentation/src/guard/enable.js';
import { haltSignal } from '../../instrumentation/src/guard/halt-signal.js';
import { loopDetectedIn } from '../../instrumentation/src/guard/loop-guard.js';
import { configurePrices, costUsd } from '../../instrumentation/src/cost.js';
import { onLlmCall, type LlmCallRecord } from '../../instrumentation/src/llm-calls.js';
import { instrumentAnthropic } from '../../instrumentation/src/integrations/anthropic.js';
import { fakeApi, startPipeline, type FakeApi, type Pipeline } from './helpers.js';

let p: Pipeline;
let api: FakeApi;
let client: Anthropic;

beforeAll(async () => {
  p = await startPipeline('anthropic-agent');
  api = await fakeApi((req) => {
    const body = req.body as { model: string; stream?: boolean };
    if (body.model === 'claude-sonnet-4-5-1h') {
      // writes to both caches: 1,000 tokens to the 5-minute one, 2,000 to the 1-hour one
      const usage = { input_tokens: 100, output_tokens: 20, cache_read_input_tokens: 0, cache_creation_input_tokens: 3000, cache_creation: { ephemeral_5m_input_tokens: 1000, ephemeral_1h_input_tokens: 2000 } };
      const message = { id: 'msg_h', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5-20250929', stop_reason: 'end_turn', stop_sequence: null, content: [{ type: 'text', text: 'ok' }], usage };
      if (!body.stream) return { json: message };
      return { sse: [
        { event: 'message_start', data: { type: 'message_start', message: { ...message, content: [], stop_reason: null, usage: { ...usage, output_tokens: 1 } } } },
        { event: 'message_delta', data: { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 20 } } },
        { event: 'message_stop', data: { type: 'message_stop' } },
      ] };
    }
    if (body.model === 'claude-overloaded') return { status: 529, json: { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } } };
    if (body.stream && body.model === 'claude-noargs') {
      // a tool_use without arguments: an empty input, and an empty JSON delta
      return { sse: [
        { event: 'message_start', data: { type: 'message_start', message: { id: 'msg_n', type: 'message', role: 'assistant', model: 'claude-haiku-4-5', content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 5, output_tokens: 1 } } } },
        { event: 'content_block_start', data: { type: 'content_block_start', index: 0, content_block: { type: 'tool_use', id: 'toolu_n', name: 'get_time', input: {} } } },
        { event: 'content_block_delta', data: { type: 'content_block_delta', index: 0, delta: { type: 'input_json_delta', partial_json: '' } } },
        { event: 'content_block_stop', data: { type: 'content_block_stop', index: 0 } },
        { event: 'message_delta', data: { type: 'message_delta', delta: { stop_reason: 'tool_use', stop_sequence: null }, usage: { output_tokens: 3 } } },
        { event: 'message_stop', data: { type: 'message_stop' } },
      ] };
    }
    if (body.stream) {
      return { sse: [
        { event: 'message_start', data: { type: 'message_start', message: { id: 'msg_2', type: 'message', role: 'assistant', model: 'claude-haiku-4-5', content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 30, output_tokens: 1, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 } } } },
        { event: 'content_block_start', data: { type: 'content_block_start', index: 0, content_block: { type: 'tool_use', id: 'toolu_s', name: 'run_shell', input: {} } } },
        { event: 'content_block_delta', data: { type: 'content_block_delta', index: 0, delta: { type: 'input_json_delta', partial_json: '{"cmd":"ls"}' } } },
        { event: 'content_block_stop', data: { type: 'content_block_stop', index: 0 } },
        { event: 'message_delta', data: { type: 'message_delta', delta: { stop_reason: 'tool_use', stop_sequence: null }, usage: { output_tokens: 12 } } },
        { event: 'message_stop', data: { type: 'message_stop' } },
      ] };
    }
    return { json: {
      id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5-20250929', stop_reason: 'tool_use', stop_sequence: null,
      content: [{ type: 'text', text: 'Reading.' }, { type: 'tool_use', id: 'toolu_1', name: 'read_file', input: { path: 'a.ts' } }],
      usage: { input_tokens: 100, output_tokens: 20, cache_read_input_tokens: 2000, cache_creation_input_tokens: 500 },
    } };
  });
  client = instrumentAnthropic(new Anthropic({ apiKey: 'test-key', baseURL: api.url, maxRetries: 0 }));
});
afterAll(async () => {
  await p?.close();
  await api?.close();
});

interface LlmRow { request_model: string; response_model: string; provider: string; input_tokens: string; output_tokens: string; cache_read_tokens: string; cache_creation_tokens: string; reported_cost_usd: number; status: string; error_type: string }

describe('instrumentAnthropic', () => {
  it('records messages.create (plain, streamed, failed) as GenAI chat spans in agent_llm_calls', async () => {
    const session = `anthropic-${Date.now()}`;
    await withSession(session, async () => {
      const m = await client.messages.create({ model: 'claude-sonnet-4-5-20250929', max_tokens: 256, messages: [{ role: 'user', content: 'fix' }] });
      expect(m.stop_reason).toBe('tool_use');
      const stream = await client.messages.create({ model: 'claude-haiku-4-5', max_tokens: 64, stream: true, messages: [{ role: 'user', content: 'go' }] });
      const types: string[] = [];
      for await (const e of stream) types.push(e.type);
      expect(types).toContain('message_stop');
      await expect(client.messages.create({ model: 'claude-overloaded', max_tokens: 8, messages: [{ role: 'user', content: 'x' }] })).rejects.toThrow();
    });
    await p.landed();

    const rows = await p.tc.rows<LlmRow>(
      `SELECT request_model, response_model, provider, toString(input_tokens) AS input_tokens, toString(output_tokens) AS output_tokens,
              toString(cache_read_tokens) AS cache_read_tokens, toString(cache_creation_tokens) AS cache_creation_tokens, reported_cost_usd, status, error_type
       FROM agent_llm_calls FINAL WHERE session_id = {s:String} ORDER BY ts`, { s: session });
    expect(rows.map((r) => r.request_model)).toEqual(['claude-sonnet-4-5-20250929', 'claude-haiku-4-5', 'claude-overloaded']);
    const [plain, streamed, failed] = rows as [LlmRow, LlmRow, LlmRow];
    // input tokens count cache reads and writes (GenAI semconv), the parts are kept separately too
    expect(plain).toMatchObject({ provider: 'anthropic', response_model: 'claude-sonnet-4-5-20250929', input_tokens: '2600', output_tokens: '20', cache_read_tokens: '2000', cache_creation_tokens: '500', status: 'ok' });
    const expected = costUsd('claude-sonnet-4-5-20250929', { inputTokens: 2600, outputTokens: 20, cacheReadTokens: 2000, cacheCreationTokens: 500 })!;
    // the bill: 100 input tokens at $3, 2,000 cache reads at $0.30, 500 cache writes at $3.75, 20 output at $15 per million
    expect(expected).toBeCloseTo((100 * 3 + 2000 * 0.3 + 500 * 3.75 + 20 * 15) / 1e6, 12);
    expect(plain.reported_cost_usd).toBeCloseTo(expected, 9);
    expect(streamed).toMatchObject({ response_model: 'claude-haiku-4-5', input_tokens: '30', output_tokens: '12', status: 'ok' });
    expect(failed).toMatchObject({ status: 'error', error_type: '529' });

    const spans = await p.tc.rows<{ SpanName: string; fr: string; ids: string; names: string; ev: string[] }>(
      `SELECT SpanName, SpanAttributes['gen_ai.response.finish_reasons'] AS fr, SpanAttributes['loopwatch.response.tool_call.ids'] AS ids,
              SpanAttributes['loopwatch.response.tool_call.names'] AS names, Events.Name AS ev
       FROM otel_traces WHERE SpanAttributes['gen_ai.conversation.id'] = {s:String} ORDER BY Timestamp`, { s: session });
    expect(spans[0]).toMatchObject({ SpanName: 'chat claude-sonnet-4-5-20250929' });
    expect(JSON.parse(spans[0]!.fr)).toEqual(['tool_use']);
    expect(JSON.parse(spans[0]!.ids)).toEqual(['toolu_1']);
    expect(JSON.parse(spans[1]!.names)).toEqual(['run_shell']);
    expect(spans[1]!.ev).toEqual(['loopwatch.tool_call.requested']);
    // one span per call: the SDK's own call spans are switched off on the instrumented client
    expect(spans.map((s) => s.SpanName).filter((n) => n.startsWith('anthropic.'))).toEqual([]);
    expect(spans).toHaveLength(3);
  });

  it('writes to the 1-hour cache are priced at its price (2x input), those to the 5-minute cache at 1.25x: plain and streamed', async () => {
    const session = `anthropic-1h-${Date.now()}`;
    await withSession(session, async () => {
      await client.messages.create({ model: 'claude-sonnet-4-5-1h', max_tokens: 64, messages: [{ role: 'user', content: 'x' }] });
      const stream = await client.messages.create({ model: 'claude-sonnet-4-5-1h', max_tokens: 64, stream: true, messages: [{ role: 'user', content: 'x' }] });
      for await (const e of stream) void e;
    });
    await p.landed();
    const rows = await p.tc.rows<{ c: string; cost: number }>(
      'SELECT toString(cache_creation_tokens) AS c, reported_cost_usd AS cost FROM agent_llm_calls FINAL WHERE session_id = {s:String} ORDER BY ts', { s: session });
    // the bill: 100 input at $3, 1,000 5-minute writes at $3.75, 2,000 1-hour writes at $6, 20 output at $15 per million
    const bill = (100 * 3 + 1000 * 3.75 + 2000 * 6 + 20 * 15) / 1e6;
    expect(rows).toEqual([{ c: '3000', cost: expect.closeTo(bill, 9) }, { c: '3000', cost: expect.closeTo(bill, 9) }]);
  });

  it("nativeSpans: 'keep' leaves the SDK's own span and adds none", async () => {
    const session = `anthropic-keep-${Date.now()}`;
    const kept = instrumentAnthropic(new Anthropic({ apiKey: 'test-key', baseURL: api.url, maxRetries: 0 }), { nativeSpans: 'keep' });
    await withSession(session, () => kept.messages.create({ model: 'claude-sonnet-4-5-20250929', max_tokens: 16, messages: [{ role: 'user', content: 'x' }] }));
    await p.landed();
    const spans = await p.tc.rows<{ SpanName: string }>(`SELECT SpanName FROM otel_traces WHERE SpanAttributes['gen_ai.conversation.id'] = {s:String}`, { s: session });
    expect(spans.map((s) => s.SpanName)).toEqual(['anthropic.messages.create']);
  });

  it('the SDK\'s other spans stay: beta.messages and the tool runner (its model and tool calls) reach the collector; messages.create is one span', async () => {
    // a loopback Messages API for a runner: read_file twice, then done
    const runnerApi = await fakeApi((req) => {
      const body = req.body as { messages: Array<{ content: unknown }> };
      const results = body.messages.filter((m) => Array.isArray(m.content) && (m.content as Array<{ type: string }>).some((b) => b.type === 'tool_result')).length;
      const usage = { input_tokens: 100, output_tokens: 20, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 };
      const content = results < 2 ? [{ type: 'tool_use', id: `toolu_${results}`, name: 'read_file', input: { path: 'a.ts' } }] : [{ type: 'text', text: 'done' }];
      return { json: { id: `msg_${results}`, type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', stop_reason: results < 2 ? 'tool_use' : 'end_turn', stop_sequence: null, content, usage } };
    });
    try {
      const session = `anthropic-runner-${Date.now()}`;
      const c = instrumentAnthropic(new Anthropic({ apiKey: 'test-key', baseURL: runnerApi.url, maxRetries: 0 }));
      const readFile = betaTool({
        name: 'read_file', description: 'read a file', inputSchema: { type: 'object', properties: { path: { type: 'string' } }, required: ['path'] },
        run: async (input: { path: string }) => `contents of ${input.path}`,
      });
      await withSession(session, async () => {
        await c.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] });
        // thread: false sends the whole conversation each turn (the default, a server-side thread, needs the threads API)
        const last = await c.beta.messages.toolRunner({ model: 'claude-sonnet-4-5', max_tokens: 100, messages: [{ role: 'user', content: 'go' }], tools: [readFile], thread: false }).runUntilDone();
        expect((last.content[0] as { text: string }).text).toBe('done');
      });
      await p.landed();
      const spans = await p.tc.rows<{ name: string }>(
        `SELECT SpanName AS name FROM otel_traces WHERE SpanAttributes['gen_ai.conversation.id'] = {s:String} ORDER BY Timestamp`, { s: session });
      // Loopwatch's span for messages.create, none of the SDK's; the runner's own spans all there
      expect(spans[0]!.name).toBe('chat claude-sonnet-4-5');
      expect(spans.filter((x) => x.name === 'anthropic.messages.create')).toHaveLength(3);
      const tools = await p.tc.rows<{ tool: string }>(`SELECT tool FROM agent_tool_calls FINAL WHERE session_id = {s:String}`, { s: session });
      expect(tools.map((t) => t.tool)).toEqual(['read_file', 'read_file']);
      const [llm] = await p.tc.rows<{ n: string }>(`SELECT toString(count()) AS n FROM agent_llm_calls FINAL WHERE session_id = {s:String}`, { s: session });
      expect(llm!.n).toBe('4');
    } finally {
      await runnerApi.close();
    }
  });

  it('halt: the tool runner hands a stopped call back to the model as is_error and never ends; haltSignal() as its signal ends it at the second stop', async () => {
    // a model that asks for the same search on every turn (the runner has no step limit of its own)
    let n = 0;
    const stubborn = await fakeApi(() => ({ json: {
      id: `msg_${n}`, type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', stop_reason: 'tool_use', stop_sequence: null,
      content: [{ type: 'tool_use', id: `toolu_${n++}`, name: 'search_docs', input: { q: 'exit vim' } }],
      usage: { input_tokens: 900, output_tokens: 100, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 },
    } }));
    const guard = enableLoopGuard({ policy: 'halt', log: () => undefined });
    try {
      const c = instrumentAnthropic(new Anthropic({ apiKey: 'test-key', baseURL: stubborn.url, maxRetries: 0 }));
      let ran = 0;
      const traced = wrapTools({ search_docs: async (input: { q: string }) => { ran++; return `no results for ${input.q}`; } });
      const searchDocs = betaTool({ name: 'search_docs', description: 'search', inputSchema: { type: 'object', properties: { q: { type: 'string' } }, required: ['q'] }, run: traced.search_docs });
      const params = { model: 'claude-sonnet-4-5', max_tokens: 100, messages: [{ role: 'user' as const, content: 'how do I exit vim' }], tools: [searchDocs], thread: false as const };
      // without the signal: 12 turns read (the test's own limit), every stopped call answered is_error
      await withSession(`anthropic-no-signal-${Date.now()}`, async () => {
        for await (const _ of c.beta.messages.toolRunner(params)) if (stubborn.requests.length >= 12) break;
      });
      expect(stubborn.requests.length).toBe(12);
      const last = (stubborn.requests.at(-1)!.body as { messages: Array<{ content: unknown }> }).messages.at(-1)!.content as Array<{ is_error?: boolean; content: string }>;
      expect(last[0]).toMatchObject({ is_error: true, content: expect.stringContaining('Loopwatch halted a looping tool call') });
      stubborn.requests.length = 0;
      ran = 0;
      let signal: AbortSignal | undefined;
      const err = await withSession(`anthropic-signal-${Date.now()}`, async () => {
        signal = haltSignal();
        for await (const _ of c.beta.messages.toolRunner(params, { signal })) if (stubborn.requests.length >= 12) break;
      }).then(() => undefined, (e: unknown) => e);
      // 3 searches ran (stuck), the 4th and 5th were stopped: the run ends before the 6th turn
      expect(ran).toBe(3);
      expect(stubborn.requests.length).toBe(5);
      expect((err as Error).name).toBe('APIUserAbortError');
      // the SDK's abort error does not carry the reason: the signal does
      expect(loopDetectedIn(err) ?? loopDetectedIn(signal!.reason)).toMatchObject({ finding: { kind: 'stuck', tools: ['search_docs'] } });
    } finally {
      guard.disable();
      await stubborn.close();
    }
  });

  it('the tool runner in content mode: arguments and results recorded as its tool spans end are hashed, then removed (capture off)', async () => {
    // read_file a.ts twice, then b.ts, then done
    const runnerApi = await fakeApi((req) => {
      const body = req.body as { messages: Array<{ content: unknown }> };
      const results = body.messages.filter((m) => Array.isArray(m.content) && (m.content as Array<{ type: string }>).some((b) => b.type === 'tool_result')).length;
      const usage = { input_tokens: 100, output_tokens: 20, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 };
      const content = results < 3 ? [{ type: 'tool_use', id: `toolu_${results}`, name: 'read_file', input: { path: results < 2 ? 'a.ts' : 'b.ts' } }] : [{ type: 'text', text: 'done' }];
      return { json: { id: `msg_${results}`, type: 'message', role: 'assistant', model: 'claude-sonnet-4-5', stop_reason: results < 3 ? 'tool_use' : 'end_turn', stop_sequence: null, content, usage } };
    });
    try {
      const session = `anthropic-runner-content-${Date.now()}`;
      const c = instrumentAnthropic(new Anthropic({ apiKey: 'test-key', baseURL: runnerApi.url, maxRetries: 0, openTelemetry: { traces: { contentMode: 'content' } } }));
      const readFile = betaTool({
        name: 'read_file', description: 'read a file', inputSchema: { type: 'object', properties: { path: { type: 'string' } }, required: ['path'] },
        run: async (input: { path: string }) => `RESULT-TEXT of ${input.path}`,
      });
      await withSession(session, () => c.beta.messages.toolRunner({ model: 'claude-sonnet-4-5', max_tokens: 100, messages: [{ role: 'user', content: 'go' }], tools: [readFile], thread: false }).runUntilDone());
      await p.landed();
      // stored as the number whose little-endian bytes the hash's hex digits are
      const stored = (hex: string) => Buffer.from(hex, 'hex').readBigUInt64LE().toString();
      const calls = await p.tc.rows<{ args_hash: string; result_hash: string }>(
        `SELECT toString(args_hash) AS args_hash, toString(result_hash) AS result_hash FROM agent_tool_calls FINAL WHERE session_id = {s:String} ORDER BY ts`, { s: session });
      expect(calls).toHaveLength(3);
      // the same call twice, then another: told apart by their arguments, and the results known
      expect(calls[0]!.args_hash).toBe(stored(valueHash({ path: 'a.ts' })));
      expect(calls[1]!.args_hash).toBe(calls[0]!.args_hash);
      expect(calls[2]!.args_hash).toBe(stored(valueHash({ path: 'b.ts' })));
      expect(calls[0]!.result_hash).not.toBe('0');
      expect(calls[1]!.result_hash).toBe(calls[0]!.result_hash);
      expect(calls[2]!.result_hash).not.toBe(calls[0]!.result_hash);
      // and the content itself did not leave the process
      const [raw] = await p.tc.rows<{ attrs: string }>(
        `SELECT arrayStringConcat(groupArray(toJSONString(SpanAttributes)), '\n') AS attrs FROM otel_traces WHERE SpanAttributes['gen_ai.conversation.id'] = {s:String}`, { s: session });
      expect(raw!.attrs).toContain('loopwatch.tool.args_hash');
      expect(raw!.attrs).not.toContain('RESULT-TEXT');
      expect(raw!.attrs).not.toContain('b.ts');
    } finally {
      await runnerApi.close();
    }
  });

  it('asResponse(): the raw response\'s body is left for the caller to read', async () => {
    const session = `anthropic-raw-${Date.now()}`;
    const raw = await withSession(session, () => client.messages.create({ model: 'claude-sonnet-4-5-20250929', max_tokens: 8, messages: [{ role: 'user', content: 'x' }] }).asResponse());
    expect(((await raw.json()) as { id: string }).id).toBe('msg_1');
    await p.landed();
    const spans = await p.tc.rows<{ name: string }>(`SELECT SpanName AS name FROM otel_traces WHERE SpanAttributes['gen_ai.conversation.id'] = {s:String}`, { s: session });
    expect(spans.map((x) => x.name)).toEqual(['chat claude-sonnet-4-5-20250929']); // ended when the response came, its usage unknown
  });

  it('a streamed tool_use without arguments has the arguments hash of {}, as the traced tool will', async () => {
    const session = `anthropic-noargs-${Date.now()}`;
    await withSession(session, async () => {
      const stream = await client.messages.create({ model: 'claude-noargs', max_tokens: 8, stream: true, messages: [{ role: 'user', content: 'x' }] });
      for await (const _ of stream) { /* read */ }
    });
    await p.landed();
    const [ev] = await p.tc.rows<{ hashes: string[] }>(
      `SELECT arrayMap(a -> a['loopwatch.tool.args_hash'], Events.Attributes) AS hashes FROM otel_traces WHERE SpanAttributes['gen_ai.conversation.id'] = {s:String}`, { s: session });
    expect(ev!.hashes).toEqual([valueHash({})]);
  });

  it('an operator price of the 1-hour cache reaches the loop guard\'s count too: the span carries its 1-hour writes', async () => {
    const seen: LlmCallRecord[] = [];
    const off = onLlmCall((c) => void seen.push(c));
    configurePrices([{ model: 'claude-sonnet-4-5', match: 'prefix', input_per_mtok: 3, output_per_mtok: 15, cache_write_per_mtok: 3.75, cache_write_1h_per_mtok: 9 }]);
    try {
      await withSession(`anthropic-1h-op-${Date.now()}`, () => client.messages.create({ model: 'claude-sonnet-4-5-1h', max_tokens: 64, messages: [{ role: 'user', content: 'x' }] }));
      // the operator's price wins over the cost stamped (callCost): repriced from the span, the 1-hour writes at $9
      expect(seen).toHaveLength(1);
      expect(seen[0]!.costUsd).toBeCloseTo((100 * 3 + 1000 * 3.75 + 2000 * 9 + 20 * 15) / 1e6, 9);
    } finally {
      off();
      configurePrices({ path: new URL('../../queries/prices/model-prices.json', import.meta.url).pathname }, { replace: true });
    }
  });
});
