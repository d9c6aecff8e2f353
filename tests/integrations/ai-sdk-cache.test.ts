// Prompt caching billed as the provider bills it, through the AI SDK 5 (ai@5 with @ai-sdk/anthropic
// 2 and @ai-sdk/openai 2, installed under the aliases ai-v5, ai-sdk-anthropic-v2, ai-sdk-openai-v2)
// and the AI SDK 6 on the same answers: real providers pointed at a loopback server standing in for
// the APIs, Loopwatch's SDK exporting to a real collector. The AI SDK 5's input count is the
// provider's: Anthropic's leaves the cache out, OpenAI's includes the reads, and its doGenerate
// spans carry no cache count (schema 019, docs/conventions.md). Each call's tokens and cost must be
// its bill's, in the collector (the view, the cost at read time), in the cost the AI SDK processor
// stamps and in what the loop guard counts (onLlmCall).
import { createAnthropic as createAnthropicV3 } from '@ai-sdk/anthropic';
import { createOpenAI as createOpenAIV3 } from '@ai-sdk/openai';
import * as aiV6 from 'ai';
import { createAnthropic as createAnthropicV2 } from 'ai-sdk-anthropic-v2';
import { createOpenAI as createOpenAIV2 } from 'ai-sdk-openai-v2';
import * as aiV5 from 'ai-v5';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withSession } from '../../instrumentation/src/api.js';
import { costUsd } from '../../instrumentation/src/cost.js';
import { aiSdkTelemetry } from '../../instrumentation/src/integrations/ai-sdk.js';
import { onLlmCall, type LlmCallRecord } from '../../instrumentation/src/llm-calls.js';
import { fakeApi, startPipeline, type FakeApi, type FakeRequest, type Pipeline } from './helpers.js';

// The providers' usage: OpenAI's prompt/input tokens include the cached; Anthropic's input_tokens do not.
const chatUsage = { prompt_tokens: 10000, completion_tokens: 500, total_tokens: 10500, prompt_tokens_details: { cached_tokens: 8000 }, completion_tokens_details: { reasoning_tokens: 300 } };
const respUsage = { input_tokens: 10000, output_tokens: 2000, total_tokens: 12000, input_tokens_details: { cached_tokens: 8000 }, output_tokens_details: { reasoning_tokens: 1500 } };
const anthUsage = { input_tokens: 50, cache_read_input_tokens: 20000, cache_creation_input_tokens: 3000, output_tokens: 400 };

/** The bills: the whole input (cache reads and writes among it), reads, writes, output. */
const BILLS = {
  anthropic: { model: 'claude-sonnet-4-5-20250929', input: 23050, read: 20000, write: 3000, output: 400 },
  chat: { model: 'gpt-4o-2024-08-06', input: 10000, read: 8000, write: 0, output: 500 },
  responses: { model: 'gpt-5-2025-08-07', input: 10000, read: 8000, write: 0, output: 2000 },
};
type Bill = (typeof BILLS)[keyof typeof BILLS];
const billed = (b: Bill) => costUsd(b.model, { inputTokens: b.input, cacheReadTokens: b.read, cacheCreationTokens: b.write, outputTokens: b.output })!;

