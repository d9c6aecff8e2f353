// instrumentation/src/cost.ts: the same price file the collector loads, the same lookup and
// formula (checked against the collector's SQL on the loaded model_prices table), overrides.
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';
import { tempDirs } from '../helpers/temp-dirs.js';

let tc: TestCollector;
const tempDir = tempDirs();
beforeAll(async () => {
  tc = await startTestCollector({ detect: { enabled: false } });
});
afterAll(async () => {
  await tc.close();
});

describe('costUsd', () => {
  it('prices like the collector: exact over longest prefix, provider path dropped, cache reads and writes at their prices', async () => {
    const { costUsd, priceFor, modelKey } = await import('../../instrumentation/src/cost.js');
    expect(modelKey('openai/GPT-4o-2024-08-06')).toBe('gpt-4o-2024-08-06');
    expect(modelKey('us.anthropic.claude-sonnet-4-5-20250929-v1:0')).toBe('claude-sonnet-4-5-20250929-v1:0');
    for (const geo of ['eu', 'apac', 'global', 'us-gov']) expect(modelKey(`${geo}.anthropic.claude-sonnet-4-5-20250929-v1:0`)).toBe('claude-sonnet-4-5-20250929-v1:0');
    expect(priceFor('gpt-4o-mini-2024-07-18')?.model).toBe('gpt-4o-mini'); // longest prefix, not gpt-4o
    expect(costUsd('no-such-model', { inputTokens: 10 })).toBeUndefined();

    const cases = [
      { model: 'gpt-4o-2024-08-06', input: 1200, cached: 1000, written: 0, output: 40 },
      { model: 'openai/gpt-4.1-mini', input: 5000, cached: 0, written: 0, output: 700 },
      { model: 'claude-sonnet-4-5-20250929', input: 2600, cached: 2000, written: 0, output: 20 },
      { model: 'gemini-2.5-flash', input: 100, cached: 0, written: 0, output: 1 },
      // cache writes: Anthropic's at 1.25x the input price, a model with no write price at the input price
      { model: 'claude-sonnet-4-5-20250929', input: 12_600, cached: 2000, written: 10_000, output: 20 },
      { model: 'gpt-4o-2024-08-06', input: 1200, cached: 0, written: 1000, output: 40 },
      // an instrumentation whose input leaves the cache out: writes are still priced in full
      { model: 'claude-haiku-4-5', input: 50, cached: 0, written: 4000, output: 10 },
    ];
    for (const c of cases) {
      // the store's own function and price lookup (queries/schema/020_operator_prices.sql)
      const [row] = await tc.rows<{ cost: number }>(
        `WITH loopwatch_model_key({m:String}) AS k,
              (SELECT argMax(tuple(input_per_mtok, output_per_mtok, cached_input_per_mtok, cache_write_per_mtok, overridden), tuple(match = 'exact', length(model)))
               FROM model_prices FINAL WHERE (match = 'exact' AND k = model) OR (match = 'prefix' AND startsWith(k, model))) AS pr
         SELECT loopwatch_llm_cost(0, {i:UInt64}, {c:UInt64}, {w:UInt64}, {o:UInt64}, pr) AS cost`,
        { m: c.model, i: c.input, c: c.cached, w: c.written, o: c.output });
      expect(costUsd(c.model, { inputTokens: c.input, cacheReadTokens: c.cached, cacheCreationTokens: c.written, outputTokens: c.output })).toBeCloseTo(row!.cost, 9);
    }
    // Claude Sonnet 4.5: 600 input tokens at $3, 2,000 cache reads at $0.30, 10,000 cache writes at $3.75, 20 output at $15 per million
    expect(costUsd('claude-sonnet-4-5-20250929', { inputTokens: 12_600, cacheReadTokens: 2000, cacheCreationTokens: 10_000, outputTokens: 20 })).toBeCloseTo(
      (600 * 3 + 2000 * 0.3 + 10_000 * 3.75 + 20 * 15) / 1e6,
      12,
    );
  });

  it('configurePrices and LOOPWATCH_MODEL_PRICES override entries of the bundled table', async () => {
    const dir = tempDir('lw-prices-');
    const file = join(dir, 'prices.json');
    writeFileSync(file, JSON.stringify({ updated: '2026-01-01', models: [{ model: 'my-model', match: 'exact', input_per_mtok: 1, output_per_mtok: 2 }, { model: 'gpt-4o', match: 'prefix', input_per_mtok: 100, output_per_mtok: 100, cached_input_per_mtok: 100 }] }));
    vi.resetModules();
    process.env.LOOPWATCH_MODEL_PRICES = file;
    const cost = await import('../../instrumentation/src/cost.js');
    expect(cost.costUsd('my-model', { inputTokens: 1_000_000, outputTokens: 1_000_000 })).toBe(3); // the table loads on first use
    delete process.env.LOOPWATCH_MODEL_PRICES;
    expect(cost.costUsd('gpt-4o', { inputTokens: 1_000_000 })).toBe(100);
    expect(cost.costUsd('claude-haiku-4-5', { inputTokens: 1_000_000 })).toBeGreaterThan(0); // the rest is still there

    cost.configurePrices([{ model: 'My-Model', match: 'exact', input_per_mtok: 10, output_per_mtok: 0 }]);
    expect(cost.costUsd('my-model', { inputTokens: 1_000_000, outputTokens: 5 })).toBe(10);
    cost.configurePrices({ updated: '2026-01-02', models: [{ model: 'only', match: 'prefix', input_per_mtok: 1, output_per_mtok: 1 }] }, { replace: true });
    expect(cost.costUsd('gpt-4o', { inputTokens: 1 })).toBeUndefined();
    expect(cost.costUsd('only-this', { inputTokens: 1_000_000 })).toBe(1);
    expect(() => cost.configurePrices([{ model: 'bad' } as never])).toThrow(/input_per_mtok/);
    // the optional prices as the collector takes them: a number of 0 or more (a text or a negative was priced as input without a word)
    expect(() => cost.configurePrices([{ model: 'w', match: 'prefix', input_per_mtok: 1, output_per_mtok: 1, cache_write_per_mtok: '3.75' as never }])).toThrow(/models\[0\]\.cache_write_per_mtok must be a number of 0 or more/);
    expect(() => cost.configurePrices([{ model: 'w', match: 'prefix', input_per_mtok: 1, output_per_mtok: 1, cached_input_per_mtok: -1 }])).toThrow(/cached_input_per_mtok/);
  });

  it('a blank LOOPWATCH_MODEL_PRICES is unset, and a file that cannot be used is said once and never fails the call being priced', async () => {
    const warned = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    try {
      vi.resetModules();
      process.env.LOOPWATCH_MODEL_PRICES = ' ';
      const blank = await import('../../instrumentation/src/cost.js');
      expect(blank.costUsd('gpt-4o', { inputTokens: 1_000_000 })).toBeGreaterThan(0);
      expect(warned).not.toHaveBeenCalled();

      vi.resetModules();
      const dir = tempDir('lw-prices-');
      writeFileSync(join(dir, 'bad.json'), '{"models": [{"model": "x"}]}');
      process.env.LOOPWATCH_MODEL_PRICES = ` ${join(dir, 'bad.json')} `; // padded, as a blank is trimmed
      const bad = await import('../../instrumentation/src/cost.js');
      // priced from the bundled table (the LLM span's end() calls this: it must not throw into the agent)
      expect(bad.costUsd('gpt-4o', { inputTokens: 1_000_000 })).toBe(blank.costUsd('gpt-4o', { inputTokens: 1_000_000 }));
      expect(bad.costUsd('gpt-4o-mini', { inputTokens: 1_000_000 })).toBeGreaterThan(0);
      expect(warned).toHaveBeenCalledTimes(1);
      expect(String(warned.mock.calls[0]![0])).toMatch(/^\[loopwatch\] LOOPWATCH_MODEL_PRICES: model price file .*bad\.json: models\[0\] needs model, input_per_mtok, output_per_mtok; LLM calls are priced from the bundled table$/);
    } finally {
      delete process.env.LOOPWATCH_MODEL_PRICES;
      warned.mockRestore();
    }
  });
});
