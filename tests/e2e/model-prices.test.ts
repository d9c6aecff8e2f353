// Model prices end to end: LLM spans sent by the OpenTelemetry OTLP/protobuf exporter to a real
// collector, priced by the store's lookup (loopwatch_model_key_prices, loopwatch_llm_cost) as the
// reports and the detector pass price them, and by the instrumentation's cost.ts alike.
// - The view that registers each model's key as calls arrive holds the key rule the price lookup
//   asks with (the engine writes a function's body into a view when the view is made).
// - Claude ids written with dots find the dashed ids' prices; models the prefix of another model
//   priced them wrongly have entries of their own.
// - The operator's prices (LOOPWATCH_MODEL_PRICES) win over a cost the span reported.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Attributes } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadModelPrices } from '../../collector/src/detect/prices.js';
import { callCost, costUsd, modelKey } from '../../instrumentation/src/cost.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';

let tc: TestCollector;
beforeAll(async () => {
  tc = await startTestCollector({ detect: { enabled: false } });
});
afterAll(async () => {
  await tc.close();
});

/** LLM spans of one session, each with its model and attributes, sent as an agent's exporter sends them. */
async function sendLlmCalls(session: string, calls: { model: string; attributes?: Attributes; input?: number; output?: number }[]): Promise<void> {
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'prices-test' }),
    spanProcessors: [new SimpleSpanProcessor(new OTLPTraceExporter({ url: `${tc.url}/v1/traces` }))],
  });
  const tracer = provider.getTracer('prices-test');
  for (const c of calls) {
    tracer.startSpan(`chat ${c.model}`, {
      attributes: {
        'gen_ai.operation.name': 'chat', 'gen_ai.request.model': c.model, 'gen_ai.conversation.id': session,
        'gen_ai.usage.input_tokens': c.input ?? 1_000_000, 'gen_ai.usage.output_tokens': c.output ?? 100_000, ...c.attributes,
      },
    }).end();
  }
  await provider.forceFlush();
  await provider.shutdown();
  await tc.collector.flush();
}

/** Each stored LLM call of the session: its model and its cost as the reports compute it. */
const storedCosts = (session: string) =>
  tc.rows<{ model: string; cost: number }>(
    `SELECT l.model AS model, loopwatch_llm_cost(l.reported_cost_usd, l.input_tokens, l.cache_read_tokens, l.cache_creation_tokens, l.output_tokens, pr.price) AS cost
     FROM agent_llm_calls AS l FINAL LEFT JOIN loopwatch_model_key_prices AS pr ON loopwatch_model_key(l.model) = pr.model_key
     WHERE l.session_id = {s:String} ORDER BY l.ts`, { s: session });