function answer(req: FakeRequest): { json?: unknown; sse?: Array<{ event?: string; data: unknown }>; status?: number } {
  const body = req.body as { model: string; stream?: boolean };
  if (req.path.endsWith('/chat/completions')) {
    const model = BILLS.chat.model;
    if (body.stream) {
      return { sse: [
        { data: { id: 'c1', object: 'chat.completion.chunk', created: 1, model, choices: [{ index: 0, delta: { role: 'assistant', content: 'hi' }, finish_reason: null }], usage: null } },
        { data: { id: 'c1', object: 'chat.completion.chunk', created: 1, model, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }], usage: null } },
        { data: { id: 'c1', object: 'chat.completion.chunk', created: 1, model, choices: [], usage: chatUsage } },
        { data: '[DONE]' },
      ] };
    }
    const content = '{"a":1}'; // text for generateText, an object for generateObject
    return { json: { id: 'c1', object: 'chat.completion', created: 1, model, choices: [{ index: 0, finish_reason: 'stop', logprobs: null, message: { role: 'assistant', content, refusal: null } }], usage: chatUsage } };
  }
  if (req.path.endsWith('/responses')) {
    const resp = { id: 'resp_1', object: 'response', created_at: 1, model: BILLS.responses.model, status: 'completed', output: [{ type: 'message', id: 'm1', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: 'hi', annotations: [] }] }], usage: respUsage };
    if (body.stream) {
      return { sse: [
        { event: 'response.created', data: { type: 'response.created', sequence_number: 0, response: { ...resp, status: 'in_progress', output: [], usage: null } } },
        { event: 'response.completed', data: { type: 'response.completed', sequence_number: 1, response: resp } },
      ] };
    }
    return { json: resp };
  }
  if (req.path.endsWith('/messages')) {
    const model = BILLS.anthropic.model;
    // an object asked for (generateObject, streamObject): as the AI SDK's json tool when it asks
    // with one, else as text (the text of generateText's answers is not looked at)
    const json = (body as { tools?: Array<{ name: string }> }).tools?.some((t) => t.name === 'json');
    const text = '{"a":1}';
    if (body.stream) {
      const ev = (type: string, d: object) => ({ event: type, data: { type, ...d } });
      return { sse: [
        ev('message_start', { message: { id: 'msg_1', type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { ...anthUsage, output_tokens: 1 } } }),
        ...(json
          ? [ev('content_block_start', { index: 0, content_block: { type: 'tool_use', id: 'tu1', name: 'json', input: {} } }), ev('content_block_delta', { index: 0, delta: { type: 'input_json_delta', partial_json: text } })]
          : [ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }), ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text } })]),
        ev('content_block_stop', { index: 0 }),
        ev('message_delta', { delta: { stop_reason: json ? 'tool_use' : 'end_turn', stop_sequence: null }, usage: { output_tokens: 400 } }),
        ev('message_stop', {}),
      ] };
    }
    const content = json ? [{ type: 'tool_use', id: 'tu1', name: 'json', input: { a: 1 } }] : [{ type: 'text', text }];
    return { json: { id: 'msg_1', type: 'message', role: 'assistant', model, content, stop_reason: json ? 'tool_use' : 'end_turn', stop_sequence: null, usage: anthUsage } };
  }
  return { status: 404, json: {} };
}

let p: Pipeline;
let api: FakeApi;
const seen: LlmCallRecord[] = [];
let off: () => void;
beforeAll(async () => {
  p = await startPipeline('ai-sdk-cache');
  api = await fakeApi(answer);
  off = onLlmCall((c) => seen.push(c));
});
afterAll(async () => {
  off?.();
  await p?.close();
  await api?.close();
});

interface Sdk {
  generateText: (o: { model: never; prompt: string; experimental_telemetry: unknown }) => Promise<unknown>;
  streamText: (o: { model: never; prompt: string; experimental_telemetry: unknown }) => { consumeStream(): Promise<void>; usage: PromiseLike<unknown> };
  anthropic: (id: string) => unknown;
  chat: (id: string) => unknown;
  responses: (id: string) => unknown;
}
const sdks: Record<string, () => Sdk> = {
  'AI SDK 5': () => {
    const anthropic = createAnthropicV2({ apiKey: 'k', baseURL: `${api.url}/v1` });
    const openai = createOpenAIV2({ apiKey: 'k', baseURL: `${api.url}/v1` });
    return { generateText: aiV5.generateText as never, streamText: aiV5.streamText as never, anthropic: (id) => anthropic(id), chat: (id) => openai.chat(id), responses: (id) => openai.responses(id) };
  },
  'AI SDK 6': () => {
    const anthropic = createAnthropicV3({ apiKey: 'k', baseURL: `${api.url}/v1` });
    const openai = createOpenAIV3({ apiKey: 'k', baseURL: `${api.url}/v1` });
    return { generateText: aiV6.generateText as never, streamText: aiV6.streamText as never, anthropic: (id) => anthropic(id), chat: (id) => openai.chat(id), responses: (id) => openai.responses(id) };
  },
};

