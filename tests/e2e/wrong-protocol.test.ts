// A client that does not speak HTTP/1.1 to the OTLP/HTTP port. An OTLP/gRPC exporter pointed at
// it opens HTTP/2 (here Node's own HTTP/2 client, which starts a connection as gRPC clients do):
// it can only see a dropped connection, so the collector's log says where gRPC goes. Other
// garbage gets the 400 Node would send. The collector is the real process (`loopwatch up`).
import { connect as h2connect } from 'node:http2';
import { connect } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-proto';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, postProto, range, startProcess, stopProcess, toolSpansRequest, type CollectorProcess } from '../safety/helpers.js';

let dataDir: string;
let p: CollectorProcess;
beforeAll(async () => {
  ensureBuilt();
  dataDir = mkdtempSync(join(tmpdir(), 'lw-wrong-protocol-'));
  p = await startProcess(dataDir, { LOOPWATCH_LOG_LEVEL: 'warn' });
}, 60_000);
afterAll(async () => {
  await stopProcess(p);
  rmSync(dataDir, { recursive: true, force: true });
});

const rejected = async () => {
  const text = await (await fetch(`${p.url}/metrics`)).text();
  return Number(/^loopwatch_requests_rejected_total\{transport="http"\} (\d+)/m.exec(text)?.[1] ?? NaN);
};

describe('a client that speaks another protocol', () => {
  it('HTTP/2 (an OTLP/gRPC exporter): the connection is dropped and the log says where gRPC goes, at most once a minute', async () => {
    const before = await rejected();
    for (let i = 0; i < 2; i++) {
      const error = await new Promise<Error | undefined>((resolve) => {
        const session = h2connect(p.url);
        session.on('error', (err) => resolve(err));
        session.on('close', () => resolve(undefined));
        const req = session.request({ ':method': 'POST', ':path': '/opentelemetry.proto.collector.trace.v1.TraceService/Export', 'content-type': 'application/grpc' });
        req.on('error', () => undefined);
        req.end();
      });
      expect(error === undefined || /ECONNRESET|closed|GOAWAY|ERR_HTTP2/i.test(`${(error as { code?: string }).code} ${error.message}`)).toBe(true);
    }
    expect(await rejected()).toBe(before + 2);
    const said = p.output().split('\n').filter((l) => l.includes('OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf'));
    expect(said).toHaveLength(1);
    expect(said[0]).toContain('spoke HTTP/2 (an OTLP/gRPC exporter?) to the OTLP/HTTP port: send OTLP/gRPC to 127.0.0.1:');
  });

  it('bytes that are not HTTP get the 400 Node would send', async () => {
    const answer = await new Promise<string>((resolve) => {
      let got = '';
      const socket = connect(Number(new URL(p.url).port), '127.0.0.1', () => socket.write('HELLO THERE\r\n\r\n'));
      socket.on('data', (d) => (got += d.toString()));
      socket.on('close', () => resolve(got));
      socket.on('error', () => undefined);
    });
    expect(answer).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
  });

  it('OTLP metrics and logs (an SDK exporting every signal here): 404 with what to change, in the exporter\'s error and the log', async () => {
    // the real metrics SDK and OTLP exporter, as an application with OTEL_METRICS_EXPORTER=otlp has them
    class Collect extends MetricReader {
      protected onForceFlush = async () => undefined;
      protected onShutdown = async () => undefined;
    }
    const reader = new Collect();
    const meters = new MeterProvider({ readers: [reader] });
    meters.getMeter('agent').createCounter('tool_calls').add(3);
    const { resourceMetrics } = await reader.collect();
    const exporter = new OTLPMetricExporter({ url: `${p.url}/v1/metrics` });
    const result = await new Promise<{ code: number; error?: Error & { code?: number; data?: string } }>((resolve) => exporter.export(resourceMetrics, resolve));
    await exporter.shutdown();
    await meters.shutdown();
    expect(result.code).not.toBe(0); // failed, not retried
    expect(result.error?.code).toBe(404);
    expect(`${result.error?.message} ${result.error?.data}`).toContain('Loopwatch collects traces only, not metrics: set OTEL_METRICS_EXPORTER=none');

    const logs = await fetch(`${p.url}/v1/logs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"resourceLogs":[]}' });
    expect(logs.status).toBe(404);
    expect(((await logs.json()) as { message: string }).message).toContain('not logs: set OTEL_LOGS_EXPORTER=none');
    await fetch(`${p.url}/v1/metrics`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }); // said once
    const said = p.output().split('\n').filter((l) => l.includes('received OTLP'));
    expect(said.map((l) => (JSON.parse(l) as { msg: string }).msg.split(':')[0])).toEqual(['received OTLP metrics', 'received OTLP logs']);
  });

  it('and the collector goes on taking OTLP/HTTP', async () => {
    expect((await postProto(p.url, toolSpansRequest(range(1, 0, 5)).body)).status).toBe(200);
  });
});
