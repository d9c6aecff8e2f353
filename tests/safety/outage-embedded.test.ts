// (2) Store outage on the embedded engine, for real: otel_traces is DETACHed, so every INSERT
// fails in the engine. The collector keeps acknowledging into the bounded spool, answers 503
// with Retry-After once the spool is full, and after ATTACH drains it: nothing acknowledged lost.
import { mkdtempSync, rmSync } from 'node:fs';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCollector, type Collector } from '../../collector/src/collector.js';
import { loadConfig } from '../../collector/src/config.js';
import { decodeRpcStatus } from '../../collector/src/ingest/otlp-proto.js';
import { queryRows } from '../../collector/src/store/client.js';
import { postProto, range, toolSpansRequest } from './helpers.js';

let dataDir: string;
let collector: Collector;
let url: string;
const SPOOL_MAX = 1024 * 1024;
const logged: string[] = [];

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'lw-safety-outage-'));
  const config = loadConfig(
    { port: 0, dataDir, logLevel: 'silent', detect: { enabled: false }, spool: { maxBytes: SPOOL_MAX, segmentMaxBytes: 128 * 1024, segmentMaxAgeMs: 100 } },
    {},
  );
  collector = await createCollector(config, pino({ level: 'info' }, new Writable({ write: (chunk: Buffer, _enc, done) => (logged.push(chunk.toString()), done()) })));
  url = await collector.listen();
});
afterAll(async () => {
  await collector.close();
  rmSync(dataDir, { recursive: true, force: true });
});

const rows = <T>(sql: string) => queryRows<T>(collector.store.client, sql);

async function health() {
  return (await (await fetch(`${url}/healthz`)).json()) as { spool: { bytes: number; segments: number } };
}

describe('embedded store outage', () => {
  it('spools while the table is detached, 503 + Retry-After when full, drains after ATTACH', async () => {
    const acked: string[] = [];
    const before = toolSpansRequest(range(10, 0, 100));
    expect((await postProto(url, before.body)).status).toBe(200);
    acked.push(...before.spanIds);
    await collector.flush();

    await collector.store.client.command({ query: 'DETACH TABLE otel_traces' });
    let next = 100;
    let full: Response | null = null;
    for (let i = 0; i < 2000 && !full; i++) {
      const { body, spanIds } = toolSpansRequest(range(10, next, 100));
      next += 100;
      const res = await postProto(url, body);
      if (res.status === 200) acked.push(...spanIds);
      else if (res.status === 503) full = res;
      else throw new Error(`unexpected ${res.status}`);
    }
    expect(full, 'the spool filled up').not.toBeNull();
    expect(full!.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(decodeRpcStatus(new Uint8Array(await full!.arrayBuffer())).message).toMatch(/spool full/);
    const h = await health();
    expect(h.spool.bytes).toBeGreaterThan(SPOOL_MAX / 2);
    expect(h.spool.bytes).toBeLessThanOrEqual(SPOOL_MAX);
    expect(h.spool.segments).toBeGreaterThan(0);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toMatch(/loopwatch_insert_failures_total [1-9]/);
    expect(metrics).toMatch(/loopwatch_requests_spool_full_total\{transport="http"\} [1-9]/);
    expect(metrics).toMatch(/loopwatch_spans_dropped_total 0/);

    await collector.store.client.command({ query: 'ATTACH TABLE otel_traces' });
    await collector.flush();
    expect((await health()).spool.bytes).toBe(0);
    // the operator is told: the spool full (once), the inserts failing, then working again
    expect(logged.filter((l) => /the spool is full: exports are answered 503/.test(l))).toHaveLength(1);
    expect(logged.some((l) => /insert into store failed; will retry/.test(l))).toBe(true);
    expect(logged.some((l) => /inserts into the store work again/.test(l))).toBe(true);
    // accepting again
    const after = toolSpansRequest(range(10, next, 100));
    expect((await postProto(url, after.body)).status).toBe(200);
    acked.push(...after.spanIds);
    await collector.flush();

    const traces = new Map((await rows<{ id: string; n: string }>("SELECT SpanId AS id, count() AS n FROM otel_traces WHERE startsWith(SpanId, '0000000b') GROUP BY SpanId")).map((r) => [r.id, Number(r.n)]));
    const tools = new Map((await rows<{ id: string; n: string }>("SELECT span_id AS id, count() AS n FROM agent_tool_calls FINAL WHERE startsWith(span_id, '0000000b') GROUP BY span_id")).map((r) => [r.id, Number(r.n)]));
    console.log(`outage: ${acked.length} spans acknowledged (${SPOOL_MAX} byte spool), ${traces.size} stored`);
    expect(acked.length).toBeGreaterThan(1000);
    expect(acked.filter((id) => traces.get(id) !== 1)).toEqual([]);
    expect(acked.filter((id) => tools.get(id) !== 1)).toEqual([]);
    expect(traces.size).toBe(acked.length);
  }, 120_000);

  it('an export larger than the whole spool is refused 413 (it can never fit), not 503 forever', async () => {
    const { body } = toolSpansRequest(range(12, 0, 8000)); // its rows are several MB: more than the 1 MiB spool
    const res = await postProto(url, body);
    expect(res.status).toBe(413);
    expect(decodeRpcStatus(new Uint8Array(await res.arrayBuffer())).message).toMatch(/larger than the spool .*: send smaller batches, or raise the collector's LOOPWATCH_SPOOL_MAX_BYTES/);
    // a batch that fits is taken as ever
    expect((await postProto(url, toolSpansRequest(range(12, 10_000, 50)).body)).status).toBe(200);
  });
});
