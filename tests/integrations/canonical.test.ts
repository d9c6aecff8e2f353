// canonicalJson's direct writer (the hot path of every traced call) against the reference
// definition (prune, then JSON.stringify) it replaced, on generated values.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { canonicalJson, hash64Hex, valueHash } from '../../instrumentation/src/canonical.js';

function prune(value: unknown, seen: WeakSet<object>): unknown {
  if (value === null || value === undefined) return undefined;
  if (typeof value === 'bigint') return Number(value);
  if (typeof value !== 'object') return typeof value === 'function' || typeof value === 'symbol' ? undefined : value;
  if (seen.has(value)) return '[circular]';
  seen.add(value);
  try {
    if (value instanceof Date) return value.toISOString();
    // a Map of string keys is the object of its entries, another Map its pairs, a Set its values
    if (value instanceof Map) {
      const entries = [...value.entries()];
      if (entries.every(([k]) => typeof k === 'string')) {
        const obj: Record<string, unknown> = {};
        for (const [k, v] of entries) Object.defineProperty(obj, k as string, { value: v, enumerable: true, writable: true, configurable: true });
        return prune(obj, seen);
      }
      return prune(entries, seen);
    }
    if (value instanceof Set) return prune([...value], seen);
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
function reference(value: unknown): string {
  if (typeof value === 'string') {
    const t = value.trim();
    if (t.startsWith('{')) {
      try {
        return reference(JSON.parse(t) as unknown);
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

const leaf = fc.oneof(fc.string(), fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.constant(undefined), fc.bigInt({ min: -(2n ** 60n), max: 2n ** 60n }), fc.date({ noInvalidDate: true }));
// No own "__proto__" key: the reference's prune would assign it as a prototype and drop it, while
// the writer (before and after its fast path) keeps it as a key, as JSON and ClickHouse do.
// fast-check produces that key now and then, which made this test fail at random.
const key = fc.oneof(fc.string(), fc.constantFrom('0', '1', '2', '10', '9', '01', '-1', '4294967295', '4294967294', 'a', 'B', '__proto__x')).filter((k) => k !== '__proto__');
const { value } = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('value'), { maxLength: 4 }), fc.dictionary(key, tie('value'), { maxKeys: 5 })),
}));

describe('canonicalJson', () => {
  it('writes what prune + JSON.stringify wrote', () => {
    fc.assert(fc.property(value, (v) => {
      expect(canonicalJson(v)).toBe(reference(v));
    }), { numRuns: 3000 });
  });
  it('handles cycles, functions, symbols, toJSON and nested empties like the reference', () => {
    const a: Record<string, unknown> = { x: 1, f: () => 1, s: Symbol('s'), e: {}, n: { m: { k: undefined } }, arr: [() => 1, {}, undefined], d: new Date(0) };
    a.self = a;
    const withToJson = { toJSON: () => ({ z: 1, a: [1, { b: null }] }) };
    for (const v of [' {"b": 1, "a": {"c": null}} ', 'plain text', a, withToJson, [withToJson], { w: withToJson }, new Date(5), { 10: 'a', 9: 'b', x: 'c' }, 5n, 3.5, true]) {
      expect(canonicalJson(v)).toBe(reference(v));
    }
  });
  it('a Map or Set is not the same call as every other one (JSON.stringify writes both as {})', () => {
    const files = (path: string) => new Map([['path', path], ['mode', 'r']]);
    expect(valueHash(files('a.ts'))).not.toBe(valueHash(files('b.ts')));
    expect(valueHash(files('a.ts'))).toBe(valueHash(files('a.ts')));
    // string keys: the same call as the object of its entries, in any order
    expect(canonicalJson(new Map([['b', 2], ['a', { c: new Set([3, 1]) }]]))).toBe('{"a":{"c":[3,1]},"b":2}');
    expect(valueHash(new Map([['mode', 'r'], ['path', 'a.ts']]))).toBe(valueHash({ path: 'a.ts', mode: 'r' }));
    // other keys: the pairs in insertion order; a Set: its values in insertion order
    expect(canonicalJson(new Map<unknown, unknown>([[1, 'one'], [{ k: 2 }, null]]))).toBe('[[1,"one"],[{"k":2},null]]');
    expect(canonicalJson({ ids: new Set(['x', 'y']) })).toBe('{"ids":["x","y"]}');
    expect(valueHash({ ids: new Set(['x']) })).not.toBe(valueHash({ ids: new Set(['y']) }));
    // a key "__proto__" stays a key; a Map inside itself is a cycle, as an object would be
    expect(canonicalJson(new Map([['__proto__', 1]]))).toBe('{"__proto__":1}');
    const self = new Map<string, unknown>([['a', 1]]);
    self.set('me', self);
    expect(canonicalJson(self)).toBe('{"a":1,"me":"[circular]"}');
    for (const v of [files('z'), new Set([1, { a: 2 }]), { m: new Map([[true, 1]]) }, [new Map(), new Set()]]) {
      expect(canonicalJson(v)).toBe(reference(v));
      expect(valueHash(v)).toBe(hash64Hex(reference(v)));
    }
  });
  it('the fast path for plain data writes what the reference wrote: escapes, unicode, null prototypes, deep nesting', () => {
    // strings with quotes, backslashes, control characters, lone and paired surrogates, long and short
    const text = fc.string({ unit: fc.oneof(fc.constantFrom('"', '\\', '\n', '\t', '\u0000', '\u001f', '\ud800', '\udc00', '\ud83d\ude00', 'é', 'a'), fc.string({ unit: 'binary', maxLength: 1 })), maxLength: 40 });
    // (not "__proto__": the reference's prune assigns it as a prototype, the writers keep it as a key, as JSON does)
    const plainKey = fc.oneof(text, fc.constantFrom('a', 'b', 'B', '', 'path', 'content', 'toJSONx')).filter((k) => k !== '__proto__');
    const plain = fc.letrec((tie) => ({
      v: fc.oneof({ depthSize: 'small' }, text, fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.constant(undefined),
        fc.array(tie('v'), { maxLength: 4 }), fc.dictionary(plainKey, tie('v'), { maxKeys: 5 }), fc.dictionary(plainKey, tie('v'), { maxKeys: 3, noNullPrototype: false })),
    })).v;
    fc.assert(fc.property(plain, (v) => {
      expect(canonicalJson(v)).toBe(reference(v));
    }), { numRuns: 3000 });
    let deep: unknown = { leaf: 'x', n: null };
    for (let i = 0; i < 12; i++) deep = { [`k${i}`]: deep, list: [deep, i] };
    const nullProto = Object.assign(Object.create(null) as Record<string, unknown>, { b: 1, a: { c: [null, undefined, {}] } });
    for (const v of [deep, nullProto, { 1: 'a', b: 'c' }, [1, [2, [3, { x: '\u2028' }]]], { long: 'y'.repeat(500) + '"' }, { x: -0, y: NaN, z: Infinity }]) {
      expect(canonicalJson(v)).toBe(reference(v));
    }
  });
  it('valueHash (bytes written and hashed without the text) is hash64Hex of the reference text', () => {
    fc.assert(fc.property(value, (v) => {
      expect(valueHash(v)).toBe(hash64Hex(reference(v)));
    }), { numRuns: 3000 });
    // past the first buffer (4 KiB) and past the one kept (1 MiB); then small again
    const big = { a: 'x'.repeat(5000), b: ['é'.repeat(3000), { c: 'z'.repeat(1_100_000) }], d: 1 };
    for (const v of [big, { small: 1 }, big, [1, 'two', { three: 3 }]]) expect(valueHash(v)).toBe(hash64Hex(reference(v)));
    // a getter that hashes another value while the first is being written
    const inner = { q: 'inner' };
    const outer = { get a() { return valueHash(inner); }, b: 'outer' };
    expect(valueHash(outer)).toBe(hash64Hex(reference({ a: hash64Hex(reference(inner)), b: 'outer' })));
  });
  it('hash64Hex is the first 8 bytes of SHA-256 of the UTF-8 text, cached or not', () => {
    const texts = fc.sample(fc.oneof(fc.string({ unit: 'binary', maxLength: 300 }), fc.string({ maxLength: 20 })), 3000);
    for (const t of [...texts, ...texts, '', 'x'.repeat(1000), '\ud800']) {
      expect(hash64Hex(t)).toBe(createHash('sha256').update(t).digest('hex').slice(0, 16));
    }
  });
});
