// (c) Bad bodies get a clear 4xx in the request's encoding, and the collector stays up.
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeRpcStatus, decodeTraceResponse, encodeTraceRequest } from '../../collector/src/ingest/otlp-proto.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';

// now, fixed for the process (a re-sent span is the same span): spans older than the retention are refused
const T0 = BigInt(Date.now()) * 1_000_000n;

let tc: TestCollector;
beforeAll(async () => {
  tc = await startTestCollector({ limits: { maxBodyBytes: 64 * 1024, maxDecompressedBytes: 256 * 1024 } });
});
afterAll(async () => {
  await tc.close();
});

const PROTO = 'application/x-protobuf';
const JSON_TYPE = 'application/json';

async function post(body: BodyInit, contentType: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${tc.url}/v1/traces`, { method: 'POST', body, headers: { 'content-type': contentType, ...headers } });
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: new Uint8Array(await res.arrayBuffer()) };
}

function jsonSpan(traceId: string, spanId: string) {
  return { traceId, spanId, name: 'execute_tool x', startTimeUnixNano: String(T0), endTimeUnixNano: String(T0 + 100_000_000n) };
}
function jsonRequest(spans: object[]) {
  return JSON.stringify({ resourceSpans: [{ resource: { attributes: [] }, scopeSpans: [{ spans }] }] });
}

describe('bad input', () => {
  it('415 for other content types, with a message naming the accepted ones', async () => {
    const r = await post('hello', 'text/plain');
    expect(r.status).toBe(415);
    expect(new TextDecoder().decode(r.body)).toContain('application/x-protobuf');
  });

  it('400 for a body that is not protobuf, answered as google.rpc.Status in protobuf', async () => {
    const r = await post(new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]), PROTO);
    expect(r.status).toBe(400);
    expect(r.type).toContain(PROTO);
    const status = decodeRpcStatus(r.body);
    expect(status.code).toBe(3);
    expect(status.message).toMatch(/not a valid OTLP protobuf/);
  });

  it('400 for malformed JSON and for JSON of the wrong shape, naming the field', async () => {
    const a = await post('{"resourceSpans": [', JSON_TYPE);
    expect(a.status).toBe(400);
    expect(JSON.parse(new TextDecoder().decode(a.body)).message).toMatch(/not valid JSON/);
    const b = await post(JSON.stringify({ resourceSpans: [{ scopeSpans: [{ spans: [{ startTimeUnixNano: 'soon' }] }] }] }), JSON_TYPE);
    expect(b.status).toBe(400);
    expect(JSON.parse(new TextDecoder().decode(b.body)).message).toMatch(/startTimeUnixNano/);
  });

  it('partial success: spans with bad ids are rejected and counted, the rest stored', async () => {
    const good = jsonSpan('0af7651916cd43dd8448eb211c80319c', 'b7ad6b7169203331');
    const r = await post(jsonRequest([good, jsonSpan('abc', 'b7ad6b7169203332'), jsonSpan('0af7651916cd43dd8448eb211c80319c', '0000000000000000')]), JSON_TYPE);
    expect(r.status).toBe(200);
    const body = JSON.parse(new TextDecoder().decode(r.body));
    expect(body.partialSuccess.rejectedSpans).toBe('2');
    expect(body.partialSuccess.errorMessage).toMatch(/trace_id/);
    const p = await post(
      encodeTraceRequest({ resourceSpans: [{ scopeSpans: [{ spans: [{ traceId: Buffer.alloc(3, 1), spanId: Buffer.alloc(8, 1), name: 'x' }] }] }] }),
      PROTO,
    );
    expect(p.status).toBe(200);
    expect(Number(decodeTraceResponse(p.body).partialSuccess?.rejectedSpans)).toBe(1);
  });

  it('partial success: a span without a start time, one older than the retention or starting so late that its TTL passes 2106 (it wraps), is refused rather than stored and deleted', async () => {
    const fresh = jsonSpan('2af7651916cd43dd8448eb211c80319c', 'd7ad6b7169203331');
    const zero = { ...jsonSpan('2af7651916cd43dd8448eb211c80319c', 'd7ad6b7169203332'), startTimeUnixNano: '0' };
    const startOld = T0 - 40n * 86_400_000_000_000n; // the test collector keeps 30 days
    const old = { ...jsonSpan('2af7651916cd43dd8448eb211c80319c', 'd7ad6b7169203333'), startTimeUnixNano: String(startOld), endTimeUnixNano: String(startOld + 1_000_000n) };
    const a = await post(jsonRequest([fresh, zero]), JSON_TYPE);
    expect(a.status).toBe(200);
    expect(JSON.parse(new TextDecoder().decode(a.body)).partialSuccess).toEqual({ rejectedSpans: '1', errorMessage: 'span without a start time (start_time_unix_nano is 0)' });
    // its start plus the retention past 2106: the TTL wrapped it around to the 1970s, and it was deleted once stored
    const start2106 = BigInt(Date.UTC(2106, 0, 20)) * 1_000_000n;
    const far = { ...jsonSpan('2af7651916cd43dd8448eb211c80319c', 'd7ad6b7169203334'), startTimeUnixNano: String(start2106), endTimeUnixNano: String(start2106 + 1_000_000n) };
    const f = await post(jsonRequest([far]), JSON_TYPE);
    expect(JSON.parse(new TextDecoder().decode(f.body)).partialSuccess).toEqual({
      rejectedSpans: '1',
      errorMessage: "span that starts 2106-01-20T00:00:00.000Z, after 2106-01-07T06:28:15.000Z, the latest start whose retention of 30 days ends by 2106-02-07 (the store's TTL holds times to then): the sender's clock is wrong",
    });
    const b = await post(jsonRequest([old]), JSON_TYPE);
    expect(b.status).toBe(200);
    const msg = JSON.parse(new TextDecoder().decode(b.body)).partialSuccess;
    expect(msg.rejectedSpans).toBe('1');
    expect(msg.errorMessage).toBe(`span that started ${new Date(Number(startOld / 1_000_000n)).toISOString()}, before the retention window (30 days): the store would delete it at once`);
    await tc.collector.flush();
    const stored = await tc.rows<{ SpanId: string }>("SELECT SpanId FROM otel_traces WHERE TraceId = '2af7651916cd43dd8448eb211c80319c'");
    expect(stored.map((r) => r.SpanId)).toEqual(['d7ad6b7169203331']);
  });

  it('partial success: ids in base64 (a generic protobuf-JSON serializer) are refused with a hint that OTLP/JSON wants hex', async () => {
    const b64 = Buffer.from('3af7651916cd43dd8448eb211c80319c', 'hex').toString('base64');
    const r = await post(jsonRequest([jsonSpan(b64, 'e7ad6b7169203331')]), JSON_TYPE);
    expect(r.status).toBe(200);
    expect(JSON.parse(new TextDecoder().decode(r.body)).partialSuccess).toEqual({
      rejectedSpans: '1',
      errorMessage: 'span with missing or invalid trace_id (16 bytes, not all zero; it looks base64-encoded: OTLP/JSON ids are 32 hex digits)',
    });
  });

  it('413 over the body size limit', async () => {
    const r = await post(new Uint8Array(65 * 1024), PROTO);
    expect(r.status).toBe(413);
  });

  it('413 for a gzip bomb (small compressed, large decompressed), 400 for broken gzip', async () => {
    const bomb = gzipSync(Buffer.alloc(4 * 1024 * 1024, 0x20));
    expect(bomb.length).toBeLessThan(64 * 1024);
    const r = await post(bomb, JSON_TYPE, { 'content-encoding': 'gzip' });
    expect(r.status).toBe(413);
    expect(JSON.parse(new TextDecoder().decode(r.body)).message).toMatch(/decompressed/);
    const broken = await post(new Uint8Array([0x1f, 0x8b, 1, 2, 3]), JSON_TYPE, { 'content-encoding': 'gzip' });
    expect(broken.status).toBe(400);
    const unknown = await post('{}', JSON_TYPE, { 'content-encoding': 'br' });
    expect(unknown.status).toBe(415);
  });

  it('accepts gzip bodies and 64-bit integers as strings or numbers', async () => {
    const body = JSON.stringify({
      resourceSpans: [{ scopeSpans: [{ spans: [{ ...jsonSpan('1af7651916cd43dd8448eb211c80319c', 'c7ad6b7169203331'), startTimeUnixNano: Number(T0), kind: 3, status: { code: 2 } }] }] }],
    });
    const r = await post(gzipSync(body), JSON_TYPE, { 'content-encoding': 'gzip' });
    expect(r.status).toBe(200);
    await tc.collector.flush();
    const rows = await tc.rows<{ SpanKind: string; StatusCode: string }>(`SELECT SpanKind, StatusCode FROM otel_traces WHERE SpanId = 'c7ad6b7169203331'`);
    expect(rows).toEqual([{ SpanKind: 'Client', StatusCode: 'Error' }]);
  });

  it('tool arguments with a key twice (a model wrote it so) are stored, not lost after the 200', async () => {
    const attrs = (args: string) => [
      { key: 'gen_ai.operation.name', value: { stringValue: 'execute_tool' } },
      { key: 'gen_ai.tool.name', value: { stringValue: 'read_file' } },
      { key: 'gen_ai.conversation.id', value: { stringValue: 'dup-keys' } },
      { key: 'gen_ai.tool.call.arguments', value: { stringValue: args } },
    ];
    const r = await post(jsonRequest([
      { ...jsonSpan('2af7651916cd43dd8448eb211c80319c', 'd7ad6b7169203331'), attributes: attrs('{"path":"a.txt","path":"b.txt"}') },
      { ...jsonSpan('2af7651916cd43dd8448eb211c80319c', 'd7ad6b7169203332'), attributes: attrs('{"path":"a.txt"}') },
    ]), JSON_TYPE);
    expect(r.status).toBe(200);
    await tc.collector.flush();
    const calls = await tc.rows<{ span_id: string; args_hash: string }>(`SELECT span_id, toString(args_hash) AS args_hash FROM agent_tool_calls FINAL WHERE session_id = 'dup-keys' ORDER BY span_id`);
    expect(calls.map((c) => c.span_id)).toEqual(['d7ad6b7169203331', 'd7ad6b7169203332']);
    expect(calls[0]!.args_hash).toBe(calls[1]!.args_hash); // the first value kept: the same call as {"path":"a.txt"}
    const metrics = await (await fetch(`${tc.url}/metrics`)).text();
    expect(metrics).toMatch(/^loopwatch_spans_dropped_total 0$/m);
  });

  it('attributes named like JavaScript built-ins (__proto__, constructor) are stored as they came', async () => {
    const r = await post(jsonRequest([{
      ...jsonSpan('3af7651916cd43dd8448eb211c80319c', 'e7ad6b7169203331'),
      attributes: [
        { key: '__proto__', value: { stringValue: 'p' } },
        { key: 'constructor', value: { stringValue: 'c' } },
        { key: 'nested', value: { kvlistValue: { values: [{ key: '__proto__', value: { intValue: '1' } }] } } },
      ],
    }]), JSON_TYPE);
    expect(r.status).toBe(200);
    await tc.collector.flush();
    const [row] = await tc.rows<{ a: Record<string, string> }>(`SELECT SpanAttributes AS a FROM otel_traces WHERE SpanId = 'e7ad6b7169203331'`);
    expect(Object.entries(row!.a).sort()).toEqual([['__proto__', 'p'], ['constructor', 'c'], ['nested', '{"__proto__":1}']]);
  });

  it('invalid UTF-8 in a protobuf string becomes U+FFFD: the span and the request\'s others are stored', async () => {
    // a Latin-1 é (one byte 0xE9: not UTF-8) in a tool result, as a Rust SDK has sent
    const spanOf = (id: string, result: string) => ({
      traceId: Buffer.from('4af7651916cd43dd8448eb211c80319c', 'hex'), spanId: Buffer.from(id, 'hex'), name: 'execute_tool x',
      startTimeUnixNano: String(T0), endTimeUnixNano: String(T0 + 100_000_000n),
      attributes: [{ key: 'gen_ai.tool.call.result', value: { stringValue: result } }],
    });
    const body = Buffer.from(encodeTraceRequest({ resourceSpans: [{ scopeSpans: [{ spans: [spanOf('f7ad6b7169203331', 'good'), spanOf('f7ad6b7169203332', 'caf#-au-lait')] }] }] }));
    const at = body.indexOf('caf#');
    expect(at).toBeGreaterThan(0);
    body[at + 3] = 0xe9;
    const r = await post(body, PROTO);
    expect(r.status).toBe(200);
    await tc.collector.flush();
    const rows = await tc.rows<{ id: string; v: string }>(`SELECT SpanId AS id, SpanAttributes['gen_ai.tool.call.result'] AS v FROM otel_traces WHERE TraceId = '4af7651916cd43dd8448eb211c80319c' ORDER BY id`);
    expect(rows).toEqual([{ id: 'f7ad6b7169203331', v: 'good' }, { id: 'f7ad6b7169203332', v: 'caf\ufffd-au-lait' }]);
  });

  it('JSON numbers as the proto3 mapping has them: an int64 number past 2^53 exactly, a double as a string', async () => {
    // 2^60 is a double exactly: String() printed 1152921504606847000
    const r = await post(`{"resourceSpans":[{"scopeSpans":[{"spans":[${JSON.stringify({ ...jsonSpan('5af7651916cd43dd8448eb211c80319c', 'a8ad6b7169203331'), attributes: [] }).replace('"attributes":[]',
      '"attributes":[{"key":"big","value":{"intValue":1152921504606846976}},{"key":"d","value":{"doubleValue":"1.5"}},{"key":"e","value":{"doubleValue":"-2e3"}}]')}]}]}]}`, JSON_TYPE);
    expect(r.status).toBe(200);
    await tc.collector.flush();
    const [row] = await tc.rows<{ a: Record<string, string> }>(`SELECT SpanAttributes AS a FROM otel_traces WHERE SpanId = 'a8ad6b7169203331'`);
    expect(row!.a).toEqual({ big: '1152921504606846976', d: '1.5', e: '-2000' });
    const bad = await post(jsonRequest([{ ...jsonSpan('5af7651916cd43dd8448eb211c80319c', 'a8ad6b7169203332'), attributes: [{ key: 'd', value: { doubleValue: 'one' } }] }]), JSON_TYPE);
    expect(bad.status).toBe(400);
    expect(JSON.parse(new TextDecoder().decode(bad.body)).message).toMatch(/doubleValue/);
  });

  it('stays up after all of it', async () => {
    const res = await fetch(`${tc.url}/healthz`);
    expect(res.status).toBe(200);
    expect((await res.json()).status).toBe('ok');
  });
});
