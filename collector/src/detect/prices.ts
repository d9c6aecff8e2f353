// Model list prices for waste cost: queries/prices/model-prices.json, with an operator's file
// (LOOPWATCH_MODEL_PRICES) merged over it entry by entry (same model + match replaces), loaded
// into the model_prices table that the detectors' view prices LLM calls with. The operator's
// prices also win over a cost a span reported (the agent's own table's, most often).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';
import { claudeDashes, pricesOverridePath } from '../../../instrumentation/src/cost.js';
import { queriesDir } from '../paths.js';

const priceFileSchema = z.object({
  // optional, as the instrumentation's loader (instrumentation/src/cost.ts) has it
  updated: z.string().regex(/^\d{4}-\d{2}-\d{2}$/).optional(),
  models: z.array(
    z.object({
      model: z.string().min(1),
      match: z.enum(['prefix', 'exact']).default('prefix'),
      input_per_mtok: z.number().nonnegative(),
      output_per_mtok: z.number().nonnegative(),
      cached_input_per_mtok: z.number().nonnegative().default(0),
      cache_write_per_mtok: z.number().nonnegative().default(0),
      // the instrumentation's price of a 1-hour cache write (instrumentation/src/cost.ts): checked
      // as it checks it, not loaded (the store's spans do not tell 1-hour writes apart)
      cache_write_1h_per_mtok: z.number().nonnegative().optional(),
    }),
  ),
});

export type ModelPrice = z.infer<typeof priceFileSchema>['models'][number];

export const DEFAULT_PRICES_PATH = join(queriesDir, 'prices', 'model-prices.json');

export function readPriceFile(path: string): ModelPrice[] {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read model price file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const parsed = priceFileSchema.safeParse(json);
  if (!parsed.success) throw new Error(`invalid model price file ${path}: ${parsed.error.issues[0]?.path.join('.')} ${parsed.error.issues[0]?.message}`);
  // Lookup keys as loopwatch_model_key makes the calls': lower case, a Claude id's dots as dashes
  // (an operator's claude-3.5-sonnet prices the calls it names)
  return parsed.data.models.map((m) => ({ ...m, model: claudeDashes(m.model.toLowerCase()) }));
}

/** Refuses a LOOPWATCH_MODEL_PRICES that cannot be used, in one line (a ConfigError-worthy message), before anything reads it. */
export function checkPricesOverride(): void {
  const path = pricesOverridePath();
  if (path) mergedPrices(path);
}

/**
 * Defaults with the override file's entries replacing same (model, match) ones. The override's
 * entries are marked: their price wins over a cost a span reported (loopwatch_llm_cost, schema 020).
 */
export function mergedPrices(overridePath?: string): (ModelPrice & { overridden: 0 | 1 })[] {
  const byKey = new Map<string, ModelPrice & { overridden: 0 | 1 }>();
  for (const m of readPriceFile(DEFAULT_PRICES_PATH)) byKey.set(`${m.match}:${m.model}`, { ...m, overridden: 0 });
  if (overridePath) for (const m of readPriceFile(overridePath)) byKey.set(`${m.match}:${m.model}`, { ...m, overridden: 1 });
  return [...byKey.values()];
}

export { pricesOverridePath };

/** Replaces the model_prices table's contents; returns how many prices were loaded. */
export async function loadModelPrices(client: ClickHouseClient, overridePath = pricesOverridePath()): Promise<number> {
  const prices = mergedPrices(overridePath).map(({ cache_write_1h_per_mtok: _oneHour, ...columns }) => columns);
  await client.command({ query: 'TRUNCATE TABLE IF EXISTS model_prices' });
  await client.insert({ table: 'model_prices', values: prices, format: 'JSONEachRow' });
  return prices.length;
}
