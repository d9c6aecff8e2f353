// Argument identity without shipping arguments: the canonical JSON of a value (keys sorted,
// nulls and empty objects dropped, the same text ClickHouse's JSON type serializes, see
// queries/schema/002_agent_calls.sql loopwatch_canonical_json) and a 64-bit hash of it
// (first 8 bytes of SHA-256, as 16 hex digits).
import * as nodeCrypto from 'node:crypto';

// The general path's budget: values it visits per hash. Shared references are written out at
// each place (as JSON.stringify does), so a small graph of shared nodes can stand for an
// exponential text; past the budget the hash fails (the call is then traced without one).
const MAX_NODES = 1_000_000;
let nodesLeft = MAX_NODES;
function visit(): void {
  if (--nodesLeft < 0) throw new RangeError(`value too large to hash (over ${MAX_NODES.toLocaleString('en-US')} values)`);
}

/**
 * A Map or Set as JSON could carry it (JSON.stringify writes both as `{}`, so every Map argument
 * would be the same call): a Map whose keys are all strings as an object of its entries (the
 * same call as that object), any other Map as its [key, value] pairs and a Set as its values,
 * in insertion order. Anything else is returned as it is.
 */
function collectionShape(value: object): object {
  if (value instanceof Map) {
    let stringKeys = true;
    for (const k of value.keys()) if (typeof k !== 'string') stringKeys = false;
    if (!stringKeys) return Array.from(value.entries());
    const out: Record<string, unknown> = Object.create(null) as Record<string, unknown>; // a key "__proto__" stays a key
    for (const [k, v] of value as Map<string, unknown>) out[k] = v;
    return out;
  }
  if (value instanceof Set) return Array.from(value);
  return value;
}

// Cycle check against the ancestors on the current path (an array: short, and cheaper for the
// garbage collector than a WeakSet per call, which matters on the hot path of every tool call).
function prune(value: unknown, ancestors: object[]): unknown {
  if (value === null || value === undefined) return undefined;
  visit();
  if (typeof value === 'bigint') return Number(value);
  if (typeof value !== 'object') return typeof value === 'function' || typeof value === 'symbol' ? undefined : value;
  if (ancestors.includes(value)) return '[circular]';
  ancestors.push(value);
  try {
    if (value instanceof Date) return value.toISOString();
    if (value instanceof Map || value instanceof Set) return prune(collectionShape(value), ancestors);
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
  visit();
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
    if (obj instanceof Map || obj instanceof Set) return write(collectionShape(obj), ancestors);
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

// Fast path for the common case, plain data: objects whose prototype is Object.prototype (or
// null) and arrays, holding strings, numbers, booleans, null/undefined and more plain data. It
// writes the same text as write(), as UTF-8 into one reused buffer, and the digest is taken over
// those bytes: no string is built per member or per value (the text is decoded only when
// canonicalJson() is asked for it), and none of the general path's per-node bookkeeping
// (ancestor list, try/finally, Date/toJSON probes, sorted key copies, regexes). Anything else (a
// Date, a toJSON, a Map, a class instance, a function or symbol in an object, an integer-like
// key, deep nesting that could be a cycle) returns false and the general path starts over: the
// fast path never guesses.
const FAST_MAX_DEPTH = 8;
const FAST_MAX_KEYS = 32;
const FAST_MAX_SCAN = 32;

// JSON.stringify's escapes for control characters
const ESCAPES: string[] = [];
for (let c = 0; c < 0x20; c++) ESCAPES.push('\\u' + c.toString(16).padStart(4, '0'));
ESCAPES[8] = '\\b';
ESCAPES[9] = '\\t';
ESCAPES[10] = '\\n';
ESCAPES[12] = '\\f';
ESCAPES[13] = '\\r';

const BUF_SIZE = 4096;
/** Kept after a larger value only up to this size; a bigger buffer is dropped. */
const BUF_KEEP = 1 << 20;
let buf = Buffer.allocUnsafeSlow(BUF_SIZE);
let pos = 0;
// The digest takes a whole view, so views of the buffer's first n bytes are made once per length
// (up to VIEW_LENGTHS; a new buffer starts over) rather than a subarray() per digest: an object
// allocated on every call, about a tenth of what a short text's digest costs.
const VIEW_LENGTHS = 1024;
let views: (Buffer | undefined)[] = [];
/** A value getter can run user code, which could hash another value: that one takes the general path. */
let writing = false;

function reserve(n: number): void {
  if (pos + n <= buf.length) return;
  let size = buf.length * 2;
  while (size < pos + n) size *= 2;
  const next = Buffer.allocUnsafeSlow(size);
  buf.copy(next, 0, 0, pos);
  buf = next;
  views = [];
}

/** Drops a buffer that a large value grew. */
function shrink(): void {
  if (buf.length <= BUF_KEEP) return;
  buf = Buffer.allocUnsafeSlow(BUF_SIZE);
  views = [];
}

/** Text that is already JSON, as UTF-8. */
function putText(t: string): void {
  reserve(3 * t.length);
  pos += buf.write(t, pos);
}

/** A short ASCII literal (true, false, null, a number): cheaper by hand than through Buffer.write. */
function putAscii(t: string): void {
  reserve(t.length);
  for (let i = 0; i < t.length; i++) buf[pos + i] = t.charCodeAt(i);
  pos += t.length;
}

/**
 * A string as JSON.stringify writes it. Short ASCII strings are written here (a native call
 * costs more than the loop); long ones, and any with a character past ASCII, by JSON.stringify
 * and a native UTF-8 write (so lone surrogates are escaped as \udxxx, as JSON.stringify does).
 */
function putString(s: string): void {
  const n = s.length;
  if (n > FAST_MAX_SCAN) return putText(JSON.stringify(s));
  reserve(2 + 6 * n);
  const b = buf; // locals: the module's variables would be loaded and stored per character
  let p = pos;
  b[p++] = 0x22;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c < 0x80 && c !== 0x22 && c !== 0x5c) {
      b[p++] = c;
    } else if (c === 0x22 || c === 0x5c) {
      b[p++] = 0x5c;
      b[p++] = c;
    } else if (c < 0x20) {
      const e = ESCAPES[c]!;
      for (let j = 0; j < e.length; j++) b[p++] = e.charCodeAt(j);
    } else {
      return putText(JSON.stringify(s)); // from pos: what was written of this string is overwritten
    }
  }
  b[p++] = 0x22;
  pos = p;
}

