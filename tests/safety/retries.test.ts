// (3) Retries never count twice, and (8) the self-metrics say what happened.
// In one process (chDB binds one data directory per process): a real collector on loopback.
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCollector, type Collector } from '../../collector/src/collector.js';
import { withCallsTable } from '../../collector/src/detect/run-detectors.js';
import { loadConfig } from '../../collector/src/config.js';
import { decodeTraceRequest } from '../../collector/src/ingest/otlp-proto.js';
import { serializeRows, toSpanRows } from '../../collector/src/ingest/span-rows.js';
import { createLogger } from '../../collector/src/logger.js';
import { Loader } from '../../collector/src/spool/loader.js';
import { Spool } from '../../collector/src/spool/spool.js';
import { queryRows } from '../../collector/src/store/client.js';
import { postProto, range, toolSpansRequest } from './helpers.js';

// now, fixed for the process (a re-sent span is the same span): spans older than the retention are refused
const T0 = BigInt(Date.now()) * 1_000_000n;

let dataDir: string;
let collector: Collector;
let url: string;

async function start() {
  const config = loadConfig({ port: 0, dataDir, logLevel: 'silent', detect: { enabled: false } }, {});
  collector = await createCollector(config);
  url = await collector.listen();
}
beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'lw-safety-retries-'));
  await start();
});
afterAll(async () => {
  await collector.close();
  rmSync(dataDir, { recursive: true, force: true });
});

const rows = <T>(sql: string, params?: Record<string, unknown>) => queryRows<T>(collector.store.client, sql, params);

