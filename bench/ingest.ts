// bench/ingest: OTLP protobuf spans/s end to end (HTTP -> decode -> spool fdatasync -> loader ->
// embedded ClickHouse, with the normalizing views) against, in the same run, the engine's own
// insert rate for the same rows through the same client (no HTTP, no decode, no spool); and the
// same requests over OTLP/gRPC, to a new collector, in the same run.
// Usage: npm run bench:ingest [-- --spans 300000 --batch 1000 --concurrency 8]
import { spawn } from 'node:child_process';
import { credentials, makeGenericClientConstructor, status, type ServiceError } from '@grpc/grpc-js';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../collector/src/config.js';
import { TRACE_SERVICE } from '../collector/src/ingest/otlp-grpc.js';
import { decodeTraceRequest } from '../collector/src/ingest/otlp-proto.js';
import { serializeRows, toSpanRows } from '../collector/src/ingest/span-rows.js';
import { packageRoot } from '../collector/src/paths.js';
import { spanInsertSettings } from '../collector/src/spool/loader.js';
import { insertSpanRows, openStore } from '../collector/src/store/client.js';
import { migrate } from '../collector/src/store/migrate.js';
import { makeRequests } from './spans.js';

const { values } = parseArgs({
  options: {
    spans: { type: 'string', default: '300000' },
    batch: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '8' },
  },
});
const SPANS = Number(values.spans);
const BATCH = Number(values.batch);
const CONCURRENCY = Number(values.concurrency);

