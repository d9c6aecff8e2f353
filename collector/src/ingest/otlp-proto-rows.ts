// The fast path of protobuf ingest: OTLP protobuf bytes straight to otel_traces rows as
// JSONCompactEachRow bytes, in one pass over the wire format, without building the decoded object
// tree (protobufjs) or the row arrays (span-rows.ts). Strings are copied from the request as UTF-8
// bytes (escaped where JSON needs it), ids are hexed from the bytes. This is what most of the
// collector's CPU went to: ~40 objects per span to allocate and then collect.
//
// It handles well-formed requests whose spans are all accepted. Anything else — a malformed or
// unusual encoding (groups, wrong wire types, a singular field sent twice), a span the general path
// would reject (bad ids, times past 2262, unknown kinds), a request over a limit, attribute values
// that are arrays or key-value lists, duplicate or integer-like attribute keys — returns null, and
// the caller takes the general path (decodeTraceRequest + toSpanRows + serializeRows), which
// answers exactly as before. For what it accepts, its output is byte-for-byte that of the general
// path (tests/safety/proto-rows.test.ts checks this on generated and mutated requests).
import { isUtf8 } from 'node:buffer';
import { MAX_NANOS, nanosToDateTime64, type IngestLimits } from './span-rows.js';

export interface ProtoRows {
  /** The rows, JSONCompactEachRow, one per line. */
  payload: Buffer;
  rows: number;
}

/** Thrown inside to leave the fast path; never escapes protoToRows. */
const BAIL = new Error('not handled by the fast path');

const SPAN_KINDS = ['Unspecified', 'Internal', 'Server', 'Client', 'Producer', 'Consumer'];
const STATUS_CODES = ['Unset', 'Ok', 'Error'];
const HEX = '0123456789abcdef';

// State of one conversion (synchronous, never re-entered).
let b: Buffer = Buffer.alloc(0);
let at = 0; // position after the last varint read
let limits: IngestLimits;
let out = Buffer.allocUnsafe(1 << 20);
let o = 0;
const OUT_KEEP = 16 << 20;
const kvs: number[] = []; // [start, end] of KeyValue messages of one attribute list
const ranges: number[] = []; // scratch [start, end] pairs (events or links of a span)

function ensure(n: number): void {
  if (o + n <= out.length) return;
  const grown = Buffer.allocUnsafe(Math.max(out.length * 2, o + n));
  out.copy(grown, 0, 0, o);
  out = grown;
}

/** A varint of at most 5 bytes (tags, lengths, enums, bools); sets `at`. */
function varint32(p: number, lim: number): number {
  let x = 0;
  for (let shift = 0; shift < 35; shift += 7) {
    if (p >= lim) throw BAIL;
    const c = b[p++]!;
    x += (c & 0x7f) * 2 ** shift;
    if (c < 0x80) {
      if (x > 0xffffffff) throw BAIL;
      at = p;
      return x;
    }
  }
  throw BAIL;
}

/** Skips a field's value; returns the position after it. */
function skip(wire: number, p: number, lim: number): number {
  let q: number;
  if (wire === 0) {
    for (let i = 0; ; i++) {
      if (p >= lim || i >= 10) throw BAIL;
      if (b[p++]! < 0x80) return p;
    }
  } else if (wire === 1) q = p + 8;
  else if (wire === 5) q = p + 4;
  else if (wire === 2) q = varint32(p, lim) + at;
  else throw BAIL; // groups and invalid wire types: the general path decides
  if (q > lim) throw BAIL;
  return q;
}

/** Length-delimited field at p (after its tag): sets `at` to the content start; returns the end. */
function delimited(p: number, lim: number): number {
  const len = varint32(p, lim);
  const end = at + len;
  if (end > lim) throw BAIL;
  return end;
}

function writeAscii(s: string): void {
  ensure(s.length);
  o += out.write(s, o, 'latin1');
}

