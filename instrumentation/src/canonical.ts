// Argument identity without shipping arguments: the canonical JSON of a value (keys sorted,
// nulls and empty objects dropped, the same text ClickHouse's JSON type serializes, see
// queries/schema/002_agent_calls.sql loopwatch_canonical_json) and a 64-bit hash of it
// (first 8 bytes of SHA-256, as 16 hex digits).
import { createHash } from 'node:crypto';

function prune(value: unknown, seen: WeakSet<object>): unknown {
  if (value === null || value === undefined) return undefined;
  if (typeof value === 'bigint') return Number(value);
  if (typeof value !== 'object') return typeof value === 'function' || typeof value === 'symbol' ? undefined : value;
  if (seen.has(value)) return '[circular]';
  seen.add(value);
  try {
    if (value instanceof Date) return value.toISOString();
    if (Array.isArray(value)) return value.map((v) => prune(v, seen) ?? null);
    if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return prune((value as { toJSON(): unknown }).toJSON(), seen);
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      const v = prune((value as Record<string, unknown>)[key], seen);
      if (v === undefined) continue;
      if (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 0) continue;
      out[key] = v;
    }
    return out;
  } finally {
    seen.delete(value);
  }
}

/** Canonical JSON text of a value; a string that holds a JSON object is canonicalized too. */
export function canonicalJson(value: unknown): string {
  if (typeof value === 'string') {
    const t = value.trim();
    if (t.startsWith('{')) {
      try {
        return canonicalJson(JSON.parse(t) as unknown);
      } catch {
        return t;
      }
    }
    return t;
  }
  if (value === undefined || value === null) return '';
  const pruned = prune(value, new WeakSet());
  if (pruned === undefined) return '';
  return typeof pruned === 'string' ? pruned : JSON.stringify(pruned);
}

/** 16 hex digits: the first 8 bytes of SHA-256 of the text. */
export function hash64Hex(text: string): string {
  return createHash('sha256').update(text).digest().subarray(0, 8).toString('hex');
}

export function valueHash(value: unknown): string {
  return hash64Hex(canonicalJson(value));
}