async function engineCeiling(requests: Uint8Array[]): Promise<{ spansPerSec: number; seconds: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'lw-bench-engine-'));
  const config = loadConfig({ dataDir: dir }, {});
  const store = openStore(config);
  try {
    await migrate(store.client, { retentionDays: 30 });
    // Same rows, already converted and serialized: only the engine's work is timed.
    const limits = config.limits;
    const payloads = requests.map((r) => serializeRows(toSpanRows(decodeTraceRequest(r), limits).rows));
    // Group like the spool does (segments of up to spool.segmentMaxBytes) so both sides insert
    // the same block sizes, through the loader's insert path with the loader's settings.
    const groups: Buffer[][] = [];
    let cur: Buffer[] = [];
    let size = 0;
    for (const p of payloads) {
      cur.push(p);
      size += p.length;
      if (size >= config.spool.segmentMaxBytes) {
        groups.push(cur);
        cur = [];
        size = 0;
      }
    }
    if (cur.length) groups.push(cur);
    const t0 = performance.now();
    let n = 0;
    for (const g of groups) await insertSpanRows(store.client, g, spanInsertSettings(`bench-ceiling-${n++}`));
    const seconds = (performance.now() - t0) / 1000;
    return { spansPerSec: SPANS / seconds, seconds };
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

type Send = (body: Uint8Array) => Promise<'ok' | 'retry'>;

/** One export over OTLP/HTTP: ok, or retry (429/503). */
const httpSender = (url: string): Send => async (body) => {
  const res = await fetch(`${url}/v1/traces`, { method: 'POST', body, headers: { 'content-type': 'application/x-protobuf' } });
  await res.arrayBuffer();
  if (res.status === 200) return 'ok';
  if (res.status === 429 || res.status === 503) return 'retry';
  throw new Error(`unexpected ${res.status}`);
};

/** One export over OTLP/gRPC (one channel for all workers, as an exporter has): ok, or retry (UNAVAILABLE). */
function grpcSender(address: string): Send & { close(): void } {
  const Client = makeGenericClientConstructor(TRACE_SERVICE, 'TraceService');
  const client = new Client(address, credentials.createInsecure(), { 'grpc.max_send_message_length': 64 * 1024 * 1024 }) as unknown as {
    Export(req: Buffer, cb: (err: ServiceError | null) => void): void;
    close(): void;
  };
  const send = (body: Uint8Array) =>
    new Promise<'ok' | 'retry'>((resolve, reject) =>
      client.Export(Buffer.from(body), (err) => (!err ? resolve('ok') : err.code === status.UNAVAILABLE ? resolve('retry') : reject(err))),
    );
  return Object.assign(send, { close: () => client.close() });
}

async function endToEnd(requests: Uint8Array[], transport: 'http' | 'grpc'): Promise<{ spansPerSec: number; seconds: number; ackSeconds: number; rejected: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'lw-bench-e2e-'));
  const child = spawn(process.execPath, [join(packageRoot, 'dist/collector/src/cli/main.js'), 'up', '--port', '0', '--data-dir', dir, '--json', '--log-level', 'warn'], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, LOOPWATCH_DETECT_INTERVAL_MS: '600000' },
  });
  try {
    const { url, otlp_grpc: otlpGrpc } = await new Promise<{ url: string; otlp_grpc: string }>((resolve, reject) => {
      let buf = '';
      child.stdout.on('data', (d: Buffer) => {
        buf += d.toString();
        const line = buf.split('\n').find((l) => l.startsWith('{'));
        if (line) resolve(JSON.parse(line) as { url: string; otlp_grpc: string });
      });
      child.once('exit', (code) => reject(new Error(`collector exited ${code}`)));
    });
    const send = transport === 'http' ? httpSender(url) : grpcSender(otlpGrpc);
    let next = 0;
    let rejected = 0;
    const t0 = performance.now();
    const worker = async () => {
      while (next < requests.length) {
        const body = requests[next++]!;
        while ((await send(body)) === 'retry') {
          rejected++;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const ackSeconds = (performance.now() - t0) / 1000;
    (send as { close?: () => void }).close?.();
    while ((await metric(url, 'loopwatch_spans_inserted_total')) < SPANS) await new Promise((r) => setTimeout(r, 20));
    const seconds = (performance.now() - t0) / 1000;
    return { spansPerSec: SPANS / seconds, seconds, ackSeconds, rejected };
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}

const requests = makeRequests(SPANS, BATCH);
const bytes = requests.reduce((a, r) => a + r.length, 0);
console.log(`bench/ingest: ${SPANS} spans in ${requests.length} OTLP protobuf requests (${(bytes / 1e6).toFixed(1)} MB), concurrency ${CONCURRENCY}`);
await engineCeiling(makeRequests(20_000, BATCH)); // warm-up
const ceiling = await engineCeiling(requests);
console.log(`engine ceiling (direct client INSERT, same rows): ${Math.round(ceiling.spansPerSec).toLocaleString()} spans/s (${ceiling.seconds.toFixed(2)} s)`);
const e2e = await endToEnd(requests, 'http');
console.log(`end to end (HTTP + decode + spool fsync + load): ${Math.round(e2e.spansPerSec).toLocaleString()} spans/s (${e2e.seconds.toFixed(2)} s; all acknowledged after ${e2e.ackSeconds.toFixed(2)} s; ${e2e.rejected} backpressure retries)`);
const ratio = e2e.spansPerSec / ceiling.spansPerSec;
console.log(`ratio end-to-end / engine ceiling: ${ratio.toFixed(2)}x`);
const grpc = await endToEnd(requests, 'grpc');
console.log(`end to end over OTLP/gRPC: ${Math.round(grpc.spansPerSec).toLocaleString()} spans/s (${grpc.seconds.toFixed(2)} s; all acknowledged after ${grpc.ackSeconds.toFixed(2)} s; ${grpc.rejected} backpressure retries); acknowledged gRPC / HTTP: ${(e2e.ackSeconds / grpc.ackSeconds).toFixed(2)}x`);

const result = {
  date: new Date().toISOString(), node: process.version, cpus: (await import('node:os')).cpus().length,
  spans: SPANS, spansPerRequest: BATCH, concurrency: CONCURRENCY,
  engineCeilingSpansPerSec: Math.round(ceiling.spansPerSec), endToEndSpansPerSec: Math.round(e2e.spansPerSec),
  ackSpansPerSec: Math.round(SPANS / e2e.ackSeconds), ratio: Number(ratio.toFixed(3)),
  grpc: { endToEndSpansPerSec: Math.round(grpc.spansPerSec), ackSpansPerSec: Math.round(SPANS / grpc.ackSeconds), ackRatioToHttp: Number((e2e.ackSeconds / grpc.ackSeconds).toFixed(3)) },
};
mkdirSync(join(packageRoot, 'bench/results'), { recursive: true });
writeFileSync(join(packageRoot, 'bench/results/ingest.json'), JSON.stringify(result, null, 2) + '\n');