function putNumber(n: number): void {
  if (n !== n || n === Infinity || n === -Infinity) return putAscii('null');
  if (!Number.isInteger(n) || n > 0x7fffffff || n < -0x7fffffff) return putAscii('' + n);
  reserve(11);
  if (n < 0) {
    buf[pos++] = 0x2d;
    n = -n;
  }
  const start = pos;
  do {
    buf[pos++] = 0x30 + (n % 10);
    n = (n / 10) | 0;
  } while (n > 0);
  for (let i = start, j = pos - 1; i < j; i++, j--) {
    const d = buf[i]!;
    buf[i] = buf[j]!;
    buf[j] = d;
  }
}

function putByte(b: number): void {
  reserve(1);
  buf[pos++] = b;
}

/** Writes a value that is not null or undefined; false = not plain data. */
function fastValue(v: unknown, depth: number): boolean {
  switch (typeof v) {
    case 'string':
      putString(v);
      return true;
    case 'number':
      putNumber(v);
      return true;
    case 'boolean':
      putAscii(v ? 'true' : 'false');
      return true;
    case 'object':
      return fastObject(v!, depth);
    default:
      return false;
  }
}

function fastObject(obj: object, depth: number): boolean {
  if (depth >= FAST_MAX_DEPTH) return false;
  if (Array.isArray(obj)) {
    if (Object.getPrototypeOf(obj) !== Array.prototype) return false;
    putByte(0x5b); // [
    for (let i = 0; i < obj.length; i++) {
      if (i > 0) putByte(0x2c); // ,
      const v: unknown = obj[i];
      if (v === null || v === undefined) putAscii('null');
      else if (!fastValue(v, depth + 1)) return false;
    }
    putByte(0x5d); // ]
    return true;
  }
  const proto = Object.getPrototypeOf(obj) as unknown;
  if (proto !== Object.prototype && proto !== null) return false;
  if (typeof (obj as { toJSON?: unknown }).toJSON === 'function') return false;
  const keys = Object.keys(obj);
  const n = keys.length;
  if (n > FAST_MAX_KEYS) return false;
  // insertion sort (few keys; the same code-unit order as Array.prototype.sort)
  for (let i = 0; i < n; i++) {
    const k = keys[i]!;
    const c = k.charCodeAt(0);
    if (c >= 0x30 && c <= 0x39) return false; // integer-like keys print first: the general path orders them
    let j = i - 1;
    while (j >= 0 && keys[j]! > k) {
      keys[j + 1] = keys[j]!;
      j--;
    }
    keys[j + 1] = k;
  }
  putByte(0x7b); // {
  const open = pos;
  for (let i = 0; i < n; i++) {
    const k = keys[i]!;
    const v: unknown = (obj as Record<string, unknown>)[k];
    if (v === null || v === undefined) continue; // nulls are dropped
    const member = pos;
    if (member > open) putByte(0x2c);
    putString(k);
    putByte(0x3a); // :
    const at = pos;
    if (!fastValue(v, depth + 1)) return false;
    if (pos - at === 2 && buf[at] === 0x7b) pos = member; // and so are empty objects
  }
  putByte(0x7d); // }
  return true;
}

