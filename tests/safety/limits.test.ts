// (4) Limits and backpressure: every bound answers a clear 4xx (or 429 + Retry-After) instead of
// costing memory, and the collector keeps serving. Real collector on loopback, small limits.
import { request } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCollector, type Collector } from '../../collector/src/collector.js';
import { loadConfig } from '../../collector/src/config.js';
import { decodeRpcStatus, decodeTraceResponse, encodeTraceRequest } from '../../collector/src/ingest/otlp-proto.js';
import { prescanJson, prescanProtobuf } from '../../collector/src/ingest/prescan.js';
import { TRUNCATED } from '../../collector/src/ingest/span-rows.js';
import { queryRows } from '../../collector/src/store/client.js';
import { valueHash } from '../../instrumentation/src/canonical.js';
import { postProto, range, toolSpansRequest } from './helpers.js';

// now, fixed for the process (a re-sent span is the same span): spans older than the retention are refused
const T0 = BigInt(Date.now()) * 1_000_000n;

let dataDir: string;
let collector: Collector;
let url: string;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'lw-safety-limits-'));
  const config = loadConfig(
    {
      port: 0, dataDir, logLevel: 'silent', detect: { enabled: false },
      limits: {
        maxBodyBytes: 64 * 1024, maxDecompressedBytes: 256 * 1024, maxSpansPerRequest: 100, maxAttributes: 8,
        maxAttributeLength: 100, maxValueDepth: 4, maxObjectsPerRequest: 5000, maxConcurrentRequests: 3, maxInFlightBytes: 100 * 1024,
      },
    },
    {},
  );
  collector = await createCollector(config);
  url = await collector.listen();
});
afterAll(async () => {
  await collector.close();
  rmSync(dataDir, { recursive: true, force: true });
});

const TRACE = Buffer.from('0af7651916cd43dd8448eb211c80319c', 'hex');
let nextSpan = 1;
function span(extra: object = {}) {
  const id = Buffer.alloc(8);
  id.writeUInt32BE(0x30, 0);
  id.writeUInt32BE(nextSpan++, 4);
  return { traceId: TRACE, spanId: id, name: 'execute_tool x', startTimeUnixNano: String(T0), endTimeUnixNano: String(T0 + 100_000_000n), ...extra };
}
function proto(spans: object[]): Uint8Array {
  return encodeTraceRequest({ resourceSpans: [{ scopeSpans: [{ spans }] }] });
}
async function expectStatus(res: Response, status: number, message: RegExp) {
  expect(res.status).toBe(status);
  const body = new Uint8Array(await res.arrayBuffer());
  const text = (res.headers.get('content-type') ?? '').includes('protobuf') ? decodeRpcStatus(body).message ?? '' : new TextDecoder().decode(body);
  expect(text).toMatch(message);
}
const attr = (key: string, value: object) => ({ key, value });

