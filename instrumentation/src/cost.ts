// LLM call cost from the model price table the collector also loads (queries/prices/model-prices.json),
// so a span's loopwatch.cost_usd and the collector's computed waste agree. An operator's file
// (LOOPWATCH_MODEL_PRICES, same shape) or configurePrices() entries replace same (model, match) ones.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { warn } from './warn.js';

export interface ModelPrice {
  /** Model id or prefix, compared lower case after the provider path (openai/gpt-4o -> gpt-4o). */
  model: string;
  match: 'prefix' | 'exact';
  /** USD per million input tokens (not cached). */
  input_per_mtok: number;
  output_per_mtok: number;
  /** USD per million cache-read input tokens; 0 = priced as ordinary input. */
  cached_input_per_mtok?: number;
  /** USD per million cache-write input tokens (Anthropic: 1.25x input); 0 = priced as ordinary input. */
  cache_write_per_mtok?: number;
  /** USD per million cache-write tokens of a 1-hour cache (Anthropic: 2x input); 0 = the cache-write price. */
  cache_write_1h_per_mtok?: number;
  /**
   * Set on entries from LOOPWATCH_MODEL_PRICES or configurePrices(): the operator's price wins
   * over a cost a span reported (callCost; the collector's rule for its own override, schema 020).
   */
  overridden?: boolean;
}

export interface PriceFile {
  updated: string;
  models: ModelPrice[];
}

/** Token counts of one LLM call, GenAI-semconv style: inputTokens includes cache reads and writes. */
export interface TokenUsage {
  inputTokens?: number;
  outputTokens?: number;
  cacheReadTokens?: number;
  cacheCreationTokens?: number;
  /** Of cacheCreationTokens, those written to a 1-hour cache (Anthropic's usage.cache_creation.ephemeral_1h_input_tokens). */
  cacheCreation1hTokens?: number;
}

function findPriceFile(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'queries', 'prices', 'model-prices.json');
    if (existsSync(candidate)) return candidate;
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

function validEntries(data: unknown, source: string, overridden = true): ModelPrice[] {
  const models = (data as { models?: unknown })?.models;
  if (!Array.isArray(models)) throw new Error(`model price file ${source}: "models" must be an array`);
  return models.map((m: Partial<ModelPrice>, i) => {
    if (typeof m?.model !== 'string' || !m.model || typeof m.input_per_mtok !== 'number' || typeof m.output_per_mtok !== 'number') {
      throw new Error(`model price file ${source}: models[${i}] needs model, input_per_mtok, output_per_mtok`);
    }
    // the optional prices as the collector's schema has them (collector/src/detect/prices.ts): a
    // number of 0 or more, or absent (0: the input price); anything else is refused, not priced as input
    for (const key of ['input_per_mtok', 'output_per_mtok', 'cached_input_per_mtok', 'cache_write_per_mtok', 'cache_write_1h_per_mtok'] as const) {
      const v = m[key];
      if (v !== undefined && (typeof v !== 'number' || !(v >= 0))) throw new Error(`model price file ${source}: models[${i}].${key} must be a number of 0 or more`);
    }
    return {
      model: claudeDashes(m.model.toLowerCase()),
      match: m.match === 'exact' ? 'exact' : 'prefix',
      input_per_mtok: m.input_per_mtok,
      output_per_mtok: m.output_per_mtok,
      cached_input_per_mtok: m.cached_input_per_mtok ?? 0,
      cache_write_per_mtok: m.cache_write_per_mtok ?? 0,
      cache_write_1h_per_mtok: m.cache_write_1h_per_mtok ?? 0,
      overridden,
    };
  });
}

function readEntries(path: string, overridden = true): ModelPrice[] {
  return validEntries(JSON.parse(readFileSync(path, 'utf8')) as unknown, path, overridden);
}

let table: Map<string, ModelPrice> | undefined;
const cache = new Map<string, ModelPrice | null>();
const MAX_CACHED_KEYS = 4096;

function put(into: Map<string, ModelPrice>, entries: ModelPrice[]): void {
  for (const e of entries) into.set(`${e.match}:${e.model}`, e);
}

function prices(): Map<string, ModelPrice> {
  if (table) return table;
  table = new Map();
  const bundled = findPriceFile();
  if (bundled) put(table, readEntries(bundled, false));
  const override = pricesOverridePath();
  if (override) {
    // read when the first LLM call ends, inside the span's end(): a bad file must not fail the
    // agent's call (the collector and `replay` refuse it at start)
    try {
      put(table, readEntries(override));
    } catch (err) {
      warn(`LOOPWATCH_MODEL_PRICES: ${(err as Error).message}; LLM calls are priced from the bundled table`);
    }
  }
  return table;
}