describe('model prices', () => {
  it('a model arriving in a new store is registered under the key the price lookup asks for (Bedrock global. profiles were $0)', async () => {
    // the view holds the rule of 011 and 020, not 004's (two-letter geographies only), which it
    // was made with before a later migration changed the function
    const [mv] = await tc.rows<{ q: string }>("SELECT create_table_query AS q FROM system.tables WHERE database = currentDatabase() AND name = 'loopwatch_model_keys_mv'");
    expect(mv!.q).toContain('[a-z][a-z-]*');
    expect(mv!.q).toContain("startsWith(");
    const session = `bedrock-${Date.now()}`;
    await sendLlmCalls(session, [{ model: 'global.anthropic.claude-sonnet-4-5-20250929-v1:0' }, { model: 'apac.anthropic.claude-haiku-4-5-20251001-v1:0' }]);
    const costs = await storedCosts(session);
    // Sonnet 4.5: 1M input at $3, 100k output at $15; Haiku 4.5: $1 and $5 per million
    expect(Object.fromEntries(costs.map((c) => [c.model, c.cost]))).toEqual({
      'global.anthropic.claude-sonnet-4-5-20250929-v1:0': expect.closeTo(3 + 1.5, 9),
      'apac.anthropic.claude-haiku-4-5-20251001-v1:0': expect.closeTo(1 + 0.5, 9),
    });
  });

  it('Claude ids written with dots, and models a shorter prefix priced, get their own prices: in the store as in the instrumentation', async () => {
    const session = `names-${Date.now()}`;
    const expected: Record<string, number> = {
      'anthropic/claude-opus-4.5': 5 + 2.5, // was claude-opus-4's $15/$75: 3x
      'anthropic/claude-3.5-sonnet': 3 + 1.5, // was no price: $0
      'claude-haiku-4.5': 1 + 0.5,
      'o3-deep-research': 10 + 4, // was o3's $2/$8
      'gpt-3.5-turbo-instruct': 1.5 + 0.2, // was gpt-3.5-turbo's
      'chatgpt-4o-latest': 5 + 1.5, // was no price
      'gpt-4-0125-preview': 10 + 3, // was no price
      'gpt-4.1-mini': 0.4 + 0.16, // dots kept outside Claude: gpt-4.1-mini, not gpt-4-1…
    };
    await sendLlmCalls(session, Object.keys(expected).map((model) => ({ model })));
    const costs = await storedCosts(session);
    expect(Object.fromEntries(costs.map((c) => [c.model, c.cost]))).toEqual(Object.fromEntries(Object.entries(expected).map(([m, usd]) => [m, expect.closeTo(usd, 9)])));
    for (const [model, usd] of Object.entries(expected)) expect(costUsd(model, { inputTokens: 1_000_000, outputTokens: 100_000 })).toBeCloseTo(usd, 9);
    expect(modelKey('anthropic/claude-3.5-sonnet')).toBe('claude-3-5-sonnet');
    expect(modelKey('gpt-4.1')).toBe('gpt-4.1');
  });

  it("the operator's prices (LOOPWATCH_MODEL_PRICES) win over a cost the span reported; other models keep theirs", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lw-operator-prices-'));
    const path = join(dir, 'prices.json');
    writeFileSync(path, JSON.stringify({ models: [
      { model: 'gpt-4o', match: 'prefix', input_per_mtok: 1.25, output_per_mtok: 5, cached_input_per_mtok: 0.625 },
      // written as OpenRouter writes the id: keyed as the calls are (claude-3-5-sonnet)
      { model: 'Claude-3.5-Sonnet', match: 'prefix', input_per_mtok: 1, output_per_mtok: 1 },
    ] }));
    await loadModelPrices(tc.collector.store.client, path);
    try {
      const session = `operator-${Date.now()}`;
      // as Loopwatch's instrumentation sends them: the cost at the agent's (bundled) price stamped on the span
      await sendLlmCalls(session, [
        { model: 'gpt-4o-2024-08-06', input: 4000, output: 1000, attributes: { 'loopwatch.cost_usd': 0.02 } },
        { model: 'claude-sonnet-4-5', input: 4000, output: 1000, attributes: { 'loopwatch.cost_usd': 0.5 } },
        { model: 'gpt-4o-mini', input: 4000, output: 1000, attributes: { 'llm.cost.total': 0.25 } },
        { model: 'anthropic/claude-3.5-sonnet', input: 1_000_000, output: 100_000 },
      ]);
      const costs = await storedCosts(session);
      expect(Object.fromEntries(costs.map((c) => [c.model, c.cost]))).toEqual({
        'gpt-4o-2024-08-06': expect.closeTo((4000 * 1.25 + 1000 * 5) / 1e6, 12), // 0.01, not the 0.02 reported
        'claude-sonnet-4-5': 0.5, // no operator price: the reported cost
        'gpt-4o-mini': 0.25, // gpt-4o-mini's own (bundled) entry is the longer prefix: reported
        'anthropic/claude-3.5-sonnet': expect.closeTo(1 + 0.1, 9), // the operator's, not the shipped $3/$15
      });
    } finally {
      await loadModelPrices(tc.collector.store.client, undefined);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('callCost in the instrumentation: a reported cost unless the price is the operator\'s, else the tokens at the price', async () => {
    const usage = { inputTokens: 4000, outputTokens: 1000 };
    expect(callCost(0.5, 'gpt-4o', usage)).toBe(0.5); // bundled price: the reported cost
    expect(callCost(0, 'gpt-4o', usage)).toBeCloseTo(0.02, 12);
    expect(callCost(0, 'no-such-model', usage)).toBe(0);
    vi.resetModules(); // a module of its own: the prices configured here stay in it
    const own = await import('../../instrumentation/src/cost.js');
    own.configurePrices([{ model: 'gpt-4o', match: 'prefix', input_per_mtok: 1.25, output_per_mtok: 5 }, { model: 'claude-3.5-sonnet', match: 'prefix', input_per_mtok: 1, output_per_mtok: 1 }]);
    expect(own.priceFor('anthropic/claude-3.5-sonnet-20241022')).toMatchObject({ model: 'claude-3-5-sonnet', input_per_mtok: 1, overridden: true });
    expect(own.callCost(0.5, 'gpt-4o-2024-08-06', usage)).toBeCloseTo(0.01, 12);
    expect(own.callCost(0.5, 'claude-sonnet-4-5', usage)).toBe(0.5);
  });
});