/**
 * Writes the UTF-8 string at [p, end) as a JSON string literal exactly as JSON.stringify would;
 * returns its length in UTF-16 units. Invalid UTF-8 leaves the fast path (protobufjs refuses it).
 */
function writeString(p: number, end: number): number {
  ensure((end - p) * 6 + 2);
  out[o++] = 0x22;
  let units = 0;
  let ascii = true;
  for (let i = p; i < end; i++) {
    const c = b[i]!;
    if (c >= 0x80) {
      ascii = false;
      if (c >= 0xc0) units += c >= 0xf0 ? 2 : 1; // lead byte: 1 unit, 2 for 4-byte (astral) sequences
      out[o++] = c;
    } else {
      units++;
      if (c >= 0x20 && c !== 0x22 && c !== 0x5c) out[o++] = c;
      else {
        out[o++] = 0x5c;
        if (c === 0x22 || c === 0x5c) out[o++] = c;
        else if (c === 0x08) out[o++] = 0x62; // b
        else if (c === 0x09) out[o++] = 0x74; // t
        else if (c === 0x0a) out[o++] = 0x6e; // n
        else if (c === 0x0c) out[o++] = 0x66; // f
        else if (c === 0x0d) out[o++] = 0x72; // r
        else {
          out[o++] = 0x75; // u00XX
          out[o++] = 0x30;
          out[o++] = 0x30;
          out[o++] = HEX.charCodeAt(c >> 4);
          out[o++] = HEX.charCodeAt(c & 15);
        }
      }
    }
  }
  if (!ascii && !isUtf8(b.subarray(p, end))) throw BAIL;
  out[o++] = 0x22;
  return units;
}

function writeHex(p: number, len: number): void {
  ensure(len * 2 + 2);
  out[o++] = 0x22;
  for (let i = p; i < p + len; i++) {
    const c = b[i]!;
    out[o++] = HEX.charCodeAt(c >> 4);
    out[o++] = HEX.charCodeAt(c & 15);
  }
  out[o++] = 0x22;
}

function fixed64(p: number): bigint {
  return (BigInt(b.readUInt32LE(p + 4)) << 32n) | BigInt(b.readUInt32LE(p));
}

/** An int64 varint as signed decimal text (what Long#toString gives); sets `at`. */
function int64Text(p: number, lim: number): string {
  let small = 0;
  let i = 0;
  for (; i < 4; i++) {
    if (p + i >= lim) throw BAIL;
    const c = b[p + i]!;
    small += (c & 0x7f) * 2 ** (7 * i);
    if (c < 0x80) {
      at = p + i + 1;
      return String(small);
    }
  }
  let v = 0n;
  for (i = 0; ; i++) {
    if (p + i >= lim || i >= 10) throw BAIL;
    const c = b[p + i]!;
    if (i === 9 && c > 1) throw BAIL;
    v |= BigInt(c & 0x7f) << BigInt(7 * i);
    if (c < 0x80) break;
  }
  at = p + i + 1;
  return BigInt.asIntN(64, v).toString();
}

/** Writes an AnyValue message [p, end) as the JSON string of its text (span-rows' valueText). */
function writeValue(p: number, end: number): void {
  let field = 0;
  let vp = 0;
  let ve = 0;
  let text = '';
  while (p < end) {
    const tag = varint32(p, end);
    p = at;
    const f = tag >>> 3;
    const wire = tag & 7;
    if (f >= 1 && f <= 7) {
      if (field !== 0) throw BAIL; // two values in one AnyValue: the general path's precedence
      field = f;
      if (f === 1 || f === 7) {
        if (wire !== 2) throw BAIL;
        ve = delimited(p, end);
        vp = at;
        p = ve;
      } else if (f === 2) {
        if (wire !== 0) throw BAIL;
        text = varint32(p, end) !== 0 ? 'true' : 'false';
        p = at;
      } else if (f === 3) {
        if (wire !== 0) throw BAIL;
        text = int64Text(p, end);
        p = at;
      } else if (f === 4) {
        if (wire !== 1 || p + 8 > end) throw BAIL;
        text = String(b.readDoubleLE(p));
        p += 8;
      } else throw BAIL; // arrays and key-value lists
    } else p = skip(wire, p, end);
  }
  // A value on the wire is a value, also the type's default (0, false, 0.0): the same text as
  // the general path and as OTLP/JSON. An AnyValue with nothing set has the text ''.
  if (field === 1 && ve > vp) {
    if (writeString(vp, ve) > limits.maxAttributeLength) throw BAIL;
    return;
  }
  if (field === 7) text = ve > vp ? b.toString('base64', vp, ve) : '';
  if (text.length > limits.maxAttributeLength) throw BAIL;
  writeAscii(`"${text}"`);
}

