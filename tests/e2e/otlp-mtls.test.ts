// Client certificates (--tls-client-ca, mutual TLS; collector/src/tls.ts and auth.ts): an agent
// process presents its certificate with the standard OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE /
// _CLIENT_KEY and its spans are stored; an export without one, or with one of another CA, is
// refused with a message that says what to set, over OTLP/HTTP and OTLP/gRPC; the read API does
// not ask for one. A file of its own: one embedded database per process.
import { OTLPTraceExporter as HttpExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { ExportResultCode } from '@opentelemetry/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { createAuth } from '../../collector/src/auth.js';
import { assertBuilt, cli, runSampleAgent, until } from '../cli/helpers.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';
import { tempDirs } from '../helpers/temp-dirs.js';
import { CERT, CERT_B, CLIENT, CLIENT_KEY, KEY, KEY_B, exportOnce, grpcExportTrusting, postTraces, toolSpans, withExporterEnv } from './tls-helpers.js';

// the collector reads a copy of the client CA, which the last test replaces while it runs
const caFile = join(tempDirs()('lw-mtls-'), 'client-ca.pem');
copyFileSync(CLIENT, caFile);

let tc: TestCollector;
beforeAll(async () => {
  assertBuilt();
  tc = await startTestCollector({ detect: { enabled: false }, tls: { certFile: CERT, keyFile: KEY, clientCaFile: caFile, watchIntervalMs: 200 } });
});
afterAll(async () => {
  await tc?.close();
});

const stored = async (session: string): Promise<number> => {
  await tc.collector.flush();
  const [r] = await tc.rows<{ n: number }>('SELECT count() AS n FROM agent_tool_calls FINAL WHERE session_id = {s:String}', { s: session });
  return Number(r!.n);
};
const clientCertVars = { OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: CLIENT, OTEL_EXPORTER_OTLP_CLIENT_KEY: CLIENT_KEY };

describe('client certificates (--tls-client-ca)', () => {
  it('takes spans from an agent process that presents its certificate with the standard variables', async () => {
    await runSampleAgent(tc.url, 'mtls-agent', { OTEL_EXPORTER_OTLP_CERTIFICATE: CERT, ...clientCertVars });
    expect(await stored('mtls-agent')).toBeGreaterThan(0);
  });

  it('refuses an OTLP/HTTP export without a certificate, or with one of another CA, saying what to set (403)', async () => {
    const none = await postTraces(tc);
    expect(none.status).toBe(403);
    expect(JSON.parse(none.body).message).toMatch(/client certificate is required .* none was presented: set OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY/);
    const other = await postTraces(tc, { cert: CERT_B, key: KEY_B });
    expect(other.status).toBe(403);
    expect(JSON.parse(other.body).message).toMatch(/not signed by a CA of the collector's --tls-client-ca/);
    expect((await postTraces(tc, { cert: CLIENT, key: CLIENT_KEY })).status).toBe(200);

    // the real exporter without one: refused, nothing stored
    const result = await withExporterEnv({ OTEL_EXPORTER_OTLP_CERTIFICATE: CERT }, async () => {
      const exporter = new HttpExporter({ url: `${tc.url}/v1/traces` });
      const r = await exportOnce(exporter, toolSpans('mtls-no-cert', 2));
      await exporter.shutdown();
      return r;
    });
    expect(result.code).toBe(ExportResultCode.FAILED);
    expect(await stored('mtls-no-cert')).toBe(0);
    expect(await tc.collector.metrics.value('loopwatch_requests_unauthorized_total', 'http')).toBeGreaterThanOrEqual(3);
  });

  it('asks the same of OTLP/gRPC exporters', async () => {
    const ok = await grpcExportTrusting(tc, CERT, 'mtls-grpc', 3, clientCertVars);
    expect(ok.code, String(ok.error)).toBe(ExportResultCode.SUCCESS);
    expect(await stored('mtls-grpc')).toBe(3);
    const refused = await grpcExportTrusting(tc, CERT, 'mtls-grpc-none', 2);
    expect(refused.code).toBe(ExportResultCode.FAILED);
    expect(String(refused.error?.message)).toMatch(/client certificate .* is required.*OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE/);
    expect(await stored('mtls-grpc-none')).toBe(0);
  });

  it('does not ask the read API for one: the CLI works as before, and the status says certificates are required', async () => {
    const r = await cli(['status', '--url', tc.url, '--json'], { NODE_EXTRA_CA_CERTS: CERT });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).listening).toMatchObject({ tls: true, client_certificates: true });
  });

  it('takes up a changed client CA file while running', async () => {
    copyFileSync(CERT_B, caFile); // the exporters' CA rotated: now cert-b signs them
    await until(async () => (await postTraces(tc, { cert: CERT_B, key: KEY_B })).status === 200, 50);
    expect((await postTraces(tc, { cert: CLIENT, key: CLIENT_KEY })).status).toBe(403);
  });

  it('with read keys but no ingest keys, the certificate alone admits an exporter', () => {
    const readKeyHashes = ['a'.repeat(64)];
    const withCa = createAuth({ host: '0.0.0.0', auth: { ingestKeyHashes: [], readKeyHashes }, tls: { clientCaFile: CLIENT, watchIntervalMs: 60_000 } });
    expect(withCa.allows('ingest', undefined)).toBe(true);
    expect(withCa.allows('read', undefined)).toBe(false);
    const withoutCa = createAuth({ host: '0.0.0.0', auth: { ingestKeyHashes: [], readKeyHashes }, tls: { watchIntervalMs: 60_000 } });
    expect(withoutCa.allows('ingest', undefined)).toBe(false); // a role without keys admits nobody
  });
});