/** Writes the canonical JSON of plain data into buf[0, pos); false = not plain data (or busy). */
function writeFast(value: object): boolean {
  if (writing) return false;
  writing = true;
  pos = 0;
  try {
    return fastObject(value, 0);
  } finally {
    writing = false;
  }
}

/** Canonical JSON text of a value; a string that holds a JSON object is canonicalized too. */
export function canonicalJson(value: unknown): string {
  if (typeof value === 'object' && value !== null && writeFast(value)) {
    const text = buf.toString('utf8', 0, pos);
    shrink();
    return text;
  }
  return generalJson(value);
}

/** canonicalJson() past the fast path. */
function generalJson(value: unknown): string {
  nodesLeft = MAX_NODES;
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

// crypto.hash (Node >= 20.12) is a one-shot digest, about 4x cheaper than createHash for the
// short texts of tool arguments; older runtimes fall back to createHash. The digest comes back
// as 32 latin1 characters (one per byte) and the first 8 are written as hex here: a flat
// 16-character string, instead of 64 hex digits of which a slice would keep all alive.
const oneShot = (nodeCrypto as unknown as { hash?: (algorithm: string, data: string | Uint8Array, encoding: 'latin1') => string }).hash;
const HEX_DIGITS: number[] = Array.from('0123456789abcdef', (c) => c.charCodeAt(0));

function sha256First8Hex(data: string | Uint8Array): string {
  if (!oneShot) return nodeCrypto.createHash('sha256').update(data).digest('hex').slice(0, 16);
  const d = oneShot('sha256', data, 'latin1');
  const h = HEX_DIGITS;
  const b0 = d.charCodeAt(0), b1 = d.charCodeAt(1), b2 = d.charCodeAt(2), b3 = d.charCodeAt(3);
  const b4 = d.charCodeAt(4), b5 = d.charCodeAt(5), b6 = d.charCodeAt(6), b7 = d.charCodeAt(7);
  return String.fromCharCode(
    h[b0 >> 4]!, h[b0 & 15]!, h[b1 >> 4]!, h[b1 & 15]!, h[b2 >> 4]!, h[b2 & 15]!, h[b3 >> 4]!, h[b3 & 15]!,
    h[b4 >> 4]!, h[b4 & 15]!, h[b5 >> 4]!, h[b5 & 15]!, h[b6 >> 4]!, h[b6 & 15]!, h[b7 >> 4]!, h[b7 & 15]!,
  );
}

/** 16 hex digits of the bytes in buf[0, pos). */
function bufferHash(): string {
  const n = pos;
  const view = n < VIEW_LENGTHS ? (views[n] ??= buf.subarray(0, n)) : buf.subarray(0, n);
  const h = sha256First8Hex(view);
  shrink();
  return h;
}

/**
 * 16 hex digits: the first 8 bytes of SHA-256 of the text (UTF-8). No memo of recent texts: one
 * measured 0.05x cheaper on repeated arguments and 0.2x dearer when every call is new, which is
 * the common case.
 */
export function hash64Hex(text: string): string {
  return sha256First8Hex(text);
}

/** hash64Hex(canonicalJson(value)); for plain data, without making the text. */
export function valueHash(value: unknown): string {
  if (typeof value === 'object' && value !== null && writeFast(value)) return bufferHash();
  return hash64Hex(generalJson(value));
}