function sameBytes(p1: number, e1: number, p2: number, e2: number): boolean {
  if (e1 - p1 !== e2 - p2) return false;
  for (let i = 0; i < e1 - p1; i++) if (b[p1 + i] !== b[p2 + i]) return false;
  return true;
}

const PROTO_KEY = Buffer.from('__proto__');

/**
 * Writes the attributes in field `fieldNo` of the message [p, end) as a JSON object (span-rows'
 * `attributes`). Duplicate keys, integer-like keys and `__proto__` (which a JS object orders or
 * drops) leave the fast path.
 */
function writeAttributes(p: number, end: number, fieldNo: number): void {
  kvs.length = 0;
  while (p < end) {
    const tag = varint32(p, end);
    p = at;
    const wire = tag & 7;
    if (tag >>> 3 === fieldNo) {
      if (wire !== 2) throw BAIL;
      const e = delimited(p, end);
      kvs.push(at, e);
      p = e;
    } else p = skip(wire, p, end);
  }
  const n = kvs.length >> 1;
  if (n > limits.maxAttributes || n > 64) throw BAIL;
  ensure(2);
  out[o++] = 0x7b; // {
  // keys: [start, end) per KeyValue, checked before anything is written for them
  const keys: number[] = keyScratch;
  keys.length = 0;
  for (let i = 0; i < n; i++) {
    let q = kvs[2 * i]!;
    const e = kvs[2 * i + 1]!;
    let ks = 0;
    let ke = 0;
    let seen = false;
    let vs = -1;
    let vend = -1;
    while (q < e) {
      const tag = varint32(q, e);
      q = at;
      const f = tag >>> 3;
      const wire = tag & 7;
      if (f === 1 || f === 2) {
        if (wire !== 2) throw BAIL;
        const fe = delimited(q, e);
        if (f === 1) {
          if (seen) throw BAIL;
          seen = true;
          ks = at;
          ke = fe;
        } else {
          if (vs !== -1) throw BAIL;
          vs = at;
          vend = fe;
        }
        q = fe;
      } else q = skip(wire, q, e);
    }
    const c0 = ke > ks ? b[ks]! : -1;
    if (c0 >= 0x30 && c0 <= 0x39) throw BAIL; // maybe an array index: JS orders those first
    if (ke - ks === 9 && b.compare(PROTO_KEY, 0, 9, ks, ke) === 0) throw BAIL; // a JS object drops it
    for (let j = 0; j < keys.length; j += 2) if (sameBytes(ks, ke, keys[j]!, keys[j + 1]!)) throw BAIL;
    keys.push(ks, ke);
    if (i > 0) out[o++] = 0x2c;
    if (writeString(ks, ke) > limits.maxAttributeLength) throw BAIL;
    ensure(1);
    out[o++] = 0x3a; // :
    if (vs === -1) writeAscii('""');
    else writeValue(vs, vend);
  }
  ensure(1);
  out[o++] = 0x7d; // }
}
const keyScratch: number[] = [];

