// TLS on both listeners (--tls-cert / --tls-key, collector/src/tls.ts): an instrumented agent
// process exports over HTTPS with the standard OTEL_EXPORTER_OTLP_CERTIFICATE, the real OTLP/gRPC
// exporter over TLS, the CLI reads through NODE_EXTRA_CA_CERTS; a client that does not trust the
// certificate, or that speaks plain HTTP, gets nothing in; a certificate and key that do not make
// a pair fail the start with the setting's name. The certificate is a self-signed test fixture
// (tests/fixtures/tls: localhost, 127.0.0.1 and ::1, valid to 2126).
import { ExportResultCode } from '@opentelemetry/core';
import { OTLPTraceExporter as GrpcExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { OTLPTraceExporter as HttpExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCollector } from '../../collector/src/collector.js';
import { ConfigError, loadConfig } from '../../collector/src/config.js';
import { assertBuilt, cli, runSampleAgent, until } from '../cli/helpers.js';
import { collectorStatus } from '../../collector/src/status.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';
import { CERT, CERT_B, CLIENT, KEY, KEY_B, exportOnce, grpcExportTrusting, toolSpans } from './tls-helpers.js';

// The collector reads copies, which the renewal test below replaces while it runs.
const tlsDir = mkdtempSync(join(tmpdir(), 'loopwatch-tls-'));
const CERT_FILE = join(tlsDir, 'cert.pem');
const KEY_FILE = join(tlsDir, 'key.pem');
copyFileSync(CERT, CERT_FILE);
copyFileSync(KEY, KEY_FILE);

let tc: TestCollector;
beforeAll(async () => {
  assertBuilt();
  tc = await startTestCollector({ detect: { enabled: false }, tls: { certFile: CERT_FILE, keyFile: KEY_FILE, watchIntervalMs: 200 } });
});
afterAll(async () => {
  await tc?.close();
  rmSync(tlsDir, { recursive: true, force: true });
});

const stored = async (session: string): Promise<number> => {
  await tc.collector.flush();
  const [r] = await tc.rows<{ n: number }>('SELECT count() AS n FROM agent_tool_calls FINAL WHERE session_id = {s:String}', { s: session });
  return Number(r!.n);
};

describe('TLS on the OTLP/HTTP port', () => {
  it('serves https, and an instrumented agent exports to it with the standard certificate variable', async () => {
    expect(tc.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const health = await cli(['status', '--url', tc.url, '--json'], { NODE_EXTRA_CA_CERTS: CERT });
    expect(health.code, health.stderr).toBe(0);
    expect(JSON.parse(health.stdout).listening).toMatchObject({ otlp_http: `${tc.url}/v1/traces`, tls: true });

    await runSampleAgent(tc.url, 'tls-agent-1', { OTEL_EXPORTER_OTLP_CERTIFICATE: CERT });
    expect(await stored('tls-agent-1')).toBeGreaterThan(0);
  });

  it('refuses an exporter that does not trust the certificate: nothing is stored', async () => {
    const exporter = new HttpExporter({ url: `${tc.url}/v1/traces` });
    const result = await exportOnce(exporter, toolSpans('tls-untrusted', 3));
    await exporter.shutdown();
    expect(result.code).toBe(ExportResultCode.FAILED);
    expect(String(result.error?.message)).toMatch(/certificate/i);
    expect(await stored('tls-untrusted')).toBe(0);
  });

  it('counts a plain-HTTP client as rejected (it gets no answer it could take for an acknowledgement)', async () => {
    const before = await tc.collector.metrics.value('loopwatch_requests_rejected_total', 'http');
    const plain = tc.url.replace('https://', 'http://');
    await expect(fetch(`${plain}/healthz`)).rejects.toThrow();
    await expect.poll(() => tc.collector.metrics.value('loopwatch_requests_rejected_total', 'http')).toBeGreaterThan(before);
  });

  it('the CLI says what is wrong when it does not trust the certificate', async () => {
    const r = await cli(['status', '--url', tc.url]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/certificate/i);
    expect(r.stderr).toMatch(/NODE_EXTRA_CA_CERTS/);
    // the gRPC port over TLS refuses HTTP/1.1 in the handshake: said as the gRPC port, not as trust
    const grpc = await cli(['status', '--url', `https://${tc.collector.grpcAddress}`], { NODE_EXTRA_CA_CERTS: CERT });
    expect(grpc.code).toBe(3);
    expect(grpc.stderr).toMatch(/does not answer HTTP\/1\.1: is it the OTLP\/gRPC port\?/);
  });
});

describe('TLS on the OTLP/gRPC port', () => {
  it('takes spans from the real gRPC exporter over TLS', async () => {
    const result = await grpcExportTrusting(tc, CERT, 'tls-grpc', 5);
    expect(result.code, String(result.error)).toBe(ExportResultCode.SUCCESS);
    expect(await stored('tls-grpc')).toBe(5);
  });

  it('refuses a plaintext gRPC client', async () => {
    const exporter = new GrpcExporter({ url: `http://${tc.collector.grpcAddress}`, timeoutMillis: 3000 });
    const result = await exportOnce(exporter, toolSpans('tls-grpc-plain', 2));
    await exporter.shutdown();
    expect(result.code).toBe(ExportResultCode.FAILED);
    expect(await stored('tls-grpc-plain')).toBe(0);
  });
});

/** GET /healthz trusting only the given CA, on a new connection: the status code, or the TLS error. */
function healthTrusting(ca: string): Promise<number | Error> {
  return new Promise((resolve) => {
    const req = request(`${tc.url}/healthz`, { ca: readFileSync(ca), agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', (err) => resolve(err));
    req.end();
  });
}

describe('a renewed certificate', () => {
  it('is taken up while the collector runs, on both ports; a pair that does not match keeps the old one', async () => {
    expect(await healthTrusting(CERT)).toBe(200);
    // the renewal: both files replaced (as ACME clients and cert-manager do)
    writeFileSync(KEY_FILE, readFileSync(KEY_B));
    writeFileSync(CERT_FILE, readFileSync(CERT_B));
    await until(async () => (await healthTrusting(CERT_B)) === 200, 50);
    expect(String(await healthTrusting(CERT))).toMatch(/certificate/i);
    const result = await grpcExportTrusting(tc, CERT_B, 'tls-grpc-renewed', 3);
    expect(result.code, String(result.error)).toBe(ExportResultCode.SUCCESS);
    expect(await stored('tls-grpc-renewed')).toBe(3);
    const status = await cli(['status', '--url', tc.url, '--json'], { NODE_EXTRA_CA_CERTS: CERT_B });
    expect(JSON.parse(status.stdout).listening.tls_not_after).toBe(new Date(new X509Certificate(readFileSync(CERT_B)).validTo).toISOString());

    // half a renewal: the old certificate back, with the new key
    writeFileSync(CERT_FILE, readFileSync(CERT));
    expect(String(tc.collector.reloadTls())).toMatch(/cannot use --tls-cert .* with --tls-key .*: .*key values mismatch/);
    expect(await healthTrusting(CERT_B)).toBe(200);
  });

  it('names a certificate close to its end, or past it, as a problem in the status', async () => {
    const statusWith = (notAfter: Date) =>
      collectorStatus({
        metrics: tc.collector.metrics, detectors: tc.collector.detectors, store: { mode: 'embedded', location: tc.dataDir }, schemaReady: () => true, schemaVersion: () => null,
        spool: () => ({ bytes: 0, segments: 0 }), retentionDays: 30, detect: { enabled: false, intervalMs: 5000 }, startedAt: Date.now(),
        listening: () => ({ otlp_http: `${tc.url}/v1/traces`, otlp_grpc: null, auth: false, tls: true, client_certificates: false, tls_not_after: notAfter.toISOString() }),
      });
    expect((await statusWith(new Date(Date.now() + 90 * 86_400_000))).problems).toEqual([]);
    expect((await statusWith(new Date(Date.now() + 5.5 * 86_400_000))).problems).toEqual([expect.stringMatching(/^the TLS certificate expires at .*, in 5 days: renew it/)]);
    expect((await statusWith(new Date(Date.now() - 86_400_000))).problems).toEqual([expect.stringMatching(/^the TLS certificate expired at .*: clients refuse it/)]);
  });
});

describe('TLS settings', () => {
  const dir = mkdtempSync(join(tmpdir(), 'loopwatch-tls-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const start = (tls: { certFile?: string; keyFile?: string; clientCaFile?: string }) => createCollector(loadConfig({ port: 0, dataDir: dir, logLevel: 'silent', tls }, {}));

  it('wants both files or neither', () => {
    expect(() => loadConfig({ tls: { certFile: CERT } }, {})).toThrow(/set both --tls-cert and --tls-key/);
    expect(() => loadConfig({}, { LOOPWATCH_TLS_KEY_FILE: KEY })).toThrow(/set both --tls-cert and --tls-key/);
    expect(loadConfig({}, { LOOPWATCH_TLS_CERT_FILE: CERT, LOOPWATCH_TLS_KEY_FILE: KEY }).tls).toEqual({ certFile: CERT, keyFile: KEY, watchIntervalMs: 60_000 });
  });

  it('fails the start, naming the setting, on a missing file or a key of another certificate', async () => {
    await expect(start({ certFile: join(dir, 'nope.pem'), keyFile: KEY })).rejects.toThrow(ConfigError);
    await expect(start({ certFile: join(dir, 'nope.pem'), keyFile: KEY })).rejects.toThrow(/cannot read --tls-cert .*nope\.pem: ENOENT/);
    await expect(start({ certFile: CERT, keyFile: KEY_B })).rejects.toThrow(/cannot use --tls-cert .*cert\.pem with --tls-key .*key-b\.pem/);
    await expect(start({ certFile: KEY, keyFile: KEY })).rejects.toThrow(/cannot use --tls-cert/);
  });

  it('wants TLS on for a client CA, and a file of certificates', async () => {
    expect(() => loadConfig({ tls: { clientCaFile: CLIENT } }, {})).toThrow(/--tls-client-ca \(LOOPWATCH_TLS_CLIENT_CA_FILE\) needs TLS on/);
    expect(loadConfig({}, { LOOPWATCH_TLS_CERT_FILE: CERT, LOOPWATCH_TLS_KEY_FILE: KEY, LOOPWATCH_TLS_CLIENT_CA_FILE: CLIENT }).tls.clientCaFile).toBe(CLIENT);
    await expect(start({ certFile: CERT, keyFile: KEY, clientCaFile: join(dir, 'nope.pem') })).rejects.toThrow(/cannot read --tls-client-ca .*nope\.pem: ENOENT/);
    await expect(start({ certFile: CERT, keyFile: KEY, clientCaFile: KEY })).rejects.toThrow(/cannot use --tls-client-ca .*key\.pem: .*\(a PEM file of CA certificates\)/);
  });
});