describe('request limits', () => {
  it('413 for a body over maxBodyBytes', async () => {
    await expectStatus(await postProto(url, new Uint8Array(70 * 1024)), 413, /request body larger than 65536 bytes/);
  });

  it('413 for a gzip bomb (decompressed size bounded while inflating)', async () => {
    const bomb = gzipSync(Buffer.alloc(50 * 1024 * 1024)); // ~50 KB that inflates to 50 MiB
    expect(bomb.length).toBeLessThan(64 * 1024);
    await expectStatus(await postProto(url, bomb, { 'content-encoding': 'gzip' }), 413, /decompressed body larger than 262144 bytes/);
  });

  it('400 for bad gzip and 415 for unknown encodings', async () => {
    await expectStatus(await postProto(url, Buffer.from('not gzip'), { 'content-encoding': 'gzip' }), 400, /not valid gzip/);
    await expectStatus(await postProto(url, proto([span()]), { 'content-encoding': 'br' }), 415, /unsupported content encoding/);
  });

  it('a span with attributes over a limit (too many on it, an event or a link; a key too long; a value too deep) is rejected alone: partial success, the request\'s other spans stored', async () => {
    const many = Array.from({ length: 9 }, (_, i) => attr(`k${i}`, { stringValue: 'v' }));
    let deep: object = { stringValue: 'leaf' };
    for (let i = 0; i < 6; i++) deep = { arrayValue: { values: [deep] } };
    const cases: [object, RegExp][] = [
      [span({ attributes: many }), /^span 'execute_tool x' has 9 attributes, more than the limit of 8$/],
      [span({ events: [{ name: 'e', timeUnixNano: String(T0), attributes: many }] }), /^event 'e' of span 'execute_tool x' has 9 attributes, more than the limit of 8$/],
      [span({ links: [{ traceId: TRACE, spanId: Buffer.alloc(8, 1), attributes: many }] }), /^a link of span 'execute_tool x' has 9 attributes, more than the limit of 8$/],
      [span({ attributes: [attr('k'.repeat(101), { stringValue: 'v' })] }), /^attribute key on span 'execute_tool x' is longer than 100 characters$/],
      [span({ attributes: [attr('deep', deep)] }), /^span 'execute_tool x': attribute value nested deeper than 4 levels$/],
      [span({ events: [{ name: 'e', timeUnixNano: String(T0), attributes: [attr('deep', deep)] }] }), /^event 'e' of span 'execute_tool x': attribute value nested deeper than 4 levels$/],
      // a long name is named as stored, cut (here to this collector's limit of 100), and at most its first 100 characters
      [span({ name: 'n'.repeat(150), attributes: many }), /^span 'n{1,99}…(\[truncated\])?' has 9 attributes/],
      // cut at a whole character: an emoji is never split into half a surrogate pair
      [span({ name: 'a' + '\u{1F600}'.repeat(40), events: [{ name: 'b' + '\u{1F600}'.repeat(60), timeUnixNano: String(T0), attributes: many }] }),
        new RegExp(`^event 'b${'\u{1F600}'.repeat(49)}…' of span 'a${'\u{1F600}'.repeat(40)}[^']*' has 9 attributes`, 'u')],
    ];
    for (const [bad, message] of cases) {
      const good = span();
      const res = await postProto(url, proto([bad, good]));
      expect(res.status).toBe(200);
      const answer = decodeTraceResponse(new Uint8Array(await res.arrayBuffer())).partialSuccess;
      expect(Number(answer?.rejectedSpans)).toBe(1);
      expect(answer?.errorMessage).toMatch(message);
    }
  });

  it('400 for too many resource attributes, too many spans', async () => {
    await expectStatus(await postProto(url, proto(Array.from({ length: 101 }, () => span()))), 400, /more than 100 spans/);
    const res = await fetch(`${url}/v1/traces`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ resourceSpans: [{ resource: { attributes: Array.from({ length: 9 }, (_, i) => ({ key: `r${i}`, value: { stringValue: 'v' } })) }, scopeSpans: [] }] }),
    });
    await expectStatus(res, 400, /resource has 9 attributes/);
  });

  it('cuts a value or span name over the length limit and stores the span (the request\'s other spans are not refused with it)', async () => {
    const long = span({ name: `execute_tool ${'n'.repeat(200)}`, attributes: [attr('k', { stringValue: 'x'.repeat(101) }), attr('gen_ai.tool.name', { stringValue: 't'.repeat(150) })] });
    const other = span();
    const res = await postProto(url, proto([long, other]));
    expect(res.status).toBe(200);
    await collector.flush();
    const id = (b: Buffer) => b.toString('hex');
    const rows = await queryRows<{ SpanId: string; SpanName: string; k: string }>(collector.store.client,
      "SELECT SpanId, SpanName, SpanAttributes['k'] AS k FROM otel_traces WHERE SpanId IN {ids:Array(String)} ORDER BY SpanId",
      { ids: [id(long.spanId), id(other.spanId)] });
    expect(rows).toHaveLength(2);
    const cut = rows.find((r) => r.SpanId === id(long.spanId))!;
    expect(cut.SpanName).toHaveLength(100);
    expect(cut.SpanName.endsWith(TRUNCATED)).toBe(true);
    expect(cut.k).toBe('x'.repeat(100 - TRUNCATED.length) + TRUNCATED);
  });

  it('a cut never ends between the halves of a surrogate pair (an emoji at the limit is left out whole)', async () => {
    // 87 letters, then an emoji whose two halves are characters 88 and 89: the cut to 88 fell between them
    const s = span({ attributes: [attr('k', { stringValue: `${'x'.repeat(87)}😀${'y'.repeat(20)}` })] });
    expect((await postProto(url, proto([s]))).status).toBe(200);
    await collector.flush();
    const [row] = await queryRows<{ k: string; valid: number }>(collector.store.client,
      "SELECT SpanAttributes['k'] AS k, isValidUTF8(SpanAttributes['k']) AS valid FROM otel_traces WHERE SpanId = {id:String}", { id: s.spanId.toString('hex') });
    expect(row).toEqual({ k: 'x'.repeat(87) + TRUNCATED, valid: 1 });
  });

  it('the length limit counts control characters as stored (a 6-character JSON escape): they cannot grow a request 6x past it', async () => {
    const spool = async () => Number(/^loopwatch_spool_written_bytes_total\{transport="http"\} (\d+)/m.exec(await (await fetch(`${url}/metrics`)).text())?.[1] ?? NaN);
    const before = await spool();
    // 95 characters each: under the limit of 100 as characters, 570 as stored
    const ctl = '\u0001'.repeat(95);
    const s = span({ attributes: [attr('k', { stringValue: ctl }), attr('n', { stringValue: 'line\n'.repeat(19) })], status: { code: 2, message: 'm'.repeat(150) }, events: [{ timeUnixNano: String(T0), name: ctl }] });
    expect((await postProto(url, proto([s]))).status).toBe(200);
    await collector.flush();
    const [row] = await queryRows<{ k: string; n: string; msg: string; ev: string[] }>(collector.store.client,
      "SELECT SpanAttributes['k'] AS k, SpanAttributes['n'] AS n, StatusMessage AS msg, Events.Name AS ev FROM otel_traces WHERE SpanId = {id:String}", { id: s.spanId.toString('hex') });
    const cut = '\u0001'.repeat(Math.floor((100 - TRUNCATED.length) / 6)) + TRUNCATED;
    expect(row).toEqual({ k: cut, n: 'line\n'.repeat(14) + 'line' + TRUNCATED, msg: 'm'.repeat(100 - TRUNCATED.length) + TRUNCATED, ev: [cut] });
    // the span's row: a few hundred bytes, not the ~1,500 of its values escaped whole
    expect((await spool()) - before).toBeLessThan(1200);
    // a key of control characters counts as stored too: 20 of them are 120 characters, the span rejected
    const keyed = await postProto(url, proto([span({ attributes: [attr('\u0002'.repeat(20), { stringValue: 'v' })] })]));
    expect(keyed.status).toBe(200);
    expect(decodeTraceResponse(new Uint8Array(await keyed.arrayBuffer())).partialSuccess?.errorMessage).toMatch(/attribute key .* longer than 100/);
  });

  it('arguments and results cut to the limit keep their identity: hashed whole, as the instrumentation hashes them', async () => {
    // five writes of different contents that differ only past the cut, from an instrumentation that sends the arguments
    const write = (i: number) => span({ name: 'execute_tool write_file', attributes: [
      attr('gen_ai.operation.name', { stringValue: 'execute_tool' }), attr('gen_ai.tool.name', { stringValue: 'write_file' }),
      attr('gen_ai.conversation.id', { stringValue: 'limits-long-args' }),
      attr('gen_ai.tool.call.arguments', { stringValue: JSON.stringify({ path: 'big.txt', content: `${'x'.repeat(150)}${i}` }) }),
      attr('gen_ai.tool.call.result', { stringValue: `wrote ${'y'.repeat(120)}${i}` }),
    ] });
    expect((await postProto(url, proto([1, 2, 3, 4, 5].map(write)))).status).toBe(200);
    await collector.flush();
    const rows = await queryRows<{ a: string; r: string }>(collector.store.client,
      "SELECT lower(hex(reinterpretAsFixedString(args_hash))) AS a, lower(hex(reinterpretAsFixedString(result_hash))) AS r FROM agent_tool_calls FINAL WHERE session_id = 'limits-long-args' ORDER BY ts, span_id");
    expect(rows).toHaveLength(5);
    expect(new Set(rows.map((x) => x.a)).size).toBe(5); // were one: a false repeat
    expect(new Set(rows.map((x) => x.r)).size).toBe(5);
    expect(rows[0]!.a).toBe(valueHash({ path: 'big.txt', content: `${'x'.repeat(150)}1` }));
  });

  it('nesting and object-count bombs are refused before decoding (protobuf and JSON)', async () => {
    // 500 levels of arrayValue in 2 KB: the prescan refuses it without recursing.
    let deep = Buffer.from([0x0a, 0x01, 0x78]); // AnyValue{string_value:"x"}
    for (let i = 0; i < 500; i++) {
      const list = Buffer.concat([Buffer.from([0x0a]), varint(deep.length), deep]); // ArrayValue{values}
      deep = Buffer.concat([Buffer.from([0x2a]), varint(list.length), list]); // AnyValue{array_value}
    }
    const kv = Buffer.concat([Buffer.from([0x0a, 0x01, 0x6b, 0x12]), varint(deep.length), deep]);
    const spanBytes = Buffer.concat([Buffer.from([0x4a]), varint(kv.length), kv]);
    const ss = Buffer.concat([Buffer.from([0x12]), varint(spanBytes.length), spanBytes]);
    const rs = Buffer.concat([Buffer.from([0x12]), varint(ss.length), ss]);
    const req = Buffer.concat([Buffer.from([0x0a]), varint(rs.length), rs]);
    await expectStatus(await postProto(url, req), 400, /nested deeper than 32 levels/);
    const jsonDeep = '{"resourceSpans":' + '['.repeat(5000) + ']'.repeat(5000) + '}';
    await expectStatus(await fetch(`${url}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: jsonDeep }), 400, /nested deeper/);
    // 10,000 empty spans in 20 KB (2 bytes each): decoded, ~1 MB of objects; refused by count.
    const empty = Buffer.alloc(20_000);
    for (let i = 0; i < 10_000; i++) empty.set([0x12, 0x00], i * 2);
    const ssBomb = Buffer.concat([Buffer.from([0x12]), varint(empty.length), empty]);
    const rsBomb = Buffer.concat([Buffer.from([0x0a]), varint(ssBomb.length), ssBomb]);
    await expectStatus(await postProto(url, rsBomb), 413, /more than 5000 objects/);
    const jsonBomb = JSON.stringify({ resourceSpans: [{ scopeSpans: [{ spans: Array.from({ length: 6000 }, () => ({})) }] }] });
    await expectStatus(await fetch(`${url}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: jsonBomb }), 413, /more than 5000 objects/);
    // the same spans behind a 2-byte group (a field of wire type 3 and its end): the decoder skips
    // it and builds every span, so the count must not stop there (a 64 KB gzip body of such spans ran the heap out)
    const grouped = Buffer.concat([Buffer.from([0x9b, 0x06, 0x9c, 0x06]), rsBomb]);
    await expectStatus(await postProto(url, grouped), 400, /not a valid OTLP protobuf ExportTraceServiceRequest: a group \(wire type 3\/4: not in OTLP\) at byte \d+/);
    // a field that runs past the end of its message: the decoder reads on into what follows
    const overrun = Buffer.concat([Buffer.from([0x0a, 0x02, 0x12, 0x05]), rsBomb]);
    await expectStatus(await postProto(url, overrun), 400, /not a valid OTLP protobuf ExportTraceServiceRequest: length past the end of its message/);
    // strings in JSON are heap objects too: 6,000 of them under a key OTLP does not have
    const strings = JSON.stringify({ resourceSpans: [], padding: Array.from({ length: 6000 }, () => 'a') });
    await expectStatus(await fetch(`${url}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: strings }), 413, /more than 5000 objects/);
  });

  it('the prescan counts a JSON batch about as its protobuf form, and the values a JSON body packs densely', () => {
    // 2,000 spans of 15 attributes, as the OTLP/JSON exporters write them
    const spans = Array.from({ length: 2000 }, (_, i) => ({
      ...span(), name: `execute_tool t${i}`, kind: 1, status: { code: 0 },
      attributes: Array.from({ length: 15 }, (_, k) => attr(`attr.${k}`, { stringValue: `value ${i} ${k}` })),
    }));
    const request = { resourceSpans: [{ resource: { attributes: [attr('service.name', { stringValue: 'agent' })] }, scopeSpans: [{ scope: { name: 'x' }, spans }] }] };
    const json = new TextEncoder().encode(JSON.stringify({ resourceSpans: [{ ...request.resourceSpans[0], scopeSpans: [{ scope: { name: 'x' }, spans: spans.map((s) => ({ ...s, traceId: s.traceId.toString('hex'), spanId: s.spanId.toString('hex') })) }] }] }));
    const limits = { maxObjects: 10_000_000, maxDepth: 64 };
    const asJson = prescanJson(json, limits);
    const asProto = prescanProtobuf(encodeTraceRequest(request), limits);
    expect(asJson.ok && asProto.ok).toBe(true);
    if (asJson.ok && asProto.ok) expect(asJson.objects).toBeLessThan(1.3 * asProto.objects);
    // a million values in an array, or as an object's keys: counted
    const strings = prescanJson(new TextEncoder().encode(JSON.stringify({ x: Array.from({ length: 100_000 }, () => 'a') })), limits);
    const keys = prescanJson(new TextEncoder().encode(JSON.stringify({ x: Object.fromEntries(Array.from({ length: 100_000 }, (_, i) => [`k${i}`, 0])) })), limits);
    expect(strings.ok && strings.objects).toBeGreaterThan(99_000);
    expect(keys.ok && keys.objects).toBeGreaterThan(99_000);
  });

  it('429 + Retry-After past maxConcurrentRequests and maxInFlightBytes; served again once they finish', async () => {
    const { body } = toolSpansRequest(range(30, 0, 20));
    // Requests that announce their size and then stall mid-body hold their admission.
    const stalled = (bytes: number) => {
      const full = Buffer.concat([Buffer.from(body), Buffer.alloc(Math.max(0, bytes - body.length))]);
      const u = new URL(`${url}/v1/traces`);
      let finish!: () => void;
      const done = new Promise<number>((resolve, reject) => {
        const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { 'content-type': 'application/x-protobuf', 'content-length': full.length } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.write(full.subarray(0, 10));
        finish = () => req.end(full.subarray(10));
      });
      return { done, finish: () => finish() };
    };
    const waitInFlight = async (n: number) => {
      for (let i = 0; i < 200; i++) {
        const m = await (await fetch(`${url}/metrics`)).text();
        if (new RegExp(`loopwatch_inflight_requests ${n}\\b`).test(m)) return;
        await new Promise((r) => setTimeout(r, 25));
      }
      throw new Error(`never ${n} in flight`);
    };
    // bytes: 60 KB held, another 60 KB would pass 100 KB
    const a = stalled(60 * 1024);
    await waitInFlight(1);
    const tooBig = await postProto(url, new Uint8Array(Buffer.concat([Buffer.from(body), Buffer.alloc(60 * 1024 - body.length)])));
    expect(tooBig.status).toBe(429);
    expect(tooBig.headers.get('retry-after')).toBe('1');
    expect(decodeRpcStatus(new Uint8Array(await tooBig.arrayBuffer())).message).toMatch(/busy/);
    // requests: 3 held, the 4th is refused
    const b = stalled(body.length);
    const c = stalled(body.length);
    await waitInFlight(3);
    const fourth = await postProto(url, body);
    expect(fourth.status).toBe(429);
    expect(fourth.headers.get('retry-after')).toBe('1');
    await fourth.arrayBuffer();
    b.finish();
    c.finish();
    a.finish();
    expect(await b.done).toBe(200);
    expect(await c.done).toBe(200);
    expect(await a.done).toBe(400); // padded with zeros: not valid protobuf past the spans; still answered
    await waitInFlight(0);
    expect((await postProto(url, toolSpansRequest(range(30, 100, 20)).body)).status).toBe(200);
    const m = await (await fetch(`${url}/metrics`)).text();
    expect(m).toMatch(/loopwatch_requests_throttled_total\{transport="http"\} 2/);
  });

  it('a body sent without Content-Length (chunked) is counted against maxInFlightBytes and maxBodyBytes as it arrives', async () => {
    const { body } = toolSpansRequest(range(30, 200, 20));
    const chunked = () => {
      const u = new URL(`${url}/v1/traces`);
      let resolveStatus!: (n: number) => void;
      const status = new Promise<number>((resolve) => {
        resolveStatus = resolve;
      });
      let connection: string | undefined;
      const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { 'content-type': 'application/x-protobuf', 'transfer-encoding': 'chunked' } }, (r) => {
        r.on('error', () => undefined);
        r.resume();
        connection = r.headers.connection;
        resolveStatus(r.statusCode ?? 0);
      });
      req.on('error', () => resolveStatus(-1)); // cut by the collector after its answer
      return { req, status, connection: () => connection };
    };
    const inFlightBytes = async () => Number(/loopwatch_inflight_bytes (\d+)/.exec(await (await fetch(`${url}/metrics`)).text())?.[1]);
    // alone, a chunked body over the body limit: 413 once it passes it
    const big = chunked();
    big.req.write(Buffer.alloc(40 * 1024));
    big.req.end(Buffer.alloc(40 * 1024));
    expect(await big.status).toBe(413);
    expect(big.connection()).toBe('close'); // the rest of the body is not read: the connection is not reused
    // 60 KB arrived and stalled: counted while it waits
    const a = chunked();
    a.req.write(Buffer.concat([Buffer.from(body), Buffer.alloc(60 * 1024 - body.length)]));
    for (let i = 0; i < 200 && (await inFlightBytes()) < 60 * 1024; i++) await new Promise((r) => setTimeout(r, 25));
    expect(await inFlightBytes()).toBeGreaterThanOrEqual(60 * 1024);
    // another 60 KB would pass 100 KB: refused as it arrives
    const b = chunked();
    b.req.end(Buffer.alloc(60 * 1024));
    expect(await b.status).toBe(429);
    expect(b.connection()).toBe('close');
    a.req.end();
    expect(await a.status).toBe(400); // padded with zeros: not valid protobuf past the spans; still answered
    for (let i = 0; i < 200 && (await inFlightBytes()) > 0; i++) await new Promise((r) => setTimeout(r, 25));
    expect(await inFlightBytes()).toBe(0);
    // a chunked export that fits is stored
    const ok = chunked();
    ok.req.end(Buffer.from(body));
    expect(await ok.status).toBe(200);
  });
});

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}