interface Span {
  trace: number; traceLen: number;
  span: number; spanLen: number;
  parent: number; parentLen: number;
  state: number; stateEnd: number;
  name: number; nameEnd: number;
  kind: number;
  start: number; end: number; // positions of the fixed64 values, -1 when absent
  status: number; statusEnd: number;
  seen: number; // bit per singular field number
}
const sp: Span = { trace: 0, traceLen: 0, span: 0, spanLen: 0, parent: 0, parentLen: 0, state: 0, stateEnd: 0, name: 0, nameEnd: 0, kind: 0, start: -1, end: -1, status: 0, statusEnd: 0, seen: 0 };

function once(bit: number): void {
  if (sp.seen & (1 << bit)) throw BAIL;
  sp.seen |= 1 << bit;
}

function allZero(p: number, len: number): boolean {
  for (let i = p; i < p + len; i++) if (b[i] !== 0) return false;
  return true;
}

/** Writes one span's row; `service`, `resource` and `scope` are those columns, already JSON. */
function writeSpan(p: number, end: number, service: Buffer, resource: Buffer, scope: Buffer): void {
  sp.trace = sp.span = sp.parent = sp.state = sp.name = sp.status = 0;
  sp.traceLen = sp.spanLen = sp.parentLen = sp.stateEnd = sp.nameEnd = sp.statusEnd = 0;
  sp.kind = 0;
  sp.start = sp.end = -1;
  sp.seen = 0;
  let events = 0;
  let links = 0;
  const s0 = p;
  while (p < end) {
    const tag = varint32(p, end);
    p = at;
    const f = tag >>> 3;
    const wire = tag & 7;
    switch (f) {
      case 1: case 2: case 3: case 4: case 5: case 15: {
        if (wire !== 2) throw BAIL;
        once(f);
        const e = delimited(p, end);
        const s = at;
        if (f === 1) { sp.trace = s; sp.traceLen = e - s; }
        else if (f === 2) { sp.span = s; sp.spanLen = e - s; }
        else if (f === 4) { sp.parent = s; sp.parentLen = e - s; }
        else if (f === 3) { sp.state = s; sp.stateEnd = e; }
        else if (f === 5) { sp.name = s; sp.nameEnd = e; }
        else { sp.status = s; sp.statusEnd = e; }
        p = e;
        break;
      }
      case 6:
        if (wire !== 0) throw BAIL;
        once(6);
        sp.kind = varint32(p, end);
        p = at;
        break;
      case 7: case 8:
        if (wire !== 1 || p + 8 > end) throw BAIL;
        once(f);
        if (f === 7) sp.start = p;
        else sp.end = p;
        p += 8;
        break;
      case 9: case 11: case 13: {
        if (wire !== 2) throw BAIL;
        if (f === 11) events++;
        else if (f === 13) links++;
        p = delimited(p, end);
        break;
      }
      default:
        p = skip(wire, p, end);
    }
  }
  // the general path's checks, in its order; a span it would reject is its business
  if (sp.traceLen !== 16 || allZero(sp.trace, 16)) throw BAIL;
  if (sp.spanLen !== 8 || allZero(sp.span, 8)) throw BAIL;
  if (sp.parentLen !== 0 && sp.parentLen !== 8) throw BAIL;
  const start = sp.start === -1 ? 0n : fixed64(sp.start);
  const stop = sp.end === -1 ? 0n : fixed64(sp.end);
  if (start > MAX_NANOS || stop > MAX_NANOS) throw BAIL;
  const kind = SPAN_KINDS[sp.kind];
  if (kind === undefined) throw BAIL;
  let status = 'Unset';
  let msgStart = 0;
  let msgEnd = 0;
  if (sp.statusEnd > 0) {
    let q = sp.status;
    let code = 0;
    let seen = 0;
    while (q < sp.statusEnd) {
      const tag = varint32(q, sp.statusEnd);
      q = at;
      const f = tag >>> 3;
      const wire = tag & 7;
      if (f === 2 || f === 3) {
        if (seen & (1 << f)) throw BAIL;
        seen |= 1 << f;
        if (f === 2) {
          if (wire !== 2) throw BAIL;
          msgEnd = delimited(q, sp.statusEnd);
          msgStart = at;
          q = msgEnd;
        } else {
          if (wire !== 0) throw BAIL;
          code = varint32(q, sp.statusEnd);
          q = at;
        }
      } else q = skip(wire, q, sp.statusEnd);
    }
    status = STATUS_CODES[code]!;
    if (status === undefined) throw BAIL;
  }

  ensure(64);
  out[o++] = 0x5b; // [
  writeAscii(`"${nanosToDateTime64(start)}",`);
  writeHex(sp.trace, 16);
  out[o++] = 0x2c;
  writeHex(sp.span, 8);
  out[o++] = 0x2c;
  if (sp.parentLen === 8) writeHex(sp.parent, 8);
  else writeAscii('""');
  writeAscii(',');
  writeString(sp.state, sp.stateEnd);
  writeAscii(',');
  if (writeString(sp.name, sp.nameEnd) > limits.maxAttributeLength) throw BAIL;
  writeAscii(`,"${kind}",`);
  ensure(service.length + resource.length + scope.length + 2);
  o += service.copy(out, o);
  out[o++] = 0x2c;
  o += resource.copy(out, o);
  out[o++] = 0x2c;
  o += scope.copy(out, o); // "name","version",
  writeAttributes(s0, end, 9);
  writeAscii(`,"${(stop > start ? stop - start : 0n).toString()}","${status}",`);
  writeString(msgStart, msgEnd);
  writeAscii(',');
  writeEventsAndLinks(s0, end, events, links);
  ensure(2);
  out[o++] = 0x5d; // ]
  out[o++] = 0x0a;
}

