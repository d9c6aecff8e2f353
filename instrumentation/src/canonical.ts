// Argument identity without shipping arguments: the canonical JSON of a value (keys sorted,
// nulls and empty objects dropped, the same text ClickHouse's JSON type serializes, see
// queries/schema/002_agent_calls.sql loopwatch_canonical_json) and a 64-bit hash of it
// (first 8 bytes of SHA-256, as 16 hex digits).
import * as nodeCrypto from 'node:crypto';

// Cycle check against the ancestors on the current path (an array: short, and cheaper for the
// garbage collector than a WeakSet per call, which matters on the hot path of every tool call).
function prune(value: unknown, ancestors: object[]): unknown {
  if (value === null || value === undefined) return undefined;
  if (typeof value === 'bigint') return Number(value);
  if (typeof value !== 'object') return typeof value === 'function' || typeof value === 'symbol' ? undefined : value;
  if (ancestors.includes(value)) return '[circular]';
  ancestors.push(value);
  try {
    if (value instanceof Date) return value.toISOString();
    if (Array.isArray(value)) return value.map((v) => prune(v, ancestors) ?? null);
    if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return prune((value as { toJSON(): unknown }).toJSON(), ancestors);
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      const v = prune((value as Record<string, unknown>)[key], ancestors);
      if (v === undefined) continue;
      if (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 0) continue;
      out[key] = v;
    }
    return out;
  } finally {
    ancestors.pop();
  }
}

const INDEX_KEY = /^(?:0|[1-9]\d*)$/;

/** Object keys in the order JSON.stringify would print a pruned copy: integer keys first, ascending, then the rest sorted. */
function orderedKeys(value: object): string[] {
  const keys = Object.keys(value).sort();
  let ints: string[] | undefined;
  for (const k of keys) if (INDEX_KEY.test(k) && Number(k) < 4294967295) (ints ??= []).push(k);
  if (!ints) return keys;
  ints.sort((a, b) => Number(a) - Number(b));
  return [...ints, ...keys.filter((k) => !(INDEX_KEY.test(k) && Number(k) < 4294967295))];
}

/**
 * The same text as JSON.stringify(prune(value)) for a value inside an object or array, written
 * directly (no pruned copy: this runs twice on every traced tool call).
 */
function write(value: unknown, ancestors: object[]): string | undefined {
  if (value === null || value === undefined) return undefined;
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'number':
      return JSON.stringify(value);
    case 'boolean':
      return value ? 'true' : 'false';
    case 'bigint':
      return JSON.stringify(Number(value));
    case 'function':
    case 'symbol':
      return undefined;
    default:
      break;
  }
  const obj = value as object;
  if (ancestors.includes(obj)) return '"[circular]"';
  ancestors.push(obj);
  try {
    if (obj instanceof Date) return JSON.stringify(obj.toISOString());
    if (Array.isArray(obj)) {
      let out = '[';
      for (let i = 0; i < obj.length; i++) out += (i ? ',' : '') + (write(obj[i], ancestors) ?? 'null');
      return out + ']';
    }
    if (typeof (obj as { toJSON?: unknown }).toJSON === 'function') return write((obj as { toJSON(): unknown }).toJSON(), ancestors);
    let out = '{';
    for (const key of orderedKeys(obj)) {
      const v = write((obj as Record<string, unknown>)[key], ancestors);
      if (v === undefined || v === '{}') continue; // nulls and empty objects are dropped
      out += (out.length > 1 ? ',' : '') + JSON.stringify(key) + ':' + v;
    }
    return out + '}';
  } finally {
    ancestors.pop();
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
  // a top-level value that prunes to a string (a Date, a toJSON() giving text) is that text, unquoted
  if (typeof value !== 'object' || !(value instanceof Date || typeof (value as { toJSON?: unknown }).toJSON === 'function')) {
    return write(value, []) ?? '';
  }
  const pruned = prune(value, []);
  if (pruned === undefined) return '';
  return typeof pruned === 'string' ? pruned : JSON.stringify(pruned);
}

// crypto.hash (Node >= 20.12) is a one-shot digest, about 5x faster than createHash for the
// short texts of tool arguments; older runtimes fall back to createHash.
const oneShot = (nodeCrypto as { hash?: (algorithm: string, data: string, encoding: 'hex') => string }).hash;
const sha256Hex: (text: string) => string = oneShot
  ? (text) => oneShot('sha256', text, 'hex')
  : (text) => nodeCrypto.createHash('sha256').update(text).digest('hex');

/** 16 hex digits: the first 8 bytes of SHA-256 of the text. */
export function hash64Hex(text: string): string {
  return sha256Hex(text).slice(0, 16);
}

export function valueHash(value: unknown): string {
  return hash64Hex(canonicalJson(value));
}