/** The operator's price file, LOOPWATCH_MODEL_PRICES (blank is unset, as for every variable); the collector reads it here too. */
export function pricesOverridePath(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env.LOOPWATCH_MODEL_PRICES?.trim() || undefined;
}

/**
 * Adds or replaces prices (same model + match replaces), from entries or a file of the price
 * file's shape; `{ replace: true }` drops the bundled table first.
 */
export function configurePrices(source: ModelPrice[] | PriceFile | { path: string }, opts: { replace?: boolean } = {}): void {
  const entries = 'path' in source ? readEntries(source.path) : validEntries(Array.isArray(source) ? { models: source } : source, 'configurePrices');
  if (opts.replace) table = new Map();
  put(prices(), entries);
  cache.clear();
}

/**
 * Lookup key of a model id: lower case, provider path dropped, Bedrock's [geography.]anthropic.
 * dropped (us., eu., apac., global., us-gov.; as loopwatch_model_key in SQL, queries/schema/011),
 * a Claude id's dots between digits as dashes (schema 020).
 */
export function modelKey(model: string): string {
  const last = model.split('/').pop() ?? model;
  return claudeDashes(last.toLowerCase().replace(/^([a-z][a-z-]*\.)?anthropic\./, ''));
}

/**
 * Claude ids written with dots (OpenRouter's claude-opus-4.5) are Anthropic's dashed ones; only
 * Claude's: gpt-4.1 with a dash would meet gpt-4-1106-preview's prefix (loopwatch_claude_dashes,
 * schema 020). Price entries are keyed by it too: an operator's `claude-3.5-sonnet` prices the
 * calls it names.
 */
export function claudeDashes(key: string): string {
  return key.startsWith('claude-') ? key.replace(/(\d)\.(\d)/g, '$1-$2') : key;
}

/** The price entry for a model: an exact match wins, then the longest prefix. */
export function priceFor(model: string): ModelPrice | undefined {
  const key = modelKey(model);
  const hit = cache.get(key);
  if (hit !== undefined) return hit ?? undefined;
  let best: ModelPrice | undefined;
  for (const p of prices().values()) {
    if (p.match === 'exact' ? p.model === key : key.startsWith(p.model)) {
      if (!best || (p.match === 'exact' && best.match !== 'exact') || (p.match === best.match && p.model.length > best.model.length)) best = p;
    }
  }
  // model ids can come from tenants or a gateway: a bounded memo, not one entry per id ever seen
  if (cache.size >= MAX_CACHED_KEYS) cache.clear();
  cache.set(key, best ?? null);
  return best;
}

/**
 * USD cost of one call, or undefined for a model without a price. Cache reads are priced at
 * cached_input_per_mtok and cache writes at cache_write_per_mtok (each the input price when 0),
 * other input tokens at the input price: the formula the collector's reports use
 * (loopwatch_llm_cost, queries/schema/016_cache_write_price.sql). Writes to a 1-hour cache, when
 * the usage tells them apart, are priced at cache_write_1h_per_mtok (Anthropic bills them 2x
 * input, 1.25x for the 5-minute cache); the collector cannot tell them apart in other spans.
 */
export function costUsd(model: string | undefined, usage: TokenUsage): number | undefined {
  if (!model) return undefined;
  const p = priceFor(model);
  if (!p) return undefined;
  const input = usage.inputTokens ?? 0;
  const cacheRead = usage.cacheReadTokens ?? 0;
  const cacheWrite = usage.cacheCreationTokens ?? 0;
  const write1h = Math.min(Math.max(usage.cacheCreation1hTokens ?? 0, 0), cacheWrite);
  // a price of 0 (or none) is the one it falls back to
  const or = (price: number | undefined, otherwise: number) => (price && price > 0 ? price : otherwise);
  const writePrice = or(p.cache_write_per_mtok, p.input_per_mtok);
  const usd =
    (Math.max(input - cacheRead - cacheWrite, 0) * p.input_per_mtok +
      cacheRead * or(p.cached_input_per_mtok, p.input_per_mtok) +
      (cacheWrite - write1h) * writePrice +
      write1h * or(p.cache_write_1h_per_mtok, writePrice) +
      (usage.outputTokens ?? 0) * p.output_per_mtok) /
    1e6;
  return Math.round(usd * 1e9) / 1e9;
}

/**
 * An LLM call's cost: the cost it reported when > 0, unless the operator set the model's price
 * (LOOPWATCH_MODEL_PRICES, configurePrices()), else its tokens at the price; 0 for a model without
 * one. The collector's loopwatch_llm_cost is the same rule (queries/schema/020_operator_prices.sql).
 */
export function callCost(reported: number, model: string | undefined, usage: TokenUsage): number {
  if (reported > 0 && !(model && priceFor(model)?.overridden)) return reported;
  return costUsd(model, usage) ?? 0;
}
