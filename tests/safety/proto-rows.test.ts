// The protobuf fast path (ingest/otlp-proto-rows.ts) against the general path (protobufjs decode +
// toSpanRows + serializeRows): whenever the fast path answers, its rows are byte-for-byte the
// general path's, and the general path accepted every span; otherwise it declines (null) and the
// general path answers as always. Checked on generated requests with odd values everywhere and on
// byte-level mutations of them.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../collector/src/config.js';
import { protoToRows } from '../../collector/src/ingest/otlp-proto-rows.js';
import { decodeTraceRequest, encodeTraceRequest } from '../../collector/src/ingest/otlp-proto.js';
import { serializeRows, toSpanRows } from '../../collector/src/ingest/span-rows.js';
import { makeRequests } from '../../bench/spans.js';
import { otlpJsonObject } from './fuzz-cases.js';

const limits = loadConfig({}, {}).limits;

function reference(body: Uint8Array): { payload: Buffer; rows: number; rejected: number } | { error: string } {
  try {
    const r = toSpanRows(decodeTraceRequest(body), limits);
    return { payload: r.rows.length ? serializeRows(r.rows) : Buffer.alloc(0), rows: r.rows.length, rejected: r.rejectedSpans };
  } catch (err) {
    return { error: String(err) };
  }
}

let handled = 0;
function check(body: Uint8Array): void {
  const fast = protoToRows(body, limits);
  if (fast === null) return;
  handled++;
  const ref = reference(body);
  expect('error' in ref ? ref.error : '').toBe('');
  if ('error' in ref) return;
  expect(ref.rejected).toBe(0);
  expect(fast.rows).toBe(ref.rows);
  expect(fast.payload.toString('utf8')).toBe(ref.payload.toString('utf8'));
  expect(fast.payload.equals(ref.payload)).toBe(true);
}

const toProto = (o: object): Uint8Array => {
  const toBytes = (v: unknown) => (typeof v === 'string' && /^([0-9a-f]{2})*$/.test(v) ? Buffer.from(v, 'hex') : undefined);
  const fixed = JSON.parse(JSON.stringify(o), (k, v) => {
    if (k === 'traceId' || k === 'spanId' || k === 'parentSpanId') return toBytes(v);
    if ((k === 'kind' || k === 'code') && typeof v === 'string') return 0;
    if (k === 'intValue' && typeof v === 'string' && !/^-?\d{1,18}$/.test(v)) return 0;
    if ((k === 'startTimeUnixNano' || k === 'endTimeUnixNano' || k === 'timeUnixNano') && typeof v === 'string' && !/^\d{1,19}$/.test(v)) return '0';
    return v;
  }) as object;
  try {
    return encodeTraceRequest(fixed);
  } catch {
    return encodeTraceRequest({});
  }
};