const cases: Array<[string, keyof typeof BILLS, 'anthropic' | 'chat' | 'responses', string, boolean]> = [
  ['Anthropic generateText', 'anthropic', 'anthropic', 'claude-sonnet-4-5', false],
  ['Anthropic streamText', 'anthropic', 'anthropic', 'claude-sonnet-4-5', true],
  ['OpenAI chat generateText', 'chat', 'chat', 'gpt-4o', false],
  ['OpenAI chat streamText', 'chat', 'chat', 'gpt-4o', true],
  ['OpenAI responses generateText', 'responses', 'responses', 'gpt-5', false],
  ['OpenAI responses streamText', 'responses', 'responses', 'gpt-5', true],
];

interface Row { input_tokens: string; output_tokens: string; cache_read_tokens: string; cache_creation_tokens: string; total_tokens: string; reported_cost_usd: number; cost: number; model: string }
const llmRows = (s: string) =>
  p.tc.rows<Row>(
    `SELECT l.model AS model, toString(l.input_tokens) AS input_tokens, toString(l.output_tokens) AS output_tokens, toString(l.cache_read_tokens) AS cache_read_tokens,
            toString(l.cache_creation_tokens) AS cache_creation_tokens, toString(l.total_tokens) AS total_tokens, l.reported_cost_usd AS reported_cost_usd,
            loopwatch_llm_cost(0, l.input_tokens, l.cache_read_tokens, l.cache_creation_tokens, l.output_tokens, pr.price) AS cost
     FROM agent_llm_calls AS l FINAL LEFT JOIN loopwatch_model_key_prices AS pr ON loopwatch_model_key(l.model) = pr.model_key
     WHERE l.session_id = {s:String}`, { s });

async function call(sdk: Sdk, kind: 'anthropic' | 'chat' | 'responses', id: string, stream: boolean, telemetry: unknown): Promise<void> {
  const model = sdk[kind](id) as never;
  if (stream) {
    const r = sdk.streamText({ model, prompt: 'x', experimental_telemetry: telemetry });
    await r.consumeStream();
    await r.usage;
  } else {
    await sdk.generateText({ model, prompt: 'x', experimental_telemetry: telemetry });
  }
}

function expectBill(rows: Row[], bill: Bill): void {
  expect(rows).toHaveLength(1);
  const [r] = rows;
  expect(r).toMatchObject({
    model: bill.model, input_tokens: String(bill.input), cache_read_tokens: String(bill.read), cache_creation_tokens: String(bill.write),
    output_tokens: String(bill.output), total_tokens: String(bill.input + bill.output),
  });
  // the cost stamped in process (loopwatch.cost_usd) and the one the collector computes from the tokens
  expect(r!.reported_cost_usd).toBeCloseTo(billed(bill), 9);
  expect(r!.cost).toBeCloseTo(billed(bill), 9);
}

describe.each(Object.keys(sdks))('%s: prompt caching priced as billed', (name) => {
  it.each(cases)('%s: tokens and cost are the bill\'s, in the collector and in the loop guard\'s count', async (_label, billKey, kind, id, stream) => {
    const bill = BILLS[billKey];
    const session = `cache-${name.replaceAll(' ', '')}-${kind}-${stream ? 'stream' : 'gen'}-${Date.now()}`;
    await withSession({ sessionId: session, agent: 'a' }, () => call(sdks[name]!(), kind, id, stream, aiSdkTelemetry()));
    await p.landed();
    expectBill(await llmRows(session), bill);
    const tapped = seen.filter((c) => c.sessionId === session);
    expect(tapped).toHaveLength(1);
    expect(tapped[0]).toMatchObject({ model: bill.model, tokens: bill.input + bill.output });
    expect(tapped[0]!.costUsd).toBeCloseTo(billed(bill), 9);
  });
});

describe('AI SDK 5 with telemetry settings of the application\'s own (not aiSdkTelemetry())', () => {
  // what the spans carry alone: Anthropic's usage in the provider metadata, a stream's cache reads
  it.each(cases.filter(([, , kind, , stream]) => kind === 'anthropic' || stream))('%s: tokens and cost are the bill\'s', async (_label, billKey, kind, id, stream) => {
    const bill = BILLS[billKey];
    const session = `cache-own-v5-${kind}-${stream ? 'stream' : 'gen'}-${Date.now()}`;
    await call(sdks['AI SDK 5']!(), kind, id, stream, { isEnabled: true, metadata: { sessionId: session } });
    await p.landed();
    expectBill(await llmRows(session), bill);
  });
});