async function perSpan(tag: number): Promise<{ traces: Map<string, number>; tools: Map<string, number> }> {
  const t = await rows<{ id: string; n: string }>(`SELECT SpanId AS id, count() AS n FROM otel_traces WHERE startsWith(SpanId, '${(tag + 1).toString(16).padStart(8, '0')}') GROUP BY SpanId`);
  const c = await rows<{ id: string; n: string }>(`SELECT span_id AS id, count() AS n FROM agent_tool_calls FINAL WHERE startsWith(span_id, '${(tag + 1).toString(16).padStart(8, '0')}') GROUP BY span_id`);
  return { traces: new Map(t.map((r) => [r.id, Number(r.n)])), tools: new Map(c.map((r) => [r.id, Number(r.n)])) };
}

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  // summed over its series (the request and span counters have one per transport)
  const lines = text.split('\n').filter((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return lines.length ? lines.reduce((sum, l) => sum + Number(l.split(' ').pop()), 0) : NaN;
}

/**
 * A segment of `count` tool spans loaded by a loader that then "crashes" before deleting it:
 * `between` runs after the load, then a restarted spool finds the segment again and a new loader
 * replays it. The segment's sealed file is kept aside as it was when the INSERT ran.
 */
async function loadThenReplay(tag: number, count: number, between: () => Promise<void> = async () => {}): Promise<void> {
  const dir = join(dataDir, `replay-spool-${tag}`);
  const backup = join(dataDir, `replay-backup-${tag}`);
  mkdirSync(backup, { recursive: true });
  const log = createLogger('silent');
  const { body } = toolSpansRequest(range(tag, 0, count));
  const payload = serializeRows(toSpanRows(decodeTraceRequest(body), collector.config.limits).rows);
  const opts = { dir, maxBytes: 64 * 1024 * 1024, segmentMaxBytes: 1024 * 1024, segmentMaxAgeMs: 60_000 };
  const load = async (spool: Spool) => {
    const loader = new Loader(spool, collector.store.client, log, collector.metrics);
    loader.start();
    await loader.drained();
    await loader.stop();
    await spool.close();
  };
  const spool = new Spool(opts);
  spool.start();
  await spool.append(payload);
  await spool.seal();
  const [name] = readdirSync(dir).filter((n) => n.endsWith('.sealed'));
  copyFileSync(join(dir, name!), join(backup, name!));
  await load(spool);
  await between();
  // "crash": the delete never happened; a restarted spool finds the segment again
  copyFileSync(join(backup, name!), join(dir, name!));
  const again = new Spool(opts);
  again.start();
  expect(again.sealedCount).toBe(1);
  await load(again);
}

describe('retries', () => {
  it('the same body twice (and gzipped, and concurrently) is stored once and counted as duplicate', async () => {
    const { body, spanIds } = toolSpansRequest(range(1, 0, 50));
    expect((await postProto(url, body)).status).toBe(200);
    expect((await postProto(url, body)).status).toBe(200);
    expect((await postProto(url, gzipSync(body), { 'content-encoding': 'gzip' })).status).toBe(200);
    const b2 = toolSpansRequest(range(1, 50, 50));
    const concurrent = await Promise.all(Array.from({ length: 4 }, () => postProto(url, b2.body)));
    expect(concurrent.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    await collector.flush();
    const { traces, tools } = await perSpan(1);
    expect(traces.size).toBe(100);
    expect([...traces.values()].every((n) => n === 1)).toBe(true);
    expect(tools.size).toBe(100);
    expect([...tools.values()].every((n) => n === 1)).toBe(true);
    expect(await metric('loopwatch_spans_duplicate_total')).toBe(50 * 2 + 50 * 3);
  });

  it('self-metrics after ingest: received, accepted, rejected, spooled, inserted, dropped 0, queue depth, insert latency', async () => {
    // one request with 2 bad spans beside 10 good ones (partial success)
    const good = toolSpansRequest(range(2, 0, 10));
    const req = decodeTraceRequest(good.body) as { resourceSpans: { scopeSpans: { spans: { spanId: Uint8Array }[] }[] }[] };
    const spans = req.resourceSpans[0]!.scopeSpans[0]!.spans;
    expect(spans.length).toBe(10);
    const before = { received: await metric('loopwatch_spans_received_total'), accepted: await metric('loopwatch_spans_accepted_total'), inserted: await metric('loopwatch_spans_inserted_total') };
    const res = await fetch(`${url}/v1/traces`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        resourceSpans: [{ scopeSpans: [{ spans: [
          ...Array.from({ length: 10 }, (_, i) => ({ traceId: '0af7651916cd43dd8448eb211c80319c', spanId: `0000000300000${(i + 1).toString(16).padStart(3, '0')}`, name: 'x', startTimeUnixNano: String(T0), endTimeUnixNano: String(T0 + 100_000_000n) })),
          { traceId: 'nothex', spanId: '0000000300000fff', name: 'bad' },
          { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: '0000000000000000', name: 'bad' },
        ] }] }],
      }),
    });
    expect(res.status).toBe(200);
    expect((await res.json()) as unknown).toEqual({ partialSuccess: { rejectedSpans: '2', errorMessage: expect.stringMatching(/trace_id/) } });
    await collector.flush();
    expect(await metric('loopwatch_spans_received_total')).toBe(before.received + 12);
    expect(await metric('loopwatch_spans_accepted_total')).toBe(before.accepted + 10);
    expect(await metric('loopwatch_spans_inserted_total')).toBe(before.inserted + 10);
    expect(await metric('loopwatch_spans_rejected_total')).toBe(2);
    expect(await metric('loopwatch_spans_dropped_total')).toBe(0);
    expect(await metric('loopwatch_spool_written_bytes_total')).toBeGreaterThan(0);
    expect(await metric('loopwatch_spool_bytes')).toBe(0);
    expect(await metric('loopwatch_spool_segments')).toBe(0);
    expect(await metric('loopwatch_requests_received_total')).toBe(8);
    expect(await metric('loopwatch_requests_rejected_total')).toBe(0);
    expect(await metric('loopwatch_insert_duration_seconds_count')).toBeGreaterThan(0);
    expect(await metric('loopwatch_inflight_requests')).toBe(0);
    expect(await metric('loopwatch_schema_ready')).toBe(1);
    // inserted counts rows that reached the store: all accepted ones, none twice
    expect(await metric('loopwatch_spans_inserted_total')).toBe(await metric('loopwatch_spans_accepted_total'));
  });

  it('a spool segment replayed after a crash between INSERT and delete is dropped by the engine', async () => {
    await loadThenReplay(4, 200);
    const { traces, tools } = await perSpan(4);
    expect(traces.size).toBe(200);
    expect([...traces.values()].every((n) => n === 1)).toBe(true);
    expect(tools.size).toBe(200);
    expect([...tools.values()].every((n) => n === 1)).toBe(true);
    // the views still run for the dropped block: the activity log (no deduplication window) is
    // written again, so a part of it lost in a crash comes back with the replay (repair.ts relies on this)
    const activity = await rows<{ s: string; n: string }>(`SELECT session_id AS s, count() AS n FROM agent_call_activity WHERE startsWith(session_id, 'safety-4-') GROUP BY s`);
    expect(activity).toHaveLength(50);
    expect(activity.every((r) => Number(r.n) === 2)).toBe(true);
  });

  // The engine records a block's deduplication token before it commits the block's part: a kill
  // between the two leaves a table that drops the replay as a duplicate without holding the rows
  // (docs/data-safety.md). A lightweight DELETE makes the same state on purpose: the rows gone,
  // the token still recorded.
  // Each trace's time range in otel_traces_trace_id_ts: what Grafana's trace lookup reads first.
  const traceRanges = async (tag: number) => {
    const prefix = (tag + 1).toString(16).padStart(8, '0');
    const spans = await rows<{ t: string; s: string; e: string }>(
      `SELECT TraceId AS t, toString(toDateTime(min(Timestamp))) AS s, toString(toDateTime(max(Timestamp))) AS e FROM otel_traces WHERE startsWith(TraceId, '${prefix}') GROUP BY t ORDER BY t`,
    );
    const kept = await rows<{ t: string; s: string; e: string }>(
      `SELECT TraceId AS t, toString(min(Start)) AS s, toString(max(End)) AS e FROM otel_traces_trace_id_ts WHERE startsWith(TraceId, '${prefix}') GROUP BY t ORDER BY t`,
    );
    return { spans, kept };
  };
  for (const [tag, table, column] of [[10, 'otel_traces', 'SpanId'], [11, 'agent_tool_calls', 'span_id'], [20, 'otel_traces_trace_id_ts', 'TraceId']] as const) {
    it(`a replayed segment the engine drops although ${table} lost its rows is completed, each span once`, async () => {
      const repairedBefore = await collector.metrics.value('loopwatch_spool_repaired_segments_total');
      await loadThenReplay(tag, 150, async () => {
        const prefix = (tag + 1).toString(16).padStart(8, '0');
        await collector.store.client.command({ query: `DELETE FROM ${table} WHERE startsWith(${column}, '${prefix}')`, clickhouse_settings: { mutations_sync: 2 } });
        if (table === 'otel_traces_trace_id_ts') expect((await traceRanges(tag)).kept).toEqual([]);
        else expect((await perSpan(tag))[table === 'otel_traces' ? 'traces' : 'tools'].size).toBe(0);
      });
      const { traces, tools } = await perSpan(tag);
      expect(traces.size).toBe(150);
      expect([...traces.values()].every((n) => n === 1)).toBe(true);
      expect(tools.size).toBe(150);
      expect([...tools.values()].every((n) => n === 1)).toBe(true);
      const { spans, kept } = await traceRanges(tag);
      expect(spans).toHaveLength(50);
      expect(kept).toEqual(spans);
      expect(await collector.metrics.value('loopwatch_spool_repaired_segments_total')).toBe(repairedBefore + 1);
    });
  }

  // also for a segment found at start, which the loader checks table by table after loading it:
  // the check leaves the refused row to quarantine
  for (const [tag, foundAtStart] of [[6, false], [12, true]] as const) {
    it(`a row the store refuses does not block the spool or take its segment down: the rest is stored, the row quarantined${foundAtStart ? ' (segment found at start)' : ''}`, async () => {
      const dir = join(dataDir, `poison-spool-${tag}`);
      const log = createLogger('silent');
      const { body } = toolSpansRequest(range(tag, 0, 100));
      const good = serializeRows(toSpanRows(decodeTraceRequest(body), collector.config.limits).rows).toString().trimEnd().split('\n');
      const badId = `${(tag + 2).toString(16).padStart(8, '0')}00000001`;
      const bad = JSON.stringify(JSON.parse(good[0]!).map((v: unknown, i: number) => (i === 0 ? 'not a time' : i === 2 ? badId : v)));
      const payload = Buffer.from([...good.slice(0, 37), bad, ...good.slice(37)].join('\n') + '\n');
      const opts = { dir, maxBytes: 64 * 1024 * 1024, segmentMaxBytes: 1024 * 1024, segmentMaxAgeMs: 60_000 };
      let spool = new Spool(opts);
      spool.start();
      await spool.append(payload);
      if (foundAtStart) {
        await spool.close();
        spool = new Spool(opts);
        spool.start();
        expect(spool.sealedCount).toBe(1);
      }
      const droppedBefore = await collector.metrics.value('loopwatch_spans_dropped_total');
      const loader = new Loader(spool, collector.store.client, log, collector.metrics);
      loader.start();
      await loader.drained();
      await loader.stop();
      await spool.close();
      const { traces, tools } = await perSpan(tag);
      expect(traces.size).toBe(100);
      expect(tools.size).toBe(100);
      expect((await perSpan(tag + 1)).traces.size).toBe(0);
      expect(await collector.metrics.value('loopwatch_spans_dropped_total')).toBe(droppedBefore + 1);
      const [rejected] = readdirSync(join(dir, 'quarantine'));
      expect(rejected).toMatch(/\.rejected$/);
      expect(readFileSync(join(dir, 'quarantine', rejected!), 'utf8')).toBe(bad + '\n');
    });
  }

  it('the same spans re-sent in a different batch composition after a restart: typed tables, detectors and exact counts see each once', async () => {
    const first = toolSpansRequest(range(5, 0, 90), { session: 'safety-rebatch' });
    expect((await postProto(url, first.body)).status).toBe(200);
    await collector.close();
    await start(); // retry cache is empty now
    // an exporter (or a re-batching proxy) re-sends the same spans, split differently, with new ones
    const parts = [toolSpansRequest([...range(5, 0, 30), ...range(5, 90, 10)], { session: 'safety-rebatch' }), toolSpansRequest(range(5, 30, 60), { session: 'safety-rebatch' })];
    for (const p of parts) expect((await postProto(url, p.body)).status).toBe(200);
    await collector.flush();
    const { traces, tools } = await perSpan(5);
    // The raw exporter-layout table is at-least-once for client re-sends across a restart:
    const raw = [...traces.values()];
    expect(traces.size).toBe(100);
    expect(raw.filter((n) => n === 2).length).toBe(90);
    // ...exact readers collapse by span identity:
    const [{ n: distinct }] = await rows<{ n: string }>("SELECT uniqExact(SpanId) AS n FROM otel_traces WHERE startsWith(SpanId, '00000006')") as [{ n: string }];
    expect(Number(distinct)).toBe(100);
    expect(tools.size).toBe(100);
    expect([...tools.values()].every((n) => n === 1)).toBe(true);
    const [{ n: calls }] = await withCallsTable(collector.store.client, { since: '2000-01-01 00:00:00', until: '2100-01-01 00:00:00' }, (table) =>
      rows<{ n: string }>("SELECT count() AS n FROM {table:Identifier} WHERE session_id = 'safety-rebatch'", { table }),
    ) as [{ n: string }];
    expect(Number(calls)).toBe(100);
  });
});
