// bench/overload: drives a real collector process at a multiple of its sustainable rate and
// samples its RSS. Open loop: requests start on a fixed schedule whatever the answers (up to a
// cap of outstanding requests, so the client itself stays bounded). Every request carries new
// span ids (patched into a template), so the retry cache never short-cuts the work.
// Usage: npm run build && tsx bench/overload.ts [-- --rate 330 --requests 4000 --spans 1000]
// (rate in requests/s; the default is ~10x the end-to-end rate bench/ingest measures on 2 cores)
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { encodeTraceRequest } from '../collector/src/ingest/otlp-proto.js';
import { ensureBuilt, startProcess, stopProcess, waitDrained } from '../tests/safety/helpers.js';

export interface OverloadOptions {
  /** Requests started per second. */
  rate: number;
  requests: number;
  spansPerRequest: number;
  maxOutstanding: number;
  env?: Record<string, string>;
}

export interface OverloadResult {
  offeredSpansPerSec: number;
  acceptedSpansPerSec: number;
  seconds: number;
  statuses: Record<string, number>;
  errors: number;
  /** What the failed requests failed with (the first few kinds): a reset by the collector, or the client's own. */
  errorMessages: string[];
  rssMiB: { start: number; max: number; p50: number; end: number };
  retryAfterMissing: number;
  drainedSeconds: number;
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}

/** A protobuf request template and where each span id's 8 bytes sit in it. */
function template(spans: number): { body: Buffer; offsets: number[] } {
  const marker = (i: number) => Buffer.from([0xfe, 0xed, 0xfa, 0xce, (i >>> 24) & 255, (i >>> 16) & 255, (i >>> 8) & 255, i & 255]);
  const start = BigInt(Date.now()) * 1_000_000n;
  const list = Array.from({ length: spans }, (_, i) => ({
    traceId: Buffer.from(`0af7651916cd43dd8448eb21${(i % 256).toString(16).padStart(2, '0')}80319c`, 'hex'),
    spanId: marker(i),
    name: 'execute_tool read_file',
    kind: 1,
    startTimeUnixNano: (start + BigInt(i) * 1000n).toString(),
    endTimeUnixNano: (start + BigInt(i) * 1000n + 500_000n).toString(),
    attributes: [
      { key: 'gen_ai.operation.name', value: { stringValue: 'execute_tool' } },
      { key: 'gen_ai.tool.name', value: { stringValue: 'read_file' } },
      { key: 'gen_ai.tool.call.arguments', value: { stringValue: `{"path":"/src/file-${i % 97}.ts"}` } },
      { key: 'gen_ai.conversation.id', value: { stringValue: `overload-${i % 100}` } },
      { key: 'gen_ai.agent.name', value: { stringValue: 'overload' } },
    ],
  }));
  const body = Buffer.from(encodeTraceRequest({ resourceSpans: [{ resource: { attributes: [{ key: 'service.name', value: { stringValue: 'overload' } }] }, scopeSpans: [{ spans: list }] }] }));
  const offsets = list.map((_, i) => body.indexOf(marker(i)));
  if (offsets.some((o) => o < 0)) throw new Error('marker not found');
  return { body, offsets };
}

export async function runOverload(opts: OverloadOptions): Promise<OverloadResult> {
  ensureBuilt();
  const dataDir = mkdtempSync(join(tmpdir(), 'lw-overload-'));
  const p = await startProcess(dataDir, { LOOPWATCH_LOG_LEVEL: 'error', ...opts.env });
  const samples: number[] = [];
  const start = rssMiB(p.pid);
  const sampler = setInterval(() => samples.push(rssMiB(p.pid)), 100);
  const { body: tpl, offsets } = template(opts.spansPerRequest);
  const statuses: Record<string, number> = {};
  let errors = 0;
  const errorMessages = new Set<string>();
  let accepted = 0;
  let retryAfterMissing = 0;
  let outstanding = 0;
  let started = 0;
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const launch = () => {
      const due = Math.min(opts.requests, Math.floor(((performance.now() - t0) / 1000) * opts.rate));
      while (started < due && outstanding < opts.maxOutstanding) {
        const n = started++;
        const body = Buffer.from(tpl);
        for (const o of offsets) body.writeUInt32BE(n, o); // unique span ids per request
        outstanding++;
        fetch(`${p.url}/v1/traces`, { method: 'POST', body, headers: { 'content-type': 'application/x-protobuf' } })
          .then(async (res) => {
            await res.arrayBuffer();
            statuses[res.status] = (statuses[res.status] ?? 0) + 1;
            if (res.status === 200) accepted += opts.spansPerRequest;
            else if ((res.status === 429 || res.status === 503) && !res.headers.get('retry-after')) retryAfterMissing++;
          })
          .catch((err: unknown) => {
            errors++;
            const cause = (err as { cause?: { code?: string; message?: string } }).cause;
            if (errorMessages.size < 5) errorMessages.add(`${(err as Error).message}${cause ? ` (${cause.code ?? ''} ${cause.message ?? ''})` : ''}`);
          })
          .finally(() => {
            outstanding--;
            if (started >= opts.requests && outstanding === 0) resolve();
          });
      }
      if (started < opts.requests) setTimeout(launch, 5);
    };
    launch();
  });
  const seconds = (performance.now() - t0) / 1000;
  const t1 = performance.now();
  await waitDrained(p.url, {}, 6000);
  const drainedSeconds = (performance.now() - t1) / 1000;
  clearInterval(sampler);
  const end = rssMiB(p.pid);
  await stopProcess(p);
  rmSync(dataDir, { recursive: true, force: true });
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    offeredSpansPerSec: Math.round((opts.requests * opts.spansPerRequest) / seconds),
    acceptedSpansPerSec: Math.round(accepted / seconds),
    seconds: Math.round(seconds * 10) / 10,
    statuses,
    errors,
    errorMessages: [...errorMessages],
    rssMiB: { start: Math.round(start), max: Math.round(sorted[sorted.length - 1] ?? 0), p50: Math.round(sorted[sorted.length >> 1] ?? 0), end: Math.round(end) },
    retryAfterMissing,
    drainedSeconds: Math.round(drainedSeconds * 10) / 10,
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({
    options: {
      rate: { type: 'string', default: '330' },
      requests: { type: 'string', default: '4000' },
      spans: { type: 'string', default: '1000' },
      outstanding: { type: 'string', default: '512' },
    },
  });
  const r = await runOverload({ rate: Number(values.rate), requests: Number(values.requests), spansPerRequest: Number(values.spans), maxOutstanding: Number(values.outstanding) });
  process.stdout.write(JSON.stringify(r, null, 2) + '\n');
}
