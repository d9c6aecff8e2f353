// The detector schedule inside a real collector: OTLP over loopback HTTP -> spool -> store ->
// scheduled detector pass -> finding, within 10 s of the looping call reaching the collector
// with the default interval (5 s: at most one interval plus one pass).
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ClickHouseClient } from '@clickhouse/client';
import { loadDetectorFiles, runDetectors } from '../../collector/src/detect/run-detectors.js';
import { DetectorScheduler, findingsLogLevel } from '../../collector/src/detect/scheduler.js';
import { Metrics } from '../../collector/src/metrics.js';
import { collectorStatus } from '../../collector/src/status.js';
import { queriesDir } from '../../collector/src/paths.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';
import { buildSession, otlpJson, times } from './helpers.js';

let tc: TestCollector;
beforeAll(async () => {
  tc = await startTestCollector(); // default detect settings: enabled, every 5 s
});
afterAll(async () => {
  await tc?.close();
});

async function post(body: string): Promise<void> {
  const res = await fetch(`${tc.url}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  expect(res.status).toBe(200);
  await res.arrayBuffer();
}

describe('detector scheduler', () => {
  it('stores a finding within 10 s of the Nth repeat reaching the collector', async () => {
    expect(tc.collector.config.detect.intervalMs).toBe(5000);
    const s = buildSession('sched-stuck', times(3, { tool: 'read_file', args: { path: 'x' }, result: 'same' }), { startMs: Date.now() - 5_000 });
    const cut = s.toolRowIndex[1]! + 1;
    await post(otlpJson(s.rows.slice(0, cut))); // two repeats: not a loop yet
    await new Promise((r) => setTimeout(r, 1500));
    await post(otlpJson(s.rows.slice(cut))); // the 3rd identical call completes the stuck loop
    const t0 = Date.now();
    let found = 0;
    while (Date.now() - t0 < 20_000) {
      const [r] = await tc.rows<{ n: string }>(`SELECT count() AS n FROM agent_findings FINAL WHERE session_id = 'sched-stuck' AND detector = 'stuck'`);
      found = Number(r!.n);
      if (found > 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const latencyMs = Date.now() - t0;
    expect(found).toBe(1);
    expect(latencyMs).toBeLessThanOrEqual(10_000);

    // the finding is visible as soon as it is stored; the pass that stored it counts itself a
    // moment later, when it has also moved its watermarks
    const m = tc.collector.metrics;
    for (const t1 = Date.now(); Date.now() - t1 < 10_000 && (await m.value('loopwatch_findings_total')) < 1;) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(await m.value('loopwatch_detector_runs_total')).toBeGreaterThanOrEqual(1);
    expect(await m.value('loopwatch_findings_total')).toBeGreaterThanOrEqual(1);
    expect(await m.value('loopwatch_detector_errors_total')).toBe(0);
    const text = await (await fetch(`${tc.url}/metrics`)).text();
    expect(text).toMatch(/loopwatch_detector_duration_seconds_count [1-9]/);
    // and the process's own: memory, heap, event loop
    expect(text).toMatch(/^process_resident_memory_bytes [1-9]\d*$/m);
    expect(text).toMatch(/^nodejs_heap_size_used_bytes [1-9]\d*$/m);
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds \d/m);
  });
});

describe('detector scheduler, its log', () => {
  it('new or withdrawn findings at info; findings that only grew (a loop going on, every pass) at debug', () => {
    expect(findingsLogLevel({ newFindings: 1, grownFindings: 3, withdrawnFindings: 0 })).toBe('info');
    expect(findingsLogLevel({ newFindings: 0, grownFindings: 0, withdrawnFindings: 2 })).toBe('info');
    expect(findingsLogLevel({ newFindings: 0, grownFindings: 3, withdrawnFindings: 0 })).toBe('debug');
    expect(findingsLogLevel({ newFindings: 0, grownFindings: 0, withdrawnFindings: 0 })).toBeUndefined();
  });
});

describe('detector scheduler, failing', () => {
  it('counts every failed pass but logs the same error once (not every interval), and says when passes run again', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lw-sched-fail-'));
    const detectors = join(dir, 'detectors'); // not there yet: every pass fails
    const lines: { level: number; msg: string; err?: unknown; repeatedSinceLogged?: number }[] = [];
    const log = pino({ level: 'info' }, new Writable({ write: (c: Buffer, _e, done) => (lines.push(JSON.parse(c.toString())), done()) }));
    const metrics = new Metrics();
    const scheduler = new DetectorScheduler(tc.collector.store.client, log, metrics, { intervalMs: 20, run: { dir: detectors } });
    try {
      scheduler.start();
      for (const t0 = Date.now(); Date.now() - t0 < 10_000 && (await metrics.value('loopwatch_detector_errors_total')) < 10;) await new Promise((r) => setTimeout(r, 20));
      expect(await metrics.value('loopwatch_detector_errors_total')).toBeGreaterThanOrEqual(10);
      expect(lines.filter((l) => l.msg === 'detector pass failed')).toHaveLength(1);
      // and the collector's status names it
      const status = () => collectorStatus({
        metrics, detectors: scheduler, store: { mode: 'embedded', location: dir }, schemaReady: () => true, schemaVersion: () => null, spool: () => ({ bytes: 0, segments: 0 }),
        listening: () => ({ otlp_http: '', otlp_grpc: null, auth: false, tls: false, client_certificates: false, tls_not_after: null }), retentionDays: 30, detect: { enabled: true, intervalMs: 20 }, startedAt: Date.now(),
      });
      const failing = await status();
      expect(failing.healthy).toBe(false);
      expect(failing.problems).toEqual([expect.stringMatching(/^the last detector pass failed: .*ENOENT/)]);
      expect(failing.detectors.failed_passes).toBeGreaterThanOrEqual(10);

      cpSync(join(queriesDir, 'detectors'), detectors, { recursive: true }); // fixed
      for (const t0 = Date.now(); Date.now() - t0 < 10_000 && !lines.some((l) => l.msg === 'detector passes run again');) await new Promise((r) => setTimeout(r, 20));
      expect(lines.filter((l) => l.msg === 'detector passes run again')).toHaveLength(1);
      expect((await status()).healthy).toBe(true);
    } finally {
      await scheduler.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('detector scheduler, stopped during a pass', () => {
  it('stops the pass before its next query (a shutdown does not wait for the whole pass), moves no watermark, and the next pass finds what it would have', async () => {
    await tc.collector.detectors.stop(); // the collector's own schedule: this test runs the passes
    const s = buildSession('sched-stopped', times(4, { tool: 'read_file', args: { path: 'y' }, result: 'same' }));
    await post(otlpJson(s.rows));
    for (const t0 = Date.now(); Date.now() - t0 < 20_000;) {
      const [r] = await tc.rows<{ n: string }>(`SELECT count() AS n FROM agent_tool_calls WHERE session_id = 'sched-stopped'`);
      if (Number(r!.n) === 4) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const [before] = await tc.rows<{ marks: string }>(`SELECT toString(groupArray((detector, watermark))) AS marks FROM loopwatch_detector_state FINAL`);

    // the real client, seen through a proxy that stops the schedule when the first call detector's
    // query starts, and records every detector query after that
    const client = tc.collector.store.client;
    const detectorSql = new Set(loadDetectorFiles().filter((f) => f.params.includes('calls')).map((f) => f.sql));
    let scheduler: DetectorScheduler | undefined;
    let stopped: Promise<void> | undefined;
    const afterStop: string[] = [];
    const watched = new Proxy(client, {
      get(target, key, receiver) {
        if (key !== 'query') return Reflect.get(target, key, receiver) as unknown;
        return (args: { query: string }) => {
          if (detectorSql.has(args.query)) {
            if (stopped) afterStop.push(args.query);
            else stopped = scheduler!.stop();
          }
          return target.query(args as Parameters<ClickHouseClient['query']>[0]);
        };
      },
    });
    const lines: { msg: string }[] = [];
    const log = pino({ level: 'info' }, new Writable({ write: (c: Buffer, _e, done) => (lines.push(JSON.parse(c.toString())), done()) }));
    const metrics = new Metrics();
    scheduler = new DetectorScheduler(watched, log, metrics, { intervalMs: 10 });
    scheduler.start();
    for (const t0 = Date.now(); Date.now() - t0 < 30_000 && !stopped;) await new Promise((r) => setTimeout(r, 10));
    expect(stopped).toBeDefined();
    await stopped;
    expect(afterStop).toEqual([]); // no detector query after the stop
    expect(lines.map((l) => l.msg)).toContain('detector pass stopped for shutdown; the next start examines its sessions again');
    expect(await metrics.value('loopwatch_detector_errors_total')).toBe(0);
    expect(await metrics.value('loopwatch_detector_runs_total')).toBe(0);
    const [after] = await tc.rows<{ marks: string }>(`SELECT toString(groupArray((detector, watermark))) AS marks FROM loopwatch_detector_state FINAL`);
    expect(after!.marks).toBe(before!.marks);
    const found = async () => Number((await tc.rows<{ n: string }>(`SELECT count() AS n FROM agent_findings FINAL WHERE session_id = 'sched-stopped' AND detector = 'stuck'`))[0]!.n);
    expect(await found()).toBe(0);

    // the next pass examines the session again
    const r = await runDetectors(client);
    expect(r.errors).toEqual({});
    expect(await found()).toBe(1);
  });
});