/** The Events.* and Links.* columns (Nested, flattened: one array per field). */
function writeEventsAndLinks(p: number, end: number, events: number, links: number): void {
  if (events === 0 && links === 0) {
    writeAscii('[],[],[],[],[],[],[]');
    return;
  }
  // events: [start, end) of each, in order
  ranges.length = 0;
  for (let q = p; q < end; ) {
    const tag = varint32(q, end);
    q = at;
    const wire = tag & 7;
    if (tag >>> 3 === 11) {
      const e = delimited(q, end);
      ranges.push(at, e);
      q = e;
    } else q = skip(wire, q, end);
  }
  // times (checked: the general path rejects the span for a bad one), names, attributes
  const times: string[] = [];
  const names: number[] = [];
  for (let i = 0; i < ranges.length; i += 2) {
    let q = ranges[i]!;
    const e = ranges[i + 1]!;
    let t = 0n;
    let seen = 0;
    let ns = 0;
    let ne = 0;
    while (q < e) {
      const tag = varint32(q, e);
      q = at;
      const f = tag >>> 3;
      const wire = tag & 7;
      if (f === 1) {
        if (wire !== 1 || q + 8 > e || seen & 2) throw BAIL;
        seen |= 2;
        t = fixed64(q);
        q += 8;
      } else if (f === 2) {
        if (wire !== 2 || seen & 4) throw BAIL;
        seen |= 4;
        ne = delimited(q, e);
        ns = at;
        q = ne;
      } else if (f === 3 && wire !== 2) throw BAIL;
      else q = skip(wire, q, e);
    }
    if (t > MAX_NANOS) throw BAIL;
    times.push(nanosToDateTime64(t));
    names.push(ns, ne);
  }
  writeAscii(times.length ? `["${times.join('","')}"],[` : '[],[');
  for (let i = 0; i < names.length; i += 2) {
    if (i > 0) writeAscii(',');
    writeString(names[i]!, names[i + 1]!);
  }
  writeAscii('],[');
  const evs = ranges.slice();
  for (let i = 0; i < evs.length; i += 2) {
    if (i > 0) writeAscii(',');
    writeAttributes(evs[i]!, evs[i + 1]!, 3);
  }
  writeAscii('],');
  // links
  ranges.length = 0;
  for (let q = p; q < end; ) {
    const tag = varint32(q, end);
    q = at;
    const wire = tag & 7;
    if (tag >>> 3 === 13) {
      const e = delimited(q, end);
      ranges.push(at, e);
      q = e;
    } else q = skip(wire, q, end);
  }
  const lk: number[] = []; // per link: trace start, trace len, span start, span len, state start, state end
  for (let i = 0; i < ranges.length; i += 2) {
    let q = ranges[i]!;
    const e = ranges[i + 1]!;
    let seen = 0;
    let ts = 0, tl = 0, ss = 0, sl = 0, st = 0, ste = 0;
    while (q < e) {
      const tag = varint32(q, e);
      q = at;
      const f = tag >>> 3;
      const wire = tag & 7;
      if (f >= 1 && f <= 3) {
        if (wire !== 2 || seen & (1 << f)) throw BAIL;
        seen |= 1 << f;
        const fe = delimited(q, e);
        if (f === 1) { ts = at; tl = fe - at; }
        else if (f === 2) { ss = at; sl = fe - at; }
        else { st = at; ste = fe; }
        q = fe;
      } else if (f === 4 && wire !== 2) throw BAIL;
      else q = skip(wire, q, e);
    }
    lk.push(ts, tl, ss, sl, st, ste);
  }
  writeAscii('[');
  for (let i = 0; i < lk.length; i += 6) {
    if (i > 0) writeAscii(',');
    if (lk[i + 1] === 16) writeHex(lk[i]!, 16);
    else writeAscii('""'); // absent or malformed link ids are stored empty
  }
  writeAscii('],[');
  for (let i = 0; i < lk.length; i += 6) {
    if (i > 0) writeAscii(',');
    if (lk[i + 3] === 8) writeHex(lk[i + 2]!, 8);
    else writeAscii('""');
  }
  writeAscii('],[');
  for (let i = 0; i < lk.length; i += 6) {
    if (i > 0) writeAscii(',');
    writeString(lk[i + 4]!, lk[i + 5]!);
  }
  writeAscii('],[');
  const lks = ranges.slice();
  for (let i = 0; i < lks.length; i += 2) {
    if (i > 0) writeAscii(',');
    writeAttributes(lks[i]!, lks[i + 1]!, 4);
  }
  writeAscii(']');
}

