// Loop spans of a loop that keeps growing: a span is written for a new finding, then at its
// doublings, severity changes, first known waste, and at its first growth LOOP_SPAN_EVERY_MS
// after its last span (the loop alert reads the last 5 minutes), not for every version (a soak
// measured an hour-long loop at ~720 spans per detector in its trace). Real engine, real
// detector passes with set clocks (ahead of the store's: a collector of its own, so that no
// other test's watermarks move).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOOP_SPAN_EVERY_MS, runDetectors, writesLoopSpan } from '../../collector/src/detect/run-detectors.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';
import { buildSession, insertSpans, times, type BuiltSession } from './helpers.js';

let tc: TestCollector;
beforeAll(async () => {
  tc = await startTestCollector({ detect: { enabled: false } });
});
afterAll(async () => {
  await tc?.close();
});

/** Feeds a session's calls to the store a few at a time, a detector pass (at a set clock) after each. */
function feeder(s: BuiltSession, params: Record<string, number>) {
  let inserted = 0;
  return async (calls: number, now: number) => {
    const end = calls === s.toolRowIndex.length ? s.rows.length : s.toolRowIndex[calls - 1]! + 1;
    await insertSpans(tc.collector.store.client, s.rows.slice(inserted, end));
    inserted = end;
    expect((await runDetectors(tc.collector.store.client, { params, now: new Date(now) })).errors).toEqual({});
  };
}

async function stuckSpans(session: string): Promise<{ repeats: number; severity: string; at: number }[]> {
  const rows = await tc.rows<{ repeats: string; severity: string; at: string }>(
    `SELECT SpanAttributes['loop.repeats'] AS repeats, SpanAttributes['loop.severity'] AS severity,
            toString(toUnixTimestamp64Milli(toDateTime64OrZero(SpanAttributes['loop.detected_at'], 3))) AS at
     FROM otel_traces
     WHERE SpanName = 'loopwatch.loop' AND SpanAttributes['loop.session_id'] = {s:String} AND SpanAttributes['loop.detector'] = 'stuck'`,
    { s: session },
  );
  return rows.map((r) => ({ repeats: Number(r.repeats), severity: r.severity, at: Number(r.at) })).sort((a, b) => a.repeats - b.repeats);
}

describe('loop spans of a growing loop', () => {
  it('which version writes one', () => {
    const v = (repeats: number, severity = 'warning', tokens = 1000, cost = 0.01) => ({ repeats, severity, wasted_tokens: tokens, wasted_cost_usd: cost });
    const at = 1_000_000;
    expect(writesLoopSpan(v(5), v(6), at, at - 1000)).toBe(false);
    expect(writesLoopSpan(v(7), v(8), at, at - 1000)).toBe(true); // the next power of two
    expect(writesLoopSpan(v(9), v(10, 'critical'), at, at - 1000)).toBe(true);
    expect(writesLoopSpan(v(9, 'warning', 0, 0), v(9, 'warning', 4400, 0.01), at, at - 1000)).toBe(true); // its waste first known
    expect(writesLoopSpan(v(9, 'warning', 1000, 0), v(9, 'warning', 1000, 0.01), at, at - 1000)).toBe(true);
    expect(writesLoopSpan(v(9), v(10), at, at - LOOP_SPAN_EVERY_MS + 1)).toBe(false);
    expect(writesLoopSpan(v(9), v(10), at, at - LOOP_SPAN_EVERY_MS)).toBe(true); // its last span that old
    expect(writesLoopSpan(v(9), v(10), at, undefined)).toBe(true); // not known (a restart)
  });

  it('a loop that grows pass after pass writes loop spans at its doublings and severity changes, and once its last span is old, not one per version', async () => {
    const s = buildSession('sql-long-loop', times(20, { tool: 'poll_build', args: { id: 9 }, result: 'running' }));
    const upTo = feeder(s, { budgetMaxCalls: 0, watermarkOverlapS: 3600 });
    const base = Date.now() + 1000; // pass clocks a little ahead of the store's
    await upTo(3, base);
    for (let calls = 4; calls <= 19; calls++) await upTo(calls, base + calls * 1000);
    const [f] = await tc.rows<{ version: string; repeats: string }>(`SELECT version, repeats FROM agent_findings FINAL WHERE session_id = 'sql-long-loop' AND detector = 'stuck'`);
    expect([Number(f!.version), Number(f!.repeats)]).toEqual([17, 19]);
    // new (3), the next power of two (4, 8, 16), critical from twice stuckMinRun (6)
    expect((await stuckSpans('sql-long-loop')).map((x) => [x.repeats, x.severity])).toEqual([[3, 'warning'], [4, 'warning'], [6, 'critical'], [8, 'critical'], [16, 'critical']]);
    // a pass LOOP_SPAN_EVERY_MS after the last span (16 repeats, at base + 16 s) writes the version it stores
    await upTo(20, base + 16_000 + LOOP_SPAN_EVERY_MS);
    expect((await stuckSpans('sql-long-loop')).at(-1)).toMatchObject({ repeats: 20, severity: 'critical' });
  });

  it('a loop that grows every 230 s leaves no 5-minute window without a span while it grows (the loop alert keeps firing)', async () => {
    const s = buildSession('sql-slow-loop', times(12, { tool: 'wait_deploy', args: { id: 3 }, result: 'pending' }));
    const upTo = feeder(s, { budgetMaxCalls: 0, watermarkOverlapS: 7200 });
    // 30 s into a 4-minute slot of the clock: a rule of one span per slot left a gap of almost 8 minutes here
    const base = (Math.floor(Date.now() / 240_000) + 1) * 240_000 + 30_000;
    const growths: number[] = [];
    await upTo(3, base);
    for (let calls = 4; calls <= 12; calls++) {
      growths.push(base + (calls - 3) * 230_000);
      await upTo(calls, growths.at(-1)!);
    }
    const at = (await stuckSpans('sql-slow-loop')).map((x) => x.at).sort((a, b) => a - b);
    // the alert, evaluated every minute over the last 5: from the first span to the last growth, no gap of 5 minutes
    expect(at.at(-1)).toBe(growths.at(-1));
    const gaps = at.slice(1).map((a, i) => a - at[i]!);
    expect(Math.max(...gaps)).toBeLessThan(5 * 60_000);
  });
});
