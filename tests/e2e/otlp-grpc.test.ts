// OTLP/gRPC ingest (collector/src/ingest/otlp-grpc.ts) with the real OpenTelemetry gRPC exporter
// (@opentelemetry/exporter-trace-otlp-grpc, plain and gzip) and a raw grpc-js client for what an
// exporter would not send: bad bytes, a retried request, a partly bad one, no key, too large.
import { credentials, makeGenericClientConstructor, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { SpanKind } from '@opentelemetry/api';
import { ExportResultCode } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { CompressionAlgorithm } from '@opentelemetry/otlp-exporter-base';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { connect as h2connect, type ClientHttp2Stream } from 'node:http2';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashKey } from '../../collector/src/auth.js';
import { TRACE_EXPORT_PATH, TRACE_SERVICE } from '../../collector/src/ingest/otlp-grpc.js';
import { decodeTraceResponse, encodeTraceRequest } from '../../collector/src/ingest/otlp-proto.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';
import { range, toolSpansRequest } from '../safety/helpers.js';

// now, fixed for the process (a re-sent span is the same span): spans older than the retention are refused
const T0 = BigInt(Date.now()) * 1_000_000n;

// One collector per process (chDB binds one data directory), with an ingest key and a small size
// limit; port 0, so gRPC takes any free port too.
const KEY = 'grpc-ingest-key';
let tc: TestCollector;
beforeAll(async () => {
  tc = await startTestCollector({ detect: { enabled: false }, auth: { ingestKeyHashes: [hashKey(KEY)] }, limits: { maxBodyBytes: 64 * 1024 } });
});
const withKey = () => {
  const md = new Metadata();
  md.set('authorization', `Bearer ${KEY}`);
  return md;
};
afterAll(async () => {
  await tc.close();
});

/** Tool-call spans through the real SDK and the real OTLP/gRPC exporter. */
async function exportWithSdk(session: string, n: number, compression: CompressionAlgorithm): Promise<void> {
  const exporter = new OTLPTraceExporter({ url: `http://${tc.collector.grpcAddress}`, compression, metadata: withKey() });
  const results: ExportResultCode[] = [];
  // a SimpleSpanProcessor would export span by span; collect and export them as one batch instead
  const ended: ReadableSpan[] = [];
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'grpc-agent' }),
    spanProcessors: [new SimpleSpanProcessor({ export: (spans, done) => (ended.push(...spans), done({ code: ExportResultCode.SUCCESS })), shutdown: async () => {} })],
  });
  const tracer = provider.getTracer('test');
  for (let i = 0; i < n; i++) {
    tracer
      .startSpan('execute_tool write_file', {
        kind: SpanKind.INTERNAL,
        attributes: { 'gen_ai.operation.name': 'execute_tool', 'gen_ai.tool.name': 'write_file', 'gen_ai.tool.call.arguments': '{"path":"a.ts"}', 'gen_ai.conversation.id': session },
      })
      .end();
  }
  await provider.forceFlush();
  await new Promise<void>((resolve) => exporter.export(ended, (r) => (results.push(r.code), resolve())));
  await exporter.shutdown();
  await provider.shutdown();
  expect(results).toEqual([ExportResultCode.SUCCESS]);
}

const calls = async (session: string) => {
  await tc.collector.flush();
  const [r] = await tc.rows<{ n: number; tool: string; service: string }>(`SELECT count() AS n, any(tool) AS tool, any(service) AS service FROM agent_tool_calls FINAL WHERE session_id = {s:String}`, { s: session });
  return r!;
};

/** A raw client for TraceService/Export that sends and receives bytes. */
const RawClient = makeGenericClientConstructor(TRACE_SERVICE, 'TraceService');
function rawExport(address: string, body: Uint8Array, metadata = withKey(), opts: { gzip?: boolean } = {}): Promise<{ error?: ServiceError; response?: Buffer }> {
  const client = new RawClient(address, credentials.createInsecure(), opts.gzip ? { 'grpc.default_compression_algorithm': 2 } : {}) as unknown as {
    Export(req: Buffer, md: Metadata, cb: (err: ServiceError | null, res?: Buffer) => void): void;
    close(): void;
  };
  return new Promise((resolve) =>
    client.Export(Buffer.from(body), metadata, (err, res) => {
      client.close();
      resolve(err ? { error: err } : { response: res });
    }),
  );
}

