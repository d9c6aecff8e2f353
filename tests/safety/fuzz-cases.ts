// Fuzz inputs for POST /v1/traces (shared by tests/safety/fuzz.test.ts and bench/fuzz.ts):
// random bytes, mutated valid protobuf, random and mutated OTLP-shaped JSON, gzip of those.
// The property: every answer is 2xx or 4xx, never a crash, never 5xx.
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { encodeTraceRequest } from '../../collector/src/ingest/otlp-proto.js';

export interface FuzzCase {
  kind: string;
  contentType: string;
  gzip: boolean;
  body: Uint8Array;
}

const hex = (bytes: number) => fc.uint8Array({ minLength: bytes, maxLength: bytes }).map((b) => Buffer.from(b).toString('hex'));
const oddString = fc.oneof(
  { arbitrary: fc.string({ maxLength: 40 }), weight: 6 },
  { arbitrary: fc.string({ unit: 'binary', maxLength: 40 }), weight: 1 },
  { arbitrary: fc.constantFrom('', '\u0000', '\\', '"', '\ud800', 'x'.repeat(300), '\\ud800'), weight: 1 },
);
const u64Text = fc.oneof(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String), fc.constantFrom('0', '18446744073709551615', '18446744073709551616', '-1', '1e3', ''));
/** Mostly valid (so that spans reach the store), sometimes odd. */
const mostly = <T, U>(good: fc.Arbitrary<T>, odd: fc.Arbitrary<U>) => fc.oneof({ arbitrary: good, weight: 8 }, { arbitrary: odd, weight: 1 });
const nanos = fc.oneof(
  { arbitrary: fc.bigInt({ min: 1_600_000_000_000_000_000n, max: 1_900_000_000_000_000_000n }).map(String), weight: 8 },
  { arbitrary: u64Text, weight: 1 },
  { arbitrary: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String), weight: 1 },
);

const anyValue: fc.Arbitrary<object> = fc.letrec<{ v: object }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({ stringValue: oddString }),
    fc.record({ intValue: fc.oneof(u64Text, fc.integer()) }),
    fc.record({ doubleValue: fc.oneof(fc.double(), fc.constantFrom('NaN', 'Infinity', '-Infinity')) }),
    fc.record({ boolValue: fc.boolean() }),
    fc.record({ bytesValue: fc.base64String({ maxLength: 24 }) }),
    fc.record({ arrayValue: fc.record({ values: fc.array(tie('v'), { maxLength: 3 }) }) }),
    fc.record({ kvlistValue: fc.record({ values: fc.array(fc.record({ key: oddString, value: tie('v') }), { maxLength: 3 }) }) }),
    fc.constant({}),
  ),
})).v;

const keyValues = fc.array(fc.record({ key: oddString, value: anyValue }, { requiredKeys: [] }), { maxLength: 6 });

/** An OTLP/JSON-shaped request: mostly plausible, with odd values everywhere. */
export const otlpJsonObject = fc.record(
  {
    resourceSpans: fc.array(
      fc.record(
        {
          resource: fc.record({ attributes: keyValues }, { requiredKeys: [] }),
          scopeSpans: fc.array(
            fc.record(
              {
                scope: fc.record({ name: oddString, version: oddString }, { requiredKeys: [] }),
                spans: fc.array(
                  fc.record(
                    {
                      traceId: mostly(hex(16), oddString),
                      spanId: mostly(hex(8), oddString),
                      parentSpanId: fc.oneof(hex(8), fc.constant('')),
                      traceState: oddString,
                      name: oddString,
                      kind: mostly(fc.integer({ min: 0, max: 5 }), fc.oneof(fc.integer({ min: -1, max: 7 }), fc.constantFrom('SPAN_KIND_SERVER', 'bogus'))),
                      startTimeUnixNano: mostly(nanos, fc.nat()),
                      endTimeUnixNano: mostly(nanos, fc.nat()),
                      attributes: keyValues,
                      events: fc.array(fc.record({ timeUnixNano: nanos, name: oddString, attributes: keyValues }, { requiredKeys: [] }), { maxLength: 3 }),
                      links: fc.array(fc.record({ traceId: hex(16), spanId: hex(8), traceState: oddString, attributes: keyValues }, { requiredKeys: [] }), { maxLength: 2 }),
                      status: fc.record({ code: mostly(fc.integer({ min: 0, max: 2 }), fc.oneof(fc.integer({ min: -1, max: 3 }), fc.constantFrom('STATUS_CODE_ERROR', 'x'))), message: oddString }, { requiredKeys: [] }),
                    },
                    { requiredKeys: ['traceId', 'spanId'] },
                  ),
                  { minLength: 1, maxLength: 8 },
                ),
              },
              { requiredKeys: ['spans'] },
            ),
            { minLength: 1, maxLength: 2 },
          ),
        },
        { requiredKeys: ['scopeSpans'] },
      ),
      { minLength: 1, maxLength: 2 },
    ),
  },
  { requiredKeys: [] },
);

