// What the TLS tests share: the fixture files (tests/fixtures/tls), spans from the real SDK, and
// exports through the real OTLP exporters and Node's https client.
import { SpanKind } from '@opentelemetry/api';
import { ExportResultCode } from '@opentelemetry/core';
import { OTLPTraceExporter as GrpcExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { packageRoot } from '../../collector/src/paths.js';
import type { TestCollector } from '../helpers/collector.js';

const FIXTURES = join(packageRoot, 'tests/fixtures/tls');
export const CERT = join(FIXTURES, 'cert.pem');
export const KEY = join(FIXTURES, 'key.pem');
export const CERT_B = join(FIXTURES, 'cert-b.pem');
export const KEY_B = join(FIXTURES, 'key-b.pem');
/** An exporter's client certificate, and (self-signed) the client CA of the mutual-TLS tests. */
export const CLIENT = join(FIXTURES, 'client.pem');
export const CLIENT_KEY = join(FIXTURES, 'client-key.pem');

export type ExportOutcome = { code: ExportResultCode; error?: Error };

/** Ended tool-call spans of one session, from the real SDK. */
export function toolSpans(session: string, n: number): ReadableSpan[] {
  const ended: ReadableSpan[] = [];
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'tls-agent' }),
    spanProcessors: [{ onStart: () => {}, onEnd: (s) => void ended.push(s), forceFlush: async () => {}, shutdown: async () => {} }],
  });
  const tracer = provider.getTracer('test');
  for (let i = 0; i < n; i++) {
    tracer
      .startSpan('execute_tool read_file', {
        kind: SpanKind.INTERNAL,
        attributes: { 'gen_ai.operation.name': 'execute_tool', 'gen_ai.tool.name': 'read_file', 'gen_ai.tool.call.arguments': `{"path":"f${i}.ts"}`, 'gen_ai.conversation.id': session },
      })
      .end();
  }
  return ended;
}

export function exportOnce(exporter: SpanExporter, spans: ReadableSpan[]): Promise<ExportOutcome> {
  return new Promise((resolve) => exporter.export(spans, (r) => resolve({ code: r.code, error: r.error })));
}

/**
 * Runs fn with OTEL_EXPORTER_OTLP_* variables set, as an exporting application would have them
 * (exporters read them when made, or when they first connect: set for the whole of fn).
 */
export async function withExporterEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  Object.assign(process.env, vars);
  try {
    return await fn();
  } finally {
    for (const k of Object.keys(vars)) delete process.env[k];
  }
}

/**
 * Exports one session's spans with the real OTLP/gRPC exporter over TLS to a collector, trusting
 * `ca` through OTEL_EXPORTER_OTLP_CERTIFICATE, with more variables in env (a client certificate).
 */
export function grpcExportTrusting(to: TestCollector, ca: string, session: string, n: number, env: Record<string, string> = {}): Promise<ExportOutcome> {
  return withExporterEnv({ OTEL_EXPORTER_OTLP_CERTIFICATE: ca, ...env }, async () => {
    const exporter = new GrpcExporter({ url: `https://${to.collector.grpcAddress}` });
    const result = await exportOnce(exporter, toolSpans(session, n));
    await exporter.shutdown();
    return result;
  });
}

/** POSTs an empty OTLP/JSON export with Node's https client, trusting CERT, with an optional client certificate. */
export function postTraces(to: TestCollector, client?: { cert: string; key: string }): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${to.url}/v1/traces`,
      { method: 'POST', ca: readFileSync(CERT), agent: false, headers: { 'content-type': 'application/json' }, ...(client ? { cert: readFileSync(client.cert), key: readFileSync(client.key) } : {}) },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end('{"resourceSpans":[]}');
  });
}