/** Renders what writeX put at [from, o) as a Buffer of its own and rewinds `o`. */
function take(from: number): Buffer {
  const r = Buffer.from(out.subarray(from, o));
  o = from;
  return r;
}

/** The first (only) singular message field `fieldNo` of [p, end): [start, end] or null; twice leaves. */
function findOnce(p: number, end: number, fieldNo: number): [number, number] | null {
  let found: [number, number] | null = null;
  while (p < end) {
    const tag = varint32(p, end);
    p = at;
    const wire = tag & 7;
    if (tag >>> 3 === fieldNo) {
      if (wire !== 2 || found) throw BAIL;
      const e = delimited(p, end);
      found = [at, e];
      p = e;
    } else p = skip(wire, p, end);
  }
  return found;
}

function convert(body: Buffer): ProtoRows {
  b = body;
  o = 0;
  let rows = 0;
  const end = body.length;
  for (let p = 0; p < end; ) {
    const tag = varint32(p, end);
    p = at;
    const wire = tag & 7;
    if (tag >>> 3 !== 1) {
      p = skip(wire, p, end);
      continue;
    }
    if (wire !== 2) throw BAIL;
    const rsEnd = delimited(p, end);
    const rs = at;
    p = rsEnd;
    // resource: its attribute object and service.name, once for all its spans
    const res = findOnce(rs, rsEnd, 1);
    let resource: Buffer;
    let service: Buffer;
    const mark = o;
    if (res) {
      writeAttributes(res[0], res[1], 1);
      resource = take(mark);
      service = serviceName(res[0], res[1]);
    } else {
      resource = Buffer.from('{}');
      service = Buffer.from('""');
    }
    for (let q = rs; q < rsEnd; ) {
      const t2 = varint32(q, rsEnd);
      q = at;
      const w2 = t2 & 7;
      if (t2 >>> 3 !== 2) {
        q = skip(w2, q, rsEnd);
        continue;
      }
      if (w2 !== 2) throw BAIL;
      const ssEnd = delimited(q, rsEnd);
      const ss = at;
      q = ssEnd;
      const sc = findOnce(ss, ssEnd, 1);
      const m2 = o;
      if (sc) {
        const nv = [0, 0, 0, 0];
        let seen = 0;
        for (let r = sc[0]; r < sc[1]; ) {
          const t3 = varint32(r, sc[1]);
          r = at;
          const f = t3 >>> 3;
          const w3 = t3 & 7;
          if (f === 1 || f === 2) {
            if (w3 !== 2 || seen & (1 << f)) throw BAIL;
            seen |= 1 << f;
            const fe = delimited(r, sc[1]);
            nv[2 * (f - 1)] = at;
            nv[2 * (f - 1) + 1] = fe;
            r = fe;
          } else if (f === 3 && w3 !== 2) throw BAIL;
          else r = skip(w3, r, sc[1]);
        }
        writeString(nv[0]!, nv[1]!);
        writeAscii(',');
        writeString(nv[2]!, nv[3]!);
        writeAscii(',');
      } else writeAscii('"","",');
      const scope = take(m2);
      for (let r = ss; r < ssEnd; ) {
        const t3 = varint32(r, ssEnd);
        r = at;
        const w3 = t3 & 7;
        if (t3 >>> 3 !== 2) {
          r = skip(w3, r, ssEnd);
          continue;
        }
        if (w3 !== 2) throw BAIL;
        const spEnd = delimited(r, ssEnd);
        if (++rows > limits.maxSpansPerRequest) throw BAIL;
        writeSpan(at, spEnd, service, resource, scope);
        r = spEnd;
      }
    }
  }
  return { payload: Buffer.from(out.subarray(0, o)), rows };
}