/** The same shape as protobuf (hex ids to bytes; values the encoder refuses are dropped). */
const protoBody = otlpJsonObject.map((o) => {
  const toBytes = (v: unknown) => (typeof v === 'string' && /^([0-9a-f]{2})*$/.test(v) ? Buffer.from(v, 'hex') : undefined);
  const clone = JSON.parse(JSON.stringify(o), (k, v) => {
    if (k === 'traceId' || k === 'spanId' || k === 'parentSpanId') return toBytes(v);
    return v;
  }) as object;
  try {
    return encodeTraceRequest(clone);
  } catch {
    // protobufjs refuses what protobuf cannot carry (unknown enum names, non-integer intValue): fix those
    const fixed = JSON.parse(JSON.stringify(clone), (k, v) => {
      if ((k === 'kind' || k === 'code') && typeof v === 'string') return 0;
      if (k === 'intValue' && typeof v === 'string' && !/^-?\d{1,18}$/.test(v)) return 0;
      if ((k === 'startTimeUnixNano' || k === 'endTimeUnixNano' || k === 'timeUnixNano') && typeof v === 'string' && !/^\d{1,19}$/.test(v)) return '0';
      if (k === 'traceId' || k === 'spanId' || k === 'parentSpanId') return v && typeof v === 'object' && v.type === 'Buffer' ? Buffer.from(v.data as number[]) : undefined;
      return v;
    }) as object;
    try {
      return encodeTraceRequest(fixed);
    } catch {
      return encodeTraceRequest({});
    }
  }
});

/** Byte-level mutations of a valid body: flips, inserts, deletes, truncation, splices. */
function mutate(base: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  return fc
    .tuple(base, fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 }), fc.constantFrom('flip', 'set', 'insert', 'delete', 'truncate', 'dup')), { minLength: 1, maxLength: 6 }))
    .map(([b, ops]) => {
      let buf = Buffer.from(b);
      for (const [at, byte, op] of ops) {
        const i = buf.length === 0 ? 0 : at % buf.length;
        if (op === 'flip' && buf.length) buf[i] = buf[i]! ^ (1 << (byte % 8));
        else if (op === 'set' && buf.length) buf[i] = byte;
        else if (op === 'insert') buf = Buffer.concat([buf.subarray(0, i), Buffer.from([byte]), buf.subarray(i)]);
        else if (op === 'delete') buf = Buffer.concat([buf.subarray(0, i), buf.subarray(i + 1)]);
        else if (op === 'truncate') buf = buf.subarray(0, i);
        else if (op === 'dup') buf = Buffer.concat([buf.subarray(0, i), buf.subarray(i, i + 1 + (byte % 16)), buf.subarray(i)]);
      }
      return new Uint8Array(buf);
    });
}

const jsonText = otlpJsonObject.map((o) => new TextEncoder().encode(JSON.stringify(o)));
const PROTO = 'application/x-protobuf';
const JSON_TYPE = 'application/json';

export const fuzzCase: fc.Arbitrary<FuzzCase> = fc
  .tuple(
    fc.oneof(
      fc.uint8Array({ maxLength: 2048 }).map((body) => ({ kind: 'random-bytes-proto', contentType: PROTO, body })),
      fc.uint8Array({ maxLength: 512 }).map((body) => ({ kind: 'random-bytes-json', contentType: JSON_TYPE, body })),
      protoBody.map((body) => ({ kind: 'valid-proto', contentType: PROTO, body })),
      mutate(protoBody).map((body) => ({ kind: 'mutated-proto', contentType: PROTO, body })),
      jsonText.map((body) => ({ kind: 'otlp-json', contentType: JSON_TYPE, body })),
      mutate(jsonText).map((body) => ({ kind: 'mutated-json', contentType: JSON_TYPE, body })),
      fc.json({ maxDepth: 6 }).map((s) => ({ kind: 'any-json', contentType: JSON_TYPE, body: new TextEncoder().encode(s) })),
    ),
    fc.nat({ max: 9 }),
  )
  .map(([c, g]) => {
    const gzip = g === 0;
    return { ...c, gzip, body: gzip ? new Uint8Array(gzipSync(c.body)) : c.body };
  });

export interface Answer {
  status: number;
  text: string;
}

/** Sends one case to the app (in process, no socket) and returns its status. */
export async function send(app: { request: (path: string, init: RequestInit) => Response | Promise<Response> }, c: FuzzCase): Promise<Answer> {
  const headers: Record<string, string> = { 'content-type': c.contentType };
  if (c.gzip) headers['content-encoding'] = 'gzip';
  const res = await app.request('/v1/traces', { method: 'POST', headers, body: c.body });
  const text = res.status >= 500 ? await res.text() : (await res.arrayBuffer(), '');
  return { status: res.status, text };
}

export const acceptable = (status: number) => (status >= 200 && status < 300) || (status >= 400 && status < 500);