describe('OTLP/gRPC', () => {
  it('the OpenTelemetry gRPC exporter: tool calls land in agent_tool_calls, plain and gzip', async () => {
    // where gRPC listens is in /healthz, beside the spool
    // snake_case, as every answer of the collector
    expect(await (await fetch(`${tc.url}/healthz`)).json()).toMatchObject({ grpc: tc.collector.grpcAddress, tls: false, client_certificates: false });
    expect(tc.collector.grpcAddress).toMatch(/^127\.0\.0\.1:\d+$/);
    await exportWithSdk('grpc-plain', 7, CompressionAlgorithm.NONE);
    await exportWithSdk('grpc-gzip', 5, CompressionAlgorithm.GZIP);
    expect(await calls('grpc-plain')).toEqual({ n: 7, tool: 'write_file', service: 'grpc-agent' });
    expect(await calls('grpc-gzip')).toMatchObject({ n: 5 });
  });

  it('the same request twice (a retry) is stored once, and answered the same', async () => {
    const { body } = toolSpansRequest(range(30, 0, 20), { session: 'grpc-retry' });
    const first = await rawExport(tc.collector.grpcAddress, body);
    const again = await rawExport(tc.collector.grpcAddress, body);
    expect(first.error).toBeUndefined();
    expect(again.response).toEqual(first.response);
    expect((await calls('grpc-retry')).n).toBe(20);
  });

  it('bad bytes: INVALID_ARGUMENT naming the problem; a partly bad request: partial success', async () => {
    const bad = await rawExport(tc.collector.grpcAddress, Buffer.from('not a protobuf message at all'));
    expect(bad.error?.code).toBe(status.INVALID_ARGUMENT);
    expect(bad.error?.details).toContain('not a valid OTLP protobuf ExportTraceServiceRequest');

    const partly = encodeTraceRequest({
      resourceSpans: [{ scopeSpans: [{ spans: [
        { traceId: Buffer.alloc(16, 7), spanId: Buffer.alloc(8, 1), name: 'execute_tool read_file', startTimeUnixNano: String(T0), endTimeUnixNano: String(T0 + 100_000_000n), attributes: [{ key: 'gen_ai.tool.name', value: { stringValue: 'read_file' } }] },
        { traceId: Buffer.alloc(3, 7), spanId: Buffer.alloc(8, 2), name: 'bad' },
      ] }] }],
    });
    const r = await rawExport(tc.collector.grpcAddress, partly);
    expect(r.error).toBeUndefined();
    const answer = decodeTraceResponse(r.response!);
    expect(Number(answer.partialSuccess?.rejectedSpans)).toBe(1);
    expect(answer.partialSuccess?.errorMessage).toMatch(/trace_id/);
  });

  it('UNAUTHENTICATED without an ingest key; RESOURCE_EXHAUSTED over the size limit; nothing stored of either', async () => {
    const { body } = toolSpansRequest(range(31, 0, 10), { session: 'grpc-no-key' });
    const none = await rawExport(tc.collector.grpcAddress, body, new Metadata());
    expect(none.error?.code).toBe(status.UNAUTHENTICATED);
    expect(none.error?.details).toContain('authorization: Bearer <key>');
    const wrong = new Metadata();
    wrong.set('authorization', 'Bearer not-the-key');
    expect((await rawExport(tc.collector.grpcAddress, body, wrong)).error?.code).toBe(status.UNAUTHENTICATED);
    const big = toolSpansRequest(range(32, 0, 2000), { session: 'grpc-big' }).body;
    expect(big.length).toBeGreaterThan(64 * 1024);
    expect((await rawExport(tc.collector.grpcAddress, big)).error?.code).toBe(status.RESOURCE_EXHAUSTED);
    // the bound is on the message, not the wire: small when gzipped, refused all the same
    expect(gzipSync(big).length).toBeLessThan(64 * 1024);
    const zipped = await rawExport(tc.collector.grpcAddress, big, withKey(), { gzip: true });
    expect(zipped.error?.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(zipped.error?.details).toContain('decompresses to a size larger than 65536');
    expect((await calls('grpc-no-key')).n).toBe(0);
    expect((await calls('grpc-big')).n).toBe(0);
  });

  it('admission before the message is read: calls that send only their metadata hold the bound, the next call is refused at once, and cancelling frees it', async () => {
    const inflight = async () => Number(/^loopwatch_inflight_requests (\d+)/m.exec(await tc.collector.metrics.text())?.[1]);
    const bound = tc.collector.config.limits.maxConcurrentRequests;
    // as many calls as the bound, each with its key but no message yet (a slow or stalled client)
    const session = h2connect(`http://${tc.collector.grpcAddress}`);
    const held: ClientHttp2Stream[] = [];
    for (let i = 0; i < bound; i++) {
      const stream = session.request({ ':method': 'POST', ':path': TRACE_EXPORT_PATH, 'content-type': 'application/grpc', te: 'trailers', authorization: `Bearer ${KEY}` });
      stream.on('error', () => undefined);
      held.push(stream);
    }
    for (let i = 0; i < 100 && (await inflight()) < bound; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await inflight()).toBe(bound);
    const { body } = toolSpansRequest(range(34, 0, 3), { session: 'grpc-admission' });
    const refused = await rawExport(tc.collector.grpcAddress, body);
    expect(refused.error?.code).toBe(status.UNAVAILABLE);
    expect(refused.error?.details).toMatch(/^collector is busy/);

    session.destroy(); // the stalled calls end: their admission is given back
    for (let i = 0; i < 100 && (await inflight()) > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await inflight()).toBe(0);
    expect((await rawExport(tc.collector.grpcAddress, body)).error).toBeUndefined();
    expect((await calls('grpc-admission')).n).toBe(3);
  });

  it('self-metrics count gRPC requests and spans under transport="grpc", apart from OTLP/HTTP', async () => {
    const m = tc.collector.metrics;
    const before = { grpc: await m.value('loopwatch_spans_accepted_total', 'grpc'), http: await m.value('loopwatch_spans_accepted_total', 'http') };
    const { body } = toolSpansRequest(range(33, 0, 7), { session: 'grpc-metrics' });
    expect((await rawExport(tc.collector.grpcAddress, body)).error).toBeUndefined();
    expect(await m.value('loopwatch_spans_accepted_total', 'grpc')).toBe(before.grpc + 7);
    expect(await m.value('loopwatch_spans_accepted_total', 'http')).toBe(before.http);
    expect(await m.value('loopwatch_requests_unauthorized_total', 'grpc')).toBeGreaterThanOrEqual(2); // the test before
    const text = await m.text(); // what GET /metrics serves (it needs a read key, which this collector has none of)
    expect(text).toMatch(/^loopwatch_requests_received_total\{transport="grpc"\} [1-9]\d*$/m);
    expect(text).toMatch(/^loopwatch_requests_received_total\{transport="http"\} \d+$/m);
  });
});