/** The JSON string of the resource's service.name value ('""' when absent). */
function serviceName(p: number, end: number): Buffer {
  let found: Buffer | null = null;
  while (p < end) {
    const tag = varint32(p, end);
    p = at;
    const wire = tag & 7;
    if (tag >>> 3 !== 1) {
      p = skip(wire, p, end);
      continue;
    }
    const e = delimited(p, end);
    let q = at;
    let ks = 0, ke = 0, vs = -1, ve = -1;
    while (q < e) {
      const t = varint32(q, e);
      q = at;
      const fe = (t & 7) === 2 ? delimited(q, e) : skip(t & 7, q, e);
      if (t >>> 3 === 1) { ks = at; ke = fe; }
      else if (t >>> 3 === 2) { vs = at; ve = fe; }
      q = fe;
    }
    if (ke - ks === 12 && b.toString('latin1', ks, ke) === 'service.name') {
      const m = o;
      if (vs === -1) writeAscii('""');
      else writeValue(vs, ve);
      found = take(m);
    }
    p = e;
  }
  return found ?? Buffer.from('""');
}

/**
 * OTLP protobuf to rows, or null when the request needs the general path (see the header). Never
 * throws for malformed input.
 */
export function protoToRows(body: Uint8Array, lim: IngestLimits): ProtoRows | null {
  limits = lim;
  try {
    return convert(Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength));
  } catch (err) {
    if (err === BAIL || err instanceof RangeError) return null;
    throw err;
  } finally {
    b = EMPTY;
    if (out.length > OUT_KEEP) out = Buffer.allocUnsafe(1 << 20);
  }
}
const EMPTY = Buffer.alloc(0);