describe('protobuf fast path', () => {
  it('handles the benchmark spans, identically', () => {
    for (const body of makeRequests(3000, 500)) {
      expect(protoToRows(body, limits)).not.toBeNull();
      check(body);
    }
  });

  it('answers like the general path on generated requests, or declines', () => {
    handled = 0;
    fc.assert(fc.property(otlpJsonObject, (o) => check(toProto(o))), { numRuns: 3000, seed: 42 });
    expect(handled).toBeGreaterThan(100); // it does take plenty of them
  });

  it('plain attribute values of every kind, escapes, non-ASCII, events and links', () => {
    const id = (n: number, len: number) => Buffer.from(n.toString(16).padStart(len * 2, '0'), 'hex');
    const body = encodeTraceRequest({
      resourceSpans: [{
        resource: { attributes: [{ key: 'service.name', value: { stringValue: 'svc "q" \\ é 😀' } }, { key: 'n', value: { intValue: -5 } }] },
        scopeSpans: [{
          scope: { name: 'sc\tope', version: '1\n' },
          spans: [{
            traceId: id(1, 16), spanId: id(2, 8), name: 'na\u0001me', kind: 3, startTimeUnixNano: '1700000000123456789', endTimeUnixNano: '1700000001000000000',
            attributes: [
              { key: 's', value: { stringValue: '{"a":[1,2],"b":"\\u00e9"}' } }, { key: 'i', value: { intValue: '9007199254740993' } },
              { key: 'neg', value: { intValue: '-9223372036854775808' } }, { key: 'b', value: { boolValue: true } }, { key: 'f', value: { boolValue: false } },
              { key: 'd', value: { doubleValue: 1.5e300 } }, { key: 'z', value: { doubleValue: 0 } }, { key: 'by', value: { bytesValue: Buffer.from('hi') } },
              { key: 'e', value: {} }, { key: 'none' }, { key: '', value: { stringValue: 'empty key' } }, { key: 'ünï', value: { stringValue: '\u2028' } },
            ],
            events: [{ timeUnixNano: '1700000000500000000', name: 'exception', attributes: [{ key: 'exception.type', value: { stringValue: 'E' } }] }, { name: 'no time' }],
            links: [{ traceId: id(3, 16), spanId: id(4, 8), traceState: 'k=v', attributes: [{ key: 'l', value: { intValue: 1 } }] }, { traceId: Buffer.from('abc'), spanId: id(0, 8) }],
            status: { code: 2, message: 'bad "thing"' },
          }],
        }],
      }],
    });
    expect(protoToRows(body, limits)).not.toBeNull();
    check(body);
  });

  it('declines what only the general path answers: rejected spans, nested values, duplicate keys', () => {
    const span = (over: object) => encodeTraceRequest({ resourceSpans: [{ scopeSpans: [{ spans: [{ traceId: Buffer.alloc(16, 1), spanId: Buffer.alloc(8, 2), ...over }] }] }] });
    expect(protoToRows(span({ spanId: Buffer.alloc(8) }), limits)).toBeNull();
    expect(protoToRows(span({ kind: 9 }), limits)).toBeNull();
    expect(protoToRows(span({ attributes: [{ key: 'a', value: { arrayValue: { values: [{ stringValue: 'x' }] } } }] }), limits)).toBeNull();
    expect(protoToRows(span({ attributes: [{ key: 'a', value: { stringValue: 'x' } }, { key: 'a', value: { stringValue: 'y' } }] }), limits)).toBeNull();
    expect(protoToRows(span({ attributes: [{ key: '7', value: { stringValue: 'x' } }] }), limits)).toBeNull();
    expect(protoToRows(span({ name: 'x'.repeat(limits.maxAttributeLength + 1) }), limits)).toBeNull();
    expect(protoToRows(Buffer.from([0x0a, 0x05, 0x01]), limits)).toBeNull();
    expect(protoToRows(span({}), limits)).not.toBeNull();
  });

  it('answers like the general path on mutated bytes, or declines', () => {
    const mutated = fc
      .tuple(otlpJsonObject.map(toProto), fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 }), fc.constantFrom('flip', 'set', 'insert', 'delete', 'truncate')), { minLength: 1, maxLength: 4 }))
      .map(([b, ops]) => {
        let buf = Buffer.from(b);
        for (const [at, byte, op] of ops) {
          const i = buf.length === 0 ? 0 : at % buf.length;
          if (op === 'flip' && buf.length) buf[i] = buf[i]! ^ (1 << (byte % 8));
          else if (op === 'set' && buf.length) buf[i] = byte;
          else if (op === 'insert') buf = Buffer.concat([buf.subarray(0, i), Buffer.from([byte]), buf.subarray(i)]);
          else if (op === 'delete') buf = Buffer.concat([buf.subarray(0, i), buf.subarray(i + 1)]);
          else buf = buf.subarray(0, i);
        }
        return new Uint8Array(buf);
      });
    fc.assert(fc.property(mutated, (body) => check(body)), { numRuns: 3000, seed: 7 });
  });
});