describe('AI SDK 6 object calls (their spans carry no inputTokenDetails)', () => {
  const objectCall = async (fn: 'generateObject' | 'streamObject', kind: 'anthropic' | 'chat', session: string, recordOutputs: boolean, provider: 'v3' | 'v2' = 'v3') => {
    const anthropic = (provider === 'v3' ? createAnthropicV3 : createAnthropicV2)({ apiKey: 'k', baseURL: `${api.url}/v1` }) as (id: string) => never;
    const openai = createOpenAIV3({ apiKey: 'k', baseURL: `${api.url}/v1` });
    const model = kind === 'anthropic' ? anthropic('claude-sonnet-4-5') : openai.chat('gpt-4o');
    const schema = aiV6.jsonSchema<{ a: number }>({ type: 'object', properties: { a: { type: 'number' } }, required: ['a'], additionalProperties: false });
    const experimental_telemetry = { ...aiSdkTelemetry({ sessionId: session }), recordOutputs };
    if (fn === 'generateObject') {
      await aiV6.generateObject({ model, schema, prompt: 'x', experimental_telemetry });
    } else {
      const r = aiV6.streamObject({ model, schema, prompt: 'x', experimental_telemetry });
      for await (const part of r.partialObjectStream) void part;
      await r.usage;
    }
    await p.landed();
    return llmRows(session);
  };

  it('generateObject: the cache counts of the answer set on the span (Anthropic without recorded outputs, OpenAI): the bill', async () => {
    expectBill(await objectCall('generateObject', 'anthropic', `obj6-a-${Date.now()}`, false), BILLS.anthropic);
    expectBill(await objectCall('generateObject', 'chat', `obj6-o-${Date.now()}`, true), BILLS.chat);
  });

  it('generateObject with an AI SDK 5 provider (@ai-sdk/anthropic 2, through the 6\'s compatibility layer): read as the 5\'s spans are', async () => {
    // its count is Anthropic's, the cache left out: with the outputs recorded, Anthropic's usage in the metadata gives the bill
    expectBill(await objectCall('generateObject', 'anthropic', `obj6v2-${Date.now()}`, true, 'v2'), BILLS.anthropic);
    // without them, the reads (set from the answer) exceed the count: added; the writes are on no attribute
    const [r] = await objectCall('generateObject', 'anthropic', `obj6v2-nr-${Date.now()}`, false, 'v2');
    expect(r).toMatchObject({ input_tokens: '20050', cache_read_tokens: '20000', cache_creation_tokens: '0' });
  });

  it('streamObject of Anthropic without recorded outputs: its input count is the whole input, its cache reads not added again', async () => {
    // (its cache writes are on no attribute: priced as input, a few cents in a thousand less than the bill)
    const [r] = await objectCall('streamObject', 'anthropic', `obj6-s-${Date.now()}`, false);
    expect(r).toMatchObject({ input_tokens: '23050', cache_read_tokens: '20000', output_tokens: '400' });
  });
});

describe('aiSdkTelemetry({ tracer }): an application\'s own tracer, wrapped', () => {
  it('the AI SDK\'s spans go to the tracer given, with the cache reads the AI SDK 5 leaves out', async () => {
    const exported = new InMemorySpanExporter();
    const mine = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exported)] });
    const openai = createOpenAIV2({ apiKey: 'k', baseURL: `${api.url}/v1` });
    await aiV5.generateText({ model: openai.chat('gpt-4o'), prompt: 'x', experimental_telemetry: aiSdkTelemetry({ tracer: mine.getTracer('ai') }) });
    const call = exported.getFinishedSpans().find((s) => s.name === 'ai.generateText.doGenerate');
    expect(call?.attributes['ai.usage.cachedInputTokens']).toBe(8000);
    await mine.shutdown();
  });
});
